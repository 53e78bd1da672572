//! Slot and token management (PKCS#11 v3.0 §5.5).

use p11kms_protocol::{Request, Response};
use pkcs11_sys::*;

use crate::client::call;
use crate::ffi::{boundary, pad, pin_in, slice_in, ulong_list_out, write_out, CkResult};
use crate::general::not_supported;

/// `C_GetSlotList`.
///
/// # Safety
/// PKCS#11 contract: `count` writable; `list` NULL or room for `*count`.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    token_present: CK_BBOOL,
    list: CK_SLOT_ID_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe { get_slot_list(token_present, list, count) })
}

unsafe fn get_slot_list(
    token_present: CK_BBOOL,
    list: CK_SLOT_ID_PTR,
    count: CK_ULONG_PTR,
) -> CkResult<()> {
    let Response::SlotList(slots) = call(Request::GetSlotList {
        token_present: token_present != 0,
    })?
    else {
        return Err(CKR_DEVICE_ERROR);
    };
    // SAFETY: forwarded contract.
    unsafe { ulong_list_out(list, count, &slots) }
}

/// `C_GetSlotInfo`; strings are blank-padded here.
///
/// # Safety
/// `info` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: CK_SLOT_INFO_PTR) -> CK_RV {
    boundary!(unsafe { get_slot_info(slot, info) })
}

fn version((major, minor): (u8, u8)) -> CK_VERSION {
    CK_VERSION { major, minor }
}

unsafe fn get_slot_info(slot: CK_SLOT_ID, info: CK_SLOT_INFO_PTR) -> CkResult<()> {
    crate::client::ensure()?;
    if info.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let Response::SlotInfo(s) = call(Request::GetSlotInfo { slot })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    let value = CK_SLOT_INFO {
        slotDescription: pad(&s.description),
        manufacturerID: pad(&s.manufacturer),
        flags: s.flags,
        hardwareVersion: version(s.hardware_version),
        firmwareVersion: version(s.firmware_version),
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(info, value) }
}

/// `C_GetTokenInfo`; strings are blank-padded here.
///
/// # Safety
/// `info` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: CK_TOKEN_INFO_PTR) -> CK_RV {
    boundary!(unsafe { get_token_info(slot, info) })
}

unsafe fn get_token_info(slot: CK_SLOT_ID, info: CK_TOKEN_INFO_PTR) -> CkResult<()> {
    crate::client::ensure()?;
    if info.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let Response::TokenInfo(t) = call(Request::GetTokenInfo { slot })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    let value = CK_TOKEN_INFO {
        label: pad(&t.label),
        manufacturerID: pad(&t.manufacturer),
        model: pad(&t.model),
        serialNumber: pad(&t.serial),
        flags: t.flags,
        ulMaxSessionCount: t.max_session_count,
        ulSessionCount: t.session_count,
        ulMaxRwSessionCount: t.max_rw_session_count,
        ulRwSessionCount: t.rw_session_count,
        ulMaxPinLen: t.max_pin_len,
        ulMinPinLen: t.min_pin_len,
        ulTotalPublicMemory: t.total_public_memory,
        ulFreePublicMemory: t.free_public_memory,
        ulTotalPrivateMemory: t.total_private_memory,
        ulFreePrivateMemory: t.free_private_memory,
        hardwareVersion: version(t.hardware_version),
        firmwareVersion: version(t.firmware_version),
        utcTime: pad(&t.utc_time),
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(info, value) }
}

/// `C_WaitForSlotEvent`: slots never change while the daemon runs.
///
/// # Safety
/// Arguments are not read.
#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    _flags: CK_FLAGS,
    _slot: CK_SLOT_ID_PTR,
    _reserved: CK_VOID_PTR,
) -> CK_RV {
    boundary!(not_supported())
}

/// `C_GetMechanismList`.
///
/// # Safety
/// `count` writable; `list` NULL or room for `*count`.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: CK_MECHANISM_TYPE_PTR,
    count: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe { get_mechanism_list(slot, list, count) })
}

