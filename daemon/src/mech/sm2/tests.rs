//! SM2 against OpenSSL 3 known answers, the sm2 crate's own Z_A, and
//! malformed input.

use sm2::dsa::signature::hazmat::PrehashVerifier;

use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    r
}

fn key(class: u64, value: Vec<u8>) -> Arc<Key> {
    Arc::new(Key::new(class, vendor::CKK_SM2, Zeroizing::new(value)))
}

fn kat_pair() -> (Arc<Key>, Arc<Key>) {
    (
        key(ck::CKO_PRIVATE_KEY, h(kat::PKCS8)),
        key(ck::CKO_PUBLIC_KEY, h(kat::SPKI)),
    )
}

fn rv<T>(r: Result<T>) -> u64 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.rv,
    }
}

#[test]
fn self_tests_pass() {
    registry().run_self_tests().expect("self-tests");
}

#[test]
fn der_forms_round_trip() {
    let (der, attrs) = private_from_scalar(&h(kat::D)).expect("scalar");
    assert_eq!(der[..], h(kat::PKCS8)[..], "PKCS#8 as OpenSSL writes it");
    assert!(attrs.contains(&(ck::CKA_PUBLIC_KEY_INFO, h(kat::SPKI))));
    assert!(attrs.contains(&(ck::CKA_EC_PARAMS, params())));
    assert!(pkcs8_is_sm2(&der));
    let (again, _) = private_from_pkcs8(&der).expect("pkcs8");
    assert_eq!(again[..], der[..]);
    let (spki_der, pattrs) = public_from_point(&h(kat::POINT)).expect("point");
    assert_eq!(spki_der, h(kat::SPKI));
    assert!(pattrs.contains(&(ck::CKA_EC_POINT, octet_string(&h(kat::POINT)))));
    assert_eq!(
        public_from_point(&octet_string(&h(kat::POINT)))
            .expect("der point")
            .0,
        spki_der
    );
    assert_eq!(params(), h("06082a811ccf5501822d"));
}

#[test]
fn malformed_keys_are_errors() {
    let pkcs8 = h(kat::PKCS8);
    for n in 0..pkcs8.len() {
        assert!(private_from_pkcs8(&pkcs8[..n]).is_err(), "truncated at {n}");
    }
    let mut wrong_pub = pkcs8.clone();
    let last = wrong_pub.len() - 1;
    wrong_pub[last] ^= 1;
    assert!(private_from_pkcs8(&wrong_pub).is_err());
    assert!(!pkcs8_is_sm2(&[0x30, 0x80]));
    for bad in [
        vec![0u8; 32],
        h(&format!("{:0>64}", "")),
        N_MINUS_1.to_vec(),
        vec![1; 33],
    ] {
        assert_eq!(
            rv(private_from_scalar(&bad)),
            ck::CKR_ATTRIBUTE_VALUE_INVALID
        );
    }
    let mut off_curve = h(kat::POINT);
    off_curve[64] ^= 1;
    for bad in [
        off_curve,
        vec![4; 65],
        vec![4; 64],
        vec![0x04, 0x41, 0x04],
        vec![],
    ] {
        assert!(public_from_point(&bad).is_err());
    }
    let spki = h(kat::SPKI);
    for n in 0..spki.len() {
        assert!(Sm2Public::from_spki(&spki[..n]).is_err());
    }
}

