//! Durability: token objects, PINs and token state survive a clean restart;
//! after SIGKILL in the middle of a burst of object creations, every object
//! whose C_CreateObject returned CKR_OK is there after the restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use p11kms_e2e::*;

fn value_of(s: &cryptoki::session::Session, o: cryptoki::object::ObjectHandle) -> Vec<u8> {
    match s
        .get_attributes(o, &[AttributeType::Value])
        .expect("C_GetAttributeValue")
        .pop()
    {
        Some(Attribute::Value(v)) => v,
        other => panic!("no CKA_VALUE: {other:?}"),
    }
}

fn find_label(s: &cryptoki::session::Session, label: &str) -> Vec<cryptoki::object::ObjectHandle> {
    s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .expect("C_FindObjects")
}

#[test]
fn token_objects_survive_a_clean_restart() {
    let _g = serial();
    let mut daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let s = user_session(&ctx, slot);
    let key = s
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
                Attribute::Label(b"durable-key".to_vec()),
                Attribute::Id(vec![1, 2, 3]),
            ],
        )
        .expect("C_GenerateKey");
    let iv = [9u8; 16];
    let plain = b"survives a restart of p11kmsd, 37 b".to_vec();
    let ct = s
        .encrypt(&Mechanism::AesCbcPad(iv), key, &plain)
        .expect("C_Encrypt");
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(b"durable-data".to_vec()),
        Attribute::Value(b"data object value".to_vec()),
    ])
    .expect("C_CreateObject(data)");
    s.create_object(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Token(true),
        Attribute::Label(b"durable-cert".to_vec()),
        Attribute::Id(vec![1, 2, 3]),
        Attribute::Subject(hex("3015311330110603550403 0c0a7031316b6d732d653265")),
        Attribute::Value(CERT_DER.to_vec()),
    ])
    .expect("C_CreateObject(certificate)");
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(false),
        Attribute::Label(b"ephemeral-data".to_vec()),
        Attribute::Value(b"session object".to_vec()),
    ])
    .expect("C_CreateObject(session data)");
    drop(s);
    ctx.finalize().expect("C_Finalize");

    assert!(
        daemon.stop(),
        "p11kmsd did not stop cleanly on SIGTERM within 10 s or left its socket behind"
    );
    daemon.start_again();

    let ctx = context();
    initialize(&ctx);
    let slot = *ctx
        .get_slots_with_token()
        .expect("slots")
        .first()
        .expect("a slot");
    let info = ctx.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(info.label(), LABEL, "token label after restart");
    assert!(
        info.token_initialized() && info.user_pin_initialized(),
        "token flags after restart"
    );
    let s = ctx.open_rw_session(slot).expect("C_OpenSession");
    match s.login(UserType::User, Some(&AuthPin::from("not-the-pin"))) {
        Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {}
        other => panic!("wrong PIN after restart: expected CKR_PIN_INCORRECT, got {other:?}"),
    }
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))
        .expect("C_Login after restart");
    let keys = find_label(&s, "durable-key");
    assert_eq!(keys.len(), 1, "token key after restart");
    let back = s
        .decrypt(&Mechanism::AesCbcPad(iv), keys[0], &ct)
        .expect("C_Decrypt after restart");
    assert_eq!(back, plain, "same key decrypts the earlier ciphertext");
    let attrs = s
        .get_attributes(
            keys[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Local,
                AttributeType::Id,
            ],
        )
        .expect("attributes");
    assert_eq!(
        attrs,
        vec![
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Local(true),
            Attribute::Id(vec![1, 2, 3])
        ],
        "key attributes after restart"
    );
    let data = find_label(&s, "durable-data");
    assert_eq!(data.len(), 1, "data object after restart");
    assert_eq!(value_of(&s, data[0]), b"data object value");
    let cert = find_label(&s, "durable-cert");
    assert_eq!(cert.len(), 1, "certificate after restart");
    assert_eq!(value_of(&s, cert[0]), CERT_DER);
    assert!(
        find_label(&s, "ephemeral-data").is_empty(),
        "a session object survived the restart"
    );
    drop(s);
    ctx.finalize().expect("C_Finalize");
}

#[test]
fn daemon_starts_over_the_stale_socket_a_crash_leaves() {
    let _g = serial();
    let mut daemon = Daemon::start();
    daemon.kill();
    assert!(
        daemon.socket().exists(),
        "(precondition) SIGKILL leaves the socket file"
    );
    daemon.start_again(); // panics with the daemon's log if it refuses the stale file
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(
        raw.initialize(),
        sys::CKR_OK,
        "C_Initialize after restart over a stale socket",
    );
    assert_rv(raw.finalize(), sys::CKR_OK, "C_Finalize");
}

#[test]
fn sigkill_during_a_burst_keeps_every_acknowledged_object() {
    let _g = serial();
    let mut daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let login = user_session(&ctx, slot);

    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let ctx = ctx.clone();
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let Ok(s) = ctx.open_rw_session(slot) else {
                    return 0usize;
                };
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let label = format!("burst-{t}-{n}");
                    let value: Vec<u8> = format!("value of {label} ")
                        .bytes()
                        .cycle()
                        .take(64 + n % 200)
                        .collect();
                    match s.create_object(&[
                        Attribute::Class(ObjectClass::DATA),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Label(label.as_bytes().to_vec()),
                        Attribute::Value(value.clone()),
                    ]) {
                        Ok(_) => {
                            acked
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(label, value);
                            n += 1;
                        }
                        Err(_) => break, // the daemon is gone
                    }
                }
                std::mem::forget(s); // closing would only fail: the daemon is dead
                n
            })
        })
        .collect();
    // Let the burst run, then crash the daemon in the middle of it.
    let t0 = std::time::Instant::now();
    while acked.lock().unwrap_or_else(|e| e.into_inner()).len() < 200
        && t0.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.kill();
    stop.store(true, Ordering::Relaxed);
    let made: usize = within(60, "burst workers stop after SIGKILL", move || {
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    eprintln!("{made} objects acknowledged before SIGKILL");
    assert!(made > 0, "no object was created before the kill");
    std::mem::forget(login);
    let _ = within(30, "C_Finalize after SIGKILL", move || ctx.finalize());

    // Durability is what is tested here, not stale-socket handling (own test).
    let _ = std::fs::remove_file(daemon.socket());
    daemon.start_again();
    let ctx = context();
    initialize(&ctx);
    let s = user_session(&ctx, slot_of(&ctx));
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (label, value) in &acked {
        let found = find_label(&s, label);
        match found.as_slice() {
            [o] => {
                if &value_of(&s, *o) != value {
                    wrong.push(label.clone());
                }
            }
            [] => missing.push(label.clone()),
            more => wrong.push(format!("{label} ({} copies)", more.len())),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged objects missing after SIGKILL + restart, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        wrong.is_empty(),
        "objects with wrong content after restart: {:?}",
        &wrong[..wrong.len().min(5)]
    );
    // The store is still writable.
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Label(b"after-crash".to_vec()),
        Attribute::Value(b"ok".to_vec()),
    ])
    .expect("C_CreateObject after the crash");
    drop(s);
    ctx.finalize().expect("C_Finalize");
}

fn slot_of(ctx: &cryptoki::context::Pkcs11) -> cryptoki::slot::Slot {
    *ctx.get_slots_with_token()
        .expect("C_GetSlotList")
        .first()
        .expect("a slot")
}
