//! The module's side of the wire: finding the daemon's socket, the version
//! handshake, a pool of connections shared by all threads, and fork
//! detection.
//!
//! One `C_*` call is one request/response round trip on one connection taken
//! from the pool (or freshly opened). No global lock is held during a round
//! trip, so threads run concurrently. All connections of one `C_Initialize`
//! say `Hello` with the same random `app_id`, which is how the daemon lets
//! them share one application context (login state, sessions; DESIGN §2).
//!
//! After `fork()` the child must never write to the sockets it inherited (the
//! parent still uses them): a `pthread_atfork` child handler bumps a counter,
//! every call compares it (and the pid) with the values saved at
//! `C_Initialize`, and answers `CKR_CRYPTOKI_NOT_INITIALIZED` until the child
//! initializes again, which closes the inherited descriptors without a
//! `shutdown()` or a write (the approach of p11-kit `common/library.c`).

use std::fmt;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use p11kms_protocol::frame::{self, FrameError};
use p11kms_protocol::{Request, Response, PROTOCOL_VERSION};
use pkcs11_sys::{
    CKR_CRYPTOKI_ALREADY_INITIALIZED, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_DATA_LEN_RANGE,
    CKR_DEVICE_ERROR, CKR_GENERAL_ERROR,
};

use crate::ffi::CkResult;

/// Socket used when neither `P11KMS_SOCKET` nor `P11KMS_CONF` names one.
pub const DEFAULT_SOCKET: &str = "/run/p11kms/p11kms.sock";

/// Bound on connecting and on the handshake, so `C_Initialize` never hangs
/// on a stuck daemon. Ordinary calls have no timeout (a long RSA key
/// generation is legitimate).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept for reuse; more are closed when returned.
const MAX_IDLE: usize = 16;

/// The live client of this process, `None` before `C_Initialize` and after
/// `C_Finalize`. The lock is only held to clone or swap the `Arc`.
static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Incremented in the child after every `fork()`.
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Value of [`FORKS`] when the current client was made; a difference means
/// we are a forked child holding the parent's connections.
static INIT_FORKS: AtomicU64 = AtomicU64::new(0);

static ATFORK: Once = Once::new();

/// One `C_Initialize`'s worth of connection state.
pub struct Client {
    socket: PathBuf,
    app_id: [u8; 16],
    pid: u32,
    idle: Mutex<Vec<UnixStream>>,
}

/// Why a connection to the daemon could not be established.
#[derive(Debug)]
enum ConnectError {
    Connect(io::Error),
    Handshake(FrameError),
    Version(u32),
    Refused(u64),
    Unexpected,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Connect(e) => write!(f, "cannot connect: {e} (is p11kmsd running?)"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
            ConnectError::Version(v) => {
                write!(f, "protocol version mismatch: module speaks {PROTOCOL_VERSION}, daemon speaks {v}")
            }
            ConnectError::Refused(rv) => {
                write!(f, "daemon refused the connection (CK_RV 0x{rv:x})")
            }
            ConnectError::Unexpected => write!(f, "unexpected answer to the handshake"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn forked() -> bool {
    FORKS.load(Ordering::SeqCst) != INIT_FORKS.load(Ordering::SeqCst)
}

extern "C" fn child_after_fork() {
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// Register the fork handler once per process, and pin this library in
/// memory so the handler can never point into an unloaded `dlclose()`d image.
fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: `child_after_fork` is async-signal-safe (one atomic add)
        // and lives as long as the library, which we pin below.
        unsafe { libc::pthread_atfork(None, None, Some(child_after_fork)) };
        pin_library();
    });
}

fn pin_library() {
    // SAFETY: Dl_info is plain old data (pointers); all-zero is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = child_after_fork as *const libc::c_void;
    // SAFETY: `addr` is an address inside this library; `info` is writable.
    if unsafe { libc::dladdr(addr, &mut info) } != 0 && !info.dli_fname.is_null() {
        // SAFETY: `dli_fname` is a NUL-terminated path owned by the loader.
        // RTLD_NOLOAD only takes a reference to the already loaded image;
        // RTLD_NODELETE keeps it mapped after the consumer's dlclose().
        unsafe {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            )
        };
    }
}