#[test]
fn z_a_matches_the_crate() {
    // The sm2 crate computes Z_A for UTF-8 IDs; ours takes any bytes.
    let pk = sm2::PublicKey::from_sec1_bytes(&h(kat::POINT)).expect("point");
    for (id, sig) in [
        ("1234567812345678", kat::SIG),
        ("ALICE123@YAHOO.COM", kat::SIG),
        ("", kat::SIG_EMPTY_ID),
    ] {
        let vk = VerifyingKey::new(id, pk).expect("vk");
        let sig = Signature::from_slice(&h(sig)).expect("sig");
        let ours = sm3::Sm3::new_with_prefix(z_a(id.as_bytes(), &h(kat::POINT)).expect("z"))
            .chain_update(kat::MSG)
            .finalize();
        let crate_ok = sm2::dsa::signature::Verifier::verify(&vk, kat::MSG, &sig).is_ok();
        let ours_ok = vk.verify_prehash(&ours, &sig).is_ok();
        assert_eq!(crate_ok, ours_ok, "{id}");
        assert_eq!(ours_ok, id != "ALICE123@YAHOO.COM", "{id}");
    }
    assert_eq!(
        rv(z_a(&[0; 8192], &h(kat::POINT))),
        ck::CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn sign_verify_all_mechanisms() {
    let r = registry();
    let (sk, pk) = kat_pair();
    let msg: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    for (mech, param) in [
        (vendor::CKM_SM3_SM2DSA, MechParam::None),
        (
            vendor::CKM_SM3_SM2DSA,
            MechParam::Bytes(b"ALICE123@YAHOO.COM".to_vec()),
        ),
        (
            vendor::CKM_SM3_SM2DSA,
            MechParam::Bytes(vec![0xff, 0x00, 0x80]),
        ),
        (vendor::CKM_SHA256_SM2DSA, MechParam::None),
    ] {
        let m = r.get(mech).expect("registered");
        let mut op = m.sign_init(&sk, &param).expect("init");
        assert!(op.multipart());
        for c in msg.chunks(7) {
            op.update(c).expect("update");
        }
        let sig = op.finalize().expect("sign");
        assert_eq!(sig.len(), 64);
        m.verify_init(&pk, &param)
            .expect("init")
            .oneshot(&msg, &sig)
            .expect("verify");
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert_eq!(
            rv(m.verify_init(&pk, &param)
                .expect("init")
                .oneshot(&msg, &bad)),
            ck::CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            rv(m.verify_init(&pk, &param)
                .expect("init")
                .oneshot(&msg, &sig[..63])),
            ck::CKR_SIGNATURE_LEN_RANGE
        );
        assert_eq!(
            rv(m.verify_init(&pk, &param)
                .expect("init")
                .oneshot(&msg, &[0; 64])),
            ck::CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            rv(m.verify_init(&pk, &param)
                .expect("init")
                .oneshot(&msg, &[0xff; 64])),
            ck::CKR_SIGNATURE_INVALID
        );
    }
    // The ID matters.
    let m = r.get(vendor::CKM_SM3_SM2DSA).expect("registered");
    let sig = m
        .sign_init(&sk, &MechParam::None)
        .expect("init")
        .oneshot(b"x")
        .expect("sign");
    assert_eq!(
        rv(m.verify_init(&pk, &MechParam::Bytes(b"other".to_vec()))
            .expect("init")
            .oneshot(b"x", &sig)),
        ck::CKR_SIGNATURE_INVALID
    );
    // OpenSSL's signature with the default ID verifies.
    m.verify_init(&pk, &MechParam::None)
        .expect("init")
        .oneshot(kat::MSG, &h(kat::SIG))
        .expect("openssl sig");
    let der = h(kat::SIG_DER);
    assert_eq!([&der[5..37], &der[39..71]].concat(), h(kat::SIG));
    // ... and OpenSSL 3.0's default (empty) ID is an ID like any other.
    m.verify_init(&pk, &MechParam::Bytes(Vec::new()))
        .expect("init")
        .oneshot(kat::MSG, &h(kat::SIG_EMPTY_ID))
        .expect("empty id");
    // CKM_SM2DSA signs e as given.
    let z = z_a(DEFAULT_ID, &h(kat::POINT)).expect("z");
    let e = super::super::sm3::sm3(&[&z, kat::MSG]);
    let raw = r.get(vendor::CKM_SM2DSA).expect("registered");
    raw.verify_init(&pk, &MechParam::None)
        .expect("init")
        .oneshot(&e, &h(kat::SIG))
        .expect("raw verify");
    let mut op = raw.sign_init(&sk, &MechParam::None).expect("init");
    assert!(!op.multipart());
    let sig = op.oneshot(&e).expect("sign");
    m.verify_init(&pk, &MechParam::None)
        .expect("init")
        .oneshot(kat::MSG, &sig)
        .expect("same as SM3_SM2DSA");
    assert_eq!(
        rv(raw
            .sign_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(&e[..31])),
        ck::CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        rv(raw
            .sign_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(&[0; 33])),
        ck::CKR_DATA_LEN_RANGE
    );
    // Wrong keys and parameters.
    assert_eq!(
        rv(m.sign_init(&pk, &MechParam::None)),
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(m.verify_init(&sk, &MechParam::None)),
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(m.sign_init(&sk, &MechParam::MacLen(1))),
        ck::CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        rv(raw.sign_init(&sk, &MechParam::Bytes(vec![1]))),
        ck::CKR_MECHANISM_PARAM_INVALID
    );
    let ec = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_EC,
        Zeroizing::new(h(kat::PKCS8)),
    ));
    assert_eq!(
        rv(m.sign_init(&ec, &MechParam::None)),
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
}

#[test]
fn encryption_formats() {
    let r = registry();
    let (sk, pk) = kat_pair();
    let m = r.get(vendor::CKM_SM2_ENCRYPT).expect("registered");
    // OpenSSL's DER ciphertext decrypts without a parameter.
    let pt = m
        .decrypt_init(&sk, &MechParam::None)
        .expect("init")
        .oneshot(&h(kat::CT_DER))
        .expect("dec");
    assert_eq!(pt, kat::MSG);
    let msg = b"SM2 public key encryption".to_vec();
    let c1c3c2 = m
        .encrypt_init(&pk, &MechParam::None)
        .expect("init")
        .oneshot(&msg)
        .expect("enc");
    assert_eq!(c1c3c2.len(), msg.len() + 97);
    assert_eq!(c1c3c2[0], 4);
    let mut op = m.decrypt_init(&sk, &MechParam::None).expect("init");
    for c in c1c3c2.chunks(10) {
        assert!(op.update(c).expect("update").is_empty());
    }
    assert_eq!(op.finalize().expect("final"), msg);
    // The C3 sits right after C1: decrypting as C1C2C3 fails.
    let old = MechParam::Ulong(vendor::CKV_P11KMS_SM2_CIPHER_C1C2C3);
    assert_eq!(
        rv(m.decrypt_init(&sk, &old).expect("init").oneshot(&c1c3c2)),
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
    let c1c2c3 = m
        .encrypt_init(&pk, &old)
        .expect("init")
        .oneshot(&msg)
        .expect("enc");
    assert_eq!(
        m.decrypt_init(&sk, &old)
            .expect("init")
            .oneshot(&c1c2c3)
            .expect("dec"),
        msg
    );
    assert_eq!(
        rv(m.decrypt_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(&c1c2c3)),
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
    let der = MechParam::Ulong(vendor::CKV_P11KMS_SM2_CIPHER_DER);
    let d = m
        .encrypt_init(&pk, &der)
        .expect("init")
        .oneshot(&msg)
        .expect("enc");
    assert_eq!(d[0], 0x30);
    assert!(
        d.len()
            <= m.encrypt_init(&pk, &der)
                .expect("init")
                .oneshot_len(msg.len())
                .expect("len")
    );
    assert_eq!(
        m.decrypt_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(&d)
            .expect("dec"),
        msg
    );
    // Tampering, truncation and garbage never panic.
    for ct in [&c1c3c2, &d] {
        for i in (0..ct.len()).step_by(7) {
            let mut bad = ct.clone();
            bad[i] ^= 0x41;
            assert!(
                m.decrypt_init(&sk, &MechParam::None)
                    .expect("init")
                    .oneshot(&bad)
                    .is_err(),
                "flip {i}"
            );
        }
        for n in 0..ct.len() {
            assert!(
                m.decrypt_init(&sk, &MechParam::None)
                    .expect("init")
                    .oneshot(&ct[..n])
                    .is_err(),
                "cut {n}"
            );
        }
    }
    assert_eq!(
        rv(m.encrypt_init(&pk, &MechParam::None)
            .expect("init")
            .oneshot(&[])),
        ck::CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        rv(m.encrypt_init(&pk, &MechParam::Ulong(9))),
        ck::CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        rv(m.encrypt_init(&sk, &MechParam::None)),
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    // Wrap/unwrap move a key value.
    let wrapped = m.wrap(&MechParam::None, &pk, &[9; 16]).expect("wrap");
    assert!(wrapped.len() <= m.wrap_len(&MechParam::None, &pk, 16).expect("len"));
    assert_eq!(
        &m.unwrap(&MechParam::None, &sk, &wrapped).expect("unwrap")[..],
        &[9; 16]
    );
    let mut bad = wrapped.clone();
    bad[80] ^= 1;
    assert_eq!(
        rv(m.unwrap(&MechParam::None, &sk, &bad)),
        ck::CKR_WRAPPED_KEY_INVALID
    );
}

#[test]
fn key_pair_generation() {
    let r = registry();
    let m = r.get(vendor::CKM_SM2_KEY_PAIR_GEN).expect("registered");
    let with_params = [Attribute::new(ck::CKA_EC_PARAMS, params())];
    for t in [&[][..], &with_params[..]] {
        let g = m.generate_key_pair(&MechParam::None, t, &[]).expect("gen");
        assert_eq!(g.key_type, vendor::CKK_SM2);
        let sk = key(ck::CKO_PRIVATE_KEY, g.private_value.to_vec());
        let pk = key(ck::CKO_PUBLIC_KEY, g.public_value.clone());
        let s = r.get(vendor::CKM_SM3_SM2DSA).expect("registered");
        let sig = s
            .sign_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(b"m")
            .expect("sign");
        s.verify_init(&pk, &MechParam::None)
            .expect("init")
            .oneshot(b"m", &sig)
            .expect("verify");
        assert!(private_from_pkcs8(&g.private_value).is_ok());
    }
    let p256 = [Attribute::new(ck::CKA_EC_PARAMS, h("06082a8648ce3d030107"))];
    assert_eq!(
        rv(m.generate_key_pair(&MechParam::None, &p256, &[])),
        ck::CKR_CURVE_NOT_SUPPORTED
    );
}

/// Rough SM2 operation rates for the report (`cargo test --release -p
/// p11kmsd sm2_throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn sm2_throughput() {
    let r = registry();
    let (sk, pk) = kat_pair();
    let m = r.get(vendor::CKM_SM3_SM2DSA).expect("registered");
    let sig = m
        .sign_init(&sk, &MechParam::None)
        .expect("init")
        .oneshot(b"x")
        .expect("sign");
    let rate = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        let mut n = 0u32;
        while start.elapsed().as_secs_f64() < 1.0 {
            f();
            n += 1;
        }
        f64::from(n) / start.elapsed().as_secs_f64()
    };
    let sign = rate(&|| {
        m.sign_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(b"x")
            .expect("sign");
    });
    let verify = rate(&|| {
        m.verify_init(&pk, &MechParam::None)
            .expect("init")
            .oneshot(b"x", &sig)
            .expect("verify");
    });
    let e = r.get(vendor::CKM_SM2_ENCRYPT).expect("registered");
    let ct = e
        .encrypt_init(&pk, &MechParam::None)
        .expect("init")
        .oneshot(&[1; 32])
        .expect("enc");
    let dec = rate(&|| {
        e.decrypt_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(&ct)
            .expect("dec");
    });
    // The double-scalar multiplication alone: the crate's constant-time one
    // against the variable-time one verification uses.
    let d = r.get(vendor::CKM_SM2DSA).expect("registered");
    let e = [7u8; 32];
    let raw = d
        .sign_init(&sk, &MechParam::None)
        .expect("init")
        .oneshot(&e)
        .expect("sign");
    let parsed = Signature::from_slice(&raw).expect("signature");
    let verifying = &public(&pk).expect("public").verifying;
    let ct = rate(&|| verifying.verify_prehash(&e, &parsed).expect("verify"));
    let vt = rate(&|| assert!(verify_vartime(verifying, &e, &parsed)));
    println!("SM2: sign {sign:.0}/s, verify {verify:.0}/s, decrypt {dec:.0}/s");
    println!("SM2 verify core: constant-time {ct:.0}/s, variable-time {vt:.0}/s");
}

/// The variable-time verification agrees with the `sm2` crate's own
/// (constant-time) `verify_prehash` on good signatures, on signatures with
/// r or s changed, and on other digests.
#[test]
fn vartime_verification_matches_the_crate() {
    let r = registry();
    let m = r.get(vendor::CKM_SM2DSA).expect("registered");
    let g = r.get(vendor::CKM_SM2_KEY_PAIR_GEN).expect("registered");
    let params = [Attribute::new(ck::CKA_EC_PARAMS, h("06082a811ccf5501822d"))];
    for round in 0..8u8 {
        let pair = g
            .generate_key_pair(&MechParam::None, &params, &[])
            .expect("key pair");
        let sk = key(ck::CKO_PRIVATE_KEY, pair.private_value.to_vec());
        let pk = key(ck::CKO_PUBLIC_KEY, pair.public_value.clone());
        let verifying = &public(&pk).expect("public").verifying;
        let e = [round.wrapping_mul(37) ^ 0x5a; 32];
        let sig = m
            .sign_init(&sk, &MechParam::None)
            .expect("init")
            .oneshot(&e)
            .expect("sign");
        let mut cases = vec![(e, sig.clone(), true)];
        let mut other = e;
        other[31] ^= 1;
        cases.push((other, sig.clone(), false));
        for i in [0usize, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            cases.push((e, bad, false));
        }
        for (digest, s, want) in cases {
            let Ok(parsed) = Signature::from_slice(&s) else {
                continue;
            };
            let crate_says = verifying.verify_prehash(&digest, &parsed).is_ok();
            assert_eq!(crate_says, want, "the crate's verdict, round {round}");
            assert_eq!(
                verify_vartime(verifying, &digest, &parsed),
                want,
                "round {round}"
            );
        }
    }
}