unsafe fn get_mechanism_list(
    slot: CK_SLOT_ID,
    list: CK_MECHANISM_TYPE_PTR,
    count: CK_ULONG_PTR,
) -> CkResult<()> {
    let Response::MechanismList(mechs) = call(Request::GetMechanismList { slot })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    // SAFETY: forwarded contract.
    unsafe { ulong_list_out(list, count, &mechs) }
}

/// `C_GetMechanismInfo`.
///
/// # Safety
/// `info` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    info: CK_MECHANISM_INFO_PTR,
) -> CK_RV {
    boundary!(unsafe { get_mechanism_info(slot, mech, info) })
}

unsafe fn get_mechanism_info(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    info: CK_MECHANISM_INFO_PTR,
) -> CkResult<()> {
    crate::client::ensure()?;
    if info.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let Response::MechanismInfo(m) = call(Request::GetMechanismInfo { slot, mech })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    let value = CK_MECHANISM_INFO {
        ulMinKeySize: m.min_key_size,
        ulMaxKeySize: m.max_key_size,
        flags: m.flags,
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(info, value) }
}

/// `C_InitToken`: the label is the caller's 32 blank-padded bytes, sent as
/// given.
///
/// # Safety
/// `pin` points to `pin_len` bytes; `label` to 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
    label: CK_UTF8CHAR_PTR,
) -> CK_RV {
    boundary!(unsafe { init_token(slot, pin, pin_len, label) })
}

unsafe fn init_token(
    slot: CK_SLOT_ID,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
    label: CK_UTF8CHAR_PTR,
) -> CkResult<()> {
    crate::client::ensure()?;
    // SAFETY: forwarded contract.
    let so_pin = unsafe { pin_in(pin, pin_len) }?;
    if label.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-NULL; a label is always 32 bytes (PKCS#11 §5.5).
    let label = unsafe { slice_in(label, 32) }?.to_vec();
    expect_ok(call(Request::InitToken {
        slot,
        so_pin,
        label,
    })?)
}

/// `Response::Ok`, or `CKR_DEVICE_ERROR` for any other answer.
pub fn expect_ok(resp: Response) -> CkResult<()> {
    match resp {
        Response::Ok => Ok(()),
        _ => Err(CKR_DEVICE_ERROR),
    }
}

/// `C_InitPIN`.
///
/// # Safety
/// `pin` points to `pin_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_InitPIN(
    session: CK_SESSION_HANDLE,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { init_pin(session, pin, pin_len) })
}

unsafe fn init_pin(
    session: CK_SESSION_HANDLE,
    pin: CK_UTF8CHAR_PTR,
    pin_len: CK_ULONG,
) -> CkResult<()> {
    crate::client::ensure()?;
    // SAFETY: forwarded contract.
    let pin = unsafe { pin_in(pin, pin_len) }?;
    expect_ok(call(Request::InitPin { session, pin })?)
}

/// `C_SetPIN`.
///
/// # Safety
/// Each PIN points to its stated length.
#[no_mangle]
pub unsafe extern "C" fn C_SetPIN(
    session: CK_SESSION_HANDLE,
    old: CK_UTF8CHAR_PTR,
    old_len: CK_ULONG,
    new: CK_UTF8CHAR_PTR,
    new_len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { set_pin(session, old, old_len, new, new_len) })
}

unsafe fn set_pin(
    session: CK_SESSION_HANDLE,
    old: CK_UTF8CHAR_PTR,
    old_len: CK_ULONG,
    new: CK_UTF8CHAR_PTR,
    new_len: CK_ULONG,
) -> CkResult<()> {
    crate::client::ensure()?;
    // SAFETY: forwarded contract.
    let old_pin = unsafe { pin_in(old, old_len) }?;
    // SAFETY: forwarded contract.
    let new_pin = unsafe { pin_in(new, new_len) }?;
    expect_ok(call(Request::SetPin {
        session,
        old_pin,
        new_pin,
    })?)
}
