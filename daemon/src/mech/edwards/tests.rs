//! Ed25519 (RFC 8032 §7.1 test 1) and X25519 (RFC 7748 §6.1) through the
//! registered mechanisms, plus generation, parameters and key types.

use std::collections::HashMap;

use super::kat::*;
use super::*;
use crate::mech::rsa::kat::hex;

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    super::super::ec::register(&mut r);
    r
}

fn import(key_type: u64, params: Vec<u8>, value: &[u8]) -> (Arc<Key>, Vec<(u64, Vec<u8>)>) {
    let map: HashMap<u64, Vec<u8>> = [(ck::CKA_EC_PARAMS, params), (ck::CKA_VALUE, value.to_vec())]
        .into_iter()
        .collect();
    let (der, attrs) =
        asym::private_from_attrs(key_type, &|t| map.get(&t).cloned()).expect("private");
    (
        Arc::new(Key::new(ck::CKO_PRIVATE_KEY, key_type, der)),
        attrs,
    )
}

fn import_public(key_type: u64, params: Vec<u8>, point: &[u8]) -> Arc<Key> {
    let map: HashMap<u64, Vec<u8>> = [
        (ck::CKA_EC_PARAMS, params),
        (ck::CKA_EC_POINT, point.to_vec()),
    ]
    .into_iter()
    .collect();
    let (spki, _) = asym::public_from_attrs(key_type, &|t| map.get(&t).cloned()).expect("public");
    Arc::new(Key::new(ck::CKO_PUBLIC_KEY, key_type, Zeroizing::new(spki)))
}

fn attr(a: &[(u64, Vec<u8>)], t: u64) -> Vec<u8> {
    a.iter()
        .find(|(x, _)| *x == t)
        .map(|(_, v)| v.clone())
        .expect("attr")
}

#[test]
fn self_tests_pass() {
    registry().run_self_tests().expect("self-tests");
}

#[test]
fn rfc8032_test1() {
    let r = registry();
    // The curve given by name, as SoftHSM and OpenSC write it.
    let (sk, attrs) = import(
        ck::CKK_EC_EDWARDS,
        asym::tlv(0x13, b"edwards25519"),
        &hex(ED_SECRET),
    );
    assert_eq!(attr(&attrs, ck::CKA_EC_PARAMS), EcCurve::Ed25519.params());
    let m = r.get(ck::CKM_EDDSA).expect("m");
    let mut op = m.sign_init(&sk, &MechParam::None).expect("init");
    assert_eq!(op.sig_len(), 64);
    assert!(!op.multipart());
    let sig = op.oneshot(b"").expect("sign");
    assert_eq!(sig, hex(ED_SIG_EMPTY));
    // Public key from CKA_EC_POINT, raw and as DER OCTET STRING.
    for point in [hex(ED_PUBLIC), asym::octet_string(&hex(ED_PUBLIC))] {
        let pk = import_public(ck::CKK_EC_EDWARDS, EcCurve::Ed25519.params(), &point);
        assert_eq!(pk.value[..], attr(&attrs, ck::CKA_PUBLIC_KEY_INFO)[..]);
        m.verify_init(&pk, &MechParam::None)
            .expect("init")
            .oneshot(b"", &sig)
            .expect("verify");
        let e = m
            .verify_init(&pk, &MechParam::None)
            .expect("init")
            .oneshot(b"x", &sig)
            .expect_err("bad");
        assert_eq!(e.rv, ck::CKR_SIGNATURE_INVALID);
        let e = m
            .verify_init(&pk, &MechParam::None)
            .expect("init")
            .oneshot(b"", &sig[1..])
            .expect_err("len");
        assert_eq!(e.rv, ck::CKR_SIGNATURE_LEN_RANGE);
    }
}

