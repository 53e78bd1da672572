//! `CK_ATTRIBUTE` arrays ↔ [`protocol::Attribute`](p11kms_protocol::Attribute).
//!
//! Values cross verbatim (a `CK_ULONG` is its 8 native little-endian bytes,
//! a `CK_BBOOL` one byte, `CKA_ALLOWED_MECHANISMS` its array of
//! `CK_MECHANISM_TYPE`s); the daemon interprets them. The template
//! attributes (`CKA_WRAP_TEMPLATE`, `CKA_UNWRAP_TEMPLATE`,
//! `CKA_DERIVE_TEMPLATE`) hold an array of `CK_ATTRIBUTE` with pointers:
//! they cross as a [`Template`], one level deep, and `C_GetAttributeValue`
//! answers them with the nested length rules of PKCS#11 v3.0 §5.7.5. Any
//! other `CKF_ARRAY_ATTRIBUTE` type is `CKR_ATTRIBUTE_TYPE_INVALID`.

use p11kms_protocol::{
    is_template_attribute, AttrResult, Attribute, Template, MAX_DATA, MAX_TEMPLATE_ATTRIBUTES,
};
use pkcs11_sys::{
    CKA_ALLOWED_MECHANISMS, CKF_ARRAY_ATTRIBUTE, CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, CKR_BUFFER_TOO_SMALL,
    CKR_DEVICE_ERROR, CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_RV, CK_UNAVAILABLE_INFORMATION,
};

use crate::ffi::{len_in, len_out, CkResult};

/// How an attribute's value crosses the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Its bytes, verbatim (including `CKA_ALLOWED_MECHANISMS`).
    Bytes,
    /// An array of `CK_ATTRIBUTE` ([`Template`]).
    Template,
    /// An array type p11kms does not know the elements of.
    UnknownArray,
}

fn shape(ty: CK_ATTRIBUTE_TYPE) -> Shape {
    if ty & CKF_ARRAY_ATTRIBUTE == 0 || ty == CKA_ALLOWED_MECHANISMS {
        Shape::Bytes
    } else if is_template_attribute(ty) {
        Shape::Template
    } else {
        Shape::UnknownArray
    }
}

const ATTR_SIZE: usize = std::mem::size_of::<CK_ATTRIBUTE>();

