//! Bounds on what one client may hold or how long it may take (issue 10,
//! "Hostile clients"): handshake, idle and request timeouts, connection
//! caps per uid, sessions per application, buffered multi-part input. Each
//! through the real module or the raw socket against a daemon configured
//! with small limits.

mod support;

use std::io::Write;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use p11kms_e2e::sys::{CKR_DEVICE_ERROR, CKR_OK};
use p11kms_e2e::*;
use p11kms_protocol::vendor;
use support::*;

/// A connection that never says hello, one that says hello and then
/// nothing, and one that starts a request and stops: the daemon closes all
/// three on its own (handshake, idle and request timeouts).
#[test]
fn silent_slow_and_idle_connections_are_closed() {
    let _g = serial();
    let d = ConfDaemon::start(
        "[limits]\nhandshake_timeout_ms = 300\nidle_timeout_secs = 1\nrequest_timeout_secs = 1\n",
    );
    let mut no_hello = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    let mut idle = hello(&d.socket());
    let mut slow = hello(&d.socket());
    // 100 bytes announced, 1 sent, then one more byte every 300 ms.
    slow.write_all(&100u32.to_le_bytes()).expect("prefix");
    slow.write_all(&[0]).expect("byte");
    let trickle = {
        let mut s = slow.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..30 {
                std::thread::sleep(std::time::Duration::from_millis(300));
                if s.write_all(&[0]).is_err() {
                    return;
                }
            }
        })
    };
    assert!(closed_within(&mut no_hello, 10), "no handshake: not closed");
    assert!(
        closed_within(&mut idle, 10),
        "idle after the handshake: not closed"
    );
    assert!(
        closed_within(&mut slow, 10),
        "request trickling in: not closed"
    );
    let _ = trickle.join();
    // The daemon still serves.
    let mut c = hello(&d.socket());
    assert!(status(&mut c).is_ok());
}

/// `max_connections_per_uid` and `max_handshakes_per_uid`: the connection
/// past the cap is answered `CKR_P11KMS_QUOTA_EXCEEDED` and closed; a place
/// freed is usable again.
#[test]
fn connections_per_uid_are_capped() {
    let _g = serial();
    let d = ConfDaemon::start(
        "[limits]\nmax_connections_per_uid = 3\nmax_handshakes_per_uid = 2\nhandshake_timeout_ms = 60000\n",
    );
    let mut held: Vec<_> = (0..3).map(|_| hello(&d.socket())).collect();
    assert_eq!(
        try_hello(&d.socket()).err(),
        Some(vendor::CKR_P11KMS_QUOTA_EXCEEDED),
        "4th connection of the uid"
    );
    d.export_socket();
    let raw = module();
    assert_rv(
        raw.initialize(),
        CKR_DEVICE_ERROR,
        "C_Initialize at the cap",
    );
    held.pop();
    // The daemon notices the close on its own thread: allow it a moment.
    let rv = eventually(|| raw.initialize());
    assert_rv(rv, CKR_OK, "C_Initialize after one closed");
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
    drop(held);

    // Handshakes in progress have their own, smaller cap.
    let silent: Vec<_> = (0..2)
        .map(|_| std::os::unix::net::UnixStream::connect(d.socket()).expect("connect"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        try_hello(&d.socket()).err(),
        Some(vendor::CKR_P11KMS_QUOTA_EXCEEDED),
        "3rd connection still in its handshake"
    );
    drop(silent);
    let again = eventually(|| match try_hello(&d.socket()) {
        Ok(_) => CKR_OK,
        Err(rv) => rv,
    });
    assert_rv(again, CKR_OK, "handshake after the silent ones left");
}

/// `f()` until it answers `CKR_OK`, for up to 10 s; its last answer.
fn eventually(mut f: impl FnMut() -> u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rv = f();
        if rv == CKR_OK || std::time::Instant::now() >= deadline {
            return rv;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `max_request_bytes_in_flight`: a large request waits while another one
/// holds the budget, and goes through once that one is gone (here: closed
/// by its request timeout because it never finished sending).
#[test]
fn large_requests_wait_for_room_in_the_budget() {
    let _g = serial();
    let d = ConfDaemon::start(
        "[limits]\nmax_request_bytes_in_flight = 4194304\nrequest_timeout_secs = 2\n",
    );
    let mut hog = hello(&d.socket());
    hog.write_all(&(3u32 * 1024 * 1024).to_le_bytes())
        .expect("prefix");
    hog.write_all(&[0u8; 1024]).expect("some body");
    d.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = *ctx
        .get_slots_with_token()
        .expect("slots")
        .first()
        .expect("slot");
    let s = ctx.open_ro_session(slot).expect("C_OpenSession");
    let data = vec![0x61u8; 3 * 1024 * 1024];
    let digest = s
        .digest(&Mechanism::Sha256, &data)
        .expect("C_Digest of 3 MiB");
    assert_eq!(digest.len(), 32);
    assert!(
        closed_within(&mut hog, 10),
        "the unfinished request was not closed"
    );
    drop(s);
    let _ = ctx.finalize();
}

/// `max_sessions_per_app`: `C_OpenSession` past it answers
/// `CKR_SESSION_COUNT`.
#[test]
fn sessions_per_application_are_capped() {
    let _g = serial();
    let d = ConfDaemon::start("[limits]\nmax_sessions_per_app = 4\n");
    d.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = *ctx
        .get_slots_with_token()
        .expect("slots")
        .first()
        .expect("slot");
    let sessions: Vec<_> = (0..4)
        .map(|_| {
            ctx.open_ro_session(slot)
                .expect("C_OpenSession within the cap")
        })
        .collect();
    match ctx.open_ro_session(slot) {
        Err(CkError::Pkcs11(RvError::SessionCount, _)) => {}
        other => panic!("5th session: {:?}", other.map(|_| "opened")),
    }
    drop(sessions);
    ctx.open_ro_session(slot)
        .expect("C_OpenSession after closing");
    let _ = ctx.finalize();
}

/// `max_multipart_bytes`: multi-part GCM input past it answers
/// `CKR_ENCRYPTED_DATA_LEN_RANGE` (decryption) instead of growing the
/// daemon's buffer without end.
#[test]
fn multipart_gcm_input_is_capped() {
    let _g = serial();
    let d = ConfDaemon::start("[limits]\nmax_multipart_bytes = 1048576\n");
    d.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let s = user_session(&ctx, slot);
    let key = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .expect("C_GenerateKey");
    let mut iv = [7u8; 12];
    let params = GcmParams::new(&mut iv, &[], 128.into()).expect("params");
    s.decrypt_init(&Mechanism::AesGcm(params), key)
        .expect("C_DecryptInit");
    let chunk = vec![0u8; 600 * 1024];
    s.decrypt_update(&chunk).expect("first 600 KiB");
    match s.decrypt_update(&chunk) {
        Err(CkError::Pkcs11(RvError::EncryptedDataLenRange, _)) => {}
        other => panic!("past 1 MiB: {:?}", other.map(|v| v.len())),
    }
    drop(s);
    let _ = ctx.finalize();
}
