//! Object management (PKCS#11 v3.0 §5.7).

use p11kms_protocol::{Request, Response};
use pkcs11_sys::*;

use crate::attrs::{fill_values, template_in, types_in};
use crate::client::{call, ensure};
use crate::ffi::{boundary, len_in, len_out, write_out, CkResult};
use crate::slot::expect_ok;

/// A `Response::Handle`, or `CKR_DEVICE_ERROR`.
pub fn expect_handle(resp: Response) -> CkResult<CK_ULONG> {
    match resp {
        Response::Handle(h) => Ok(h),
        _ => Err(CKR_DEVICE_ERROR),
    }
}

/// `C_CreateObject`.
///
/// # Safety
/// PKCS#11 contract for the template and `object`.
#[no_mangle]
pub unsafe extern "C" fn C_CreateObject(
    session: CK_SESSION_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    object: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe { create_object(session, template, count, object) })
}

unsafe fn create_object(
    session: CK_SESSION_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    object: CK_OBJECT_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if object.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract.
    let template = unsafe { template_in(template, count) }?;
    let h = expect_handle(call(Request::CreateObject { session, template })?)?;
    // SAFETY: forwarded contract.
    unsafe { write_out(object, h) }
}

/// `C_CopyObject`.
///
/// # Safety
/// PKCS#11 contract for the template and `new_object`.
#[no_mangle]
pub unsafe extern "C" fn C_CopyObject(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    new_object: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe { copy_object(session, object, template, count, new_object) })
}

unsafe fn copy_object(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    new_object: CK_OBJECT_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if new_object.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract.
    let template = unsafe { template_in(template, count) }?;
    let h = expect_handle(call(Request::CopyObject {
        session,
        object,
        template,
    })?)?;
    // SAFETY: forwarded contract.
    unsafe { write_out(new_object, h) }
}

/// `C_DestroyObject`.
#[no_mangle]
pub extern "C" fn C_DestroyObject(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    boundary!(call(Request::DestroyObject { session, object }).and_then(expect_ok))
}

/// `C_GetObjectSize`.
///
/// # Safety
/// `size` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetObjectSize(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    size: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe { get_object_size(session, object, size) })
}

unsafe fn get_object_size(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    size: CK_ULONG_PTR,
) -> CkResult<()> {
    ensure()?;
    if size.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let Response::Ulong(n) = call(Request::GetObjectSize { session, object })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(size, n) }
}

/// `C_GetAttributeValue`: every attribute is answered on its own and the
/// call returns the most severe per-attribute code (see `attrs`).
///
/// # Safety
/// PKCS#11 contract for the template.
#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { get_attribute_value(session, object, template, count) })
}

unsafe fn get_attribute_value(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let (template, types) = unsafe { types_in(template, count) }?;
    let Response::Attributes(results) = call(Request::GetAttributeValue {
        session,
        object,
        types,
    })?
    else {
        return Err(CKR_DEVICE_ERROR);
    };
    // SAFETY: forwarded contract (pValue buffers of ulValueLen bytes).
    unsafe { fill_values(template, &results) }
}

/// `C_SetAttributeValue`.
///
/// # Safety
/// PKCS#11 contract for the template.
#[no_mangle]
pub unsafe extern "C" fn C_SetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { set_attribute_value(session, object, template, count) })
}

unsafe fn set_attribute_value(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let template = unsafe { template_in(template, count) }?;
    expect_ok(call(Request::SetAttributeValue {
        session,
        object,
        template,
    })?)
}

/// `C_FindObjectsInit`.
///
/// # Safety
/// PKCS#11 contract for the template.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { find_objects_init(session, template, count) })
}

unsafe fn find_objects_init(
    session: CK_SESSION_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let template = unsafe { template_in(template, count) }?;
    expect_ok(call(Request::FindObjectsInit { session, template })?)
}

/// `C_FindObjects`.
///
/// # Safety
/// `objects` has room for `max` handles; `found` writable.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    objects: CK_OBJECT_HANDLE_PTR,
    max: CK_ULONG,
    found: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe { find_objects(session, objects, max, found) })
}

unsafe fn find_objects(
    session: CK_SESSION_HANDLE,
    objects: CK_OBJECT_HANDLE_PTR,
    max: CK_ULONG,
    found: CK_ULONG_PTR,
) -> CkResult<()> {
    ensure()?;
    if objects.is_null() || found.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let cap = len_in(max)?;
    let Response::Handles(handles) = call(Request::FindObjects { session, max })? else {
        return Err(CKR_DEVICE_ERROR);
    };
    if handles.len() > cap {
        return Err(CKR_DEVICE_ERROR);
    }
    // SAFETY: `objects` has room for `max >= handles.len()` handles.
    unsafe { std::ptr::copy_nonoverlapping(handles.as_ptr(), objects, handles.len()) };
    // SAFETY: forwarded contract.
    unsafe { write_out(found, len_out(handles.len())?) }
}

/// `C_FindObjectsFinal`.
#[no_mangle]
pub extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(call(Request::FindObjectsFinal { session }).and_then(expect_ok))
}
