//! Helpers for the end-to-end tests in `tests/tests/*.rs`.
//!
//! Every scenario loads the *built* `libp11kms.so` (path from `P11KMS_MODULE`,
//! else `target/release`, else `target/debug`) and talks to a `p11kmsd` that
//! it starts itself in a temp dir (binary from `P11KMS_DAEMON`, same default),
//! with `P11KMS_SOCKET` pointing the module at it.
//!
//! `C_Initialize` is process-global, so each test file is its own binary (its
//! own process), and tests inside one file take [`serial`] before touching the
//! module. Two ways in:
//! - [`cryptoki`] for ordinary use, as applications do;
//! - [`Raw`]: the module's `CK_FUNCTION_LIST` called directly, for the rules
//!   the high-level API hides (PKCS#11 §5.2 length queries, exact CKR codes,
//!   initialize/finalize/fork behaviour).

use std::ffi::c_void;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use cryptoki;
pub use cryptoki_sys as sys;
use sys::*;

/// Token label, SO PIN and user PIN used by the scenarios.
pub const LABEL: &str = "e2e-token";
pub const SO_PIN: &str = "so-secret-1";
pub const USER_PIN: &str = "user-secret-1";

/// A DER X.509 certificate (self-signed P-256, CN=p11kms-e2e) for storage tests.
pub const CERT_DER: &[u8] = include_bytes!("testdata/selfsigned-p256.der");

// --- where the artifacts are --------------------------------------------------

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn artifact(env: &str, file: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join(file);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{file} not found under {}: set {env} or run `cargo build --release` first",
        target.display()
    )
}

/// Path of `libp11kms.so` (`P11KMS_MODULE`, else target/release, else target/debug).
pub fn module_path() -> PathBuf {
    artifact("P11KMS_MODULE", "libp11kms.so")
}

/// Path of `p11kmsd` (`P11KMS_DAEMON`, else target/release, else target/debug).
pub fn daemon_path() -> PathBuf {
    artifact("P11KMS_DAEMON", "p11kmsd")
}

/// Path of the admin CLI `p11kms` (`P11KMS_CLI`, same defaults).
pub fn cli_path() -> PathBuf {
    artifact("P11KMS_CLI", "p11kms")
}

/// Serializes the tests of one binary: the module's state is per process.
/// Also calls `C_Finalize` (result ignored), so that a test that failed
/// half-way does not leave the next one with CKR_CRYPTOKI_ALREADY_INITIALIZED.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _ = module().finalize();
    g
}

/// The module, loaded once for the life of the test process (never dlclosed).
pub fn module() -> &'static Raw {
    static MODULE: std::sync::OnceLock<Raw> = std::sync::OnceLock::new();
    MODULE.get_or_init(Raw::load)
}

/// Runs `f` on a helper thread and panics if it takes longer than `secs`:
/// a hung module call fails the test instead of hanging the whole run.
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {secs} s (hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(e) => std::panic::resume_unwind(e),
            Ok(()) => panic!("{what}: worker ended without a result"),
        },
    }
}

// --- the daemon -------------------------------------------------------------------

/// A `p11kmsd --data-dir D --socket S` in its own temp dir, stopped on drop.
pub struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon in a fresh temp dir and waits (up to 10 s) for its socket.
    pub fn start() -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("p11kms-e2e.")
            .tempdir()
            .expect("tempdir");
        let mut d = Daemon { dir, child: None };
        d.spawn();
        d
    }

    /// The daemon's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("p11kms.sock")
    }

    /// The temp dir, for scratch files that should go away with the daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// Everything the daemon logged so far (all runs).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        std::fs::create_dir_all(self.data_dir()).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let child = Command::new(daemon_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", daemon_path().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Connectable, not merely present: after SIGKILL the old socket
            // file is still there before the new daemon binds its own.
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "p11kmsd exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "p11kmsd socket {} did not appear within 10 s; log:\n{}",
            self.socket().display(),
            self.log()
        );
    }

    fn signal_and_wait(&mut self, sig: i32, secs: u64) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGTERM and wait. Returns whether it stopped within 10 s and removed its socket.
    pub fn stop(&mut self) -> bool {
        let stopped = self.signal_and_wait(libc::SIGTERM, 10);
        stopped && !self.socket().exists()
    }

    /// SIGKILL (crash simulation); the stale socket file is left as a crash leaves it.
    pub fn kill(&mut self) {
        self.signal_and_wait(libc::SIGKILL, 10);
    }

    /// Starts the daemon again on the same data dir and socket path.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Whether the daemon process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Points the module at this daemon (read by the module at `C_Initialize`).
    pub fn export_socket(&self) {
        std::env::set_var("P11KMS_SOCKET", self.socket());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- p11kmsd log tail ({}):", self.log_path().display());
            for l in tail.iter().rev() {
                eprintln!("    {l}");
            }
        }
        self.signal_and_wait(libc::SIGTERM, 5);
    }
}

