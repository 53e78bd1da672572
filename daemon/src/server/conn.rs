//! Serving one handshaken connection on its own OS thread with blocking
//! I/O: read a request, dispatch it, write the answer, until the client
//! closes, misbehaves, or stays idle past `limits.idle_timeout_secs`.
//!
//! Every request is CPU-bound crypto or a synchronous store write, so a
//! dedicated thread answers with the fewest wake-ups (no reactor hop per
//! frame), and a slow request on one connection never holds up another.
//! Threads exist only for connections that completed the handshake
//! (`server::handshake`), and only up to the connection caps.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p11kms_protocol::frame::{self, FrameError};
use p11kms_protocol::poll;
use p11kms_protocol::{secret, Request, Response};

use super::budget::{self, Budget};
use super::counts::Permit;
use crate::access::{App, Peer};
use crate::daemon::{Closed, Daemon};
use crate::dispatch;

/// Read buffer of a connection: small requests arrive in one read; large
/// ones bypass it (reads into the frame buffer are larger than this).
const READ_BUF: usize = 8 * 1024;

/// A frame buffer larger than this is kept only while requests follow each
/// other; a connection that pauses gives it back (see [`serve`]).
const KEEP_BUF: usize = 1024 * 1024;

/// How long a connection holding a large buffer waits for its next request
/// before giving the buffer back.
const LARGE_BUF_GRACE: Duration = Duration::from_millis(100);

/// Serve `stream` for `app` until it ends; `permit` holds the connection's
/// place under the caps until then.
pub fn serve(d: &Daemon, stream: StdStream, app: Arc<App>, permit: Permit, budget: &Arc<Budget>) {
    let l = d.config.limits;
    let request_timeout = Duration::from_secs(l.request_timeout_secs);
    let idle = (l.idle_timeout_secs > 0).then(|| Duration::from_secs(l.idle_timeout_secs));
    let peer = app.peer;
    let why = match stream.try_clone() {
        Ok(read_half) => {
            // A client that stops reading its answers cannot hold the
            // thread forever either.
            let _ = stream.set_write_timeout(Some(request_timeout));
            let reader = ConnReader {
                stream: read_half,
                spin_us: d.config.spin_us,
                idle,
                request_timeout,
                state: State::Waiting(Instant::now()),
            };
            run(d, &app, reader, stream, budget)
        }
        Err(e) => {
            tracing::warn!(pid = peer.pid, "connection setup: {e}");
            Closed::ByClient
        }
    };
    d.detach_as(&app, why);
    drop(permit);
}

fn run(
    d: &Daemon,
    app: &Arc<App>,
    reader: ConnReader,
    mut writer: StdStream,
    budget: &Arc<Budget>,
) -> Closed {
    let peer = app.peer;
    let mut reader = BufReader::with_capacity(READ_BUF, reader);
    let mut buf = Vec::new();
    loop {
        if buf.capacity() > KEEP_BUF && reader.buffer().is_empty() {
            match reader.get_ref().readable_within(LARGE_BUF_GRACE) {
                Ok(true) => {}
                Ok(false) => {
                    // The last request was wiped already if it held
                    // secrets; large buffers go back to the allocator.
                    buf = Vec::new();
                }
                Err(_) => return Closed::ByClient,
            }
        }
        reader.get_mut().expect_request();
        let len = match frame::read_len(&mut reader) {
            Ok(len) => len,
            Err(e) => {
                if reader.get_ref().idle_expired(&e) {
                    tracing::debug!(pid = peer.pid, uid = peer.uid, "idle connection closed");
                    return Closed::Idle;
                }
                log_frame_error(&peer, &e);
                return Closed::ByClient;
            }
        };
        // Held until the answer is written (end of this iteration).
        let _grant = if len > budget::LARGE {
            let deadline = reader.get_ref().frame_deadline();
            let max = d.config.limits.max_request_bytes_in_flight;
            match budget.acquire(peer.uid, len as u64, max, deadline) {
                Some(g) => Some(g),
                None => {
                    tracing::info!(
                        pid = peer.pid,
                        uid = peer.uid,
                        "connection closed: a {len}-byte request found no room within \
                         limits.max_request_bytes_in_flight before its request timeout"
                    );
                    return Closed::ByClient;
                }
            }
        } else {
            None
        };
        if let Err(e) = frame::read_body(&mut reader, &mut buf, len) {
            log_frame_error(&peer, &e);
            return Closed::ByClient;
        }
        let req: Request = match frame::decode(&buf) {
            Ok(r) => r,
            Err(e) => {
                secret::wipe(&mut buf, true);
                log_frame_error(&peer, &e);
                return Closed::ByClient;
            }
        };
        // The request's own copy (PIN fields are `SecretBytes`) lives on;
        // the frame buffer is wiped (PINs, templates, key material).
        let secrets = req.carries_secrets();
        secret::wipe(&mut buf, secrets);
        let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch::handle(d, app, req)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(pid = peer.pid, "request handler panicked");
            Response::Error(pkcs11_sys::CKR_GENERAL_ERROR)
        });
        let mut bytes = match frame::encode(&resp) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("response encoding: {e}");
                frame::encode(&Response::Error(pkcs11_sys::CKR_GENERAL_ERROR)).unwrap_or_default()
            }
        };
        let sent = writer.write_all(&bytes);
        // Responses carry attribute values and plaintext.
        secret::wipe(&mut bytes, secrets);
        if let Err(e) = sent {
            tracing::info!(
                pid = peer.pid,
                uid = peer.uid,
                "connection closed while answering: {e}"
            );
            return Closed::ByClient;
        }
    }
}