#[test]
fn eddsa_params() {
    let r = registry();
    let (sk, _) = import(
        ck::CKK_EC_EDWARDS,
        EcCurve::Ed25519.params(),
        &hex(ED_SECRET),
    );
    let m = r.get(ck::CKM_EDDSA).expect("m");
    let sig = m
        .sign_init(
            &sk,
            &MechParam::Eddsa {
                ph_flag: false,
                context: vec![],
            },
        )
        .expect("init")
        .oneshot(b"")
        .expect("sign");
    assert_eq!(sig, hex(ED_SIG_EMPTY));
    for p in [
        MechParam::Eddsa {
            ph_flag: true,
            context: vec![],
        },
        MechParam::Eddsa {
            ph_flag: false,
            context: b"ctx".to_vec(),
        },
        MechParam::Bytes(vec![]),
    ] {
        assert_eq!(
            m.sign_init(&sk, &p).err().expect("fail").rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn rfc7748_x25519_through_ecdh1_derive() {
    let r = registry();
    let (alice, attrs) = import(
        ck::CKK_EC_MONTGOMERY,
        EcCurve::X25519.params(),
        &hex(X_ALICE_PRIVATE),
    );
    let spki = attr(&attrs, ck::CKA_PUBLIC_KEY_INFO);
    assert!(spki.ends_with(&hex(X_ALICE_PUBLIC)));
    let m = r.get(ck::CKM_ECDH1_DERIVE).expect("m");
    for public in [hex(X_BOB_PUBLIC), asym::octet_string(&hex(X_BOB_PUBLIC))] {
        let p = MechParam::Ecdh1 {
            kdf: ck::CKD_NULL,
            shared_data: vec![],
            public_data: public,
        };
        assert_eq!(
            m.derive(&p, &alice, None).expect("derive")[..],
            hex(X_SHARED)[..]
        );
    }
    // Small-order point: all-zero shared secret refused.
    let p = MechParam::Ecdh1 {
        kdf: ck::CKD_NULL,
        shared_data: vec![],
        public_data: vec![0; 32],
    };
    assert_eq!(
        m.derive(&p, &alice, None).expect_err("zero").rv,
        ck::CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn generation_and_round_trips() {
    let r = registry();
    let ed = r
        .get(ck::CKM_EC_EDWARDS_KEY_PAIR_GEN)
        .expect("m")
        .generate_key_pair(
            &MechParam::None,
            &[Attribute::new(ck::CKA_EC_PARAMS, EcCurve::Ed25519.params())],
            &[],
        )
        .expect("gen");
    assert_eq!(ed.key_type, ck::CKK_EC_EDWARDS);
    assert_eq!(attr(&ed.public_attrs, ck::CKA_EC_POINT).len(), 34);
    assert_eq!(attr(&ed.private_attrs, ck::CKA_VALUE).len(), 32);
    let sk = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_EC_EDWARDS,
        ed.private_value.clone(),
    ));
    let pk = Arc::new(Key::new(
        ck::CKO_PUBLIC_KEY,
        ck::CKK_EC_EDWARDS,
        Zeroizing::new(ed.public_value.clone()),
    ));
    let m = r.get(ck::CKM_EDDSA).expect("m");
    let sig = m
        .sign_init(&sk, &MechParam::None)
        .expect("i")
        .oneshot(b"hello")
        .expect("sign");
    m.verify_init(&pk, &MechParam::None)
        .expect("i")
        .oneshot(b"hello", &sig)
        .expect("verify");

    let gen_x = || {
        r.get(ck::CKM_EC_MONTGOMERY_KEY_PAIR_GEN)
            .expect("m")
            .generate_key_pair(
                &MechParam::None,
                &[Attribute::new(
                    ck::CKA_EC_PARAMS,
                    asym::tlv(0x13, b"curve25519"),
                )],
                &[],
            )
            .expect("gen")
    };
    let (a, b) = (gen_x(), gen_x());
    assert_eq!(a.key_type, ck::CKK_EC_MONTGOMERY);
    let ka = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_EC_MONTGOMERY,
        a.private_value.clone(),
    ));
    let kb = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_EC_MONTGOMERY,
        b.private_value.clone(),
    ));
    let d = r.get(ck::CKM_ECDH1_DERIVE).expect("m");
    let p = |kp: &GeneratedKeyPair| MechParam::Ecdh1 {
        kdf: ck::CKD_SHA256_KDF,
        shared_data: vec![],
        public_data: attr(&kp.public_attrs, ck::CKA_EC_POINT),
    };
    assert_eq!(
        d.derive(&p(&b), &ka, Some(32)).expect("a"),
        d.derive(&p(&a), &kb, Some(32)).expect("b")
    );

    // Curve and mechanism must agree.
    let e = r
        .get(ck::CKM_EC_EDWARDS_KEY_PAIR_GEN)
        .expect("m")
        .generate_key_pair(
            &MechParam::None,
            &[Attribute::new(ck::CKA_EC_PARAMS, EcCurve::X25519.params())],
            &[],
        )
        .err()
        .expect("fail");
    assert_eq!(e.rv, ck::CKR_CURVE_NOT_SUPPORTED);
    let e = r
        .get(ck::CKM_EC_EDWARDS_KEY_PAIR_GEN)
        .expect("m")
        .generate_key_pair(&MechParam::None, &[], &[])
        .err()
        .expect("fail");
    assert_eq!(e.rv, ck::CKR_TEMPLATE_INCOMPLETE);

    // Wrong key types.
    assert_eq!(
        m.sign_init(&ka, &MechParam::None).err().expect("x").rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        m.verify_init(&sk, &MechParam::None).err().expect("x").rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    let p = MechParam::Ecdh1 {
        kdf: ck::CKD_NULL,
        shared_data: vec![],
        public_data: hex(X_BOB_PUBLIC),
    };
    assert_eq!(
        d.derive(&p, &sk, None).expect_err("x").rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
}

#[test]
fn mechanism_info() {
    let r = registry();
    assert_eq!(
        r.get(ck::CKM_EDDSA).expect("m").info().flags,
        ck::CKF_SIGN | ck::CKF_VERIFY
    );
    assert_eq!(
        r.get(ck::CKM_EC_EDWARDS_KEY_PAIR_GEN)
            .expect("m")
            .info()
            .flags,
        ck::CKF_GENERATE_KEY_PAIR
    );
    assert_eq!(
        r.get(ck::CKM_EC_MONTGOMERY_KEY_PAIR_GEN)
            .expect("m")
            .info()
            .flags,
        ck::CKF_GENERATE_KEY_PAIR
    );
}
