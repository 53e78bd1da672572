//! Signing and MACing, verifying signatures and MACs (PKCS#11 v3.0 §5.11,
//! §5.12). Signature recovery is not supported.

use p11kms_protocol::Request;
use pkcs11_sys::*;

use crate::client::{call, ensure};
use crate::crypt::{data_call, data_out_call, init_call, out_call, Op};
use crate::ffi::{boundary, data_in, CkResult};
use crate::general::not_supported;
use crate::slot::expect_ok;

/// `C_SignInit`.
///
/// # Safety
/// PKCS#11 contract for `mech`.
#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(unsafe { init_call(mech, |mech| Request::SignInit { session, mech, key }) })
}

/// `C_Sign`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        data_out_call(
            Op::of(session, CKF_SIGN),
            data,
            len,
            sig,
            sig_len,
            |data, out| Request::Sign { session, data, out },
        )
    })
}

/// `C_SignUpdate`.
///
/// # Safety
/// PKCS#11 contract for the buffer.
#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe {
        data_call(Op::of(session, CKF_SIGN), data, len, |data| {
            Request::SignUpdate { session, data }
        })
    })
}

/// `C_SignFinal`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    session: CK_SESSION_HANDLE,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        out_call(Op::of(session, CKF_SIGN), sig, sig_len, |out| {
            Request::SignFinal { session, out }
        })
    })
}

/// `C_SignRecoverInit`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_SignRecoverInit(
    _s: CK_SESSION_HANDLE,
    _mech: CK_MECHANISM_PTR,
    _key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_SignRecover`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_SignRecover(
    _s: CK_SESSION_HANDLE,
    _data: CK_BYTE_PTR,
    _len: CK_ULONG,
    _sig: CK_BYTE_PTR,
    _sig_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_VerifyInit`.
///
/// # Safety
/// PKCS#11 contract for `mech`.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyInit(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(unsafe { init_call(mech, |mech| Request::VerifyInit { session, mech, key }) })
}

/// A signature to verify; an oversized one cannot be valid.
///
/// # Safety
/// `sig` points to `len` bytes.
unsafe fn signature_in(sig: CK_BYTE_PTR, len: CK_ULONG) -> CkResult<Vec<u8>> {
    // SAFETY: forwarded contract.
    unsafe { data_in(sig, len) }.map_err(|rv| {
        if rv == CKR_DATA_LEN_RANGE {
            CKR_SIGNATURE_LEN_RANGE
        } else {
            rv
        }
    })
}

/// `C_Verify`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { verify(session, data, len, sig, sig_len) })
}

unsafe fn verify(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    let op = Op::of(session, CKF_VERIFY);
    // SAFETY: forwarded contract.
    let data = op.ending(unsafe { data_in(data, len) })?;
    // SAFETY: forwarded contract.
    let signature = op.ending(unsafe { signature_in(sig, sig_len) })?;
    expect_ok(call(Request::Verify {
        session,
        data,
        signature,
    })?)
}

/// `C_VerifyUpdate`.
///
/// # Safety
/// PKCS#11 contract for the buffer.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyUpdate(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe {
        data_call(Op::of(session, CKF_VERIFY), data, len, |data| {
            Request::VerifyUpdate { session, data }
        })
    })
}

/// `C_VerifyFinal`.
///
/// # Safety
/// PKCS#11 contract for the buffer.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyFinal(
    session: CK_SESSION_HANDLE,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { verify_final(session, sig, sig_len) })
}

unsafe fn verify_final(
    session: CK_SESSION_HANDLE,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let signature = Op::of(session, CKF_VERIFY).ending(unsafe { signature_in(sig, sig_len) })?;
    expect_ok(call(Request::VerifyFinal { session, signature })?)
}

/// `C_VerifyRecoverInit`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyRecoverInit(
    _s: CK_SESSION_HANDLE,
    _mech: CK_MECHANISM_PTR,
    _key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_VerifyRecover`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyRecover(
    _s: CK_SESSION_HANDLE,
    _sig: CK_BYTE_PTR,
    _sig_len: CK_ULONG,
    _data: CK_BYTE_PTR,
    _data_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(not_supported())
}

// --- Message-based signing and verification (3.0 §5.8.x, §5.11.x): not supported yet; the
// single-part functions cover every mechanism p11kms offers.

/// `C_MessageSignInit`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageSignInit(
    _hSession: CK_SESSION_HANDLE,
    _pMechanism: CK_MECHANISM_PTR,
    _hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_SignMessage`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_SignMessage(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pData: CK_BYTE_PTR,
    _ulDataLen: CK_ULONG,
    _pSignature: CK_BYTE_PTR,
    _pulSignatureLen: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_SignMessageBegin`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_SignMessageBegin(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_SignMessageNext`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_SignMessageNext(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pData: CK_BYTE_PTR,
    _ulDataLen: CK_ULONG,
    _pSignature: CK_BYTE_PTR,
    _pulSignatureLen: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_MessageSignFinal`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageSignFinal(_hSession: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_MessageVerifyInit`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageVerifyInit(
    _hSession: CK_SESSION_HANDLE,
    _pMechanism: CK_MECHANISM_PTR,
    _hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_VerifyMessage`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_VerifyMessage(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pData: CK_BYTE_PTR,
    _ulDataLen: CK_ULONG,
    _pSignature: CK_BYTE_PTR,
    _ulSignatureLen: CK_ULONG,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_VerifyMessageBegin`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_VerifyMessageBegin(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_VerifyMessageNext`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_VerifyMessageNext(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pData: CK_BYTE_PTR,
    _ulDataLen: CK_ULONG,
    _pSignature: CK_BYTE_PTR,
    _ulSignatureLen: CK_ULONG,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_MessageVerifyFinal`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageVerifyFinal(_hSession: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(crate::general::not_supported())
}
