//! The socket side: accept connections, read peer credentials, run the
//! version handshake, then serve one request at a time per connection.
//!
//! The listener and signal handling run on tokio; each accepted connection
//! is served by its own OS thread with blocking I/O. Every request is
//! CPU-bound crypto or a synchronous store write, so a dedicated thread
//! answers with the fewest wake-ups (no reactor hop per frame), and a slow
//! request on one connection never holds up another.

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use p11kms_protocol::frame::{self, FrameError};
use p11kms_protocol::{Request, Response, PROTOCOL_VERSION};

use crate::access::{AppKey, Peer};
use crate::daemon::Daemon;
use crate::dispatch;

/// Bind the socket: refuse if another daemon answers on it, replace a
/// stale file, apply the configured mode.
pub fn bind(path: &Path, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if StdStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another daemon is serving {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

/// Accept connections forever.
pub async fn serve(d: Arc<Daemon>, listener: tokio::net::UnixListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
            },
            Err(e) => {
                tracing::warn!("peer credentials unavailable, connection refused: {e}");
                continue;
            }
        };
        let std_stream = match stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|_| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("connection setup: {e}");
                continue;
            }
        };
        let d = d.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{}", peer.pid))
            .spawn(move || serve_connection(&d, std_stream, peer));
        if let Err(e) = spawned {
            tracing::warn!("cannot start connection thread: {e}");
        }
    }
}

/// Serve one connection until it closes or misbehaves. Bad frames close
/// this connection and nothing else.
pub fn serve_connection(d: &Daemon, stream: StdStream, peer: Peer) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(
        64 * 1024,
        SpinRead {
            stream: read_half,
            spin_us: d.config.spin_us,
        },
    );
    let mut writer = stream;
    let mut buf = Vec::new();

    // Handshake.
    let hello =
        frame::read_payload(&mut reader, &mut buf).and_then(|_| frame::decode::<Request>(&buf));
    let app_id = match hello {
        Ok(Request::Hello {
            version, app_id, ..
        }) => {
            let reply = Response::Hello {
                version: PROTOCOL_VERSION,
                server: format!("p11kmsd {}", env!("CARGO_PKG_VERSION")),
            };
            if frame::write_frame(&mut writer, &reply).is_err() {
                return;
            }
            if version != PROTOCOL_VERSION {
                tracing::warn!(
                    pid = peer.pid,
                    client = version,
                    ours = PROTOCOL_VERSION,
                    "protocol version mismatch; connection closed"
                );
                return;
            }
            app_id
        }
        Ok(_) => {
            tracing::warn!(
                pid = peer.pid,
                "first frame was not a handshake; connection closed"
            );
            return;
        }
        Err(e) => {
            log_frame_error(&peer, &e);
            return;
        }
    };
    // The kernel's pid, not the one the client claims, identifies the app.
    let app = d.attach(
        AppKey {
            app_id,
            uid: peer.uid,
            pid: peer.pid,
        },
        peer,
    );

    loop {
        if let Err(e) = frame::read_payload(&mut reader, &mut buf) {
            log_frame_error(&peer, &e);
            break;
        }
        let req: Request = match frame::decode(&buf) {
            Ok(r) => r,
            Err(e) => {
                log_frame_error(&peer, &e);
                break;
            }
        };
        let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch::handle(d, &app, req)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(pid = peer.pid, "request handler panicked");
            Response::Error(pkcs11_sys::CKR_GENERAL_ERROR)
        });
        let bytes = match frame::encode(&resp) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("response encoding: {e}");
                frame::encode(&Response::Error(pkcs11_sys::CKR_GENERAL_ERROR)).unwrap_or_default()
            }
        };
        if writer.write_all(&bytes).is_err() {
            break;
        }
    }
    d.detach(&app);
}

fn log_frame_error(peer: &Peer, e: &FrameError) {
    match e {
        FrameError::Closed => {}
        _ => tracing::info!(pid = peer.pid, uid = peer.uid, "connection closed: {e}"),
    }
}

/// Connection threads currently polling.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// Releases a polling slot when dropped.
struct SpinSlot;

impl Drop for SpinSlot {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::Relaxed);
    }
}

fn cpus() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A socket reader that polls briefly before every blocking read (see
/// [`spin_until_readable`]); large frames arrive in several pieces, and each
/// piece would otherwise cost a sleep and a wake-up.
struct SpinRead {
    stream: StdStream,
    spin_us: u64,
}

impl std::io::Read for SpinRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        spin_until_readable(&self.stream, self.spin_us);
        self.stream.read(buf)
    }
}

/// Poll for the next request for up to `spin_us` microseconds (yielding the
/// CPU between polls) before sleeping in `read()`. On virtual machines a
/// sleeping thread is woken through the hypervisor, which costs tens of
/// microseconds per call; an application issuing calls back to back (the
/// usual case on a hot path) is caught without that wake-up.
fn spin_until_readable(stream: &StdStream, spin_us: u64) {
    if spin_us == 0 {
        return;
    }
    // At most one poller per CPU: with more, pollers would take the CPU
    // from the connection threads that have work.
    if SPINNING.fetch_add(1, Ordering::Relaxed) >= cpus() {
        SPINNING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let _done = SpinSlot;
    let budget = std::time::Duration::from_micros(spin_us);
    let start = std::time::Instant::now();
    loop {
        let mut fds = [rustix::event::PollFd::new(
            stream,
            rustix::event::PollFlags::IN,
        )];
        let ready = rustix::event::poll(
            &mut fds,
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        );
        if !matches!(ready, Ok(0)) || start.elapsed() >= budget {
            return;
        }
        std::thread::yield_now();
    }
}
