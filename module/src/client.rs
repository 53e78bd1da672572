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
//!
//! The daemon closes connections that stay idle (its `idle_timeout_secs`)
//! and keeps the application context while the process lives. A pooled
//! connection the daemon has closed is noticed before use (it polls
//! readable: end of stream) and replaced; a request that meets a close
//! before any answer byte on a reused connection is sent again once on a
//! fresh one (the daemon only closes between requests, never after
//! executing one). Writes use `MSG_NOSIGNAL`: a closed connection must never
//! raise `SIGPIPE` in the application.
//!
//! Before anything is sent, the module checks who serves the socket
//! (`SO_PEERCRED` of the daemon, see [`trusted_daemon`]): PINs and data go
//! only to root, this process's own uid, the uid named by
//! `P11KMS_DAEMON_UID` (or `daemon_uid` in the `P11KMS_CONF` file), or the
//! owner of the socket's directory when nobody else may write there.

use std::fmt;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use p11kms_protocol::frame::{self, FrameError};
use p11kms_protocol::{vendor, Request, Response, PROTOCOL_VERSION};
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
    Untrusted { uid: u32, reason: String },
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
                let why = match *rv {
                    vendor::CKR_P11KMS_ACCESS_DENIED => {
                        "CKR_P11KMS_ACCESS_DENIED: this uid is not in the daemon's allowed_uids/allowed_gids"
                    }
                    vendor::CKR_P11KMS_QUOTA_EXCEEDED => {
                        "CKR_P11KMS_QUOTA_EXCEEDED: connection limit of the daemon reached"
                    }
                    _ => "",
                };
                write!(f, "daemon refused the connection (CK_RV 0x{rv:x}) {why}")
            }
            ConnectError::Unexpected => write!(f, "unexpected answer to the handshake"),
            ConnectError::Untrusted { uid, reason } => write!(
                f,
                "the socket is served by uid {uid}, {reason}; refusing to talk to it \
                 (set P11KMS_DAEMON_UID={uid} if that is the daemon's uid)"
            ),
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

/// The text of the file named by `P11KMS_CONF`, if set and readable.
fn conf_text() -> Option<String> {
    let conf = std::env::var_os("P11KMS_CONF").filter(|p| !p.is_empty())?;
    match std::fs::read_to_string(&conf) {
        Ok(text) => Some(text),
        Err(e) => {
            eprintln!(
                "p11kms: cannot read P11KMS_CONF file {}: {e}",
                Path::new(&conf).display()
            );
            None
        }
    }
}

/// Where the daemon listens: `P11KMS_SOCKET`, else the `socket = "..."`
/// line of the file named by `P11KMS_CONF`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("P11KMS_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = conf_text().and_then(|t| socket_from_conf(&t)) {
        return PathBuf::from(p);
    }
    PathBuf::from(DEFAULT_SOCKET)
}

/// The daemon uid the user vouches for: `P11KMS_DAEMON_UID`, else a
/// `daemon_uid = N` line of the `P11KMS_CONF` file.
fn configured_daemon_uid() -> Option<u32> {
    if let Some(v) = std::env::var_os("P11KMS_DAEMON_UID").filter(|v| !v.is_empty()) {
        let parsed = v.to_str().and_then(|v| v.trim().parse().ok());
        if parsed.is_none() {
            eprintln!("p11kms: P11KMS_DAEMON_UID={v:?} is not a number; ignored");
        }
        return parsed;
    }
    conf_text()
        .and_then(|t| conf_value(&t, "daemon_uid"))
        .and_then(|v| v.parse().ok())
}

fn socket_from_conf(text: &str) -> Option<String> {
    conf_value(text, "socket")
}