/// Where the daemon listens: `P11KMS_SOCKET`, else the `socket = "..."`
/// line of the file named by `P11KMS_CONF`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("P11KMS_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(conf) = std::env::var_os("P11KMS_CONF").filter(|p| !p.is_empty()) {
        match std::fs::read_to_string(&conf) {
            Ok(text) => {
                if let Some(p) = socket_from_conf(&text) {
                    return PathBuf::from(p);
                }
            }
            Err(e) => eprintln!(
                "p11kms: cannot read P11KMS_CONF file {}: {e}; using {DEFAULT_SOCKET}",
                Path::new(&conf).display()
            ),
        }
    }
    PathBuf::from(DEFAULT_SOCKET)
}

/// The value of a top-level `socket = "/path"` line (TOML style; single or
/// double quotes, `#` comments). Lines inside a `[table]` are not top-level.
fn socket_from_conf(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            return None;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "socket" {
            continue;
        }
        let value = value.trim();
        for q in ['"', '\''] {
            if let Some(rest) = value.strip_prefix(q) {
                return rest
                    .split_once(q)
                    .map(|(v, _)| v.to_string())
                    .filter(|v| !v.is_empty());
            }
        }
        let bare = value.split('#').next().unwrap_or("").trim();
        return (!bare.is_empty()).then(|| bare.to_string());
    }
    None
}

