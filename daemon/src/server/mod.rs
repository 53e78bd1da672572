//! The socket side: accept connections, decide from the peer's credentials
//! whether they may connect at all, run the version handshake on the tokio
//! reactor under a timeout, then hand each handshaken connection to its own
//! serving thread ([`conn`]).
//!
//! What a connection costs before it is handshaken is bounded and small: a
//! refused peer is answered and closed in the accept loop (no task, no
//! thread); an accepted one gets a tokio task whose only buffer is the
//! fixed [`MAX_HELLO`] bytes of the handshake, for at most
//! `limits.handshake_timeout_ms`, within `limits.max_handshakes[_per_uid]`.
//! Only then, within `limits.max_connections[_per_uid]`, does it get a
//! thread (docs/security.md, "Hostile clients").

mod budget;
mod conn;
mod counts;
pub mod socket;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p11kms_protocol::frame::{self, FrameError, MAX_HELLO};
use p11kms_protocol::{vendor, Request, Response, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::access::{rules, AppKey, Peer};
use crate::daemon::Daemon;
pub use counts::Counts;
pub use socket::{bind, BoundSocket, SocketFile};

/// How often parked applications are checked for a process that is gone.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// Accept connections forever. `socket_gid` is the socket file's group (the
/// default `allowed_gids`).
pub async fn serve(d: Arc<Daemon>, listener: tokio::net::UnixListener, socket_gid: u32) {
    let counts = Arc::new(Counts::default());
    let budget = Arc::new(budget::Budget::default());
    let reaper = d.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        loop {
            tick.tick().await;
            let d = reaper.clone();
            let _ = tokio::task::spawn_blocking(move || d.reap_parked()).await;
        }
    });
    let refusals = RateLimited::default();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE/ENFILE: the connection waits in the backlog.
                refusals.warn(format_args!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
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
                refusals.warn(format_args!(
                    "peer credentials unavailable, connection refused: {e}"
                ));
                continue;
            }
        };
        if !rules::may_connect(&d.config, &peer, socket_gid) {
            refusals.warn(format_args!(
                "connection of uid {} (gid {}, pid {}) refused: not in allowed_uids/allowed_gids",
                peer.uid, peer.gid, peer.pid
            ));
            refuse(&stream, vendor::CKR_P11KMS_ACCESS_DENIED);
            continue;
        }
        let permit = match counts.handshake(peer.uid, &d.config.limits) {
            Ok(p) => p,
            Err(full) => {
                refusals.warn(format_args!(
                    "connection of uid {} (pid {}) refused: {full} reached",
                    peer.uid, peer.pid
                ));
                refuse(&stream, vendor::CKR_P11KMS_QUOTA_EXCEEDED);
                continue;
            }
        };
        let d = d.clone();
        tokio::spawn(handshake(
            d,
            stream,
            peer,
            permit,
            refusals.clone(),
            budget.clone(),
        ));
    }
}

/// Answer a refused connection with one error frame, without waiting for
/// its handshake, and close it.
fn refuse(stream: &UnixStream, rv: u64) {
    if let Ok(bytes) = frame::encode(&Response::Error(rv)) {
        let _ = stream.try_write(&bytes);
    }
}

