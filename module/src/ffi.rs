//! The C ABI boundary: the panic shell every export runs in, and the few
//! helpers through which raw pointers become Rust values.
//!
//! Every `C_*` export is one line: `boundary!(unsafe { inner(args) })`. The
//! inner function returns [`CkResult`]; the shell maps `Ok` to `CKR_OK`, an
//! error to its `CK_RV`, and a panic to `CKR_GENERAL_ERROR`, so no unwinding
//! ever crosses into C (PKCS#11 v3.0 §5.1: the library must not crash its
//! caller).
//!
//! Pointer rules, applied only here:
//! - a required pointer that is NULL is `CKR_ARGUMENTS_BAD`;
//! - `(NULL, 0)` is an empty input buffer;
//! - lengths cross from `CK_ULONG` to `usize` through `try_from`;
//! - output buffers follow the length rules of §5.2 ([`OutBuf`]).

use std::panic::{catch_unwind, AssertUnwindSafe};

use p11kms_protocol::{OutCap, Response, SecretBytes, MAX_DATA};
use pkcs11_sys::{
    CKR_ARGUMENTS_BAD, CKR_BUFFER_TOO_SMALL, CKR_DATA_LEN_RANGE, CKR_DEVICE_ERROR,
    CKR_GENERAL_ERROR, CKR_OK, CK_RV, CK_ULONG,
};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("p11kms assumes a 64-bit CK_ULONG (LP64), as on every supported Linux target");

/// Result of an inner function: `Err` carries the `CK_RV` the caller gets.
///
/// Outputs that PKCS#11 fills together with a non-OK code (the needed length
/// with `CKR_BUFFER_TOO_SMALL`, the attribute array with
/// `CKR_ATTRIBUTE_SENSITIVE`) are written before the `Err` is returned.
pub type CkResult<T> = Result<T, CK_RV>;

/// Run `f`, mapping its result to a `CK_RV` and any panic to
/// `CKR_GENERAL_ERROR`. Used through [`boundary!`].
pub fn run<F: FnOnce() -> CkResult<()>>(f: F) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        // An inner function never means "success" with Err; be safe anyway.
        Ok(Err(CKR_OK)) => CKR_GENERAL_ERROR,
        Ok(Err(rv)) => rv,
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// The panic boundary around one export's body (see the module docs).
macro_rules! boundary {
    ($body:expr) => {
        $crate::ffi::run(|| $body)
    };
}
pub(crate) use boundary;

/// Convert a caller's `CK_ULONG` length to `usize`.
pub fn len_in(len: CK_ULONG) -> CkResult<usize> {
    usize::try_from(len).map_err(|_| CKR_ARGUMENTS_BAD)
}

/// Convert a length to the caller's `CK_ULONG`.
pub fn len_out(len: usize) -> CkResult<CK_ULONG> {
    CK_ULONG::try_from(len).map_err(|_| CKR_GENERAL_ERROR)
}

/// Borrow an input buffer. `(NULL, 0)` is the empty slice; NULL with a
/// non-zero length is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that stay valid and
/// unmodified for `'a`.
pub unsafe fn slice_in<'a>(ptr: *const u8, len: CK_ULONG) -> CkResult<&'a [u8]> {
    let len = len_in(len)?;
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(CKR_ARGUMENTS_BAD)
        };
    }
    // SAFETY: non-NULL and, by the caller's contract, `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Copy an input data buffer (plaintext, ciphertext, signature...) for the
/// wire. More than [`MAX_DATA`] bytes in one call is `CKR_DATA_LEN_RANGE`.
///
/// # Safety
/// As for [`slice_in`].
pub unsafe fn data_in(ptr: *const u8, len: CK_ULONG) -> CkResult<Vec<u8>> {
    if len_in(len)? > MAX_DATA {
        return Err(CKR_DATA_LEN_RANGE);
    }
    // SAFETY: forwarded contract.
    Ok(unsafe { slice_in(ptr, len) }?.to_vec())
}

