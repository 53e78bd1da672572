//! `libp11kms.so`: the PKCS#11 module of p11kms.
//!
//! A thin C ABI shim (DESIGN §1): it validates arguments, marshals them into
//! the typed requests of [`p11kms_protocol`], and forwards each call over a
//! Unix socket to `p11kmsd`, which holds every key and every policy. It
//! keeps no key material.
//!
//! The files follow the chapters of PKCS#11 v3.0 §5: [`general`], [`slot`],
//! [`session`], [`object`], [`crypt`] (encryption and decryption),
//! [`digest`], [`sign`] (signing and verification), [`keys`], [`random`];
//! [`ffi`] is the panic boundary and pointer helpers, [`client`] the
//! connection pool, [`mechparam`] and [`attrs`] the marshalling.
//! This file holds the entry points a consumer finds by name:
//! `C_GetFunctionList` (2.40) and `C_GetInterfaceList` / `C_GetInterface`
//! (3.0), and the two function tables they hand out.
//!
//! `unsafe` exists only in this crate of the workspace, and inside it only
//! where a C pointer is turned into a Rust value.

// Every export's safety contract is the PKCS#11 specification for that
// function; each carries a short `# Safety` note pointing at it.

pub mod attrs;
pub mod client;
pub mod crypt;
pub mod digest;
pub mod ffi;
pub mod general;
pub mod keys;
pub mod mechparam;
pub mod object;
pub mod random;
pub mod session;
pub mod sign;
pub mod slot;

use pkcs11_sys::{
    CKR_ARGUMENTS_BAD, CKR_BUFFER_TOO_SMALL, CK_FLAGS, CK_FUNCTION_LIST, CK_FUNCTION_LIST_3_0,
    CK_FUNCTION_LIST_PTR_PTR, CK_INTERFACE, CK_INTERFACE_PTR, CK_INTERFACE_PTR_PTR, CK_RV,
    CK_ULONG, CK_ULONG_PTR, CK_UTF8CHAR_PTR, CK_VERSION, CK_VERSION_PTR,
};

use crate::crypt::*;
use crate::digest::*;
use crate::ffi::{boundary, out_ref, CkResult};
use crate::general::*;
use crate::keys::*;
use crate::object::*;
use crate::random::*;
use crate::session::*;
use crate::sign::*;
use crate::slot::*;

/// The 2.40 function table, handed out by `C_GetFunctionList` and as the
/// second "PKCS 11" interface.
static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
};

/// The 3.0 function table, the default "PKCS 11" interface.
static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = CK_FUNCTION_LIST_3_0 {
    version: CK_VERSION { major: 3, minor: 0 },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
    C_GetInterfaceList: Some(C_GetInterfaceList),
    C_GetInterface: Some(C_GetInterface),
    C_LoginUser: Some(C_LoginUser),
    C_SessionCancel: Some(C_SessionCancel),
    C_MessageEncryptInit: Some(C_MessageEncryptInit),
    C_EncryptMessage: Some(C_EncryptMessage),
    C_EncryptMessageBegin: Some(C_EncryptMessageBegin),
    C_EncryptMessageNext: Some(C_EncryptMessageNext),
    C_MessageEncryptFinal: Some(C_MessageEncryptFinal),
    C_MessageDecryptInit: Some(C_MessageDecryptInit),
    C_DecryptMessage: Some(C_DecryptMessage),
    C_DecryptMessageBegin: Some(C_DecryptMessageBegin),
    C_DecryptMessageNext: Some(C_DecryptMessageNext),
    C_MessageDecryptFinal: Some(C_MessageDecryptFinal),
    C_MessageSignInit: Some(C_MessageSignInit),
    C_SignMessage: Some(C_SignMessage),
    C_SignMessageBegin: Some(C_SignMessageBegin),
    C_SignMessageNext: Some(C_SignMessageNext),
    C_MessageSignFinal: Some(C_MessageSignFinal),
    C_MessageVerifyInit: Some(C_MessageVerifyInit),
    C_VerifyMessage: Some(C_VerifyMessage),
    C_VerifyMessageBegin: Some(C_VerifyMessageBegin),
    C_VerifyMessageNext: Some(C_VerifyMessageNext),
    C_MessageVerifyFinal: Some(C_MessageVerifyFinal),
};

/// Interface name from PKCS#11 v3.0 §5.4.5, NUL-terminated.
static INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";

/// A `CK_INTERFACE` that may live in a `static` (its pointers point to
/// immutable statics).
struct Interface(CK_INTERFACE);

// SAFETY: the pointers inside refer to immutable statics that are never
// written through, so sharing them between threads is sound.
unsafe impl Sync for Interface {}

