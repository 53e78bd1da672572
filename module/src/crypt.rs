//! Encryption and decryption (PKCS#11 v3.0 §5.8, §5.9), plus the three
//! call shapes every multi-part operation shares (init with a mechanism,
//! data in with output out, final with output out), reused by `digest`,
//! `sign` and `keys`.

use p11kms_protocol::{Mechanism, OutCap, Request};
use pkcs11_sys::*;

use crate::client::{call, ensure};
use crate::ffi::{boundary, data_in, CkResult, OutBuf};
use crate::mechparam::mechanism_in;
use crate::slot::expect_ok;

/// `C_*Init(hSession, pMechanism, hKey)`-shaped call.
///
/// # Safety
/// `mech` per [`mechanism_in`].
pub(crate) unsafe fn init_call(
    mech: CK_MECHANISM_PTR,
    make: impl FnOnce(Mechanism) -> Request,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let mech = unsafe { mechanism_in(mech) }?;
    expect_ok(call(make(mech))?)
}

/// The operation a call belongs to, so that an argument the module rejects
/// before asking the daemon still ends it: PKCS#11 ends the active
/// operation on every error of `C_Encrypt`, `C_SignUpdate`, `C_DigestFinal`
/// ... except `CKR_BUFFER_TOO_SMALL` (v3.0 §5.8–§5.12), and the daemon only
/// sees the errors it returns itself. `None` for calls outside an operation
/// (`C_WrapKey`).
#[derive(Clone, Copy)]
pub(crate) struct Op(pub Option<(CK_SESSION_HANDLE, CK_FLAGS)>);

impl Op {
    /// The operation of `flags` (`CKF_ENCRYPT`, `CKF_SIGN`, ...) on `session`.
    pub(crate) fn of(session: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Op {
        Op(Some((session, flags)))
    }

    /// Passes `r` through; on a local error, first ends the operation in the
    /// daemon (`C_SessionCancel`'s request; its own answer cannot improve
    /// on the error being returned, so it is not looked at).
    pub(crate) fn ending<T>(self, r: CkResult<T>) -> CkResult<T> {
        if let (Err(rv), Some((session, flags))) = (&r, self.0) {
            if *rv != CKR_BUFFER_TOO_SMALL {
                let _ = call(Request::SessionCancel { session, flags });
            }
        }
        r
    }
}

/// Data in, output out, with the §5.2 length rules (one round trip even for
/// a length query: the daemon keeps the operation alive).
///
/// # Safety
/// `data` points to `len` bytes; `(out, out_len)` per [`OutBuf::new`].
pub(crate) unsafe fn data_out_call(
    op: Op,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
    make: impl FnOnce(Vec<u8>, OutCap) -> Request,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let out = op.ending(unsafe { OutBuf::new(out, out_len) })?;
    // SAFETY: forwarded contract.
    let data = op.ending(unsafe { data_in(data, len) })?;
    let resp = call(make(data, out.cap()))?;
    out.deliver_response(resp)
}

/// Output only (`C_*Final`, `C_WrapKey`).
///
/// # Safety
/// `(out, out_len)` per [`OutBuf::new`].
pub(crate) unsafe fn out_call(
    op: Op,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
    make: impl FnOnce(OutCap) -> Request,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let out = op.ending(unsafe { OutBuf::new(out, out_len) })?;
    let resp = call(make(out.cap()))?;
    out.deliver_response(resp)
}

/// Data in, nothing out (`C_*Update` of digest/sign/verify).
///
/// # Safety
/// `data` points to `len` bytes.
pub(crate) unsafe fn data_call(
    op: Op,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    make: impl FnOnce(Vec<u8>) -> Request,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let data = op.ending(unsafe { data_in(data, len) })?;
    expect_ok(call(make(data))?)
}

/// `C_EncryptInit`.
///
/// # Safety
/// PKCS#11 contract for `mech`.
#[no_mangle]
pub unsafe extern "C" fn C_EncryptInit(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(unsafe { init_call(mech, |mech| Request::EncryptInit { session, mech, key }) })
}

/// `C_Encrypt`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_Encrypt(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        data_out_call(
            Op::of(session, CKF_ENCRYPT),
            data,
            len,
            out,
            out_len,
            |data, out| Request::Encrypt { session, data, out },
        )
    })
}

/// `C_EncryptUpdate`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_EncryptUpdate(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        data_out_call(
            Op::of(session, CKF_ENCRYPT),
            data,
            len,
            out,
            out_len,
            |data, out| Request::EncryptUpdate { session, data, out },
        )
    })
}

/// `C_EncryptFinal`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_EncryptFinal(
    session: CK_SESSION_HANDLE,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        out_call(Op::of(session, CKF_ENCRYPT), out, out_len, |out| {
            Request::EncryptFinal { session, out }
        })
    })
}

