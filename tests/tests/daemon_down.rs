//! No daemon: C_Initialize fails with a defined CKR, quickly, never hangs;
//! and the library is not left half-initialized by the failure.

use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

/// Codes that say "the device is not there" in PKCS#11 terms.
const ACCEPTABLE: &[CK_RV] = &[
    CKR_DEVICE_ERROR,
    CKR_DEVICE_REMOVED,
    CKR_GENERAL_ERROR,
    CKR_FUNCTION_FAILED,
    CKR_TOKEN_NOT_PRESENT,
];

fn init_fails_quickly(raw: &Arc<Raw>, what: &str, limit: Duration) -> CK_RV {
    let r = Arc::clone(raw);
    let t0 = Instant::now();
    let rv = within(limit.as_secs() + 30, what, move || r.initialize());
    let took = t0.elapsed();
    eprintln!("{what}: C_Initialize -> {} in {took:.2?}", rv_name(rv));
    assert!(
        rv != CKR_OK,
        "{what}: C_Initialize succeeded without a daemon"
    );
    assert!(ACCEPTABLE.contains(&rv), "{what}: C_Initialize answered {}, not one of DEVICE_ERROR/DEVICE_REMOVED/GENERAL_ERROR/FUNCTION_FAILED/TOKEN_NOT_PRESENT", rv_name(rv));
    assert!(
        took <= limit,
        "{what}: C_Initialize took {took:.2?} (limit {limit:?})"
    );
    // Still not initialized afterwards.
    let mut n: CK_ULONG = 0;
    let rv2 = p11!(raw, C_GetSlotList, CK_TRUE, std::ptr::null_mut(), &mut n);
    assert_rv(
        rv2,
        CKR_CRYPTOKI_NOT_INITIALIZED,
        &format!("{what}: C_GetSlotList after the failed C_Initialize"),
    );
    rv
}

#[test]
fn no_daemon_missing_socket_then_stale_socket_then_recovery() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = Arc::new(Raw::load());

    // 1. The socket path does not exist.
    let missing = dir.path().join("nobody-here.sock");
    std::env::set_var("P11KMS_SOCKET", &missing);
    init_fails_quickly(&raw, "missing socket", Duration::from_secs(5));

    // 2. A stale socket file (what SIGKILL leaves): connect gets ECONNREFUSED.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists());
    std::env::set_var("P11KMS_SOCKET", &stale);
    init_fails_quickly(&raw, "stale socket", Duration::from_secs(5));

    // 3. A daemon appears: the same loaded library initializes fine.
    let daemon = Daemon::start();
    daemon.export_socket();
    assert_rv(
        raw.initialize(),
        CKR_OK,
        "C_Initialize once the daemon runs",
    );
    let slot = raw.first_slot();
    let mut info = CK_SLOT_INFO::default();
    assert_rv(
        p11!(raw, C_GetSlotInfo, slot, &mut info),
        CKR_OK,
        "C_GetSlotInfo",
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

#[test]
fn silent_peer_does_not_hang_initialize() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = Arc::new(Raw::load());
    // Something accepts connections but never answers the handshake.
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().take(16) {
            match c {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    std::env::set_var("P11KMS_SOCKET", &path);
    init_fails_quickly(
        &raw,
        "peer that never answers the handshake",
        Duration::from_secs(30),
    );
    drop(holder);
}

#[test]
fn daemon_gone_while_initialized_gives_errors_not_hangs() {
    let _g = serial();
    let mut daemon = Daemon::start();
    daemon.export_socket();
    let raw = Arc::new(Raw::load());
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    raw.init_token(slot);
    let s = raw.open_rw(slot);
    raw.login_user(s);
    daemon.kill();
    let r = Arc::clone(&raw);
    let t0 = Instant::now();
    let rv = within(30, "C_GenerateRandom after the daemon died", move || {
        let mut buf = [0u8; 16];
        p11!(r, C_GenerateRandom, s, buf.as_mut_ptr(), 16)
    });
    eprintln!(
        "C_GenerateRandom with the daemon gone -> {} in {:.2?}",
        rv_name(rv),
        t0.elapsed()
    );
    assert!(
        rv != CKR_OK,
        "C_GenerateRandom succeeded with the daemon killed"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    let r = Arc::clone(&raw);
    let rv = within(30, "C_Finalize after the daemon died", move || r.finalize());
    assert_rv(rv, CKR_OK, "C_Finalize with the daemon gone");
}
