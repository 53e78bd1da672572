//! Many threads at once: each with its own session, all encrypting and
//! decrypting concurrently with one token key.

use std::sync::Arc;
use std::time::Instant;

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use p11kms_e2e::*;

const THREADS: usize = 16;
const ROUNDS: usize = 150;

#[test]
fn sixteen_threads_encrypt_concurrently() {
    let _g = serial();
    let daemon = Daemon::start();
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
                Attribute::Sensitive(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(b"threads-key".to_vec()),
            ],
        )
        .expect("C_GenerateKey");

    let ctx = Arc::new(ctx);
    let started = Instant::now();
    let failures = within(300, "16 threads x 150 GCM round trips", {
        let ctx = Arc::clone(&ctx);
        move || {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let ctx = Arc::clone(&ctx);
                    std::thread::spawn(move || -> Result<usize, String> {
                        let s = ctx
                            .open_rw_session(slot)
                            .map_err(|e| format!("thread {t}: C_OpenSession: {e}"))?;
                        for r in 0..ROUNDS {
                            let plain: Vec<u8> = (0..(1 + (t * 97 + r * 13) % 3000))
                                .map(|i| (i ^ t ^ r) as u8)
                                .collect();
                            let aad = format!("thread={t};round={r}");
                            let mut iv = [0u8; 12];
                            iv[..8].copy_from_slice(&((t * ROUNDS + r) as u64).to_le_bytes());
                            let mut iv2 = iv;
                            let ct = s
                                .encrypt(
                                    &Mechanism::AesGcm(
                                        GcmParams::new(&mut iv, aad.as_bytes(), 128.into())
                                            .map_err(|e| e.to_string())?,
                                    ),
                                    key,
                                    &plain,
                                )
                                .map_err(|e| format!("thread {t} round {r}: C_Encrypt: {e}"))?;
                            let back = s
                                .decrypt(
                                    &Mechanism::AesGcm(
                                        GcmParams::new(&mut iv2, aad.as_bytes(), 128.into())
                                            .map_err(|e| e.to_string())?,
                                    ),
                                    key,
                                    &ct,
                                )
                                .map_err(|e| format!("thread {t} round {r}: C_Decrypt: {e}"))?;
                            if back != plain {
                                return Err(format!("thread {t} round {r}: round trip mismatch"));
                            }
                            let d = s
                                .digest(&Mechanism::Sha256, b"abc")
                                .map_err(|e| format!("thread {t}: C_Digest: {e}"))?;
                            if d != hex(
                                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                            ) {
                                return Err(format!("thread {t}: wrong SHA-256"));
                            }
                        }
                        Ok(ROUNDS)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .filter_map(|r| r.err())
                .collect::<Vec<_>>()
        }
    });
    let elapsed = started.elapsed();
    eprintln!(
        "{} round trips (+digest) from {THREADS} threads in {:.2?} ({:.0} ops/s)",
        THREADS * ROUNDS,
        elapsed,
        (THREADS * ROUNDS * 3) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} thread(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Real session counts.
    let info = ctx.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(
        info.session_count(),
        Some(1),
        "ulSessionCount after the worker sessions closed"
    );
    drop(s);
    let ctx = Arc::try_unwrap(ctx).expect("last reference");
    ctx.finalize().expect("C_Finalize");
}