/// The value of a top-level `key = "value"` line (TOML style; single or
/// double quotes, `#` comments). Lines inside a `[table]` are not top-level.
fn conf_value(text: &str, wanted: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            return None;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != wanted {
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

/// The uid of the process serving the other end of `s` (`SO_PEERCRED`).
fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>())
        .map_err(|_| io::Error::other("ucred size"))?;
    // SAFETY: `cred` is a writable ucred of `len` bytes; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Whether the daemon's uid `uid` may receive this process's PINs and data
/// (issue 10, finding 9): root; this process's effective uid (a daemon the
/// user runs); the uid the user names (`P11KMS_DAEMON_UID` or `daemon_uid`
/// in `P11KMS_CONF`); or the owner of the socket's directory when no one
/// else may write to that directory (only its owner could have put the
/// socket there, like `/run/p11kms` owned by the service account).
/// Otherwise `Err` says why not.
fn trusted_daemon(uid: u32, socket: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if uid == 0 || uid == me || configured_daemon_uid() == Some(uid) {
        return Ok(());
    }
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Ok(m) if m.uid() == uid && m.mode() & 0o022 == 0 => Ok(()),
        Ok(m) if m.uid() == uid => Err(format!(
            "which owns {} but that directory is writable by others (mode {:o})",
            dir.display(),
            m.mode() & 0o7777
        )),
        Ok(m) => Err(format!(
            "which is not root, not this process's uid ({me}), not P11KMS_DAEMON_UID, \
             and not the owner of {} (uid {})",
            dir.display(),
            m.uid()
        )),
        Err(e) => Err(format!("and {} cannot be checked: {e}", dir.display())),
    }
}

