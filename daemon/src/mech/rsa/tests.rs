//! RSA mechanisms: a fixed OpenSSL-made signature, round trips for every
//! mechanism and hash, both providers (2048-bit keys through aws-lc-rs,
//! a 1024-bit key through the `rsa` crate), bad parameters and key types.

use super::kat::{hex, PKCS8_HEX, SIG_ABC_SHA256_HEX};
use super::*;

const PKCS8_1024_HEX: &str = include_str!("testdata/rsa1024.pk8.hex");

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    r
}

fn keys(pkcs8: &[u8]) -> (Arc<Key>, Arc<Key>) {
    let (kt, der, attrs) = asym::private_from_pkcs8(pkcs8).expect("pkcs8");
    assert_eq!(kt, ck::CKK_RSA);
    let spki = attrs
        .iter()
        .find(|(t, _)| *t == ck::CKA_PUBLIC_KEY_INFO)
        .expect("spki")
        .1
        .clone();
    (
        Arc::new(Key::new(ck::CKO_PRIVATE_KEY, ck::CKK_RSA, der)),
        Arc::new(Key::new(
            ck::CKO_PUBLIC_KEY,
            ck::CKK_RSA,
            Zeroizing::new(spki),
        )),
    )
}

fn kat_keys() -> (Arc<Key>, Arc<Key>) {
    keys(&hex(PKCS8_HEX))
}

fn sign(r: &Registry, mech: u64, k: &Arc<Key>, p: &MechParam, msg: &[u8]) -> Result<Vec<u8>> {
    let mut op = r.get(mech)?.sign_init(k, p)?;
    assert_eq!(op.sig_len(), k_len(k));
    op.oneshot(msg)
}

fn verify(
    r: &Registry,
    mech: u64,
    k: &Arc<Key>,
    p: &MechParam,
    msg: &[u8],
    sig: &[u8],
) -> Result<()> {
    r.get(mech)?.verify_init(k, p)?.oneshot(msg, sig)
}

fn k_len(k: &Key) -> usize {
    if k.value.len() > 1000 {
        256
    } else {
        128
    }
}

fn encrypt(r: &Registry, mech: u64, k: &Arc<Key>, p: &MechParam, m: &[u8]) -> Result<Vec<u8>> {
    r.get(mech)?.encrypt_init(k, p)?.oneshot(m)
}

fn decrypt(r: &Registry, mech: u64, k: &Arc<Key>, p: &MechParam, c: &[u8]) -> Result<Vec<u8>> {
    r.get(mech)?.decrypt_init(k, p)?.oneshot(c)
}

fn pss(hash: u64, mgf: u64, salt_len: u64) -> MechParam {
    MechParam::Pss {
        hash,
        mgf,
        salt_len,
    }
}

fn oaep(hash: u64, mgf: u64, label: &[u8]) -> MechParam {
    MechParam::Oaep {
        hash,
        mgf,
        source: ck::CKZ_DATA_SPECIFIED,
        source_data: label.to_vec(),
    }
}

const HASHES: [(u64, u64, u64, u64, usize); 5] = [
    (
        ck::CKM_SHA_1,
        ck::CKG_MGF1_SHA1,
        ck::CKM_SHA1_RSA_PKCS,
        ck::CKM_SHA1_RSA_PKCS_PSS,
        20,
    ),
    (
        ck::CKM_SHA224,
        ck::CKG_MGF1_SHA224,
        ck::CKM_SHA224_RSA_PKCS,
        ck::CKM_SHA224_RSA_PKCS_PSS,
        28,
    ),
    (
        ck::CKM_SHA256,
        ck::CKG_MGF1_SHA256,
        ck::CKM_SHA256_RSA_PKCS,
        ck::CKM_SHA256_RSA_PKCS_PSS,
        32,
    ),
    (
        ck::CKM_SHA384,
        ck::CKG_MGF1_SHA384,
        ck::CKM_SHA384_RSA_PKCS,
        ck::CKM_SHA384_RSA_PKCS_PSS,
        48,
    ),
    (
        ck::CKM_SHA512,
        ck::CKG_MGF1_SHA512,
        ck::CKM_SHA512_RSA_PKCS,
        ck::CKM_SHA512_RSA_PKCS_PSS,
        64,
    ),
];