/// Connect to a Unix socket without ever blocking longer than `timeout`
/// (a daemon whose listen backlog is full makes a blocking connect wait).
fn connect_timeout(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long or invalid",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own; the stream closes it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let addr_len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_un>())
        .map_err(|_| io::Error::other("sockaddr size"))?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of `addr_len` bytes.
        let rc = unsafe { libc::connect(fd, (&raw const addr).cast::<libc::sockaddr>(), addr_len) };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            // Backlog full: Unix sockets do not complete in the background;
            // try again until the deadline.
            Some(libc::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Some(libc::EAGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            }
            _ => return Err(err),
        }
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

impl Client {
    fn new(socket: PathBuf) -> CkResult<Client> {
        let mut app_id = [0u8; 16];
        getrandom::fill(&mut app_id).map_err(|_| CKR_GENERAL_ERROR)?;
        Ok(Client {
            socket,
            app_id,
            pid: std::process::id(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Open a connection and say `Hello`, bounded by [`HANDSHAKE_TIMEOUT`].
    fn open(&self) -> Result<UnixStream, ConnectError> {
        let mut s =
            connect_timeout(&self.socket, HANDSHAKE_TIMEOUT).map_err(ConnectError::Connect)?;
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(ConnectError::Connect)?;
        s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(ConnectError::Connect)?;
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            app_id: self.app_id,
            pid: self.pid,
        };
        frame::write_frame(&mut s, &hello).map_err(ConnectError::Handshake)?;
        match frame::read_frame::<_, Response>(&mut s).map_err(ConnectError::Handshake)? {
            Response::Hello { version, .. } if version == PROTOCOL_VERSION => {}
            Response::Hello { version, .. } => return Err(ConnectError::Version(version)),
            Response::Error(rv) => return Err(ConnectError::Refused(rv)),
            _ => return Err(ConnectError::Unexpected),
        }
        s.set_read_timeout(None).map_err(ConnectError::Connect)?;
        s.set_write_timeout(None).map_err(ConnectError::Connect)?;
        Ok(s)
    }

    fn take(&self) -> Option<UnixStream> {
        lock(&self.idle).pop()
    }

    fn give_back(&self, s: UnixStream) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// One round trip. I/O or framing trouble drops the connection (it may
    /// be out of sync) and answers `CKR_DEVICE_ERROR`; `Response::Error(rv)`
    /// becomes `Err(rv)`.
    pub fn call(&self, req: &Request) -> CkResult<Response> {
        let mut bytes = frame::encode(req).map_err(|e| match e {
            FrameError::TooLarge(_) => CKR_DATA_LEN_RANGE,
            _ => CKR_GENERAL_ERROR,
        })?;
        let mut conn = match self.take() {
            Some(c) => c,
            None => self.open().map_err(|_| CKR_DEVICE_ERROR)?,
        };
        let _in_flight = InFlight::enter();
        let result = conn
            .write_all(&bytes)
            .map_err(FrameError::from)
            .and_then(|()| {
                // Bulk requests take the daemon longer: poll longer before
                // sleeping (about 2 µs per KiB on top of the base budget).
                let extra = std::time::Duration::from_micros((bytes.len() as u64 / 512).min(5_000));
                frame::read_frame::<_, Response>(&mut SpinRead(
                    &conn,
                    spin_budget().saturating_add(extra),
                ))
            });
        // The encoded request may hold a PIN or key material.
        p11kms_protocol::secret::wipe(&mut bytes, req.carries_secrets());
        match result {
            Ok(resp) => {
                self.give_back(conn);
                match resp {
                    Response::Error(0) => Err(CKR_GENERAL_ERROR),
                    Response::Error(rv) => Err(rv),
                    Response::Hello { .. } => Err(CKR_DEVICE_ERROR),
                    other => Ok(other),
                }
            }
            Err(_) => Err(CKR_DEVICE_ERROR),
        }
    }

    /// Forget connections inherited across `fork()`: close the descriptors
    /// only (no `shutdown()`, no write; the parent still uses them). If a
    /// thread that no longer exists held the pool lock at fork time, leak
    /// them rather than risk a deadlock.
    fn forget_inherited(&self) {
        if let Ok(mut idle) = self.idle.try_lock() {
            idle.clear();
        }
    }
}

/// The live client, or `CKR_CRYPTOKI_NOT_INITIALIZED` (also in a forked
/// child that has not called `C_Initialize` again).
pub fn get() -> CkResult<Arc<Client>> {
    if forked() {
        return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
    }
    let client = lock(&CLIENT).clone().ok_or(CKR_CRYPTOKI_NOT_INITIALIZED)?;
    if client.pid != std::process::id() {
        // Forked without our handler having run (e.g. a raw clone()).
        return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
    }
    Ok(client)
}

/// `CKR_CRYPTOKI_NOT_INITIALIZED` unless the library is initialized.
pub fn ensure() -> CkResult<()> {
    get().map(drop)
}

/// One round trip with the live client.
pub fn call(req: Request) -> CkResult<Response> {
    get()?.call(&req)
}

/// Drop a client inherited from the parent process, if any. Returns whether
/// there was one.
fn drop_inherited(slot: &mut Option<Arc<Client>>) -> bool {
    let stale = forked() || slot.as_ref().is_some_and(|c| c.pid != std::process::id());
    if stale {
        if let Some(old) = slot.take() {
            old.forget_inherited();
        }
        INIT_FORKS.store(FORKS.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    stale
}

/// `C_Initialize`'s work once its arguments are checked: new `app_id`, one
/// connection with a successful handshake, or a one-line message on stderr
/// and `CKR_DEVICE_ERROR`.
pub fn initialize() -> CkResult<()> {
    register_atfork();
    {
        let mut slot = lock(&CLIENT);
        drop_inherited(&mut slot);
        if slot.is_some() {
            return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
    }
    let client = Client::new(socket_path())?;
    let conn = client.open().map_err(|e| {
        eprintln!("p11kms: p11kmsd at {}: {e}", client.socket.display());
        CKR_DEVICE_ERROR
    })?;
    client.give_back(conn);
    let mut slot = lock(&CLIENT);
    if slot.is_some() {
        // Another thread won a concurrent C_Initialize.
        return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    *slot = Some(Arc::new(client));
    Ok(())
}

/// `C_Finalize`'s work: drop every connection (the daemon then ends the
/// application context). In a forked child, only forget the inherited ones.
pub fn finalize() -> CkResult<()> {
    let mut slot = lock(&CLIENT);
    if drop_inherited(&mut slot) {
        return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
    }
    match slot.take() {
        Some(_client) => Ok(()),
        None => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// How long a caller polls for the daemon's answer before sleeping in
/// `read()`, in microseconds (`P11KMS_SPIN_US`, default 50; 0 disables).
///
/// On virtual machines a thread that sleeps on a socket is woken through
/// the hypervisor, which costs tens of microseconds — more than most
/// PKCS#11 calls take. Polling briefly (yielding the CPU between polls)
/// catches fast answers without that wake-up; slow ones (RSA) fall back
/// to the ordinary blocking read.
fn spin_budget() -> std::time::Duration {
    static BUDGET: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let us = std::env::var("P11KMS_SPIN_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(50);
        std::time::Duration::from_micros(us.min(10_000))
    })
}

/// Reads that poll briefly before blocking, for every piece of a frame.
struct SpinRead<'a>(&'a UnixStream, std::time::Duration);

impl std::io::Read for SpinRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Poll only while there are no more calls in flight than CPUs:
        // beyond that, pollers would take CPU from the threads with work.
        if !spin_budget().is_zero() && IN_FLIGHT.load(Ordering::Relaxed) <= cpus() {
            spin_until_readable(self.0, self.1);
        }
        (&mut &*self.0).read(buf)
    }
}

/// Calls of this process currently waiting for the daemon.
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn cpus() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Counts a call in flight for as long as it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

fn spin_until_readable(conn: &UnixStream, budget: std::time::Duration) {
    use std::os::fd::AsRawFd;
    if budget.is_zero() {
        return;
    }
    let start = std::time::Instant::now();
    let mut pfd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n != 0 || start.elapsed() >= budget {
            return;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_socket_line() {
        assert_eq!(
            socket_from_conf("socket = \"/tmp/a.sock\"\n").as_deref(),
            Some("/tmp/a.sock")
        );
        assert_eq!(
            socket_from_conf("# c\nsocket='/x' # comment\n").as_deref(),
            Some("/x")
        );
        assert_eq!(
            socket_from_conf("other = 1\nsocket=/bare\n").as_deref(),
            Some("/bare")
        );
        assert_eq!(socket_from_conf("[instance]\nsocket = \"/no\"\n"), None);
        assert_eq!(socket_from_conf("sockets = \"/no\"\n"), None);
        assert_eq!(socket_from_conf(""), None);
    }

    #[test]
    fn connect_to_missing_socket_fails_fast() {
        let start = Instant::now();
        let err = connect_timeout(Path::new("/nonexistent/p11kms.sock"), HANDSHAKE_TIMEOUT);
        assert!(err.is_err());
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn handshake_against_fake_daemon() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("p11kms-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("hs.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let hello: Request = frame::read_frame(&mut s).expect("hello");
            assert!(matches!(
                hello,
                Request::Hello {
                    version: PROTOCOL_VERSION,
                    ..
                }
            ));
            frame::write_frame(
                &mut s,
                &Response::Hello {
                    version: PROTOCOL_VERSION,
                    server: "t".into(),
                },
            )
            .expect("write");
            let req: Request = frame::read_frame(&mut s).expect("req");
            assert_eq!(req, Request::GenerateRandom { session: 1, len: 2 });
            frame::write_frame(&mut s, &Response::Error(0x101)).expect("write");
            let (mut s2, _) = listener.accept().expect("accept");
            let _: Request = frame::read_frame(&mut s2).expect("hello");
            frame::write_frame(
                &mut s2,
                &Response::Hello {
                    version: PROTOCOL_VERSION + 1,
                    server: "t".into(),
                },
            )
            .expect("write");
        });
        let client = Client::new(path.clone()).expect("client");
        let conn = client.open().expect("open");
        client.give_back(conn);
        assert_eq!(
            client.call(&Request::GenerateRandom { session: 1, len: 2 }),
            Err(0x101)
        );
        let c2 = Client::new(path.clone()).expect("client");
        assert!(matches!(c2.open(), Err(ConnectError::Version(v)) if v == PROTOCOL_VERSION + 1));
        server.join().expect("server");
        let _ = std::fs::remove_file(&path);
    }
}