pub(super) fn log_frame_error(peer: &Peer, e: &FrameError) {
    match e {
        FrameError::Closed => {}
        _ => tracing::info!(pid = peer.pid, uid = peer.uid, "connection closed: {e}"),
    }
}

/// Where a connection is in its request cycle, for the read deadlines.
#[derive(Clone, Copy)]
enum State {
    /// Waiting for the first byte of the next request since then: bounded
    /// by the idle timeout.
    Waiting(Instant),
    /// Inside a request frame: it must be complete by then.
    InFrame(Instant),
}

/// The connection's reader: polls briefly before sleeping (see
/// [`spin_until_readable`]) and enforces the idle timeout between requests
/// and the request timeout within one (a slow sender loses its connection
/// after `request_timeout_secs`, however it paces its bytes).
struct ConnReader {
    stream: StdStream,
    spin_us: u64,
    idle: Option<Duration>,
    request_timeout: Duration,
    state: State,
}

impl ConnReader {
    fn expect_request(&mut self) {
        self.state = State::Waiting(Instant::now());
    }

    /// Whether `e` ended the connection because no request came within the
    /// idle timeout (rather than a request that did not complete).
    fn idle_expired(&self, e: &FrameError) -> bool {
        matches!(self.state, State::Waiting(_))
            && matches!(e, FrameError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
    }

    /// When the request being read must be complete.
    fn frame_deadline(&self) -> Instant {
        match self.state {
            State::InFrame(deadline) => deadline,
            State::Waiting(_) => Instant::now() + self.request_timeout,
        }
    }

    fn readable_within(&self, wait: Duration) -> std::io::Result<bool> {
        poll::poll_readable(&self.stream, Some(wait))
    }
}

impl Read for ConnReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !spin_until_readable(&self.stream, self.spin_us) {
            let wait = match self.state {
                State::Waiting(since) => self.idle.map(|i| i.saturating_sub(since.elapsed())),
                State::InFrame(deadline) => {
                    Some(deadline.saturating_duration_since(Instant::now()))
                }
            };
            if !poll::poll_readable(&self.stream, wait)? {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
        let n = (&self.stream).read(buf)?;
        if n > 0 {
            if let State::Waiting(_) = self.state {
                self.state = State::InFrame(Instant::now() + self.request_timeout);
            }
        }
        Ok(n)
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

/// Poll for the next request for up to `spin_us` microseconds before
/// sleeping ([`poll::spin_until_readable`]): an application issuing calls
/// back to back (the usual case on a hot path) is caught without a
/// wake-up through the hypervisor. Returns whether the stream was seen
/// readable.
fn spin_until_readable(stream: &StdStream, spin_us: u64) -> bool {
    if spin_us == 0 {
        return false;
    }
    // At most one poller per CPU: with more, pollers would take the CPU
    // from the connection threads that have work.
    if SPINNING.fetch_add(1, Ordering::Relaxed) >= cpus() {
        SPINNING.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    let _done = SpinSlot;
    poll::spin_until_readable(stream, Duration::from_micros(spin_us))
}