// --- raw C ABI ---------------------------------------------------------------------

/// The module loaded with dlopen and its `CK_FUNCTION_LIST`, called directly.
pub struct Raw {
    _lib: sys::Pkcs11,
    list: *const CK_FUNCTION_LIST,
}

// SAFETY: the function list is immutable static data of the loaded module,
// which stays loaded as long as `_lib` lives; PKCS#11 functions are callable
// from any thread once initialized with locking (the module is thread-safe).
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

/// Calls a PKCS#11 function through a [`Raw`]'s function list:
/// `p11!(raw, C_GetSlotList, CK_TRUE, ptr, &mut n)`.
#[macro_export]
macro_rules! p11 {
    ($raw:expr, $f:ident $(, $arg:expr)* $(,)?) => {{
        let f = $raw.f().$f.expect(concat!(stringify!($f), " missing from the function list"));
        #[allow(unused_unsafe, clippy::macro_metavars_in_unsafe)]
        let rv = unsafe { f($($arg),*) };
        rv
    }};
}

impl Raw {
    /// dlopen the module and fetch its function list with `C_GetFunctionList`.
    pub fn load() -> Raw {
        let path = module_path();
        // SAFETY: loading a PKCS#11 module runs its initializers; that is the point.
        let lib = unsafe { sys::Pkcs11::new(&path) }
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let rv = unsafe { lib.C_GetFunctionList(&mut list) };
        assert_eq!(rv, CKR_OK, "C_GetFunctionList: {}", rv_name(rv));
        assert!(!list.is_null(), "C_GetFunctionList returned NULL");
        Raw { _lib: lib, list }
    }

    /// The function list.
    pub fn f(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: checked non-null at load, static data of the loaded module.
        unsafe { &*self.list }
    }

    /// `C_Initialize(NULL)`.
    pub fn initialize(&self) -> CK_RV {
        p11!(self, C_Initialize, std::ptr::null_mut())
    }

