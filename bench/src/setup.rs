//! Everything the benchmark sets up in its temp dir: the p11kms daemon, the
//! SoftHSMv2 tokens, the `p11-kit server`, and the three modules loaded
//! side by side in this process.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki_sys::{CKU_SO, CKU_USER, CK_MECHANISM_TYPE, CK_SLOT_ID};

use crate::raw::{Handle, Raw, Sess};

pub const SO_PIN: &str = "bench-so-pin-1";
pub const USER_PIN: &str = "bench-user-pin-1";
/// Token label of p11kms and of the in-process SoftHSMv2 token.
pub const LABEL: &str = "bench";
/// Token label of the SoftHSMv2 token behind `p11-kit server`.
pub const REMOTE_LABEL: &str = "bench-remote";
/// Label of the AES-256 token key every symmetric case uses.
pub const AES_LABEL: &[u8] = b"bench-aes";

pub type Res<T> = Result<T, String>;

/// Formats a cryptoki error as `C_Function: CKR_NAME`.
pub fn ck(e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, f) => format!("C_{f:?}: {}", rv_name(rv)),
        other => other.to_string(),
    }
}

/// `MechanismInvalid` → `CKR_MECHANISM_INVALID`.
pub fn rv_name(rv: &cryptoki::error::RvError) -> String {
    let camel = format!("{rv:?}");
    let mut s = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}

// --- child processes ------------------------------------------------------------

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped. The
/// child also gets SIGTERM if this process dies (`PR_SET_PDEATHSIG`).
pub struct ChildGuard {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Res<ChildGuard> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{name}: log {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{name}: log fd: {e}"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; it runs in the forked child
        // before exec and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    /// Like `spawn`, but with stdin and stdout as pipes handed back to the
    /// caller (stderr goes to `log`): the mixed64 worker processes.
    pub fn spawn_piped(
        name: &str,
        mut cmd: Command,
        log: PathBuf,
    ) -> Res<(ChildGuard, ChildStdin, ChildStdout)> {
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{name}: log {}: {e}", log.display()))?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        // SAFETY: as in `spawn`.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // from here on, dropping the guard stops the child
        let g = ChildGuard {
            name: name.to_string(),
            child: Some(child),
            log,
        };
        match (stdin, stdout) {
            (Some(i), Some(o)) => Ok((g, i, o)),
            _ => Err(format!("{name}: no stdin/stdout pipe")),
        }
    }

    /// Waits up to `timeout` for the child to exit on its own; true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            match self.child.as_mut().map(|c| c.try_wait()) {
                None => return true,
                Some(Ok(Some(_))) => {
                    self.child = None;
                    return true;
                }
                Some(Err(_)) => return false,
                Some(Ok(None)) => {}
            }
            if t0.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits until `path` exists (the child's socket), or fails with the log.
    pub fn wait_for(&mut self, path: &Path, timeout: Duration) -> Res<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if path.exists() {
                return Ok(t0.elapsed());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "{} exited during start-up ({st}); log:\n{}",
                        self.name,
                        tail(&self.log)
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!(
            "{}: {} did not appear within {:?}; log:\n{}",
            self.name,
            path.display(),
            timeout,
            tail(&self.log)
        ))
    }

    /// SIGTERM, up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn tail(log: &Path) -> String {
    let s = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// --- the daemon --------------------------------------------------------------------

pub struct Daemon {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub guard: Option<ChildGuard>,
}

impl Daemon {
    pub fn new(exe: PathBuf, dir: &Path) -> Res<Daemon> {
        let data_dir = dir.join("p11kms-data");
        fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        Ok(Daemon {
            exe,
            data_dir,
            socket: dir.join("p11kms.sock"),
            log: dir.join("p11kmsd.log"),
            guard: None,
        })
    }

    /// Starts p11kmsd and returns how long its socket took to appear.
    pub fn start(&mut self) -> Res<Duration> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--socket")
            .arg(&self.socket)
            .env("P11KMS_LOG", "warn");
        let t0 = Instant::now();
        let mut g = ChildGuard::spawn("p11kmsd", cmd, self.log.clone())?;
        g.wait_for(&self.socket, Duration::from_secs(60))?;
        let took = t0.elapsed();
        self.guard = Some(g);
        Ok(took)
    }

    pub fn stop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.stop();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.as_ref().and_then(|g| g.pid())
    }
}

/// VmRSS of a process in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// --- SoftHSMv2 and p11-kit ------------------------------------------------------------