/// `C_DecryptInit`.
///
/// # Safety
/// PKCS#11 contract for `mech`.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptInit(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(unsafe { init_call(mech, |mech| Request::DecryptInit { session, mech, key }) })
}

/// `C_Decrypt`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_Decrypt(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        data_out_call(
            Op::of(session, CKF_DECRYPT),
            data,
            len,
            out,
            out_len,
            |data, out| Request::Decrypt { session, data, out },
        )
    })
}

/// `C_DecryptUpdate`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptUpdate(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        data_out_call(
            Op::of(session, CKF_DECRYPT),
            data,
            len,
            out,
            out_len,
            |data, out| Request::DecryptUpdate { session, data, out },
        )
    })
}

/// `C_DecryptFinal`.
///
/// # Safety
/// PKCS#11 contract for the buffers.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptFinal(
    session: CK_SESSION_HANDLE,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe {
        out_call(Op::of(session, CKF_DECRYPT), out, out_len, |out| {
            Request::DecryptFinal { session, out }
        })
    })
}

// --- Dual-function cryptographic functions (§5.13): not supported. Each
// would need two daemon operations to advance atomically, and no consumer
// we serve uses them.

/// `C_DigestEncryptUpdate`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_DigestEncryptUpdate(
    _s: CK_SESSION_HANDLE,
    _part: CK_BYTE_PTR,
    _part_len: CK_ULONG,
    _enc: CK_BYTE_PTR,
    _enc_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_DecryptDigestUpdate`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptDigestUpdate(
    _s: CK_SESSION_HANDLE,
    _enc: CK_BYTE_PTR,
    _enc_len: CK_ULONG,
    _part: CK_BYTE_PTR,
    _part_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_SignEncryptUpdate`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_SignEncryptUpdate(
    _s: CK_SESSION_HANDLE,
    _part: CK_BYTE_PTR,
    _part_len: CK_ULONG,
    _enc: CK_BYTE_PTR,
    _enc_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_DecryptVerifyUpdate`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptVerifyUpdate(
    _s: CK_SESSION_HANDLE,
    _enc: CK_BYTE_PTR,
    _enc_len: CK_ULONG,
    _part: CK_BYTE_PTR,
    _part_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

// --- Message-based encryption and decryption (3.0 §5.8.x, §5.11.x): not supported yet; the
// single-part functions cover every mechanism p11kms offers.

/// `C_MessageEncryptInit`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageEncryptInit(
    _hSession: CK_SESSION_HANDLE,
    _pMechanism: CK_MECHANISM_PTR,
    _hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_EncryptMessage`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_EncryptMessage(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pAssociatedData: CK_BYTE_PTR,
    _ulAssociatedDataLen: CK_ULONG,
    _pPlaintext: CK_BYTE_PTR,
    _ulPlaintextLen: CK_ULONG,
    _pCiphertext: CK_BYTE_PTR,
    _pulCiphertextLen: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_EncryptMessageBegin`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_EncryptMessageBegin(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pAssociatedData: CK_BYTE_PTR,
    _ulAssociatedDataLen: CK_ULONG,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_EncryptMessageNext`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_EncryptMessageNext(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pPlaintextPart: CK_BYTE_PTR,
    _ulPlaintextPartLen: CK_ULONG,
    _pCiphertextPart: CK_BYTE_PTR,
    _pulCiphertextPartLen: CK_ULONG_PTR,
    _flags: CK_FLAGS,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_MessageEncryptFinal`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageEncryptFinal(_hSession: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_MessageDecryptInit`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageDecryptInit(
    _hSession: CK_SESSION_HANDLE,
    _pMechanism: CK_MECHANISM_PTR,
    _hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_DecryptMessage`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_DecryptMessage(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pAssociatedData: CK_BYTE_PTR,
    _ulAssociatedDataLen: CK_ULONG,
    _pCiphertext: CK_BYTE_PTR,
    _ulCiphertextLen: CK_ULONG,
    _pPlaintext: CK_BYTE_PTR,
    _pulPlaintextLen: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_DecryptMessageBegin`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_DecryptMessageBegin(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pAssociatedData: CK_BYTE_PTR,
    _ulAssociatedDataLen: CK_ULONG,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_DecryptMessageNext`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_DecryptMessageNext(
    _hSession: CK_SESSION_HANDLE,
    _pParameter: CK_VOID_PTR,
    _ulParameterLen: CK_ULONG,
    _pCiphertextPart: CK_BYTE_PTR,
    _ulCiphertextPartLen: CK_ULONG,
    _pPlaintextPart: CK_BYTE_PTR,
    _pulPlaintextPartLen: CK_ULONG_PTR,
    _flags: CK_FLAGS,
) -> CK_RV {
    boundary!(crate::general::not_supported())
}

/// `C_MessageDecryptFinal`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_MessageDecryptFinal(_hSession: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(crate::general::not_supported())
}
