//! A minimal PKCS#11 client over a module's raw `CK_FUNCTION_LIST`.
//!
//! Why not cryptoki's `Pkcs11`/`Session` (only its types are used here):
//! - its helpers (`Session::encrypt`, `sign`, `encrypt_update`, ...) ask for
//!   the output length first and then call again: two calls per operation,
//!   and for a remote module (p11-kit) two round trips, the first one
//!   carrying the whole input. A performance-aware application passes a
//!   buffer of the right size; the benchmark does that: `C_xxxInit` + one
//!   `C_xxx`.
//! - p11-kit-client.so hands out a new, separately initialized instance (its
//!   own connection to the server) on every `C_GetFunctionList`, so a second
//!   list next to cryptoki's would not share sessions or handles with it.

use std::path::Path;

use cryptoki::context::Function;
use cryptoki::error::{Result as CkResult, Rv};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki_sys::*;

pub type Handle = CK_OBJECT_HANDLE;

/// A loaded module's function list.
pub struct Raw {
    _lib: libloading::Library,
    fl: *const CK_FUNCTION_LIST,
}

// SAFETY: the function list is a table of function pointers that the module
// keeps for its whole life (the Library keeps it loaded); PKCS#11 modules
// initialized with CKF_OS_LOCKING_OK are callable from any thread.
unsafe impl Send for Raw {}
// SAFETY: see above; `Raw` has no interior mutability.
unsafe impl Sync for Raw {}

macro_rules! call {
    ($self:ident, $f:ident, $func:expr, $($arg:expr),* $(,)?) => {{
        // SAFETY: `fl` came from the module's C_GetFunctionList and stays
        // valid while `_lib` is loaded; every pointer argument below points
        // into a live Rust value of the size passed next to it.
        let f = unsafe { (*$self.fl).$f };
        match f {
            Some(f) => Rv::from(unsafe { f($($arg),*) }).into_result($func),
            None => Err(cryptoki::error::Error::NullFunctionPointer),
        }
    }};
}

impl Raw {
    /// Opens `path` and fetches its function list.
    pub fn load(path: &Path) -> Result<Raw, String> {
        // SAFETY: loading a PKCS#11 module runs its initializers, which
        // PKCS#11 modules keep free of side effects beyond their own state.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("dlopen {}: {e}", path.display()))?;
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module.
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList\0") }
                .map_err(|e| format!("{}: no C_GetFunctionList: {e}", path.display()))?;
        let mut fl: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: `fl` is a valid out-pointer.
        let rv = unsafe { get(&mut fl) };
        if rv != CKR_OK || fl.is_null() {
            return Err(format!(
                "{}: C_GetFunctionList returned {rv:#x}",
                path.display()
            ));
        }
        Ok(Raw { _lib: lib, fl })
    }

    pub fn initialize(&self) -> CkResult<()> {
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: std::ptr::null_mut(),
        };
        call!(
            self,
            C_Initialize,
            Function::Initialize,
            &mut args as *mut _ as *mut std::ffi::c_void
        )
    }

    pub fn finalize(&self) -> CkResult<()> {
        call!(self, C_Finalize, Function::Finalize, std::ptr::null_mut())
    }

    /// "description version" from C_GetInfo.
    pub fn info(&self) -> CkResult<String> {
        // SAFETY: CK_INFO is plain old data.
        let mut i: CK_INFO = unsafe { std::mem::zeroed() };
        call!(self, C_GetInfo, Function::GetInfo, &mut i)?;
        Ok(format!(
            "{} {}.{}",
            String::from_utf8_lossy(&i.libraryDescription).trim(),
            i.libraryVersion.major,
            i.libraryVersion.minor
        ))
    }

    pub fn slots_with_token(&self) -> CkResult<Vec<CK_SLOT_ID>> {
        let mut n: CK_ULONG = 0;
        call!(
            self,
            C_GetSlotList,
            Function::GetSlotList,
            CK_TRUE,
            std::ptr::null_mut(),
            &mut n
        )?;
        let mut v = vec![0; n as usize];
        call!(
            self,
            C_GetSlotList,
            Function::GetSlotList,
            CK_TRUE,
            v.as_mut_ptr(),
            &mut n
        )?;
        v.truncate(n as usize);
        Ok(v)
    }

    pub fn token_label(&self, slot: CK_SLOT_ID) -> CkResult<String> {
        // SAFETY: CK_TOKEN_INFO is plain old data.
        let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        call!(self, C_GetTokenInfo, Function::GetTokenInfo, slot, &mut t)?;
        Ok(String::from_utf8_lossy(&t.label).trim().to_string())
    }

    pub fn init_token(&self, slot: CK_SLOT_ID, so_pin: &str, label: &str) -> CkResult<()> {
        let mut l = [b' '; 32];
        let n = label.len().min(32);
        l[..n].copy_from_slice(&label.as_bytes()[..n]);
        call!(
            self,
            C_InitToken,
            Function::InitToken,
            slot,
            so_pin.as_ptr() as *mut u8,
            so_pin.len() as CK_ULONG,
            l.as_mut_ptr()
        )
    }

    pub fn mechanisms(&self, slot: CK_SLOT_ID) -> CkResult<Vec<CK_MECHANISM_TYPE>> {
        let mut n: CK_ULONG = 0;
        call!(
            self,
            C_GetMechanismList,
            Function::GetMechanismList,
            slot,
            std::ptr::null_mut(),
            &mut n
        )?;
        let mut v = vec![0; n as usize];
        call!(
            self,
            C_GetMechanismList,
            Function::GetMechanismList,
            slot,
            v.as_mut_ptr(),
            &mut n
        )?;
        v.truncate(n as usize);
        Ok(v)
    }

    /// A read-write session, closed when dropped.
    pub fn open(&self, slot: CK_SLOT_ID) -> CkResult<Sess<'_>> {
        let mut h: CK_SESSION_HANDLE = 0;
        call!(
            self,
            C_OpenSession,
            Function::OpenSession,
            slot,
            CKF_SERIAL_SESSION | CKF_RW_SESSION,
            std::ptr::null_mut(),
            None,
            &mut h
        )?;
        Ok(Sess {
            raw: self,
            h,
            open: true,
        })
    }
}

