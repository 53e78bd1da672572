//! Key management (PKCS#11 v3.0 §5.14): generate, wrap, unwrap, derive.

use p11kms_protocol::{Request, Response};
use pkcs11_sys::*;

use crate::attrs::template_in;
use crate::client::{call, ensure};
use crate::crypt::{out_call, Op};
use crate::ffi::{boundary, data_in, write_out, CkResult};
use crate::mechparam::mechanism_in;
use crate::object::expect_handle;

/// `C_GenerateKey`.
///
/// # Safety
/// PKCS#11 contract for the mechanism, template and `key`.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKey(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    key: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe { generate_key(session, mech, template, count, key) })
}

unsafe fn generate_key(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    key: CK_OBJECT_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if key.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract.
    let mech = unsafe { mechanism_in(mech) }?;
    // SAFETY: forwarded contract.
    let template = unsafe { template_in(template, count) }?;
    let h = expect_handle(call(Request::GenerateKey {
        session,
        mech,
        template,
    })?)?;
    // SAFETY: forwarded contract.
    unsafe { write_out(key, h) }
}

/// `C_GenerateKeyPair`.
///
/// # Safety
/// PKCS#11 contract for the mechanism, templates and handles.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    pub_template: CK_ATTRIBUTE_PTR,
    pub_count: CK_ULONG,
    priv_template: CK_ATTRIBUTE_PTR,
    priv_count: CK_ULONG,
    pub_key: CK_OBJECT_HANDLE_PTR,
    priv_key: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe {
        generate_key_pair(
            session,
            mech,
            pub_template,
            pub_count,
            priv_template,
            priv_count,
            pub_key,
            priv_key,
        )
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn generate_key_pair(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    pub_template: CK_ATTRIBUTE_PTR,
    pub_count: CK_ULONG,
    priv_template: CK_ATTRIBUTE_PTR,
    priv_count: CK_ULONG,
    pub_key: CK_OBJECT_HANDLE_PTR,
    priv_key: CK_OBJECT_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if pub_key.is_null() || priv_key.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract (all three).
    let mech = unsafe { mechanism_in(mech) }?;
    let public_template = unsafe { template_in(pub_template, pub_count) }?;
    let private_template = unsafe { template_in(priv_template, priv_count) }?;
    let Response::KeyPair { public, private } = call(Request::GenerateKeyPair {
        session,
        mech,
        public_template,
        private_template,
    })?
    else {
        return Err(CKR_DEVICE_ERROR);
    };
    // SAFETY: forwarded contract (both).
    unsafe { write_out(pub_key, public) }?;
    unsafe { write_out(priv_key, private) }
}

/// `C_WrapKey`, with the §5.2 length rules.
///
/// # Safety
/// PKCS#11 contract for the mechanism and buffers.
#[no_mangle]
pub unsafe extern "C" fn C_WrapKey(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    wrapping_key: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    wrapped: CK_BYTE_PTR,
    wrapped_len: CK_ULONG_PTR,
) -> CK_RV {
    boundary!(unsafe { wrap_key(session, mech, wrapping_key, key, wrapped, wrapped_len) })
}

unsafe fn wrap_key(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    wrapping_key: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    wrapped: CK_BYTE_PTR,
    wrapped_len: CK_ULONG_PTR,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let mech = unsafe { mechanism_in(mech) }?;
    // SAFETY: forwarded contract.
    unsafe {
        out_call(Op(None), wrapped, wrapped_len, |out| Request::WrapKey {
            session,
            mech,
            wrapping_key,
            key,
            out,
        })
    }
}

/// `C_UnwrapKey`.
///
/// # Safety
/// PKCS#11 contract for the mechanism, buffer, template and `key`.
#[no_mangle]
pub unsafe extern "C" fn C_UnwrapKey(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    unwrapping_key: CK_OBJECT_HANDLE,
    wrapped: CK_BYTE_PTR,
    wrapped_len: CK_ULONG,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    key: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe {
        unwrap_key(
            session,
            mech,
            unwrapping_key,
            wrapped,
            wrapped_len,
            template,
            count,
            key,
        )
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn unwrap_key(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    unwrapping_key: CK_OBJECT_HANDLE,
    wrapped: CK_BYTE_PTR,
    wrapped_len: CK_ULONG,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    key: CK_OBJECT_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if key.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract (all three).
    let mech = unsafe { mechanism_in(mech) }?;
    let wrapped = unsafe { data_in(wrapped, wrapped_len) }.map_err(|rv| {
        if rv == CKR_DATA_LEN_RANGE {
            CKR_WRAPPED_KEY_LEN_RANGE
        } else {
            rv
        }
    })?;
    let template = unsafe { template_in(template, count) }?;
    let h = expect_handle(call(Request::UnwrapKey {
        session,
        mech,
        unwrapping_key,
        wrapped,
        template,
    })?)?;
    // SAFETY: forwarded contract.
    unsafe { write_out(key, h) }
}

/// `C_DeriveKey`.
///
/// # Safety
/// PKCS#11 contract for the mechanism, template and `key`.
#[no_mangle]
pub unsafe extern "C" fn C_DeriveKey(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    base_key: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    key: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    boundary!(unsafe { derive_key(session, mech, base_key, template, count, key) })
}

unsafe fn derive_key(
    session: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_PTR,
    base_key: CK_OBJECT_HANDLE,
    template: CK_ATTRIBUTE_PTR,
    count: CK_ULONG,
    key: CK_OBJECT_HANDLE_PTR,
) -> CkResult<()> {
    ensure()?;
    if key.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: forwarded contract (both).
    let mech = unsafe { mechanism_in(mech) }?;
    let template = unsafe { template_in(template, count) }?;
    let h = expect_handle(call(Request::DeriveKey {
        session,
        mech,
        base_key,
        template,
    })?)?;
    // SAFETY: forwarded contract.
    unsafe { write_out(key, h) }
}
