//! `CK_ATTRIBUTE` arrays ↔ [`protocol::Attribute`](p11kms_protocol::Attribute).
//!
//! Values cross verbatim (a `CK_ULONG` is its 8 native little-endian bytes,
//! a `CK_BBOOL` one byte); the daemon interprets them. Attributes of the
//! `CKF_ARRAY_ATTRIBUTE` kind (`CKA_WRAP_TEMPLATE` and friends) hold
//! pointers and are not carried yet: they are `CKR_ATTRIBUTE_TYPE_INVALID`
//! in templates and answered as invalid by `C_GetAttributeValue`.

use p11kms_protocol::{AttrResult, Attribute, MAX_DATA};
use pkcs11_sys::{
    CKF_ARRAY_ATTRIBUTE, CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_ATTRIBUTE_VALUE_INVALID, CKR_BUFFER_TOO_SMALL, CKR_DEVICE_ERROR, CK_ATTRIBUTE,
    CK_ATTRIBUTE_TYPE, CK_RV, CK_UNAVAILABLE_INFORMATION,
};

use crate::ffi::{len_in, len_out, CkResult};

fn is_array(ty: CK_ATTRIBUTE_TYPE) -> bool {
    ty & CKF_ARRAY_ATTRIBUTE != 0
}

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
/// `value: None` (the protocol's "NULL pointer").
///
/// # Safety
/// A non-NULL `ptr` must point to `count` valid `CK_ATTRIBUTE`s whose
/// non-NULL `pValue`s point to `ulValueLen` readable bytes.
pub unsafe fn template_in(
    ptr: *const CK_ATTRIBUTE,
    count: pkcs11_sys::CK_ULONG,
) -> CkResult<Vec<Attribute>> {
    // SAFETY: forwarded contract.
    let attrs = unsafe { array(ptr, count) }?;
    attrs
        .iter()
        .map(|a| {
            if is_array(a.type_) {
                return Err(CKR_ATTRIBUTE_TYPE_INVALID);
            }
            let len = len_in(a.ulValueLen).map_err(|_| CKR_ATTRIBUTE_VALUE_INVALID)?;
            if a.pValue.is_null() {
                return if len == 0 {
                    Ok(Attribute {
                        ty: a.type_,
                        value: None,
                    })
                } else {
                    Err(CKR_ATTRIBUTE_VALUE_INVALID)
                };
            }
            if len > MAX_DATA {
                return Err(CKR_ATTRIBUTE_VALUE_INVALID);
            }
            // SAFETY: non-NULL with `len` readable bytes (contract).
            let value = unsafe { std::slice::from_raw_parts(a.pValue.cast::<u8>(), len) };
            Ok(Attribute::new(a.type_, value))
        })
        .collect()
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
/// call's code. Array attributes are answered as invalid locally.
///
/// # Safety
/// Every non-NULL `pValue` in `template` must point to `ulValueLen`
/// writable bytes.
pub unsafe fn fill_values(template: &mut [CK_ATTRIBUTE], results: &[AttrResult]) -> CkResult<()> {
    if results.len() != template.len() {
        return Err(CKR_DEVICE_ERROR);
    }
    let mut worst: CK_RV = 0;
    for (attr, result) in template.iter_mut().zip(results) {
        let result = if is_array(attr.type_) {
            &AttrResult::Invalid
        } else {
            result
        };
        let (fill, rv) = answer(result, !attr.pValue.is_null(), attr.ulValueLen);
        match fill {
            Fill::Len(n) => attr.ulValueLen = n,
            Fill::Unavailable => attr.ulValueLen = CK_UNAVAILABLE_INFORMATION,
            Fill::Copy(v) => {
                // SAFETY: `pValue` is non-NULL with `ulValueLen >= v.len()`
                // writable bytes (contract, checked in `answer`).
                unsafe {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), attr.pValue.cast::<u8>(), v.len())
                };
                attr.ulValueLen = len_out(v.len())?;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs11_sys::*;
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
        let mut inner = [0u8; 24];
        let t = [attr(CKA_WRAP_TEMPLATE, &mut inner)];
        assert_eq!(
            unsafe { template_in(t.as_ptr(), 1) },
            Err(CKR_ATTRIBUTE_TYPE_INVALID)
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
    fn array_attributes_are_invalid_locally() {
        let mut buf = [0u8; 16];
        let mut t = [attr(CKA_UNWRAP_TEMPLATE, &mut buf)];
        assert_eq!(
            unsafe { fill_values(&mut t, &[AttrResult::Value(vec![1])]) },
            Err(CKR_ATTRIBUTE_TYPE_INVALID)
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    }
}