/// Writes a SOFTHSM2_CONF with its own token directory and initializes a
/// token labelled `label` in it with `softhsm2-util`. Returns the conf path.
pub fn softhsm_token(dir: &Path, name: &str, label: &str) -> Res<PathBuf> {
    let tokens = dir.join(format!("{name}-tokens"));
    fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    let conf = dir.join(format!("{name}.conf"));
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ])
        .output()
        .map_err(|e| format!("cannot run softhsm2-util (apt-get install softhsm2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "softhsm2-util --init-token failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(conf)
}

/// `p11-kit server -f --provider <softhsm> -n <sock> pkcs11:token=<label>`,
/// with SoftHSMv2 reading `conf`. Returns the guard and the socket path.
pub fn p11kit_server(dir: &Path, softhsm: &Path, conf: &Path) -> Res<(ChildGuard, PathBuf)> {
    let sock = dir.join("p11kit.sock");
    let mut cmd = Command::new("p11-kit");
    cmd.env("SOFTHSM2_CONF", conf)
        .arg("server")
        .arg("-f")
        .arg("--provider")
        .arg(softhsm)
        .arg("-n")
        .arg(&sock)
        .arg(format!("pkcs11:token={REMOTE_LABEL}"));
    let mut g = ChildGuard::spawn("p11-kit server", cmd, dir.join("p11kit.log"))?;
    g.wait_for(&sock, Duration::from_secs(20))?;
    Ok((g, sock))
}

// --- a loaded module --------------------------------------------------------------------

/// One system under test: a module loaded and initialized in this process
/// and its token's slot. Shared by reference with the worker threads (each
/// opens its own session).
pub struct Peer {
    pub name: &'static str,
    pub module: PathBuf,
    pub raw: Raw,
    pub slot: CK_SLOT_ID,
    pub mechs: Vec<CK_MECHANISM_TYPE>,
    pub version: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.raw.finalize();
    }
}

/// Loads `module`, initializes it, and finds (or, with `init_token`,
/// initializes, with its user PIN) the token labelled `label`.
pub fn open_peer(name: &'static str, module: &Path, label: &str, init_token: bool) -> Res<Peer> {
    let raw = Raw::load(module)?;
    raw.initialize()
        .map_err(|e| format!("{name}: C_Initialize: {}", ck(&e)))?;
    // from here on, dropping `peer` finalizes
    let mut peer = Peer {
        name,
        module: module.to_path_buf(),
        raw,
        slot: 0,
        mechs: Vec::new(),
        version: String::new(),
    };
    let raw = &peer.raw;
    let version = raw
        .info()
        .map_err(|e| format!("{name}: C_GetInfo: {}", ck(&e)))?;
    let slots = raw
        .slots_with_token()
        .map_err(|e| format!("{name}: C_GetSlotList: {}", ck(&e)))?;
    let slot = if init_token {
        let slot = *slots
            .first()
            .ok_or_else(|| format!("{name}: no slot with a token"))?;
        raw.init_token(slot, SO_PIN, label)
            .map_err(|e| format!("{name}: C_InitToken: {}", ck(&e)))?;
        let s = raw
            .open(slot)
            .map_err(|e| format!("{name}: C_OpenSession: {}", ck(&e)))?;
        s.login(CKU_SO, SO_PIN)
            .map_err(|e| format!("{name}: C_Login(SO): {}", ck(&e)))?;
        s.init_pin(USER_PIN)
            .map_err(|e| format!("{name}: C_InitPIN: {}", ck(&e)))?;
        s.logout()
            .map_err(|e| format!("{name}: C_Logout: {}", ck(&e)))?;
        s.close()
            .map_err(|e| format!("{name}: C_CloseSession: {}", ck(&e)))?;
        slot
    } else {
        let mut found = None;
        for s in slots {
            let l = raw
                .token_label(s)
                .map_err(|e| format!("{name}: C_GetTokenInfo: {}", ck(&e)))?;
            if l == label {
                found = Some(s);
                break;
            }
        }
        found.ok_or_else(|| format!("{name}: no token labelled {label:?}"))?
    };
    let mechs = raw
        .mechanisms(slot)
        .map_err(|e| format!("{name}: C_GetMechanismList: {}", ck(&e)))?;
    peer.slot = slot;
    peer.mechs = mechs;
    peer.version = version;
    Ok(peer)
}

/// Opens the peer's main session and logs the user in on it. It must stay
/// open for the whole run: the login state ends with the application's last
/// session. Makes the AES-256 token key every symmetric case uses.
pub fn main_session(peer: &Peer) -> Res<(Sess<'_>, Handle)> {
    let name = peer.name;
    let main = peer
        .raw
        .open(peer.slot)
        .map_err(|e| format!("{name}: C_OpenSession: {}", ck(&e)))?;
    main.login(CKU_USER, USER_PIN)
        .map_err(|e| format!("{name}: C_Login(USER): {}", ck(&e)))?;
    let aes = main
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Label(AES_LABEL.to_vec()),
            ],
        )
        .map_err(|e| format!("{name}: AES-256 token key: {}", ck(&e)))?;
    Ok((main, aes))
}