static INTERFACES: [Interface; 2] = [
    Interface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr().cast_mut(),
        pFunctionList: (&raw const FUNCTION_LIST_3_0).cast_mut().cast(),
        flags: 0,
    }),
    Interface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr().cast_mut(),
        pFunctionList: (&raw const FUNCTION_LIST).cast_mut().cast(),
        flags: 0,
    }),
];

/// `C_GetFunctionList`: the 2.40 table. Works before `C_Initialize`.
///
/// # Safety
/// `list` NULL or writable (PKCS#11 §5.4).
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    boundary!(unsafe { get_function_list(list) })
}

unsafe fn get_function_list(list: CK_FUNCTION_LIST_PTR_PTR) -> CkResult<()> {
    // SAFETY: forwarded contract.
    *unsafe { out_ref(list) }? = (&raw const FUNCTION_LIST).cast_mut();
    Ok(())
}

/// `C_GetInterfaceList` (3.0): the 3.0 interface first, then 2.40. Works
/// before `C_Initialize`.
///
/// # Safety
/// `count` writable; `list` NULL or room for `*count` interfaces.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterfaceList(list: CK_INTERFACE_PTR, count: CK_ULONG_PTR) -> CK_RV {
    boundary!(unsafe { get_interface_list(list, count) })
}

unsafe fn get_interface_list(list: CK_INTERFACE_PTR, count: CK_ULONG_PTR) -> CkResult<()> {
    // SAFETY: forwarded contract.
    let count = unsafe { out_ref(count) }?;
    let n = INTERFACES.len() as CK_ULONG;
    if list.is_null() {
        *count = n;
        return Ok(());
    }
    if *count < n {
        *count = n;
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    for (i, iface) in INTERFACES.iter().enumerate() {
        // SAFETY: `list` has room for `*count >= n` interfaces.
        unsafe { list.add(i).write(iface.0) };
    }
    *count = n;
    Ok(())
}

/// `C_GetInterface` (3.0): by name ("PKCS 11" or NULL) and version (NULL
/// means the newest, 3.0). No interface has flags, so any requested flag
/// finds nothing (`CKR_ARGUMENTS_BAD`, as §5.4.6 lists for "not found").
///
/// # Safety
/// `name` NULL or NUL-terminated; `version` NULL or readable; `iface`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    name: CK_UTF8CHAR_PTR,
    version: CK_VERSION_PTR,
    iface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CK_RV {
    boundary!(unsafe { get_interface(name, version, iface, flags) })
}

unsafe fn get_interface(
    name: CK_UTF8CHAR_PTR,
    version: CK_VERSION_PTR,
    iface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CkResult<()> {
    // SAFETY: forwarded contract.
    let out = unsafe { out_ref(iface) }?;
    if !name.is_null() {
        // SAFETY: non-NULL and NUL-terminated (contract).
        let name = unsafe { std::ffi::CStr::from_ptr(name.cast::<std::ffi::c_char>()) };
        if name.to_bytes() != &INTERFACE_NAME[..INTERFACE_NAME.len() - 1] {
            return Err(CKR_ARGUMENTS_BAD);
        }
    }
    // SAFETY: forwarded contract.
    let index = match unsafe { version.as_ref() } {
        None => 0,
        Some(CK_VERSION { major: 3, minor: 0 }) => 0,
        Some(CK_VERSION {
            major: 2,
            minor: 40,
        }) => 1,
        Some(_) => return Err(CKR_ARGUMENTS_BAD),
    };
    let chosen = &INTERFACES[index];
    if chosen.0.flags & flags != flags {
        return Err(CKR_ARGUMENTS_BAD);
    }
    *out = handed_out(index);
    Ok(())
}

/// Writable copies of [`INTERFACES`] handed out by `C_GetInterface`.
///
/// Callers may write through the returned pointer: OpenSC's pkcs11-spy
/// replaces `pFunctionList` with its own table. Handing out a pointer into
/// read-only memory made such callers crash, so each call refreshes a
/// writable copy (under a lock) and returns that.
struct HandedOut(std::cell::UnsafeCell<[CK_INTERFACE; 2]>);

// SAFETY: the cells are only written while HANDED_OUT_LOCK is held; what a
// caller does with the memory afterwards is its own business, as with any
// module that returns a mutable static (OpenSC, SoftHSM).
unsafe impl Sync for HandedOut {}

static HANDED_OUT: HandedOut = HandedOut(std::cell::UnsafeCell::new([
    INTERFACES[0].0,
    INTERFACES[1].0,
]));
static HANDED_OUT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn handed_out(index: usize) -> CK_INTERFACE_PTR {
    let _g = HANDED_OUT_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = HANDED_OUT.0.get().cast::<CK_INTERFACE>();
    // SAFETY: index < 2 (chosen from INTERFACES), the cell is static and
    // writes are serialized by the lock.
    unsafe {
        let slot = base.add(index);
        slot.write(INTERFACES[index].0);
        slot
    }
}
