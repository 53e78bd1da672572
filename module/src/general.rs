//! General-purpose functions (PKCS#11 v3.0 §5.4) and the legacy parallel
//! function management (§5.17).

use pkcs11_sys::*;

use crate::client;
use crate::ffi::{boundary, pad, ref_in, write_out, CkResult};

/// `C_Initialize`: we always use OS locking (std mutexes), so application
/// mutex callbacks are accepted only together with `CKF_OS_LOCKING_OK`.
///
/// # Safety
/// `args` is NULL or points to a `CK_C_INITIALIZE_ARGS` (PKCS#11 §5.4).
#[no_mangle]
pub unsafe extern "C" fn C_Initialize(args: CK_VOID_PTR) -> CK_RV {
    boundary!(unsafe { initialize(args) })
}

unsafe fn initialize(args: CK_VOID_PTR) -> CkResult<()> {
    if !args.is_null() {
        // SAFETY: non-NULL, a CK_C_INITIALIZE_ARGS by the caller's contract.
        let a = unsafe { ref_in(args.cast::<CK_C_INITIALIZE_ARGS>()) }?;
        if !a.pReserved.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let set = [
            a.CreateMutex.is_some(),
            a.DestroyMutex.is_some(),
            a.LockMutex.is_some(),
            a.UnlockMutex.is_some(),
        ];
        let all = set.iter().all(|&s| s);
        let none = set.iter().all(|&s| !s);
        if !all && !none {
            return Err(CKR_ARGUMENTS_BAD);
        }
        if all && a.flags & CKF_OS_LOCKING_OK == 0 {
            return Err(CKR_CANT_LOCK);
        }
    }
    client::initialize()
}

/// `C_Finalize`: drops every connection to the daemon.
///
/// # Safety
/// Any pointer value is accepted; only NULL is valid.
#[no_mangle]
pub unsafe extern "C" fn C_Finalize(reserved: CK_VOID_PTR) -> CK_RV {
    boundary!(finalize(reserved))
}

fn finalize(reserved: CK_VOID_PTR) -> CkResult<()> {
    if !reserved.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    client::finalize()
}

/// `C_GetInfo`, answered locally.
///
/// # Safety
/// `info` is NULL or points to a writable `CK_INFO`.
#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(info: CK_INFO_PTR) -> CK_RV {
    boundary!(unsafe { get_info(info) })
}

fn library_version() -> CK_VERSION {
    CK_VERSION {
        major: env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
        minor: env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
    }
}

unsafe fn get_info(info: CK_INFO_PTR) -> CkResult<()> {
    client::ensure()?;
    let value = CK_INFO {
        cryptokiVersion: CK_VERSION { major: 3, minor: 0 },
        manufacturerID: pad("p11kms"),
        flags: 0,
        libraryDescription: pad("p11kms PKCS#11 module"),
        libraryVersion: library_version(),
    };
    // SAFETY: forwarded contract.
    unsafe { write_out(info, value) }
}

/// `C_GetFunctionStatus`: legacy; never parallel.
#[no_mangle]
pub extern "C" fn C_GetFunctionStatus(_session: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(client::ensure().and(Err(CKR_FUNCTION_NOT_PARALLEL)))
}

/// `C_CancelFunction`: legacy; never parallel.
#[no_mangle]
pub extern "C" fn C_CancelFunction(_session: CK_SESSION_HANDLE) -> CK_RV {
    boundary!(client::ensure().and(Err(CKR_FUNCTION_NOT_PARALLEL)))
}

/// `CKR_CRYPTOKI_NOT_INITIALIZED` before `C_Initialize`, else
/// `CKR_FUNCTION_NOT_SUPPORTED`: the shared body of every function p11kms
/// does not implement.
pub fn not_supported() -> CkResult<()> {
    client::ensure()?;
    Err(CKR_FUNCTION_NOT_SUPPORTED)
}