#[test]
fn self_tests_pass() {
    registry().run_self_tests().expect("self-tests");
}

#[test]
fn known_pkcs1_sha256_signature() {
    let r = registry();
    let (sk, pk) = kat_keys();
    let want = hex(SIG_ABC_SHA256_HEX);
    // Hashed mechanism, single- and multi-part.
    assert_eq!(
        sign(&r, ck::CKM_SHA256_RSA_PKCS, &sk, &MechParam::None, b"abc").expect("sign"),
        want
    );
    let mut op = r
        .get(ck::CKM_SHA256_RSA_PKCS)
        .expect("m")
        .sign_init(&sk, &MechParam::None)
        .expect("init");
    assert!(op.multipart());
    op.update(b"a").expect("u");
    op.update(b"bc").expect("u");
    assert_eq!(op.finalize().expect("final"), want);
    // CKM_RSA_PKCS over the DigestInfo: the OpenSSL libp11 engine's path.
    let t = Hash::Sha256.digest_info(&provider::digest(Hash::Sha256, b"abc"));
    assert_eq!(
        sign(&r, ck::CKM_RSA_PKCS, &sk, &MechParam::None, &t).expect("sign"),
        want
    );
    verify(&r, ck::CKM_RSA_PKCS, &pk, &MechParam::None, &t, &want).expect("verify raw");
    verify(
        &r,
        ck::CKM_SHA256_RSA_PKCS,
        &pk,
        &MechParam::None,
        b"abc",
        &want,
    )
    .expect("verify");
    // Raw RSA of the signature gives back the padded DigestInfo.
    let em = r
        .get(ck::CKM_RSA_X_509)
        .expect("m")
        .encrypt_init(&pk, &MechParam::None)
        .expect("init")
        .oneshot(&want)
        .expect("raw");
    assert_eq!(&em[..2], &[0, 1]);
    assert!(em.ends_with(&t));
}

#[test]
fn pkcs1_all_hashes_both_providers() {
    let r = registry();
    for pk8 in [hex(PKCS8_HEX), hex(PKCS8_1024_HEX)] {
        let (sk, pk) = keys(&pk8);
        for (_, _, mech, _, _) in HASHES {
            let sig = sign(&r, mech, &sk, &MechParam::None, b"message").expect("sign");
            verify(&r, mech, &pk, &MechParam::None, b"message", &sig).expect("verify");
            assert_eq!(
                verify(&r, mech, &pk, &MechParam::None, b"messagE", &sig)
                    .expect_err("bad")
                    .rv,
                ck::CKR_SIGNATURE_INVALID
            );
        }
        // CKM_RSA_PKCS over data that is not a DigestInfo (TLS 1.0 MD5+SHA-1 style).
        let sig = sign(&r, ck::CKM_RSA_PKCS, &sk, &MechParam::None, &[7u8; 36]).expect("sign");
        verify(
            &r,
            ck::CKM_RSA_PKCS,
            &pk,
            &MechParam::None,
            &[7u8; 36],
            &sig,
        )
        .expect("verify");
        let k = k_len(&sk);
        assert_eq!(
            sign(
                &r,
                ck::CKM_RSA_PKCS,
                &sk,
                &MechParam::None,
                &vec![1u8; k - 10]
            )
            .expect_err("long")
            .rv,
            ck::CKR_DATA_LEN_RANGE
        );
    }
}