/// The handshake of one accepted connection, on the reactor: read the
/// `Hello` (at most [`MAX_HELLO`] bytes, within the handshake timeout),
/// check the version, take a serving place, join the application, answer,
/// and start the serving thread.
async fn handshake(
    d: Arc<Daemon>,
    mut stream: UnixStream,
    peer: Peer,
    mut permit: counts::Permit,
    refusals: RateLimited,
    budget: Arc<budget::Budget>,
) {
    let limits = d.config.limits;
    let timeout = Duration::from_millis(limits.handshake_timeout_ms);
    let hello = match tokio::time::timeout(timeout, read_hello(&mut stream)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::info!(
                pid = peer.pid,
                uid = peer.uid,
                "no handshake within {timeout:?}; connection closed"
            );
            return;
        }
    };
    let (version, app_id) = match hello {
        Ok(Request::Hello {
            version, app_id, ..
        }) => (version, app_id),
        Ok(_) => {
            tracing::warn!(
                pid = peer.pid,
                "first frame was not a handshake; connection closed"
            );
            return;
        }
        Err(e) => {
            conn::log_frame_error(&peer, &e);
            return;
        }
    };
    if version != PROTOCOL_VERSION {
        tracing::warn!(
            pid = peer.pid,
            client = version,
            ours = PROTOCOL_VERSION,
            "protocol version mismatch; connection closed"
        );
        let _ = answer(&mut stream, our_hello(), timeout).await;
        return;
    }
    if let Err(full) = permit.promote(&limits) {
        refusals.warn(format_args!(
            "connection of uid {} (pid {}) refused after its handshake: {full} reached",
            peer.uid, peer.pid
        ));
        let _ = answer(
            &mut stream,
            Response::Error(vendor::CKR_P11KMS_QUOTA_EXCEEDED),
            timeout,
        )
        .await;
        return;
    }
    // The kernel's pid, not the one the client claims, identifies the app.
    let key = AppKey {
        app_id,
        uid: peer.uid,
        pid: peer.pid,
    };
    let app = match d.attach_checked(key, peer) {
        Ok(a) => a,
        Err(e) => {
            refusals.warn(format_args!(
                "connection of pid {} refused: {}",
                peer.pid, e.msg
            ));
            let _ = answer(&mut stream, Response::Error(e.rv), timeout).await;
            return;
        }
    };
    if !answer(&mut stream, our_hello(), timeout).await {
        d.detach(&app);
        return;
    }
    let std_stream = match stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("connection setup: {e}");
            d.detach(&app);
            return;
        }
    };
    let d2 = d.clone();
    let app2 = app.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("conn-{}", peer.pid))
        .spawn(move || conn::serve(&d2, std_stream, app2, permit, &budget));
    if let Err(e) = spawned {
        tracing::warn!("cannot start connection thread: {e}");
        d.detach(&app);
    }
}

/// Write one frame within the handshake timeout.
async fn answer(stream: &mut UnixStream, resp: Response, timeout: Duration) -> bool {
    let Ok(bytes) = frame::encode(&resp) else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, stream.write_all(&bytes)).await,
        Ok(Ok(()))
    )
}

fn our_hello() -> Response {
    Response::Hello {
        version: PROTOCOL_VERSION,
        server: format!("p11kmsd {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Read the handshake frame into a fixed buffer of [`MAX_HELLO`] bytes.
async fn read_hello(stream: &mut UnixStream) -> Result<Request, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match stream.read(&mut prefix[got..]).await? {
            0 if got == 0 => return Err(FrameError::Closed),
            0 => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            n => got += n,
        }
    }
    let len = frame::payload_len(prefix, MAX_HELLO)?;
    let mut buf = [0u8; MAX_HELLO];
    stream.read_exact(&mut buf[..len]).await?;
    frame::decode(&buf[..len])
}

/// Warnings about refused connections, at most one line per second with a
/// count of those left out: a flood of refused peers must not flood the log.
#[derive(Clone, Default)]
struct RateLimited {
    inner: Arc<RateInner>,
}

#[derive(Default)]
struct RateInner {
    /// Milliseconds since `epoch` of the last line written.
    last_ms: AtomicU64,
    skipped: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl RateLimited {
    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        let epoch = *self.inner.epoch.get_or_init(Instant::now);
        let now = epoch.elapsed().as_millis() as u64 + 1_000;
        let last = self.inner.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000
            && self
                .inner
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let skipped = self.inner.skipped.swap(0, Ordering::Relaxed);
            if skipped > 0 {
                tracing::warn!("{msg} (and {skipped} more refusals not logged)");
            } else {
                tracing::warn!("{msg}");
            }
        } else {
            self.inner.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