/// Borrow the caller's attribute array. NULL with a non-zero count is
/// `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-NULL `ptr` must point to `count` valid `CK_ATTRIBUTE`s.
unsafe fn array<'a>(
    ptr: *const CK_ATTRIBUTE,
    count: pkcs11_sys::CK_ULONG,
) -> CkResult<&'a [CK_ATTRIBUTE]> {
    let count = len_in(count)?;
    if ptr.is_null() {
        return if count == 0 {
            Ok(&[])
        } else {
            Err(CKR_ARGUMENTS_BAD)
        };
    }
    if count > MAX_DATA / std::mem::size_of::<CK_ATTRIBUTE>() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-NULL with `count` elements (caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Copy an input template (create, copy, set, find, generate, unwrap,
/// derive). A NULL `pValue` with a non-zero length is
/// `CKR_ATTRIBUTE_VALUE_INVALID`; a NULL `pValue` with length 0 travels as
/// `value: None` (the protocol's "NULL pointer"). A template attribute's
/// nested array is read one level deep (a template inside it is
/// `CKR_ATTRIBUTE_VALUE_INVALID`).
///
/// # Safety
/// A non-NULL `ptr` must point to `count` valid `CK_ATTRIBUTE`s whose
/// non-NULL `pValue`s point to `ulValueLen` readable bytes — for a template
/// attribute, `ulValueLen / sizeof(CK_ATTRIBUTE)` `CK_ATTRIBUTE`s bound by
/// the same contract.
pub unsafe fn template_in(
    ptr: *const CK_ATTRIBUTE,
    count: pkcs11_sys::CK_ULONG,
) -> CkResult<Vec<Attribute>> {
    // SAFETY: forwarded contract.
    let attrs = unsafe { array(ptr, count) }?;
    attrs
        .iter()
        // SAFETY: forwarded contract.
        .map(|a| unsafe { attribute_in(a, true) })
        .collect()
}

/// One caller attribute; `outer` is false inside a nested template.
///
/// # Safety
/// As for [`template_in`].
unsafe fn attribute_in(a: &CK_ATTRIBUTE, outer: bool) -> CkResult<Attribute> {
    let shape = shape(a.type_);
    match shape {
        Shape::UnknownArray if outer => return Err(CKR_ATTRIBUTE_TYPE_INVALID),
        Shape::UnknownArray | Shape::Template if !outer => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
        _ => {}
    }
    let len = len_in(a.ulValueLen).map_err(|_| CKR_ATTRIBUTE_VALUE_INVALID)?;
    if a.pValue.is_null() {
        return match (len, shape) {
            (0, Shape::Template) => Ok(Attribute::new(a.type_, Template::default().encode())),
            (0, _) => Ok(Attribute {
                ty: a.type_,
                value: None,
            }),
            _ => Err(CKR_ATTRIBUTE_VALUE_INVALID),
        };
    }
    if len > MAX_DATA {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    if shape == Shape::Template {
        if len % ATTR_SIZE != 0 || len / ATTR_SIZE > MAX_TEMPLATE_ATTRIBUTES {
            return Err(CKR_ATTRIBUTE_VALUE_INVALID);
        }
        let base = a.pValue.cast::<CK_ATTRIBUTE>();
        let nested = (0..len / ATTR_SIZE)
            .map(|i| {
                // SAFETY: `pValue` holds `len / ATTR_SIZE` CK_ATTRIBUTEs
                // (contract); read unaligned in case the caller's byte
                // buffer is not aligned for the structure.
                let n = unsafe { std::ptr::read_unaligned(base.add(i)) };
                // SAFETY: the nested attribute is bound by the contract.
                unsafe { attribute_in(&n, false) }
            })
            .collect::<CkResult<Vec<_>>>()?;
        return Ok(Attribute::new(a.type_, Template(nested).encode()));
    }
    // SAFETY: non-NULL with `len` readable bytes (contract).
    let value = unsafe { std::slice::from_raw_parts(a.pValue.cast::<u8>(), len) };
    Ok(Attribute::new(a.type_, value))
}

/// The caller's `C_GetAttributeValue` template, borrowed for writing, and
/// its attribute types.
///
/// # Safety
/// A non-NULL `ptr` must point to `count` valid, writable `CK_ATTRIBUTE`s
/// not aliased elsewhere for `'a` (values are not read).
pub unsafe fn types_in<'a>(
    ptr: *mut CK_ATTRIBUTE,
    count: pkcs11_sys::CK_ULONG,
) -> CkResult<(&'a mut [CK_ATTRIBUTE], Vec<u64>)> {
    // Validates NULL/count exactly like an input template.
    // SAFETY: forwarded contract.
    let len = unsafe { array(ptr, count) }?.len();
    if len == 0 {
        return Ok((&mut [], Vec::new()));
    }
    // SAFETY: non-NULL (checked by `array` for len > 0) with `len` writable
    // elements (contract); the shared borrow above has ended.
    let attrs = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
    let types = attrs.iter().map(|a| a.type_).collect();
    Ok((attrs, types))
}

/// What one attribute of `C_GetAttributeValue` becomes, and the code it
/// contributes (PKCS#11 v3.0 §5.7 `C_GetAttributeValue`, cases 1–5).
fn answer(result: &AttrResult, has_buffer: bool, cap: u64) -> (Fill<'_>, CK_RV) {
    match result {
        AttrResult::Sensitive => (Fill::Unavailable, CKR_ATTRIBUTE_SENSITIVE),
        AttrResult::Invalid => (Fill::Unavailable, CKR_ATTRIBUTE_TYPE_INVALID),
        AttrResult::Value(v) => match u64::try_from(v.len()) {
            Ok(n) if !has_buffer => (Fill::Len(n), 0),
            Ok(n) if cap >= n => (Fill::Copy(v), 0),
            _ => (Fill::Unavailable, CKR_BUFFER_TOO_SMALL),
        },
    }
}

enum Fill<'a> {
    Len(u64),
    Copy(&'a [u8]),
    Unavailable,
}

/// Rank of a per-attribute code: the call returns the highest one
/// (SENSITIVE > TYPE_INVALID > BUFFER_TOO_SMALL > OK), as p11-kit and
/// SoftHSM do, after every attribute has been answered.
fn rank(rv: CK_RV) -> u8 {
    match rv {
        CKR_ATTRIBUTE_SENSITIVE => 3,
        CKR_ATTRIBUTE_TYPE_INVALID => 2,
        CKR_BUFFER_TOO_SMALL => 1,
        _ => 0,
    }
}

/// Write the daemon's answers into the caller's template and return the
/// call's code. Unknown array attributes are answered as invalid locally.
///
/// # Safety
/// Every non-NULL `pValue` in `template` must point to `ulValueLen`
/// writable bytes; for a template attribute given room for its entries,
/// those are `CK_ATTRIBUTE`s whose own non-NULL `pValue`s point to
/// `ulValueLen` writable bytes.
pub unsafe fn fill_values(template: &mut [CK_ATTRIBUTE], results: &[AttrResult]) -> CkResult<()> {
    if results.len() != template.len() {
        return Err(CKR_DEVICE_ERROR);
    }
    let mut worst: CK_RV = 0;
    for (attr, result) in template.iter_mut().zip(results) {
        let rv = match (shape(attr.type_), result) {
            (Shape::UnknownArray, _) => {
                attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                CKR_ATTRIBUTE_TYPE_INVALID
            }
            (Shape::Template, AttrResult::Value(v)) => {
                let t = Template::decode(v).ok_or(CKR_DEVICE_ERROR)?;
                // SAFETY: forwarded contract.
                unsafe { fill_template(attr, &t.0) }?
            }
            // SAFETY: forwarded contract.
            _ => unsafe { fill_one(attr, result) }?,
        };
        if rank(rv) > rank(worst) {
            worst = rv;
        }
    }
    if worst == 0 {
        Ok(())
    } else {
        Err(worst)
    }
}

/// One plain attribute (cases 1–5 of §5.7.5); returns its code.
///
/// # Safety
/// A non-NULL `attr.pValue` points to `attr.ulValueLen` writable bytes.
unsafe fn fill_one(attr: &mut CK_ATTRIBUTE, result: &AttrResult) -> CkResult<CK_RV> {
    let (fill, rv) = answer(result, !attr.pValue.is_null(), attr.ulValueLen);
    match fill {
        Fill::Len(n) => attr.ulValueLen = n,
        Fill::Unavailable => attr.ulValueLen = CK_UNAVAILABLE_INFORMATION,
        Fill::Copy(v) => {
            // SAFETY: `pValue` is non-NULL with `ulValueLen >= v.len()`
            // writable bytes (contract, checked in `answer`).
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), attr.pValue.cast::<u8>(), v.len()) };
            attr.ulValueLen = len_out(v.len())?;
        }
    }
    Ok(rv)
}