#[test]
fn pss_all_hashes_and_salts() {
    let r = registry();
    for pk8 in [hex(PKCS8_HEX), hex(PKCS8_1024_HEX)] {
        let (sk, pk) = keys(&pk8);
        let k = k_len(&sk);
        for (hash, mgf, _, mech, hlen) in HASHES {
            for salt in [hlen as u64, 0, 20] {
                if hlen + salt as usize + 3 > k {
                    let e = r
                        .get(mech)
                        .expect("m")
                        .sign_init(&sk, &pss(hash, mgf, salt + 1))
                        .err()
                        .expect("salt");
                    assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID);
                    continue;
                }
                let p = pss(hash, mgf, salt);
                let sig = sign(&r, mech, &sk, &p, b"message").expect("sign");
                verify(&r, mech, &pk, &p, b"message", &sig).expect("verify");
                let d = provider::digest(Hash::from_ckm(hash).expect("h"), b"message");
                verify(&r, ck::CKM_RSA_PKCS_PSS, &pk, &p, &d, &sig).expect("verify raw");
                let other = pss(hash, mgf, salt + 1);
                assert_eq!(
                    verify(&r, mech, &pk, &other, b"message", &sig)
                        .expect_err("salt")
                        .rv,
                    ck::CKR_SIGNATURE_INVALID
                );
            }
            let p = pss(hash, mgf, 0);
            let d = provider::digest(Hash::from_ckm(hash).expect("h"), b"x");
            let sig = sign(&r, ck::CKM_RSA_PKCS_PSS, &sk, &p, &d).expect("raw sign");
            verify(&r, mech, &pk, &p, b"x", &sig).expect("verify hashed");
            assert_eq!(
                sign(&r, ck::CKM_RSA_PKCS_PSS, &sk, &p, &d[1..])
                    .expect_err("len")
                    .rv,
                ck::CKR_DATA_LEN_RANGE
            );
        }
    }
}

#[test]
fn pss_bad_params() {
    let r = registry();
    let (sk, _) = kat_keys();
    let cases = [
        (ck::CKM_SHA256_RSA_PKCS_PSS, MechParam::None),
        (
            ck::CKM_SHA256_RSA_PKCS_PSS,
            pss(ck::CKM_SHA256, ck::CKG_MGF1_SHA1, 32),
        ),
        (
            ck::CKM_SHA256_RSA_PKCS_PSS,
            pss(ck::CKM_SHA384, ck::CKG_MGF1_SHA384, 48),
        ),
        (
            ck::CKM_RSA_PKCS_PSS,
            pss(ck::CKM_MD5, ck::CKG_MGF1_SHA1, 16),
        ),
        (ck::CKM_RSA_PKCS_PSS, pss(ck::CKM_SHA256, 99, 32)),
        (
            ck::CKM_RSA_PKCS_PSS,
            pss(ck::CKM_SHA256, ck::CKG_MGF1_SHA256, 300),
        ),
        (
            ck::CKM_RSA_PKCS_PSS,
            pss(ck::CKM_SHA256, ck::CKG_MGF1_SHA256, u64::MAX),
        ),
        (ck::CKM_SHA256_RSA_PKCS, MechParam::Bytes(vec![1])),
    ];
    for (mech, p) in cases {
        let e = r
            .get(mech)
            .expect("m")
            .sign_init(&sk, &p)
            .err()
            .expect("must fail");
        assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID, "{mech:#x} {p:?}");
    }
}

#[test]
fn oaep_all_hashes_labels_and_failures() {
    let r = registry();
    for pk8 in [hex(PKCS8_HEX), hex(PKCS8_1024_HEX)] {
        let (sk, pk) = keys(&pk8);
        let k = k_len(&sk);
        for (hash, mgf, _, _, hlen) in HASHES {
            if k < 2 * hlen + 2 + 1 {
                continue;
            }
            for label in [&b""[..], b"label"] {
                let p = oaep(hash, mgf, label);
                let ct = encrypt(&r, ck::CKM_RSA_PKCS_OAEP, &pk, &p, b"secret").expect("enc");
                assert_eq!(ct.len(), k);
                assert_eq!(
                    decrypt(&r, ck::CKM_RSA_PKCS_OAEP, &sk, &p, &ct).expect("dec"),
                    b"secret"
                );
                // Wrong label, tampered ciphertext: one and the same error.
                let wrong = oaep(hash, mgf, b"other");
                assert_eq!(
                    decrypt(&r, ck::CKM_RSA_PKCS_OAEP, &sk, &wrong, &ct)
                        .expect_err("label")
                        .rv,
                    ck::CKR_ENCRYPTED_DATA_INVALID
                );
                let mut bad = ct.clone();
                bad[k / 2] ^= 1;
                assert_eq!(
                    decrypt(&r, ck::CKM_RSA_PKCS_OAEP, &sk, &p, &bad)
                        .expect_err("tamper")
                        .rv,
                    ck::CKR_ENCRYPTED_DATA_INVALID
                );
            }
            let max = k - 2 * hlen - 2;
            let p = oaep(hash, mgf, b"");
            encrypt(&r, ck::CKM_RSA_PKCS_OAEP, &pk, &p, &vec![1u8; max]).expect("max");
            assert_eq!(
                encrypt(&r, ck::CKM_RSA_PKCS_OAEP, &pk, &p, &vec![1u8; max + 1])
                    .expect_err("long")
                    .rv,
                ck::CKR_DATA_LEN_RANGE
            );
        }
        // Source 0: no label.
        let p = MechParam::Oaep {
            hash: ck::CKM_SHA_1,
            mgf: ck::CKG_MGF1_SHA1,
            source: 0,
            source_data: vec![],
        };
        let ct = encrypt(&r, ck::CKM_RSA_PKCS_OAEP, &pk, &p, b"x").expect("enc");
        assert_eq!(
            decrypt(
                &r,
                ck::CKM_RSA_PKCS_OAEP,
                &sk,
                &oaep(ck::CKM_SHA_1, ck::CKG_MGF1_SHA1, b""),
                &ct
            )
            .expect("dec"),
            b"x"
        );
        assert_eq!(
            decrypt(&r, ck::CKM_RSA_PKCS_OAEP, &sk, &p, &ct[1..])
                .expect_err("short")
                .rv,
            ck::CKR_ENCRYPTED_DATA_LEN_RANGE
        );
    }
}