/// Copy a PIN into a buffer that is wiped when dropped. NULL is
/// `CKR_ARGUMENTS_BAD` whatever the length: a NULL PIN asks for a protected
/// authentication path, which p11kms does not offer.
///
/// # Safety
/// As for [`slice_in`].
pub unsafe fn pin_in(ptr: *const u8, len: CK_ULONG) -> CkResult<SecretBytes> {
    if ptr.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract.
    Ok(SecretBytes::from(unsafe { slice_in(ptr, len) }?))
}

/// Borrow a required input structure; NULL is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-NULL `ptr` must point to a valid, readable `T` for `'a`.
pub unsafe fn ref_in<'a, T>(ptr: *const T) -> CkResult<&'a T> {
    // SAFETY: forwarded contract.
    unsafe { ptr.as_ref() }.ok_or(CKR_ARGUMENTS_BAD)
}

/// Borrow a required output location; NULL is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-NULL `ptr` must point to a writable `T`, not aliased for `'a`.
pub unsafe fn out_ref<'a, T>(ptr: *mut T) -> CkResult<&'a mut T> {
    // SAFETY: forwarded contract.
    unsafe { ptr.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)
}

/// Write `value` to a required output location.
///
/// # Safety
/// As for [`out_ref`].
pub unsafe fn write_out<T>(ptr: *mut T, value: T) -> CkResult<()> {
    // SAFETY: forwarded contract.
    *unsafe { out_ref(ptr) }? = value;
    Ok(())
}

/// A caller's output buffer and its length word (`pOut`, `pulOutLen`),
/// handled per PKCS#11 v3.0 §5.2.
pub struct OutBuf {
    ptr: *mut u8,
    len: *mut CK_ULONG,
}

impl OutBuf {
    /// Take the caller's `(pOut, pulOutLen)`. `pulOutLen` is required; a NULL
    /// `pOut` is a length query.
    ///
    /// # Safety
    /// `len` must be NULL or point to a writable `CK_ULONG`; a non-NULL `ptr`
    /// must point to `*len` writable bytes. Both must stay valid while the
    /// `OutBuf` lives.
    pub unsafe fn new(ptr: *mut u8, len: *mut CK_ULONG) -> CkResult<Self> {
        if len.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        Ok(OutBuf { ptr, len })
    }

    /// The capacity the request carries: `None` for a length query.
    pub fn cap(&self) -> OutCap {
        if self.ptr.is_null() {
            None
        } else {
            // SAFETY: `len` is non-NULL and valid (constructor contract).
            Some(unsafe { *self.len })
        }
    }

    /// Deliver the daemon's `Response::Output { len, data }`:
    /// - NULL buffer: write `len`, `CKR_OK` (the operation stays live);
    /// - no data: write `len`, `CKR_BUFFER_TOO_SMALL` (it stays live too);
    /// - data: copy it, write its length, `CKR_OK`.
    pub fn deliver(self, len: u64, data: Option<Vec<u8>>) -> CkResult<()> {
        let cap = self.cap();
        // SAFETY: `self.len` is non-NULL and writable (constructor contract).
        let len_word = unsafe { &mut *self.len };
        match (cap, data) {
            (None, _) => {
                *len_word = len;
                Ok(())
            }
            (Some(_), None) => {
                *len_word = len;
                Err(CKR_BUFFER_TOO_SMALL)
            }
            (Some(cap), Some(data)) => {
                let n = len_out(data.len())?;
                if n > cap {
                    // The daemon broke the contract; never overrun the buffer.
                    return Err(CKR_DEVICE_ERROR);
                }
                // SAFETY: `ptr` is non-NULL with `cap >= data.len()` writable
                // bytes (constructor contract); the regions cannot overlap
                // because `data` is our own allocation.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr, data.len()) };
                *len_word = n;
                Ok(())
            }
        }
    }

    /// Deliver a daemon answer that must be `Response::Output`.
    pub fn deliver_response(self, resp: Response) -> CkResult<()> {
        match resp {
            Response::Output { len, data } => self.deliver(len, data),
            _ => Err(CKR_DEVICE_ERROR),
        }
    }
}