/// Write all of `bytes` with `MSG_NOSIGNAL`: a peer that closed gives
/// `EPIPE`, never a `SIGPIPE` that would kill the application.
fn send_all(s: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of its length.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                bytes.as_ptr().cast::<libc::c_void>(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = usize::try_from(n).map_err(|_| io::Error::other("send"))?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Whether a pooled connection is still usable: a healthy idle connection
/// has nothing to read (one request in flight at a time), so anything
/// readable — end of stream, an error, stray bytes — means the daemon
/// closed it (idle timeout, restart) and it must not be used.
fn still_open(s: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 0
}

/// Counts the bytes read through it, to tell "closed before any answer"
/// (safe to send again) from a failure in the middle of an answer.
struct Counted<R> {
    inner: R,
    n: usize,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n;
        Ok(n)
    }
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

    /// Open a connection, check who serves it, and say `Hello`, bounded by
    /// [`HANDSHAKE_TIMEOUT`].
    fn open(&self) -> Result<UnixStream, ConnectError> {
        let mut s =
            connect_timeout(&self.socket, HANDSHAKE_TIMEOUT).map_err(ConnectError::Connect)?;
        let uid = peer_uid(&s).map_err(ConnectError::Connect)?;
        trusted_daemon(uid, &self.socket)
            .map_err(|reason| ConnectError::Untrusted { uid, reason })?;
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(ConnectError::Connect)?;
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            app_id: self.app_id,
            pid: self.pid,
        };
        let bytes = frame::encode(&hello).map_err(ConnectError::Handshake)?;
        // A daemon that refuses this peer answers and closes without
        // reading the hello: the write may fail while its answer waits to
        // be read, so read in any case.
        let sent = send_all(&s, &bytes);
        let answer = frame::read_frame::<_, Response>(&mut s);
        match (answer, sent) {
            (Ok(Response::Hello { version, .. }), Ok(())) if version == PROTOCOL_VERSION => {}
            (Ok(Response::Hello { version, .. }), _) if version != PROTOCOL_VERSION => {
                return Err(ConnectError::Version(version))
            }
            (Ok(Response::Error(rv)), _) => return Err(ConnectError::Refused(rv)),
            (Ok(_), Ok(())) => return Err(ConnectError::Unexpected),
            (_, Err(e)) => return Err(ConnectError::Handshake(e.into())),
            (Err(e), Ok(())) => return Err(ConnectError::Handshake(e)),
        }
        s.set_read_timeout(None).map_err(ConnectError::Connect)?;
        Ok(s)
    }

    /// A pooled connection the daemon has not closed, if any.
    fn take(&self) -> Option<UnixStream> {
        let mut idle = lock(&self.idle);
        while let Some(c) = idle.pop() {
            if still_open(&c) {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, s: UnixStream) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// One round trip. I/O or framing trouble drops the connection (it may
    /// be out of sync) and answers `CKR_DEVICE_ERROR`; `Response::Error(rv)`
    /// becomes `Err(rv)`. A reused connection that turns out closed before
    /// any answer byte is replaced by a fresh one and the request sent
    /// again, once (see the module comment).
    pub fn call(&self, req: &Request) -> CkResult<Response> {
        let mut bytes = frame::encode(req).map_err(|e| match e {
            FrameError::TooLarge(_) => CKR_DATA_LEN_RANGE,
            _ => CKR_GENERAL_ERROR,
        })?;
        let result = self.call_encoded(&bytes);
        // The encoded request may hold a PIN or key material; wiped after
        // the last send (a resend uses the same bytes).
        p11kms_protocol::secret::wipe(&mut bytes, req.carries_secrets());
        result
    }

    /// [`Client::call`] on an encoded request.
    fn call_encoded(&self, bytes: &[u8]) -> CkResult<Response> {
        let _in_flight = InFlight::enter();
        let (conn, reused) = match self.take() {
            Some(c) => (c, true),
            None => (self.open_for_call()?, false),
        };
        let resp = match self.round_trip(&conn, bytes) {
            Ok(r) => r,
            Err(before_answer) if reused && before_answer => {
                drop(conn);
                let fresh = self.open_for_call()?;
                match self.round_trip(&fresh, bytes) {
                    Ok(r) => {
                        self.give_back(fresh);
                        return answer(r);
                    }
                    Err(_) => return Err(CKR_DEVICE_ERROR),
                }
            }
            Err(_) => return Err(CKR_DEVICE_ERROR),
        };
        self.give_back(conn);
        answer(resp)
    }

    /// A new connection for a call; a daemon's refusal keeps its code when
    /// it is one of ours (access denied, connection limit).
    fn open_for_call(&self) -> CkResult<UnixStream> {
        self.open().map_err(|e| match e {
            ConnectError::Refused(rv)
                if rv == vendor::CKR_P11KMS_ACCESS_DENIED
                    || rv == vendor::CKR_P11KMS_QUOTA_EXCEEDED =>
            {
                rv
            }
            _ => CKR_DEVICE_ERROR,
        })
    }

    /// Send `bytes` and read the answer. `Err(true)` when the connection
    /// failed before a single byte of an answer arrived.
    fn round_trip(&self, conn: &UnixStream, bytes: &[u8]) -> Result<Response, bool> {
        if let Err(e) = send_all(conn, bytes) {
            return Err(closed_kind(e.kind()));
        }
        // Bulk requests take the daemon longer: poll longer before
        // sleeping (about 2 µs per KiB on top of the base budget).
        let extra = std::time::Duration::from_micros((bytes.len() as u64 / 512).min(5_000));
        let mut r = Counted {
            inner: SpinRead(conn, spin_budget().saturating_add(extra)),
            n: 0,
        };
        match frame::read_frame::<_, Response>(&mut r) {
            Ok(resp) => Ok(resp),
            Err(FrameError::Closed) => Err(true),
            Err(FrameError::Io(e)) => Err(r.n == 0 && closed_kind(e.kind())),
            Err(_) => Err(false),
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

/// Errors that mean the daemon closed the connection.
fn closed_kind(k: io::ErrorKind) -> bool {
    matches!(
        k,
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// A daemon's answer as the caller sees it.
fn answer(resp: Response) -> CkResult<Response> {
    match resp {
        Response::Error(0) => Err(CKR_GENERAL_ERROR),
        Response::Error(rv) => Err(rv),
        Response::Hello { .. } => Err(CKR_DEVICE_ERROR),
        other => Ok(other),
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
        Some(client) => {
            drop(slot);
            client.end_context();
            Ok(())
        }
        None => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

impl Client {
    /// Let the daemon end this application's context now. Closing a live
    /// connection does that; if the daemon already closed every pooled one
    /// for idleness (it then keeps the context while the process lives), a
    /// short hello-and-close does it instead of leaving the context until
    /// the process exits. Failures are ignored: the daemon may be gone.
    fn end_context(&self) {
        let live = {
            let mut idle = lock(&self.idle);
            let live = idle.iter().any(still_open);
            idle.clear();
            live
        };
        if !live {
            if let Ok(s) = self.open() {
                drop(s);
            }
        }
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
            p11kms_protocol::poll::spin_until_readable(self.0, self.1);
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