#[test]
fn oaep_bad_params() {
    let r = registry();
    let (_, pk) = kat_keys();
    for p in [
        MechParam::None,
        oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA1, b""),
        oaep(ck::CKM_MD5, ck::CKG_MGF1_SHA1, b""),
        MechParam::Oaep {
            hash: ck::CKM_SHA256,
            mgf: ck::CKG_MGF1_SHA256,
            source: 0,
            source_data: vec![1],
        },
        MechParam::Oaep {
            hash: ck::CKM_SHA256,
            mgf: ck::CKG_MGF1_SHA256,
            source: 7,
            source_data: vec![],
        },
    ] {
        let e = r
            .get(ck::CKM_RSA_PKCS_OAEP)
            .expect("m")
            .encrypt_init(&pk, &p)
            .err()
            .expect("must fail");
        assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID, "{p:?}");
    }
}

#[test]
fn pkcs1_encryption_round_trip() {
    let r = registry();
    for pk8 in [hex(PKCS8_HEX), hex(PKCS8_1024_HEX)] {
        let (sk, pk) = keys(&pk8);
        let k = k_len(&sk);
        let mut op = r
            .get(ck::CKM_RSA_PKCS)
            .expect("m")
            .encrypt_init(&pk, &MechParam::None)
            .expect("init");
        assert_eq!(op.oneshot_len(k - 11).expect("len"), k);
        assert_eq!(
            op.oneshot_len(k - 10).expect_err("long").rv,
            ck::CKR_DATA_LEN_RANGE
        );
        let ct = op.oneshot(b"pkcs1 message").expect("enc");
        assert_eq!(
            decrypt(&r, ck::CKM_RSA_PKCS, &sk, &MechParam::None, &ct).expect("dec"),
            b"pkcs1 message"
        );
        // Multi-part input is buffered.
        let mut op = r
            .get(ck::CKM_RSA_PKCS)
            .expect("m")
            .decrypt_init(&sk, &MechParam::None)
            .expect("init");
        op.update(&ct[..10]).expect("u");
        op.update(&ct[10..]).expect("u");
        assert_eq!(op.finalize().expect("final"), b"pkcs1 message");
    }
    // aws-lc path: a ciphertext of garbage gives the one error.
    let (sk, pk) = kat_keys();
    let junk = r
        .get(ck::CKM_RSA_X_509)
        .expect("m")
        .encrypt_init(&pk, &MechParam::None)
        .expect("i")
        .oneshot(&[5u8; 200])
        .expect("raw");
    assert_eq!(
        decrypt(&r, ck::CKM_RSA_PKCS, &sk, &MechParam::None, &junk)
            .expect_err("junk")
            .rv,
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
}

#[test]
fn raw_rsa_round_trips() {
    let r = registry();
    let (sk, pk) = kat_keys();
    let m = vec![0x42u8; 100];
    let c = encrypt(&r, ck::CKM_RSA_X_509, &pk, &MechParam::None, &m).expect("enc");
    assert_eq!(c.len(), 256);
    let back = decrypt(&r, ck::CKM_RSA_X_509, &sk, &MechParam::None, &c).expect("dec");
    assert_eq!(back.len(), 256);
    assert!(back[..156].iter().all(|b| *b == 0) && back[156..] == m[..]);
    let s = sign(&r, ck::CKM_RSA_X_509, &sk, &MechParam::None, &m).expect("sign");
    verify(&r, ck::CKM_RSA_X_509, &pk, &MechParam::None, &m, &s).expect("verify");
    assert_eq!(
        verify(&r, ck::CKM_RSA_X_509, &pk, &MechParam::None, &m[1..], &s)
            .expect_err("bad")
            .rv,
        ck::CKR_SIGNATURE_INVALID
    );
    // Input ≥ n.
    assert_eq!(
        encrypt(&r, ck::CKM_RSA_X_509, &pk, &MechParam::None, &[0xff; 256])
            .expect_err("big")
            .rv,
        ck::CKR_DATA_INVALID
    );
}

#[test]
fn signature_length_and_value_errors() {
    let r = registry();
    let (sk, pk) = kat_keys();
    let sig = sign(&r, ck::CKM_SHA256_RSA_PKCS, &sk, &MechParam::None, b"m").expect("sign");
    assert_eq!(
        verify(
            &r,
            ck::CKM_SHA256_RSA_PKCS,
            &pk,
            &MechParam::None,
            b"m",
            &sig[1..]
        )
        .expect_err("len")
        .rv,
        ck::CKR_SIGNATURE_LEN_RANGE
    );
    let mut bad = sig.clone();
    bad[0] ^= 0x80;
    assert_eq!(
        verify(
            &r,
            ck::CKM_SHA256_RSA_PKCS,
            &pk,
            &MechParam::None,
            b"m",
            &bad
        )
        .expect_err("val")
        .rv,
        ck::CKR_SIGNATURE_INVALID
    );
}

#[test]
fn wrong_key_types() {
    let r = registry();
    let (sk, pk) = kat_keys();
    let ec = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_EC,
        Zeroizing::new(vec![0x30, 0]),
    ));
    let aes = Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_AES,
        Zeroizing::new(vec![0; 16]),
    ));
    for k in [&ec, &aes, &pk] {
        let e = r
            .get(ck::CKM_SHA256_RSA_PKCS)
            .expect("m")
            .sign_init(k, &MechParam::None)
            .err()
            .expect("fail");
        assert_eq!(e.rv, ck::CKR_KEY_TYPE_INCONSISTENT);
    }
    let e = r
        .get(ck::CKM_RSA_PKCS)
        .expect("m")
        .encrypt_init(&sk, &MechParam::None)
        .err()
        .expect("fail");
    assert_eq!(e.rv, ck::CKR_KEY_TYPE_INCONSISTENT);
    let e = r
        .get(ck::CKM_RSA_PKCS)
        .expect("m")
        .wrap(&MechParam::None, &aes, &[1; 16])
        .expect_err("fail");
    assert_eq!(e.rv, ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
    let e = r
        .get(ck::CKM_RSA_PKCS_OAEP)
        .expect("m")
        .unwrap(&oaep(ck::CKM_SHA_1, ck::CKG_MGF1_SHA1, b""), &pk, &[1; 256])
        .expect_err("fail");
    assert_eq!(e.rv, ck::CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT);
}

