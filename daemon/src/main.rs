//! `p11kmsd`: serve KMS instances to libp11kms.so over a unix socket.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use p11kmsd::config::Config;
use p11kmsd::daemon::Daemon;

/// The p11kms daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Without it, --data-dir and --socket serve
    /// one software instance named "default".
    #[arg(long, conflicts_with_all = ["data_dir", "socket"])]
    config: Option<PathBuf>,
    /// Directory for the database and master key files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Unix socket path the module connects to.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Socket permission bits (octal).
    #[arg(long)]
    socket_mode: Option<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("P11KMS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    harden_process();
    let mut config = match (&args.config, &args.data_dir, &args.socket) {
        (Some(path), _, _) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        },
        (None, Some(d), Some(s)) => Config::zero(d.clone(), s.clone()),
        _ => return fail("give --config FILE, or both --data-dir DIR and --socket PATH"),
    };
    if let Some(m) = args.socket_mode {
        config.socket_mode = m;
    }
    if let Err(e) = config.validate() {
        return fail(&e);
    }
    let mode = match config.socket_mode_bits() {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    p11kmsd::mech::multipart::set_limits(&config.limits);
    raise_fd_limit(&config.limits);
    let socket = config.socket.clone();
    let daemon = match Daemon::open(config) {
        Ok(d) => Arc::new(d),
        Err(e) => return fail(&format!("cannot start: {}", e.msg)),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    rt.block_on(async move {
        let bound = match p11kmsd::server::bind(&socket, mode) {
            Ok(b) => b,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", socket.display())),
        };
        let p11kmsd::server::BoundSocket {
            listener,
            gid,
            file,
        } = bound;
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                file.remove_if_ours();
                return fail(&format!("cannot listen on {}: {e}", socket.display()));
            }
        };
        tracing::info!(
            socket = %socket.display(),
            sm4 = p11kmsd::mech::sm4::implementation(),
            "p11kmsd {} serving",
            env!("CARGO_PKG_VERSION")
        );
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return fail(&format!("signal handler: {e}")),
            };
        let sweeper = daemon.clone();
        let every = std::time::Duration::from_secs(sweeper.config.kms_sweep_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let d = sweeper.clone();
                let _ = tokio::task::spawn_blocking(move || p11kmsd::kms::sweep::sweep(&d)).await;
            }
        });
        tokio::select! {
            _ = p11kmsd::server::serve(daemon.clone(), listener, gid) => {}
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        file.remove_if_ours();
        // Hold the store so no write is in flight, then leave.
        let _store = daemon.quiesce();
        tracing::info!("stopped");
        std::process::exit(0)
    })
}

/// Keep key material out of core dumps, other processes' `ptrace` and swap,
/// as far as the system lets us; each step that cannot be taken says so in
/// the log and the start goes on.
///
/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)` is attempted only
/// when locked memory is unlimited for this process (`CAP_IPC_LOCK` or an
/// infinite `RLIMIT_MEMLOCK`): under a finite limit, `MCL_FUTURE` would make
/// every later allocation beyond it fail — the daemon would die on its first
/// large request. `MCL_ONFAULT` locks pages as they are touched, so thread
/// stacks and reserved buffers cost no more memory than without locking.
fn harden_process() {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{getrlimit, set_dumpable_behavior, DumpableBehavior, Resource};
    match set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        Ok(()) => tracing::debug!(
            "not dumpable: no core dumps, no ptrace by other processes of this user"
        ),
        Err(e) => tracing::warn!(
            "prctl(PR_SET_DUMPABLE, 0) failed ({e}): a core dump could hold key material"
        ),
    }
    let limit = getrlimit(Resource::Memlock).current;
    if has_cap_ipc_lock() || limit.is_none() {
        match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT) {
            Ok(()) => {
                tracing::info!("memory locked (mlockall): key material is never written to swap")
            }
            Err(e) => tracing::warn!("mlockall failed ({e}): memory may be written to swap"),
        }
    } else {
        tracing::info!(
            memlock_limit = limit.unwrap_or(0),
            "memory not locked: RLIMIT_MEMLOCK is finite and there is no CAP_IPC_LOCK \
             (LimitMEMLOCK=infinity in the systemd unit enables it); memory may be written to swap"
        );
    }
}

/// Every connection is a descriptor: raise the soft `RLIMIT_NOFILE` to the
/// hard one, and say so when even that is below what the limits allow.
fn raise_fd_limit(l: &p11kmsd::config::Limits) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let want = (l.max_connections + l.max_handshakes + 64) as u64;
    if lim.current.is_some_and(|c| c < want) && lim.current != lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise RLIMIT_NOFILE: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if now.is_some_and(|c| c < want) {
        tracing::warn!(
            "RLIMIT_NOFILE is {:?}, below limits.max_connections + limits.max_handshakes + 64 = {want}: \
             connections beyond it wait in the listen backlog",
            now
        );
    }
}

/// Whether the effective capability set holds `CAP_IPC_LOCK` (bit 14 of
/// `CapEff` in /proc/self/status).
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn fail(msg: &str) -> std::process::ExitCode {
    eprintln!("p11kmsd: {msg}");
    std::process::ExitCode::FAILURE
}