/// Fill a caller's array of `CK_ULONG`s (slot or mechanism list) per §5.2:
/// NULL list → count, `CKR_OK`; too small → count, `CKR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `count` must be NULL or point to a writable `CK_ULONG`; a non-NULL `list`
/// must have room for `*count` elements.
pub unsafe fn ulong_list_out(
    list: *mut CK_ULONG,
    count: *mut CK_ULONG,
    items: &[u64],
) -> CkResult<()> {
    // SAFETY: forwarded contract.
    let count = unsafe { out_ref(count) }?;
    let n = len_out(items.len())?;
    if list.is_null() {
        *count = n;
        return Ok(());
    }
    if *count < n {
        *count = n;
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    // SAFETY: `list` has room for `*count >= n` elements (contract).
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), list, items.len()) };
    *count = n;
    Ok(())
}

/// Blank-pad `s` into a fixed-width PKCS#11 string field (no NUL),
/// truncating on a character boundary.
pub fn pad<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_blank_fills_and_truncates_on_char_boundary() {
        assert_eq!(&pad::<8>("abc"), b"abc     ");
        assert_eq!(&pad::<3>("abcdef"), b"abc");
        // "é" is two bytes; cutting at 2 would split it.
        assert_eq!(&pad::<2>("aé"), b"a ");
    }

    #[test]
    fn panics_become_general_error() {
        assert_eq!(run(|| panic!("boom")), CKR_GENERAL_ERROR);
        assert_eq!(run(|| Err(CKR_BUFFER_TOO_SMALL)), CKR_BUFFER_TOO_SMALL);
        assert_eq!(run(|| Ok(())), CKR_OK);
    }

    #[test]
    fn out_buf_follows_length_rules() {
        let mut len: CK_ULONG = 0;
        let ob = unsafe { OutBuf::new(std::ptr::null_mut(), &mut len) }.expect("outbuf");
        assert_eq!(ob.cap(), None);
        assert_eq!(ob.deliver(32, None), Ok(()));
        assert_eq!(len, 32);

        let mut buf = [0u8; 4];
        len = 4;
        let ob = unsafe { OutBuf::new(buf.as_mut_ptr(), &mut len) }.expect("outbuf");
        assert_eq!(ob.cap(), Some(4));
        assert_eq!(ob.deliver(16, None), Err(CKR_BUFFER_TOO_SMALL));
        assert_eq!(len, 16);

        len = 4;
        let ob = unsafe { OutBuf::new(buf.as_mut_ptr(), &mut len) }.expect("outbuf");
        assert_eq!(ob.deliver(3, Some(vec![1, 2, 3])), Ok(()));
        assert_eq!(len, 3);
        assert_eq!(&buf[..3], &[1, 2, 3]);

        len = 2;
        let ob = unsafe { OutBuf::new(buf.as_mut_ptr(), &mut len) }.expect("outbuf");
        assert_eq!(ob.deliver(3, Some(vec![1, 2, 3])), Err(CKR_DEVICE_ERROR));

        assert!(unsafe { OutBuf::new(buf.as_mut_ptr(), std::ptr::null_mut()) }.is_err());
    }

    #[test]
    fn slices_and_lists() {
        assert_eq!(unsafe { slice_in(std::ptr::null(), 0) }, Ok(&[][..]));
        assert_eq!(
            unsafe { slice_in(std::ptr::null(), 1) },
            Err(CKR_ARGUMENTS_BAD)
        );
        let mut count: CK_ULONG = 0;
        assert_eq!(
            unsafe { ulong_list_out(std::ptr::null_mut(), &mut count, &[1, 2]) },
            Ok(())
        );
        assert_eq!(count, 2);
        let mut list = [0 as CK_ULONG; 2];
        count = 1;
        assert_eq!(
            unsafe { ulong_list_out(list.as_mut_ptr(), &mut count, &[1, 2]) },
            Err(CKR_BUFFER_TOO_SMALL)
        );
        assert_eq!(count, 2);
        assert_eq!(
            unsafe { ulong_list_out(list.as_mut_ptr(), &mut count, &[1, 2]) },
            Ok(())
        );
        assert_eq!(list, [1, 2]);
    }
}