#[test]
fn key_pair_generation() {
    let r = registry();
    let m = r.get(ck::CKM_RSA_PKCS_KEY_PAIR_GEN).expect("m");
    let public = [
        Attribute::ulong(ck::CKA_MODULUS_BITS, 2048),
        Attribute::new(ck::CKA_PUBLIC_EXPONENT, vec![1, 0, 1]),
    ];
    let kp = m
        .generate_key_pair(&MechParam::None, &public, &[])
        .expect("gen");
    assert_eq!(kp.key_type, ck::CKK_RSA);
    let attr = |a: &[(u64, Vec<u8>)], t| {
        a.iter()
            .find(|(x, _)| *x == t)
            .map(|(_, v)| v.clone())
            .expect("attr")
    };
    assert_eq!(
        attr(&kp.public_attrs, ck::CKA_MODULUS_BITS),
        2048u64.to_le_bytes()
    );
    assert_eq!(
        attr(&kp.public_attrs, ck::CKA_PUBLIC_EXPONENT),
        vec![1, 0, 1]
    );
    assert_eq!(attr(&kp.public_attrs, ck::CKA_MODULUS).len(), 256);
    assert_eq!(
        attr(&kp.public_attrs, ck::CKA_PUBLIC_KEY_INFO),
        kp.public_value
    );
    assert_eq!(
        attr(&kp.private_attrs, ck::CKA_PUBLIC_KEY_INFO),
        kp.public_value
    );
    for t in [
        ck::CKA_PRIVATE_EXPONENT,
        ck::CKA_PRIME_1,
        ck::CKA_PRIME_2,
        ck::CKA_EXPONENT_1,
        ck::CKA_EXPONENT_2,
        ck::CKA_COEFFICIENT,
    ] {
        assert!(!attr(&kp.private_attrs, t).is_empty());
    }
    let sk = Arc::new(Key::new(ck::CKO_PRIVATE_KEY, ck::CKK_RSA, kp.private_value));
    let pk = Arc::new(Key::new(
        ck::CKO_PUBLIC_KEY,
        ck::CKK_RSA,
        Zeroizing::new(kp.public_value),
    ));
    let sig = sign(&r, ck::CKM_SHA384_RSA_PKCS, &sk, &MechParam::None, b"gen").expect("sign");
    verify(
        &r,
        ck::CKM_SHA384_RSA_PKCS,
        &pk,
        &MechParam::None,
        b"gen",
        &sig,
    )
    .expect("verify");

    let e = m
        .generate_key_pair(&MechParam::None, &[], &[])
        .err()
        .expect("no bits");
    assert_eq!(e.rv, ck::CKR_TEMPLATE_INCOMPLETE);
    let e = m
        .generate_key_pair(
            &MechParam::None,
            &[Attribute::ulong(ck::CKA_MODULUS_BITS, 1000)],
            &[],
        )
        .err()
        .expect("size");
    assert_eq!(e.rv, ck::CKR_KEY_SIZE_RANGE);
    let bad_e = [
        Attribute::ulong(ck::CKA_MODULUS_BITS, 2048),
        Attribute::new(ck::CKA_PUBLIC_EXPONENT, vec![3]),
    ];
    assert_eq!(
        m.generate_key_pair(&MechParam::None, &bad_e, &[])
            .err()
            .expect("e")
            .rv,
        ck::CKR_TEMPLATE_INCONSISTENT
    );
    let e = m
        .generate_key_pair(&MechParam::Bytes(vec![1]), &public, &[])
        .err()
        .expect("param");
    assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID);
}