fn template(attrs: &[Attribute]) -> Vec<CK_ATTRIBUTE> {
    attrs.iter().map(CK_ATTRIBUTE::from).collect()
}

/// A session; `C_CloseSession` on drop (errors ignored there: use `close`).
pub struct Sess<'a> {
    raw: &'a Raw,
    h: CK_SESSION_HANDLE,
    open: bool,
}

impl Drop for Sess<'_> {
    fn drop(&mut self) {
        if self.open {
            let raw = self.raw;
            let _ = call!(raw, C_CloseSession, Function::CloseSession, self.h);
        }
    }
}

impl Sess<'_> {
    pub fn close(mut self) -> CkResult<()> {
        self.open = false;
        let raw = self.raw;
        call!(raw, C_CloseSession, Function::CloseSession, self.h)
    }

    pub fn login(&self, user: CK_USER_TYPE, pin: &str) -> CkResult<()> {
        let raw = self.raw;
        call!(
            raw,
            C_Login,
            Function::Login,
            self.h,
            user,
            pin.as_ptr() as *mut u8,
            pin.len() as CK_ULONG
        )
    }

    pub fn logout(&self) -> CkResult<()> {
        let raw = self.raw;
        call!(raw, C_Logout, Function::Logout, self.h)
    }

    pub fn init_pin(&self, pin: &str) -> CkResult<()> {
        let raw = self.raw;
        call!(
            raw,
            C_InitPIN,
            Function::InitPIN,
            self.h,
            pin.as_ptr() as *mut u8,
            pin.len() as CK_ULONG
        )
    }

    pub fn random(&self, out: &mut [u8]) -> CkResult<()> {
        let raw = self.raw;
        call!(
            raw,
            C_GenerateRandom,
            Function::GenerateRandom,
            self.h,
            out.as_mut_ptr(),
            out.len() as CK_ULONG
        )
    }

    pub fn generate_key(&self, mech: &Mechanism, attrs: &[Attribute]) -> CkResult<Handle> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        let mut t = template(attrs);
        let mut h: Handle = 0;
        call!(
            raw,
            C_GenerateKey,
            Function::GenerateKey,
            self.h,
            &mut m,
            t.as_mut_ptr(),
            t.len() as CK_ULONG,
            &mut h
        )?;
        Ok(h)
    }

    /// Returns (public, private).
    pub fn generate_key_pair(
        &self,
        mech: &Mechanism,
        public: &[Attribute],
        private: &[Attribute],
    ) -> CkResult<(Handle, Handle)> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        let mut tp = template(public);
        let mut tk = template(private);
        let (mut hp, mut hk): (Handle, Handle) = (0, 0);
        call!(
            raw,
            C_GenerateKeyPair,
            Function::GenerateKeyPair,
            self.h,
            &mut m,
            tp.as_mut_ptr(),
            tp.len() as CK_ULONG,
            tk.as_mut_ptr(),
            tk.len() as CK_ULONG,
            &mut hp,
            &mut hk
        )?;
        Ok((hp, hk))
    }

    pub fn destroy(&self, h: Handle) -> CkResult<()> {
        let raw = self.raw;
        call!(raw, C_DestroyObject, Function::DestroyObject, self.h, h)
    }

    /// C_FindObjectsInit + one C_FindObjects into `out` + C_FindObjectsFinal.
    pub fn find(&self, attrs: &[Attribute], out: &mut [Handle]) -> CkResult<usize> {
        let raw = self.raw;
        let mut t = template(attrs);
        call!(
            raw,
            C_FindObjectsInit,
            Function::FindObjectsInit,
            self.h,
            t.as_mut_ptr(),
            t.len() as CK_ULONG
        )?;
        let mut n: CK_ULONG = 0;
        let r = call!(
            raw,
            C_FindObjects,
            Function::FindObjects,
            self.h,
            out.as_mut_ptr(),
            out.len() as CK_ULONG,
            &mut n
        );
        let f = call!(raw, C_FindObjectsFinal, Function::FindObjectsFinal, self.h);
        r?;
        f?;
        Ok(n as usize)
    }

    pub fn encrypt_init(&self, mech: &Mechanism, key: Handle) -> CkResult<()> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        call!(
            raw,
            C_EncryptInit,
            Function::EncryptInit,
            self.h,
            &mut m,
            key
        )
    }

    pub fn decrypt_init(&self, mech: &Mechanism, key: Handle) -> CkResult<()> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        call!(
            raw,
            C_DecryptInit,
            Function::DecryptInit,
            self.h,
            &mut m,
            key
        )
    }

    /// `C_Encrypt` into `out`; returns the length written.
    pub fn encrypt(&self, data: &[u8], out: &mut [u8]) -> CkResult<usize> {
        let raw = self.raw;
        let mut n = out.len() as CK_ULONG;
        call!(
            raw,
            C_Encrypt,
            Function::Encrypt,
            self.h,
            data.as_ptr() as *mut u8,
            data.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )?;
        Ok(n as usize)
    }

    /// `C_Decrypt` into `out`; returns the length written.
    pub fn decrypt(&self, data: &[u8], out: &mut [u8]) -> CkResult<usize> {
        let raw = self.raw;
        let mut n = out.len() as CK_ULONG;
        call!(
            raw,
            C_Decrypt,
            Function::Decrypt,
            self.h,
            data.as_ptr() as *mut u8,
            data.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )?;
        Ok(n as usize)
    }

    /// `C_EncryptUpdate` into `out`; returns the length written.
    pub fn encrypt_update(&self, data: &[u8], out: &mut [u8]) -> CkResult<usize> {
        let raw = self.raw;
        let mut n = out.len() as CK_ULONG;
        call!(
            raw,
            C_EncryptUpdate,
            Function::EncryptUpdate,
            self.h,
            data.as_ptr() as *mut u8,
            data.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )?;
        Ok(n as usize)
    }

    /// `C_EncryptFinal` into `out`; returns the length written.
    pub fn encrypt_final(&self, out: &mut [u8]) -> CkResult<usize> {
        let raw = self.raw;
        let mut n = out.len() as CK_ULONG;
        call!(
            raw,
            C_EncryptFinal,
            Function::EncryptFinal,
            self.h,
            out.as_mut_ptr(),
            &mut n
        )?;
        Ok(n as usize)
    }

    pub fn sign_init(&self, mech: &Mechanism, key: Handle) -> CkResult<()> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        call!(raw, C_SignInit, Function::SignInit, self.h, &mut m, key)
    }

    /// `C_Sign` into `out`; returns the signature length.
    pub fn sign(&self, data: &[u8], out: &mut [u8]) -> CkResult<usize> {
        let raw = self.raw;
        let mut n = out.len() as CK_ULONG;
        call!(
            raw,
            C_Sign,
            Function::Sign,
            self.h,
            data.as_ptr() as *mut u8,
            data.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )?;
        Ok(n as usize)
    }

    pub fn verify_init(&self, mech: &Mechanism, key: Handle) -> CkResult<()> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        call!(raw, C_VerifyInit, Function::VerifyInit, self.h, &mut m, key)
    }

    pub fn verify(&self, data: &[u8], sig: &[u8]) -> CkResult<()> {
        let raw = self.raw;
        call!(
            raw,
            C_Verify,
            Function::Verify,
            self.h,
            data.as_ptr() as *mut u8,
            data.len() as CK_ULONG,
            sig.as_ptr() as *mut u8,
            sig.len() as CK_ULONG
        )
    }

    /// `C_WrapKey` into `out`; returns the wrapped length.
    pub fn wrap_key(
        &self,
        mech: &Mechanism,
        wrapping: Handle,
        key: Handle,
        out: &mut [u8],
    ) -> CkResult<usize> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        let mut n = out.len() as CK_ULONG;
        call!(
            raw,
            C_WrapKey,
            Function::WrapKey,
            self.h,
            &mut m,
            wrapping,
            key,
            out.as_mut_ptr(),
            &mut n
        )?;
        Ok(n as usize)
    }

    pub fn unwrap_key(
        &self,
        mech: &Mechanism,
        unwrapping: Handle,
        wrapped: &[u8],
        attrs: &[Attribute],
    ) -> CkResult<Handle> {
        let raw = self.raw;
        let mut m: CK_MECHANISM = mech.into();
        let mut t = template(attrs);
        let mut h: Handle = 0;
        call!(
            raw,
            C_UnwrapKey,
            Function::UnwrapKey,
            self.h,
            &mut m,
            unwrapping,
            wrapped.as_ptr() as *mut u8,
            wrapped.len() as CK_ULONG,
            t.as_mut_ptr(),
            t.len() as CK_ULONG,
            &mut h
        )?;
        Ok(h)
    }
}