    /// `C_Initialize` with `CKF_OS_LOCKING_OK` and no callbacks (what Java does).
    pub fn initialize_os_locking(&self) -> CK_RV {
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: std::ptr::null_mut(),
        };
        p11!(self, C_Initialize, &mut args as *mut _ as *mut c_void)
    }

    /// `C_Finalize(NULL)`.
    pub fn finalize(&self) -> CK_RV {
        p11!(self, C_Finalize, std::ptr::null_mut())
    }

    /// Slots with a token present.
    pub fn slots(&self) -> Vec<CK_SLOT_ID> {
        let mut n: CK_ULONG = 0;
        let rv = p11!(self, C_GetSlotList, CK_TRUE, std::ptr::null_mut(), &mut n);
        assert_rv(rv, CKR_OK, "C_GetSlotList(NULL)");
        let mut v = vec![0; n as usize];
        let rv = p11!(self, C_GetSlotList, CK_TRUE, v.as_mut_ptr(), &mut n);
        assert_rv(rv, CKR_OK, "C_GetSlotList");
        v.truncate(n as usize);
        v
    }

    /// The first slot (the `default` instance of a zero-config daemon).
    pub fn first_slot(&self) -> CK_SLOT_ID {
        *self
            .slots()
            .first()
            .expect("the module lists no slot with a token")
    }

    /// `C_GetTokenInfo`.
    pub fn token_info(&self, slot: CK_SLOT_ID) -> CK_TOKEN_INFO {
        let mut info = CK_TOKEN_INFO::default();
        let rv = p11!(self, C_GetTokenInfo, slot, &mut info);
        assert_rv(rv, CKR_OK, "C_GetTokenInfo");
        info
    }

    /// `C_InitToken` with [`LABEL`]/[`SO_PIN`], then `C_InitPIN` with [`USER_PIN`] as SO.
    pub fn init_token(&self, slot: CK_SLOT_ID) {
        let mut label = [b' '; 32];
        label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
        let rv = p11!(
            self,
            C_InitToken,
            slot,
            SO_PIN.as_ptr() as *mut u8,
            SO_PIN.len() as CK_ULONG,
            label.as_mut_ptr()
        );
        assert_rv(rv, CKR_OK, "C_InitToken");
        let s = self.open_rw(slot);
        let rv = p11!(
            self,
            C_Login,
            s,
            CKU_SO,
            SO_PIN.as_ptr() as *mut u8,
            SO_PIN.len() as CK_ULONG
        );
        assert_rv(rv, CKR_OK, "C_Login(SO)");
        let rv = p11!(
            self,
            C_InitPIN,
            s,
            USER_PIN.as_ptr() as *mut u8,
            USER_PIN.len() as CK_ULONG
        );
        assert_rv(rv, CKR_OK, "C_InitPIN");
        let rv = p11!(self, C_Logout, s);
        assert_rv(rv, CKR_OK, "C_Logout(SO)");
        let rv = p11!(self, C_CloseSession, s);
        assert_rv(rv, CKR_OK, "C_CloseSession");
    }

    /// `C_OpenSession` R/W serial.
    pub fn open_rw(&self, slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
        let mut h: CK_SESSION_HANDLE = 0;
        let rv = p11!(
            self,
            C_OpenSession,
            slot,
            CKF_SERIAL_SESSION | CKF_RW_SESSION,
            std::ptr::null_mut(),
            None,
            &mut h
        );
        assert_rv(rv, CKR_OK, "C_OpenSession");
        h
    }

    /// `C_Login(CKU_USER, USER_PIN)`; already logged in counts as success.
    pub fn login_user(&self, s: CK_SESSION_HANDLE) {
        let rv = p11!(
            self,
            C_Login,
            s,
            CKU_USER,
            USER_PIN.as_ptr() as *mut u8,
            USER_PIN.len() as CK_ULONG
        );
        if rv != CKR_USER_ALREADY_LOGGED_IN {
            assert_rv(rv, CKR_OK, "C_Login(USER)");
        }
    }

    /// `C_CreateObject`.
    pub fn create(
        &self,
        s: CK_SESSION_HANDLE,
        t: &mut Template,
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let mut h: CK_OBJECT_HANDLE = 0;
        let rv = p11!(self, C_CreateObject, s, t.as_mut_ptr(), t.len(), &mut h);
        if rv == CKR_OK {
            Ok(h)
        } else {
            Err(rv)
        }
    }

    /// All objects matching `t`.
    pub fn find(&self, s: CK_SESSION_HANDLE, t: &mut Template) -> Vec<CK_OBJECT_HANDLE> {
        let rv = p11!(self, C_FindObjectsInit, s, t.as_mut_ptr(), t.len());
        assert_rv(rv, CKR_OK, "C_FindObjectsInit");
        let mut out = Vec::new();
        loop {
            let mut buf = [0 as CK_OBJECT_HANDLE; 64];
            let mut n: CK_ULONG = 0;
            let rv = p11!(self, C_FindObjects, s, buf.as_mut_ptr(), 64, &mut n);
            assert_rv(rv, CKR_OK, "C_FindObjects");
            out.extend_from_slice(&buf[..n as usize]);
            if n < 64 {
                break;
            }
        }
        let rv = p11!(self, C_FindObjectsFinal, s);
        assert_rv(rv, CKR_OK, "C_FindObjectsFinal");
        out
    }

    /// One attribute's value (two calls: length, then value).
    pub fn attr(
        &self,
        s: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        ty: CK_ATTRIBUTE_TYPE,
    ) -> Result<Vec<u8>, CK_RV> {
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        let rv = p11!(self, C_GetAttributeValue, s, o, &mut a, 1);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut v = vec![0u8; a.ulValueLen as usize];
        a.pValue = v.as_mut_ptr() as *mut c_void;
        let rv = p11!(self, C_GetAttributeValue, s, o, &mut a, 1);
        if rv != CKR_OK {
            return Err(rv);
        }
        v.truncate(a.ulValueLen as usize);
        Ok(v)
    }
}

/// An owned attribute template for raw calls.
#[derive(Default)]
pub struct Template {
    values: Vec<Vec<u8>>,
    attrs: Vec<CK_ATTRIBUTE>,
}

impl Template {
    pub fn new() -> Template {
        Template::default()
    }