#[test]
fn wrap_and_unwrap_with_pkcs1_and_oaep() {
    let r = registry();
    let (sk, pk) = kat_keys();
    let secret = [0x11u8; 32];
    for (mech, p) in [
        (ck::CKM_RSA_PKCS, MechParam::None),
        (
            ck::CKM_RSA_PKCS_OAEP,
            oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA256, b""),
        ),
    ] {
        let m = r.get(mech).expect("m");
        assert_eq!(m.wrap_len(&p, &pk, 32).expect("len"), 256);
        let w = m.wrap(&p, &pk, &secret).expect("wrap");
        assert_eq!(&m.unwrap(&p, &sk, &w).expect("unwrap")[..], &secret);
        let mut bad = w.clone();
        bad[9] ^= 1;
        assert_eq!(
            m.unwrap(&p, &sk, &bad).expect_err("bad").rv,
            ck::CKR_WRAPPED_KEY_INVALID
        );
        assert_eq!(
            m.unwrap(&p, &sk, &w[1..]).expect_err("len").rv,
            ck::CKR_WRAPPED_KEY_LEN_RANGE
        );
        // A private key does not fit.
        assert_eq!(
            m.wrap(&p, &pk, &hex(PKCS8_HEX)).expect_err("big").rv,
            ck::CKR_KEY_SIZE_RANGE
        );
    }
}

