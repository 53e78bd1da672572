//! Session management (PKCS#11 v3.0 §5.6).

use p11kms_protocol::{Request, Response};
use pkcs11_sys::*;

use crate::client::{call, ensure};
use crate::ffi::{boundary, pin_in, write_out, CkResult};
use crate::general::not_supported;
use crate::slot::expect_ok;

/// `C_OpenSession`. Notification callbacks are never invoked (the daemon
/// has no surrender events), which §5.6 permits.
///
/// # Safety
/// `session` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: CK_VOID_PTR,
    _notify: CK_NOTIFY,
    session: CK_SESSION_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe { open_session(slot, flags, session) })
}

unsafe fn open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    session: CK_SESSION_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if session.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let Response::Handle(h) = call(Request::OpenSession { slot, flags })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(session, h) }
}

/// `C_CloseSession`.
#[no_mangle]
pub extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(call(Request::CloseSession { session }).and_then(expect_ok))
}

/// `C_CloseAllSessions`.
#[no_mangle]
pub extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    boundary!(call(Request::CloseAllSessions { slot }).and_then(expect_ok))
}

/// `C_GetSessionInfo`.
///
/// # Safety
/// `info` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    session: CK_SESSION_HANDLE,
    info: CK_SESSION_INFO_PTR,
) -> CK_RV {
    boundary!(unsafe { get_session_info(session, info) })
}

unsafe fn get_session_info(session: CK_SESSION_HANDLE, info: CK_SESSION_INFO_PTR) -> CkResult<()> {
    ensure()?;
    if info.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let Response::SessionInfo(s) = call(Request::GetSessionInfo { session })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    let value = CK_SESSION_INFO {
        slotID: s.slot,
        state: s.state,
        flags: s.flags,
        ulDeviceError: s.device_error,
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(info, value) }
}

/// `C_GetOperationState`: not supported (state lives in the daemon).
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_GetOperationState(
    _s: CK_SESSION_HANDLE,
    _state: CK_BYTE_PTR,
    _len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_SetOperationState`: not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_SetOperationState(
    _s: CK_SESSION_HANDLE,
    _state: CK_BYTE_PTR,
    _len: CK_ULONG,
    _enc_key: CK_OBJECT_HANDLE,
    _auth_key: CK_OBJECT_HANDLE,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_Login`. An AAP logs in as `CKU_USER` with `"<aap>:<secret>"`
/// (DESIGN §3); the module just forwards the bytes.
///
/// # Safety
/// `pin` points to `pin_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { login(session, user, pin, pin_len) })
}

unsafe fn login(
    session: CK_SESSION_HANDLE,
    user_type: CK_USER_TYPE,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let pin = unsafe { pin_in(pin, pin_len) }?;
    expect_ok(call(Request::Login {
        session,
        user_type,
        pin,
    })?)
}

/// `C_Logout`.
#[no_mangle]
pub extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(call(Request::Logout { session }).and_then(expect_ok))
}

/// `C_LoginUser` (3.0): named users are not supported.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_LoginUser(
    _s: CK_SESSION_HANDLE,
    _user: CK_USER_TYPE,
    _pin: CK_UTF8CHAR_PTR,
    _pin_len: CK_ULONG,
    _name: CK_UTF8CHAR_PTR,
    _name_len: CK_ULONG,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_SessionCancel` (3.0): forwarded; the daemon ends the operations named
/// by `flags`.
#[no_mangle]
pub extern "C" fn C_SessionCancel(session: CK_SESSION_HANDLE, flags: CK_FLAGS) -> CK_RV {
    boundary!(call(Request::SessionCancel { session, flags }).and_then(expect_ok))
}