/// A template attribute (PKCS#11 v3.0 §5.7.5 with SoftHSMv2's reading of
/// the nested case), in up to three calls:
/// 1. `pValue` NULL: `ulValueLen` = entries × `sizeof(CK_ATTRIBUTE)`;
/// 2. room for the entries, each nested `pValue` NULL: each entry gets its
///    `type` and `ulValueLen` (the template's order);
/// 3. nested buffers: each entry is answered by its `type` like a plain
///    attribute (missing → `CKR_ATTRIBUTE_TYPE_INVALID`, too small →
///    `CKR_BUFFER_TOO_SMALL`, both with `CK_UNAVAILABLE_INFORMATION`).
///
/// Too little room for the entries is `CKR_BUFFER_TOO_SMALL` with
/// `CK_UNAVAILABLE_INFORMATION`. Returns the attribute's code.
///
/// # Safety
/// As for [`fill_values`].
unsafe fn fill_template(attr: &mut CK_ATTRIBUTE, nested: &[Attribute]) -> CkResult<CK_RV> {
    let need = nested
        .len()
        .checked_mul(ATTR_SIZE)
        .ok_or(CKR_DEVICE_ERROR)?;
    if attr.pValue.is_null() {
        attr.ulValueLen = len_out(need)?;
        return Ok(0);
    }
    if (attr.ulValueLen as u128) < need as u128 {
        attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return Ok(CKR_BUFFER_TOO_SMALL);
    }
    let base = attr.pValue.cast::<CK_ATTRIBUTE>();
    // SAFETY (reads and writes below): `pValue` has room for
    // `nested.len()` CK_ATTRIBUTEs (checked against `ulValueLen`, contract);
    // unaligned access in case the caller's buffer is a byte array.
    let mut entries: Vec<CK_ATTRIBUTE> = (0..nested.len())
        .map(|i| unsafe { std::ptr::read_unaligned(base.add(i)) })
        .collect();
    let mut worst: CK_RV = 0;
    if entries.iter().all(|e| e.pValue.is_null()) {
        for (e, n) in entries.iter_mut().zip(nested) {
            e.type_ = n.ty;
            e.ulValueLen = len_out(n.value.as_deref().unwrap_or_default().len())?;
        }
    } else {
        for e in &mut entries {
            let result = match nested.iter().find(|n| n.ty == e.type_) {
                Some(n) => AttrResult::Value(n.value.clone().unwrap_or_default()),
                None => AttrResult::Invalid,
            };
            // SAFETY: a nested non-NULL pValue points to its ulValueLen
            // writable bytes (contract).
            let rv = unsafe { fill_one(e, &result) }?;
            if rank(rv) > rank(worst) {
                worst = rv;
            }
        }
    }
    for (i, e) in entries.into_iter().enumerate() {
        // SAFETY: as for the reads above.
        unsafe { std::ptr::write_unaligned(base.add(i), e) };
    }
    attr.ulValueLen = len_out(need)?;
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs11_sys::*;
    use std::mem::size_of;
    use std::ptr;

    fn attr(ty: CK_ATTRIBUTE_TYPE, buf: &mut [u8]) -> CK_ATTRIBUTE {
        CK_ATTRIBUTE {
            type_: ty,
            pValue: buf.as_mut_ptr().cast(),
            ulValueLen: buf.len() as CK_ULONG,
        }
    }

    #[test]
    fn template_values_copied_verbatim() {
        let mut class = CKO_SECRET_KEY.to_le_bytes();
        let mut tru = [CK_TRUE];
        let mut label = *b"k1";
        let t = [
            attr(CKA_CLASS, &mut class),
            attr(CKA_TOKEN, &mut tru),
            attr(CKA_LABEL, &mut label),
            CK_ATTRIBUTE {
                type_: CKA_ID,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            },
        ];
        let got = unsafe { template_in(t.as_ptr(), 4) }.expect("template");
        assert_eq!(
            got,
            vec![
                Attribute::ulong(CKA_CLASS, CKO_SECRET_KEY),
                Attribute::bool(CKA_TOKEN, true),
                Attribute::new(CKA_LABEL, b"k1".to_vec()),
                Attribute {
                    ty: CKA_ID,
                    value: None
                },
            ]
        );
    }

    #[test]
    fn template_errors() {
        assert_eq!(unsafe { template_in(ptr::null(), 0) }, Ok(vec![]));
        assert_eq!(
            unsafe { template_in(ptr::null(), 1) },
            Err(CKR_ARGUMENTS_BAD)
        );
        let t = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: ptr::null_mut(),
            ulValueLen: 3,
        }];
        assert_eq!(
            unsafe { template_in(t.as_ptr(), 1) },
            Err(CKR_ATTRIBUTE_VALUE_INVALID)
        );
        // An array type whose elements p11kms does not know.
        let mut inner = [0u8; 24];
        let t = [attr(CKF_ARRAY_ATTRIBUTE | 0x999, &mut inner)];
        assert_eq!(
            unsafe { template_in(t.as_ptr(), 1) },
            Err(CKR_ATTRIBUTE_TYPE_INVALID)
        );
        // A template whose length is not a whole number of CK_ATTRIBUTEs.
        let mut inner = [0u8; 25];
        let t = [attr(CKA_WRAP_TEMPLATE, &mut inner)];
        assert_eq!(
            unsafe { template_in(t.as_ptr(), 1) },
            Err(CKR_ATTRIBUTE_VALUE_INVALID)
        );
    }

    #[test]
    fn template_attributes_cross_one_level_deep() {
        let mut tru = [CK_TRUE];
        let mut mechs = [CKM_AES_GCM, CKM_AES_CBC];
        let mut nested = [
            attr(CKA_SENSITIVE, &mut tru),
            CK_ATTRIBUTE {
                type_: CKA_ALLOWED_MECHANISMS,
                pValue: mechs.as_mut_ptr().cast(),
                ulValueLen: 16,
            },
        ];
        let t = [
            CK_ATTRIBUTE {
                type_: CKA_UNWRAP_TEMPLATE,
                pValue: nested.as_mut_ptr().cast(),
                ulValueLen: (2 * size_of::<CK_ATTRIBUTE>()) as CK_ULONG,
            },
            CK_ATTRIBUTE {
                type_: CKA_WRAP_TEMPLATE,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            },
        ];
        let got = unsafe { template_in(t.as_ptr(), 2) }.expect("template");
        let mut allowed = CKM_AES_GCM.to_ne_bytes().to_vec();
        allowed.extend(CKM_AES_CBC.to_ne_bytes());
        assert_eq!(
            got,
            vec![
                Attribute::new(
                    CKA_UNWRAP_TEMPLATE,
                    Template(vec![
                        Attribute::bool(CKA_SENSITIVE, true),
                        Attribute::new(CKA_ALLOWED_MECHANISMS, allowed),
                    ])
                    .encode()
                ),
                Attribute::new(CKA_WRAP_TEMPLATE, Template::default().encode()),
            ]
        );
        // A template inside a template is refused.
        let inner = [CK_ATTRIBUTE {
            type_: CKA_DERIVE_TEMPLATE,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        }];
        let t = [CK_ATTRIBUTE {
            type_: CKA_WRAP_TEMPLATE,
            pValue: inner.as_ptr().cast_mut().cast(),
            ulValueLen: size_of::<CK_ATTRIBUTE>() as CK_ULONG,
        }];
        assert_eq!(
            unsafe { template_in(t.as_ptr(), 1) },
            Err(CKR_ATTRIBUTE_VALUE_INVALID)
        );
    }

    #[test]
    fn template_attribute_answered_in_three_steps() {
        let stored = Template(vec![
            Attribute::ulong(CKA_KEY_TYPE, CKK_AES),
            Attribute::bool(CKA_EXTRACTABLE, false),
        ]);
        let results = [AttrResult::Value(stored.encode())];
        // 1. pValue NULL: the size of the array.
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_WRAP_TEMPLATE,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        }];
        assert_eq!(unsafe { fill_values(&mut t, &results) }, Ok(()));
        assert_eq!(t[0].ulValueLen as usize, 2 * size_of::<CK_ATTRIBUTE>());
        // Room for one entry only.
        let mut one = [CK_ATTRIBUTE {
            type_: 0,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        }];
        t[0].pValue = one.as_mut_ptr().cast();
        t[0].ulValueLen = size_of::<CK_ATTRIBUTE>() as CK_ULONG;
        assert_eq!(
            unsafe { fill_values(&mut t, &results) },
            Err(CKR_BUFFER_TOO_SMALL)
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        // 2. Entries with NULL pValues: types and lengths.
        let mut entries = [CK_ATTRIBUTE {
            type_: 0,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        }; 2];
        t[0].pValue = entries.as_mut_ptr().cast();
        t[0].ulValueLen = (2 * size_of::<CK_ATTRIBUTE>()) as CK_ULONG;
        assert_eq!(unsafe { fill_values(&mut t, &results) }, Ok(()));
        assert_eq!((entries[0].type_, entries[0].ulValueLen), (CKA_KEY_TYPE, 8));
        assert_eq!(
            (entries[1].type_, entries[1].ulValueLen),
            (CKA_EXTRACTABLE, 1)
        );
        // 3. Buffers: the values, answered by type (order swapped here).
        let mut kt = [0u8; 8];
        let mut ex = [9u8; 1];
        entries[0] = attr(CKA_EXTRACTABLE, &mut ex);
        entries[1] = attr(CKA_KEY_TYPE, &mut kt);
        assert_eq!(unsafe { fill_values(&mut t, &results) }, Ok(()));
        assert_eq!(ex, [CK_FALSE]);
        assert_eq!(kt, CKK_AES.to_ne_bytes());
        assert_eq!(t[0].ulValueLen as usize, 2 * size_of::<CK_ATTRIBUTE>());
        // A too-small nested buffer and a type the template lacks.
        let mut small = [0u8; 4];
        entries[0] = attr(CKA_LABEL, &mut ex);
        entries[1] = attr(CKA_KEY_TYPE, &mut small);
        assert_eq!(
            unsafe { fill_values(&mut t, &results) },
            Err(CKR_ATTRIBUTE_TYPE_INVALID)
        );
        assert_eq!(entries[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(entries[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        // A daemon answer that is not a template.
        assert_eq!(
            unsafe { fill_values(&mut t, &[AttrResult::Value(vec![1, 2, 3])]) },
            Err(CKR_DEVICE_ERROR)
        );
    }

    #[test]
    fn get_attribute_value_per_attribute_answers() {
        let mut big = [0u8; 8];
        let mut small = [0u8; 1];
        let mut t = [
            CK_ATTRIBUTE {
                type_: CKA_LABEL,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            }, // length query
            attr(CKA_VALUE_LEN, &mut big), // fits
            attr(CKA_ID, &mut small),      // too small
        ];
        let results = [
            AttrResult::Value(b"abc".to_vec()),
            AttrResult::Value(32u64.to_le_bytes().to_vec()),
            AttrResult::Value(vec![1, 2]),
        ];
        assert_eq!(
            unsafe { fill_values(&mut t, &results) },
            Err(CKR_BUFFER_TOO_SMALL)
        );
        assert_eq!(t[0].ulValueLen, 3);
        assert_eq!(t[1].ulValueLen, 8);
        assert_eq!(big, 32u64.to_le_bytes());
        assert_eq!(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    }

    #[test]
    fn get_attribute_value_precedence() {
        let mut small = [0u8; 1];
        let mut ok = [0u8; 4];
        let mk = |small: &mut [u8], ok: &mut [u8]| {
            [
                attr(CKA_ID, small),
                CK_ATTRIBUTE {
                    type_: CKA_ALWAYS_AUTHENTICATE,
                    pValue: ptr::null_mut(),
                    ulValueLen: 0,
                },
                attr(CKA_LABEL, ok),
                CK_ATTRIBUTE {
                    type_: CKA_VALUE,
                    pValue: ptr::null_mut(),
                    ulValueLen: 0,
                },
            ]
        };
        let mut t = mk(&mut small, &mut ok);
        let results = [
            AttrResult::Value(vec![1, 2]),
            AttrResult::Invalid,
            AttrResult::Value(b"ab".to_vec()),
            AttrResult::Sensitive,
        ];
        assert_eq!(
            unsafe { fill_values(&mut t, &results) },
            Err(CKR_ATTRIBUTE_SENSITIVE)
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(t[2].ulValueLen, 2);
        assert_eq!(t[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);

        let mut t = mk(&mut small, &mut ok);
        let results = [
            AttrResult::Value(vec![1, 2]),
            AttrResult::Invalid,
            AttrResult::Value(vec![]),
            AttrResult::Value(vec![]),
        ];
        assert_eq!(
            unsafe { fill_values(&mut t, &results) },
            Err(CKR_ATTRIBUTE_TYPE_INVALID)
        );

        let mut t = mk(&mut small, &mut ok);
        let results = [
            AttrResult::Value(vec![1]),
            AttrResult::Value(vec![0]),
            AttrResult::Value(vec![]),
            AttrResult::Value(vec![9; 5]),
        ];
        assert_eq!(unsafe { fill_values(&mut t, &results) }, Ok(()));
        assert_eq!(t[3].ulValueLen, 5);
        assert_eq!(small, [1]);

        // Wrong number of answers from the daemon.
        let mut t = mk(&mut small, &mut ok);
        assert_eq!(
            unsafe { fill_values(&mut t, &results[..2]) },
            Err(CKR_DEVICE_ERROR)
        );
    }

    #[test]
    fn unknown_array_attributes_are_invalid_locally() {
        let mut buf = [0u8; 16];
        let mut t = [attr(CKF_ARRAY_ATTRIBUTE | 0x999, &mut buf)];
        assert_eq!(
            unsafe { fill_values(&mut t, &[AttrResult::Value(vec![1])]) },
            Err(CKR_ATTRIBUTE_TYPE_INVALID)
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    }
}
