//! Message digesting (PKCS#11 v3.0 §5.10).

use p11kms_protocol::Request;
use pkcs11_sys::*;

use crate::client::call;
use crate::crypt::{data_call, data_out_call, init_call, out_call, Op};
use crate::ffi::boundary;
use crate::slot::expect_ok;

/// `C_DigestInit`.
///
/// # Safety
/// PKCS#11 contract for `mech`.
#[no_mangle]
pub unsafe extern "C" fn C_DigestInit(session: CK_SESSION_HANDLE, mech: CK_MECHANISM_PTR) -> CK_RV {
    boundary!(unsafe { init_call(mech, |mech| Request::DigestInit { session, mech }) })
}

/// `C_Digest`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_Digest(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        data_out_call(
            Op::of(session, CKF_DIGEST),
            data,
            len,
            out,
            out_len,
            |data, out| Request::Digest { session, data, out },
        )
    })
}

/// `C_DigestUpdate`.
///
/// # Safety
/// PKCS#11 contract for the buffer.
#[no_mangle]
pub unsafe extern "C" fn C_DigestUpdate(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe {
        data_call(Op::of(session, CKF_DIGEST), data, len, |data| {
            Request::DigestUpdate { session, data }
        })
    })
}

/// `C_DigestKey`: the daemon digests the key's value without it leaving.
#[no_mangle]
pub extern "C" fn C_DigestKey(session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    boundary!(call(Request::DigestKey { session, key }).and_then(expect_ok))
}

/// `C_DigestFinal`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_DigestFinal(
    session: CK_SESSION_HANDLE,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        out_call(Op::of(session, CKF_DIGEST), out, out_len, |out| {
            Request::DigestFinal { session, out }
        })
    })
}
