//! Shared by the access, idle, limits and hostile scenarios: a daemon started
//! with a configuration file, the raw wire (handshake, admin, status) for
//! what the module does not expose, child processes under another uid, and
//! what `/proc` says about the daemon.

#![allow(dead_code)] // each test binary uses part of it

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use p11kms_e2e::daemon_path;
use p11kms_protocol::frame::{read_frame, write_frame};
use p11kms_protocol::{
    AdminCommand, AdminReply, DaemonStatus, Request, Response, PROTOCOL_VERSION,
};

/// The uid the "foreign" side runs as.
pub const NOBODY: u32 = 65534;

/// `p11kmsd --config` in a temp dir that other uids may traverse (0755), so
/// that a child running as [`NOBODY`] can reach the socket when the
/// configuration lets it.
pub struct ConfDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ConfDaemon {
    /// Start with `extra` appended to `data_dir`/`socket` (top-level keys
    /// first, then tables). Waits up to 10 s for the socket.
    pub fn start(extra: &str) -> ConfDaemon {
        let d = ConfDaemon::prepare(extra);
        d.spawn_and_wait()
    }

    /// Write the configuration without starting the daemon.
    pub fn prepare(extra: &str) -> ConfDaemon {
        let dir = tempfile::Builder::new()
            .prefix("p11kms-e2e.")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let d = ConfDaemon { dir, child: None };
        std::fs::create_dir_all(d.data_dir()).expect("data dir");
        std::fs::write(
            d.config_path(),
            format!(
                "data_dir = \"{}\"\nsocket = \"{}\"\n{extra}",
                d.data_dir().display(),
                d.socket().display()
            ),
        )
        .expect("config");
        d
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("p11kms.sock")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("p11kmsd.toml")
    }
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Start the daemon process (log to the temp dir).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let child = Command::new(daemon_path())
            .arg("--config")
            .arg(self.config_path())
            .env("P11KMS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start p11kmsd");
        self.child = Some(child);
    }

    fn spawn_and_wait(mut self) -> ConfDaemon {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UnixStream::connect(self.socket()).is_ok() {
                return self;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "p11kmsd exited during start-up ({st}); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("p11kmsd did not listen within 10 s; log:\n{}", self.log());
    }

    /// Wait for the daemon to exit on its own; its status, or None after 10 s.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Points the module of this process at the daemon.
    pub fn export_socket(&self) {
        std::env::set_var("P11KMS_SOCKET", self.socket());
    }
}

impl Drop for ConfDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if std::thread::panicking() {
                eprintln!("--- p11kmsd log:\n{}", self.log());
            }
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// --- the raw wire -------------------------------------------------------------

/// A connection that completed the handshake.
pub fn hello(socket: &Path) -> UnixStream {
    try_hello(socket).unwrap_or_else(|rv| panic!("handshake refused with 0x{rv:x}"))
}

/// Connect and say hello; `Err(rv)` if the daemon answers with an error.
pub fn try_hello(socket: &Path) -> Result<UnixStream, u64> {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut app_id = [0u8; 16];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    app_id[..8].copy_from_slice(&nanos.to_le_bytes());
    app_id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    app_id[12..].copy_from_slice(
        &N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    // The daemon may refuse (and close) before reading the hello.
    let _ = write_frame(
        &mut s,
        &Request::Hello {
            version: PROTOCOL_VERSION,
            app_id,
            pid: std::process::id(),
        },
    );
    match read_frame::<_, Response>(&mut s) {
        Ok(Response::Hello { version, .. }) if version == PROTOCOL_VERSION => Ok(s),
        Ok(Response::Error(rv)) => Err(rv),
        other => panic!("handshake: {other:?}"),
    }
}

/// One admin command with `pin`: `Ok(reply)` or `Err(rv)`.
pub fn admin(s: &mut UnixStream, pin: &str, cmd: AdminCommand) -> Result<AdminReply, u64> {
    write_frame(
        s,
        &Request::Admin {
            instance: "default".into(),
            so_pin: pin.as_bytes().to_vec().into(),
            cmd,
        },
    )
    .expect("send admin");
    match read_frame::<_, Response>(s).expect("admin answer") {
        Response::Admin(AdminReply::Failed { rv, .. }) => Err(rv),
        Response::Admin(r) => Ok(r),
        Response::Error(rv) => Err(rv),
        other => panic!("admin: {other:?}"),
    }
}

/// `Request::Status`: `Ok(status)` or `Err(rv)`.
pub fn status(s: &mut UnixStream) -> Result<DaemonStatus, u64> {
    write_frame(s, &Request::Status).expect("send status");
    match read_frame::<_, Response>(s).expect("status answer") {
        Response::Status(st) => Ok(st),
        Response::Error(rv) => Err(rv),
        other => panic!("status: {other:?}"),
    }
}

/// Whether the daemon closed `s` (end of stream or reset) within `secs`.
pub fn closed_within(s: &mut UnixStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

// --- other uids -------------------------------------------------------------------

/// Run this test binary's ignored test `name` as `uid`/`uid` with `env`,
/// and return its output. The child reports with lines on stdout.
pub fn run_as(uid: u32, name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_remove("P11KMS_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if uid != 0 {
        cmd.uid(uid).gid(uid); // std drops the supplementary groups
    }
    cmd.output().expect("run child test")
}

/// Start this test binary's ignored test `name` as `uid` in the background.
pub fn spawn_as(uid: u32, name: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_remove("P11KMS_SOCKET")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if uid != 0 {
        cmd.uid(uid).gid(uid); // std drops the supplementary groups
    }
    cmd.spawn().expect("spawn child test")
}

/// The child's `key=value` report lines (`RESULT key=value` on stdout).
pub fn results(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // The harness may print "test name ... " before the first report.
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of report `key`, or a panic showing the child's output.
pub fn result(out: &Output, key: &str) -> String {
    results(out)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| {
            panic!(
                "child reported no {key}; status {}\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Print one report line (in a child).
pub fn report(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key}={value}");
}

// --- /proc ----------------------------------------------------------------------------

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:").expect("VmRSS")
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:").expect("Threads")
}

/// Raise this process's soft descriptor limit to its hard limit.
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