#[test]
fn rsa_aes_key_wrap() {
    let r = registry();
    let (sk, pk) = kat_keys();
    let m = r.get(ck::CKM_RSA_AES_KEY_WRAP).expect("m");
    let p = MechParam::RsaAesKeyWrap {
        aes_key_bits: 256,
        oaep: Some(Box::new(oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA256, b""))),
    };
    for target in [vec![0x22u8; 32], vec![0x33u8; 13], hex(PKCS8_1024_HEX)] {
        let bound = m.wrap_len(&p, &pk, target.len()).expect("len");
        let w = m.wrap(&p, &pk, &target).expect("wrap");
        assert!(w.len() <= bound);
        assert_eq!(&m.unwrap(&p, &sk, &w).expect("unwrap")[..], &target[..]);
        let mut bad = w.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            m.unwrap(&p, &sk, &bad).expect_err("kwp").rv,
            ck::CKR_WRAPPED_KEY_INVALID
        );
        bad = w.clone();
        bad[3] ^= 1;
        assert_eq!(
            m.unwrap(&p, &sk, &bad).expect_err("oaep").rv,
            ck::CKR_WRAPPED_KEY_INVALID
        );
    }
    // The AES key size inside must match the parameter.
    let w = m.wrap(&p, &pk, &[1; 16]).expect("wrap");
    let p128 = MechParam::RsaAesKeyWrap {
        aes_key_bits: 128,
        oaep: Some(Box::new(oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA256, b""))),
    };
    assert_eq!(
        m.unwrap(&p128, &sk, &w).expect_err("size").rv,
        ck::CKR_WRAPPED_KEY_INVALID
    );
    for bad in [
        MechParam::RsaAesKeyWrap {
            aes_key_bits: 100,
            oaep: Some(Box::new(oaep(ck::CKM_SHA256, ck::CKG_MGF1_SHA256, b""))),
        },
        MechParam::RsaAesKeyWrap {
            aes_key_bits: 256,
            oaep: None,
        },
        MechParam::None,
    ] {
        assert_eq!(
            m.wrap(&bad, &pk, &[1; 16]).expect_err("param").rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn mechanism_info() {
    let r = registry();
    let i = r.get(ck::CKM_RSA_PKCS).expect("m").info();
    assert_eq!((i.min_key_size, i.max_key_size), (1024, 8192));
    assert_eq!(
        i.flags,
        ck::CKF_ENCRYPT
            | ck::CKF_DECRYPT
            | ck::CKF_SIGN
            | ck::CKF_VERIFY
            | ck::CKF_WRAP
            | ck::CKF_UNWRAP
    );
    assert_eq!(
        r.get(ck::CKM_RSA_PKCS_KEY_PAIR_GEN)
            .expect("m")
            .info()
            .flags,
        ck::CKF_GENERATE_KEY_PAIR
    );
    assert_eq!(
        r.get(ck::CKM_SHA256_RSA_PKCS_PSS).expect("m").info().flags,
        ck::CKF_SIGN | ck::CKF_VERIFY
    );
    assert_eq!(
        r.get(ck::CKM_RSA_AES_KEY_WRAP).expect("m").info().flags,
        ck::CKF_WRAP | ck::CKF_UNWRAP
    );
}

/// In-process RSA-2048 signing speed through the provider (for
/// docs/performance.md; informational, never a timed assertion).
#[test]
#[ignore]
fn rsa2048_sign_throughput() {
    let der = crate::mech::provider::rsa_generate(2048, 65537).expect("generate");
    let key = crate::mech::provider::RsaPrivate::from_pkcs8(&der).expect("parse");
    let digest_info = [
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ][..],
        &[7u8; 32][..],
    ]
    .concat();
    let t0 = std::time::Instant::now();
    let n = 300;
    for _ in 0..n {
        key.sign_pkcs1(&digest_info).expect("sign");
    }
    eprintln!(
        "RSA-2048 PKCS#1 v1.5 sign in-process: {:.0}/s",
        n as f64 / t0.elapsed().as_secs_f64()
    );
}