    pub fn bytes(mut self, ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Template {
        self.values.push(v.to_vec());
        let last = self.values.last_mut().expect("just pushed");
        self.attrs.push(CK_ATTRIBUTE {
            type_: ty,
            pValue: last.as_mut_ptr() as *mut c_void,
            ulValueLen: v.len() as CK_ULONG,
        });
        self
    }

    pub fn ulong(self, ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> Template {
        self.bytes(ty, &v.to_ne_bytes())
    }

    pub fn bool(self, ty: CK_ATTRIBUTE_TYPE, v: bool) -> Template {
        self.bytes(ty, &[if v { CK_TRUE } else { CK_FALSE }])
    }

    pub fn as_mut_ptr(&mut self) -> *mut CK_ATTRIBUTE {
        if self.attrs.is_empty() {
            std::ptr::null_mut()
        } else {
            self.attrs.as_mut_ptr()
        }
    }

    pub fn len(&self) -> CK_ULONG {
        self.attrs.len() as CK_ULONG
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

/// Template of an AES secret key with a known value (token object if `token`).
pub fn aes_key_template(label: &str, value: &[u8], token: bool) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, token)
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SENSITIVE, true)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_ENCRYPT, true)
        .bool(CKA_DECRYPT, true)
        .bool(CKA_WRAP, true)
        .bool(CKA_UNWRAP, true)
        .bytes(CKA_LABEL, label.as_bytes())
        .bytes(CKA_VALUE, value)
}

/// Panics with the CKR names if `rv != want`.
#[track_caller]
pub fn assert_rv(rv: CK_RV, want: CK_RV, what: &str) {
    assert!(
        rv == want,
        "{what}: expected {}, got {}",
        rv_name(want),
        rv_name(rv)
    );
}

