//! Who may connect and administer, through the real module and the raw wire
//! (issue 10, findings 3, 4 and the module half of 9). The "foreign" side
//! runs as uid 65534 in a child process (this test binary re-run with one
//! ignored `child_*` test); the parent runs as root, which administers.

mod support;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;
use p11kms_protocol::{vendor, AdminCommand};
use support::*;

const WRONG_SO_PIN: &str = "wrong-so-pin-0";

fn token_ready(socket: &std::path::Path) {
    std::env::set_var("P11KMS_SOCKET", socket);
    let raw = module();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    raw.init_token(raw.first_slot());
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

const SO_LOCK_FLAGS: CK_FLAGS = CKF_SO_PIN_LOCKED | CKF_SO_PIN_FINAL_TRY | CKF_SO_PIN_COUNT_LOW;

/// Finding 4: a uid outside `allowed_uids` is refused at accept, before its
/// handshake, with `CKR_P11KMS_ACCESS_DENIED`; `C_Initialize` fails with a
/// log line saying so.
#[test]
fn foreign_uid_is_refused_at_accept() {
    let _g = serial();
    let d = ConfDaemon::start("socket_mode = \"0666\"\nallowed_uids = [12345]\n");
    let sock = d.socket().display().to_string();
    let out = run_as(NOBODY, "child_initialize", &[("P11KMS_SOCKET", &sock)]);
    assert_eq!(
        result(&out, "initialize"),
        format!("{CKR_DEVICE_ERROR:#x}"),
        "C_Initialize of uid 65534"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CKR_P11KMS_ACCESS_DENIED"),
        "module log line names the refusal: {stderr}"
    );
    assert!(
        d.log().contains("uid 65534") && d.log().contains("not in allowed_uids"),
        "daemon logs the refusal:\n{}",
        d.log()
    );
    // The same daemon serves root.
    token_ready(&d.socket());
}

/// Findings 3 and 4: an allowed but non-admin uid cannot initialize the
/// token, log in as SO, run admin commands or read the daemon status —
/// and none of its wrong SO PINs count toward the SO lockout.
#[test]
fn foreign_uid_cannot_administer_or_lock_the_so_pin() {
    let _g = serial();
    let d = ConfDaemon::start(
        "socket_mode = \"0666\"\nallowed_uids = [65534]\n[[instance]]\nname = \"default\"\nmax_pin_failures = 3\n",
    );
    token_ready(&d.socket());
    let sock = d.socket().display().to_string();
    let out = run_as(NOBODY, "child_foreign_client", &[("P11KMS_SOCKET", &sock)]);
    let denied = format!("{:#x}", vendor::CKR_P11KMS_ACCESS_DENIED);
    assert_eq!(result(&out, "initialize"), "0x0", "uid 65534 may connect");
    assert_eq!(result(&out, "init_token"), denied, "C_InitToken");
    assert_eq!(result(&out, "login_so"), denied, "C_Login(CKU_SO), 5 tries");
    assert_eq!(result(&out, "admin"), denied, "admin command, 5 tries");
    assert_eq!(result(&out, "status"), denied, "daemon status");
    assert_eq!(result(&out, "login_user"), "0x0", "C_Login(CKU_USER)");
    assert_eq!(result(&out, "random"), "0x0", "C_GenerateRandom");

    // Nothing was counted: root logs in as SO and administers.
    std::env::set_var("P11KMS_SOCKET", d.socket());
    let raw = module();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    assert_eq!(
        raw.token_info(slot).flags & SO_LOCK_FLAGS,
        0,
        "SO PIN flags"
    );
    let s = raw.open_rw(slot);
    let rv = p11!(
        raw,
        C_Login,
        s,
        CKU_SO,
        SO_PIN.as_ptr() as *mut u8,
        SO_PIN.len() as CK_ULONG
    );
    assert_rv(rv, CKR_OK, "C_Login(CKU_SO) as root with the right PIN");
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
    let mut c = hello(&d.socket());
    admin(&mut c, SO_PIN, AdminCommand::KeyList).expect("admin as root");
    status(&mut c).expect("status as root");
}

/// Finding 3: wrong admin PINs from an administrator slow it down (the
/// delay doubles per failure) instead of locking the SO PIN: after more
/// wrong PINs than `max_pin_failures`, the right one still works.
#[test]
fn wrong_admin_pins_back_off_instead_of_locking() {
    let _g = serial();
    let d = ConfDaemon::start("[[instance]]\nname = \"default\"\nmax_pin_failures = 2\n");
    token_ready(&d.socket());
    let mut c = hello(&d.socket());
    for i in 0..3 {
        assert_eq!(
            admin(&mut c, WRONG_SO_PIN, AdminCommand::KeyList).err(),
            Some(CKR_PIN_INCORRECT),
            "wrong PIN #{}",
            i + 1
        );
    }
    admin(&mut c, SO_PIN, AdminCommand::KeyList).expect("right PIN after 3 wrong ones");
    std::env::set_var("P11KMS_SOCKET", d.socket());
    let raw = module();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    assert_eq!(
        raw.token_info(raw.first_slot()).flags & SO_LOCK_FLAGS,
        0,
        "SO PIN flags"
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

/// Finding 9 (module side): the module sends nothing to a socket served by
/// a uid that is not root, its own, the one named by `P11KMS_DAEMON_UID`,
/// or the owner of a socket directory nobody else may write to.
#[test]
fn module_talks_only_to_a_trusted_daemon_uid() {
    let _g = serial();
    let base = tempfile::Builder::new()
        .prefix("p11kms-e2e.")
        .tempdir()
        .expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // A directory anyone may write to: the squatter's socket is refused.
    let open_dir = base.path().join("open");
    std::fs::create_dir(&open_dir).expect("mkdir");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let squat = open_dir.join("p11kms.sock");
    let fake = FakeDaemon::start(&squat);
    let sock = squat.display().to_string();
    let out = run_as(0, "child_initialize", &[("P11KMS_SOCKET", &sock)]);
    assert_eq!(result(&out, "initialize"), format!("{CKR_DEVICE_ERROR:#x}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("served by uid 65534"),
        "module log: {stderr}"
    );
    assert_eq!(fake.requests(), 0, "no hello reached the untrusted daemon");
    let out = run_as(
        0,
        "child_initialize",
        &[("P11KMS_SOCKET", &sock), ("P11KMS_DAEMON_UID", "65534")],
    );
    assert_eq!(
        result(&out, "initialize"),
        "0x0",
        "uid named by P11KMS_DAEMON_UID"
    );
    drop(fake);

    // The daemon's own directory (owned by it, not writable by others).
    let own_dir = base.path().join("own");
    std::fs::create_dir(&own_dir).expect("mkdir");
    std::os::unix::fs::chown(&own_dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let owned = own_dir.join("p11kms.sock");
    let fake = FakeDaemon::start(&owned);
    let sock = owned.display().to_string();
    let out = run_as(0, "child_initialize", &[("P11KMS_SOCKET", &sock)]);
    assert_eq!(
        result(&out, "initialize"),
        "0x0",
        "owner of a 0755 socket directory"
    );
    drop(fake);
}

/// A p11kmsd impostor running as uid 65534 that answers every handshake.
struct FakeDaemon {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl FakeDaemon {
    fn start(socket: &std::path::Path) -> FakeDaemon {
        let child = spawn_as(
            NOBODY,
            "child_fake_daemon",
            &[("FAKE_SOCKET", &socket.display().to_string())],
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "fake daemon did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        FakeDaemon {
            child,
            socket: socket.to_path_buf(),
        }
    }

    /// Handshakes the impostor answered (it counts them in a file).
    fn requests(&self) -> usize {
        std::fs::read_to_string(self.socket.with_extension("count"))
            .map(|s| s.len())
            .unwrap_or(0)
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- child roles (run by the tests above through `run_as`/`spawn_as`) ------------

/// Child: `C_Initialize` and report its code.
#[test]
#[ignore = "child role of the access tests"]
fn child_initialize() {
    let raw = module();
    let rv = raw.initialize();
    report("initialize", format!("{rv:#x}"));
    if rv == CKR_OK {
        raw.finalize();
    }
}

/// Child as uid 65534: try everything an administrator may do, and what
/// any allowed peer may do.
#[test]
#[ignore = "child role of the access tests"]
fn child_foreign_client() {
    let raw = module();
    let rv = raw.initialize();
    report("initialize", format!("{rv:#x}"));
    assert_eq!(rv, CKR_OK);
    let slot = raw.first_slot();
    let mut label = [b' '; 32];
    label[..4].copy_from_slice(b"mine");
    let rv = p11!(
        raw,
        C_InitToken,
        slot,
        WRONG_SO_PIN.as_ptr() as *mut u8,
        WRONG_SO_PIN.len() as CK_ULONG,
        label.as_mut_ptr()
    );
    report("init_token", format!("{rv:#x}"));
    let s = raw.open_rw(slot);
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(p11!(
            raw,
            C_Login,
            s,
            CKU_SO,
            WRONG_SO_PIN.as_ptr() as *mut u8,
            WRONG_SO_PIN.len() as CK_ULONG
        ));
    }
    codes.dedup();
    report(
        "login_so",
        codes
            .iter()
            .map(|c| format!("{c:#x}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let rv = p11!(
        raw,
        C_Login,
        s,
        CKU_USER,
        USER_PIN.as_ptr() as *mut u8,
        USER_PIN.len() as CK_ULONG
    );
    report("login_user", format!("{rv:#x}"));
    let mut buf = [0u8; 16];
    let rv = p11!(raw, C_GenerateRandom, s, buf.as_mut_ptr(), 16);
    report("random", format!("{rv:#x}"));
    let socket = std::path::PathBuf::from(std::env::var_os("P11KMS_SOCKET").expect("socket"));
    let mut c = hello(&socket);
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            admin(&mut c, WRONG_SO_PIN, AdminCommand::KeyList)
                .err()
                .unwrap_or(0),
        );
    }
    codes.dedup();
    report(
        "admin",
        codes
            .iter()
            .map(|c| format!("{c:#x}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    report(
        "status",
        format!("{:#x}", status(&mut c).err().unwrap_or(0)),
    );
    raw.finalize();
}

/// Child as uid 65534: answer handshakes on `FAKE_SOCKET` like p11kmsd,
/// counting each in `<socket>.count`, until killed.
#[test]
#[ignore = "child role of the access tests"]
fn child_fake_daemon() {
    use p11kms_protocol::frame::{read_frame, write_frame};
    use p11kms_protocol::{Request, Response, PROTOCOL_VERSION};
    let path = std::path::PathBuf::from(std::env::var_os("FAKE_SOCKET").expect("FAKE_SOCKET"));
    let count = path.with_extension("count");
    let l = std::os::unix::net::UnixListener::bind(&path).expect("bind fake socket");
    for c in l.incoming() {
        let Ok(mut c) = c else { continue };
        let count = count.clone();
        std::thread::spawn(move || {
            if let Ok(Request::Hello { .. }) = read_frame::<_, Request>(&mut c) {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&count)
                {
                    let _ = f.write_all(b"h");
                }
                let _ = write_frame(
                    &mut c,
                    &Response::Hello {
                        version: PROTOCOL_VERSION,
                        server: "impostor".into(),
                    },
                );
                while let Ok(_req) = read_frame::<_, Request>(&mut c) {
                    let _ = write_frame(&mut c, &Response::Error(CKR_GENERAL_ERROR));
                }
            }
        });
    }
}