/// Decodes a hex string (test vectors).
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The name of a CKR code, for failure messages.
pub fn rv_name(rv: CK_RV) -> String {
    let name = match rv {
        CKR_OK => "CKR_OK",
        CKR_CANCEL => "CKR_CANCEL",
        CKR_HOST_MEMORY => "CKR_HOST_MEMORY",
        CKR_SLOT_ID_INVALID => "CKR_SLOT_ID_INVALID",
        CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR",
        CKR_FUNCTION_FAILED => "CKR_FUNCTION_FAILED",
        CKR_ARGUMENTS_BAD => "CKR_ARGUMENTS_BAD",
        CKR_CANT_LOCK => "CKR_CANT_LOCK",
        CKR_ATTRIBUTE_READ_ONLY => "CKR_ATTRIBUTE_READ_ONLY",
        CKR_ATTRIBUTE_SENSITIVE => "CKR_ATTRIBUTE_SENSITIVE",
        CKR_ATTRIBUTE_TYPE_INVALID => "CKR_ATTRIBUTE_TYPE_INVALID",
        CKR_ATTRIBUTE_VALUE_INVALID => "CKR_ATTRIBUTE_VALUE_INVALID",
        CKR_DATA_INVALID => "CKR_DATA_INVALID",
        CKR_DATA_LEN_RANGE => "CKR_DATA_LEN_RANGE",
        CKR_DEVICE_ERROR => "CKR_DEVICE_ERROR",
        CKR_DEVICE_MEMORY => "CKR_DEVICE_MEMORY",
        CKR_DEVICE_REMOVED => "CKR_DEVICE_REMOVED",
        CKR_ENCRYPTED_DATA_INVALID => "CKR_ENCRYPTED_DATA_INVALID",
        CKR_ENCRYPTED_DATA_LEN_RANGE => "CKR_ENCRYPTED_DATA_LEN_RANGE",
        CKR_FUNCTION_NOT_SUPPORTED => "CKR_FUNCTION_NOT_SUPPORTED",
        CKR_KEY_HANDLE_INVALID => "CKR_KEY_HANDLE_INVALID",
        CKR_KEY_FUNCTION_NOT_PERMITTED => "CKR_KEY_FUNCTION_NOT_PERMITTED",
        CKR_KEY_UNEXTRACTABLE => "CKR_KEY_UNEXTRACTABLE",
        CKR_MECHANISM_INVALID => "CKR_MECHANISM_INVALID",
        CKR_MECHANISM_PARAM_INVALID => "CKR_MECHANISM_PARAM_INVALID",
        CKR_OBJECT_HANDLE_INVALID => "CKR_OBJECT_HANDLE_INVALID",
        CKR_OPERATION_ACTIVE => "CKR_OPERATION_ACTIVE",
        CKR_OPERATION_NOT_INITIALIZED => "CKR_OPERATION_NOT_INITIALIZED",
        CKR_PIN_INCORRECT => "CKR_PIN_INCORRECT",
        CKR_PIN_LOCKED => "CKR_PIN_LOCKED",
        CKR_SESSION_CLOSED => "CKR_SESSION_CLOSED",
        CKR_SESSION_HANDLE_INVALID => "CKR_SESSION_HANDLE_INVALID",
        CKR_SESSION_READ_ONLY => "CKR_SESSION_READ_ONLY",
        CKR_SESSION_READ_ONLY_EXISTS => "CKR_SESSION_READ_ONLY_EXISTS",
        CKR_TEMPLATE_INCOMPLETE => "CKR_TEMPLATE_INCOMPLETE",
        CKR_TEMPLATE_INCONSISTENT => "CKR_TEMPLATE_INCONSISTENT",
        CKR_TOKEN_NOT_PRESENT => "CKR_TOKEN_NOT_PRESENT",
        CKR_TOKEN_NOT_RECOGNIZED => "CKR_TOKEN_NOT_RECOGNIZED",
        CKR_USER_ALREADY_LOGGED_IN => "CKR_USER_ALREADY_LOGGED_IN",
        CKR_USER_NOT_LOGGED_IN => "CKR_USER_NOT_LOGGED_IN",
        CKR_USER_PIN_NOT_INITIALIZED => "CKR_USER_PIN_NOT_INITIALIZED",
        CKR_WRAPPED_KEY_INVALID => "CKR_WRAPPED_KEY_INVALID",
        CKR_BUFFER_TOO_SMALL => "CKR_BUFFER_TOO_SMALL",
        CKR_SIGNATURE_INVALID => "CKR_SIGNATURE_INVALID",
        CKR_SIGNATURE_LEN_RANGE => "CKR_SIGNATURE_LEN_RANGE",
        CKR_KEY_NOT_WRAPPABLE => "CKR_KEY_NOT_WRAPPABLE",
        CKR_KEY_INDIGESTIBLE => "CKR_KEY_INDIGESTIBLE",
        CKR_KEY_TYPE_INCONSISTENT => "CKR_KEY_TYPE_INCONSISTENT",
        CKR_ACTION_PROHIBITED => "CKR_ACTION_PROHIBITED",
        CKR_CRYPTOKI_NOT_INITIALIZED => "CKR_CRYPTOKI_NOT_INITIALIZED",
        CKR_CRYPTOKI_ALREADY_INITIALIZED => "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        _ => return format!("0x{rv:x}"),
    };
    format!("{name} (0x{rv:x})")
}

// --- cryptoki ----------------------------------------------------------------------

/// A cryptoki context over the built module (not yet initialized).
pub fn context() -> cryptoki::context::Pkcs11 {
    cryptoki::context::Pkcs11::new(module_path())
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", module_path().display()))
}

/// `C_Initialize` with OS locking through cryptoki.
pub fn initialize(ctx: &cryptoki::context::Pkcs11) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags};
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize(CKF_OS_LOCKING_OK)");
}

/// Initializes the first slot's token ([`LABEL`], [`SO_PIN`]) and its user PIN
/// through cryptoki; returns the slot.
pub fn setup_token(ctx: &cryptoki::context::Pkcs11) -> cryptoki::slot::Slot {
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let slot = *ctx
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .first()
        .expect("no slot");
    ctx.init_token(slot, &AuthPin::from(SO_PIN), LABEL)
        .expect("C_InitToken");
    let s = ctx.open_rw_session(slot).expect("C_OpenSession");
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN)))
        .expect("C_Login(SO)");
    s.init_pin(&AuthPin::from(USER_PIN)).expect("C_InitPIN");
    s.logout().expect("C_Logout");
    slot
}

/// A R/W session logged in as the user.
pub fn user_session(
    ctx: &cryptoki::context::Pkcs11,
    slot: cryptoki::slot::Slot,
) -> cryptoki::session::Session {
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let s = ctx.open_rw_session(slot).expect("C_OpenSession");
    match s.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login(USER): {e}"),
    }
    s
}

/// The PKCS#11 error of a cryptoki error, if it is one.
pub fn rv_error(e: &cryptoki::error::Error) -> Option<cryptoki::error::RvError> {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}
