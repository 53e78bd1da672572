//! EC mechanisms: RFC 6979 A.2.5 verification, ECDSA round trips on the
//! three curves with every hash, CKM_ECDSA input truncation/padding, ECDH
//! with both KDF kinds and point encodings, bad parameters and key types.

use std::collections::HashMap;

use super::kat::{P256_POINT, P256_SCALAR, SIG_SAMPLE_SHA256};
use super::*;
use crate::mech::rsa::kat::hex;

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    super::super::edwards::register(&mut r);
    r
}

fn params(c: Curve) -> Vec<u8> {
    EcCurve::Nist(c).params()
}

fn generate(r: &Registry, c: Curve) -> (Arc<Key>, Arc<Key>, GeneratedKeyPair) {
    let kp = r
        .get(ck::CKM_EC_KEY_PAIR_GEN)
        .expect("m")
        .generate_key_pair(
            &MechParam::None,
            &[Attribute::new(ck::CKA_EC_PARAMS, params(c))],
            &[],
        )
        .expect("gen");
    let sk = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_EC,
        kp.private_value.clone(),
    ));
    let pk = Arc::new(Key::new(
        ck::CKO_PUBLIC_KEY,
        ck::CKK_EC,
        Zeroizing::new(kp.public_value.clone()),
    ));
    (sk, pk, kp)
}

fn attr(a: &[(u64, Vec<u8>)], t: u64) -> Vec<u8> {
    a.iter()
        .find(|(x, _)| *x == t)
        .map(|(_, v)| v.clone())
        .expect("attr")
}

fn sign(r: &Registry, mech: u64, k: &Arc<Key>, msg: &[u8]) -> Result<Vec<u8>> {
    r.get(mech)?.sign_init(k, &MechParam::None)?.oneshot(msg)
}

fn verify(r: &Registry, mech: u64, k: &Arc<Key>, msg: &[u8], sig: &[u8]) -> Result<()> {
    r.get(mech)?
        .verify_init(k, &MechParam::None)?
        .oneshot(msg, sig)
}

fn public_key(attrs: &[(u64, Vec<u8>)]) -> Arc<Key> {
    let map: HashMap<u64, Vec<u8>> = attrs.iter().cloned().collect();
    let (spki, _) = asym::public_from_attrs(ck::CKK_EC, &|t| map.get(&t).cloned()).expect("public");
    Arc::new(Key::new(
        ck::CKO_PUBLIC_KEY,
        ck::CKK_EC,
        Zeroizing::new(spki),
    ))
}

#[test]
fn self_tests_pass() {
    registry().run_self_tests().expect("self-tests");
}

#[test]
fn rfc6979_p256_sha256_verifies() {
    let r = registry();
    let pk = public_key(&[
        (ck::CKA_EC_PARAMS, params(Curve::P256)),
        (ck::CKA_EC_POINT, hex(P256_POINT)),
    ]);
    let sig = hex(SIG_SAMPLE_SHA256);
    verify(&r, ck::CKM_ECDSA_SHA256, &pk, b"sample", &sig).expect("verify");
    let h = provider::digest(Hash::Sha256, b"sample");
    verify(&r, ck::CKM_ECDSA, &pk, &h, &sig).expect("verify raw");
    assert_eq!(
        verify(&r, ck::CKM_ECDSA_SHA256, &pk, b"samplE", &sig)
            .expect_err("bad")
            .rv,
        ck::CKR_SIGNATURE_INVALID
    );
    assert_eq!(
        verify(&r, ck::CKM_ECDSA_SHA256, &pk, b"sample", &sig[1..])
            .expect_err("len")
            .rv,
        ck::CKR_SIGNATURE_LEN_RANGE
    );
    // The same key imported from its scalar signs verifiably.
    let map: HashMap<u64, Vec<u8>> = [
        (ck::CKA_EC_PARAMS, params(Curve::P256)),
        (ck::CKA_VALUE, hex(P256_SCALAR)),
    ]
    .into_iter()
    .collect();
    let (der, _) =
        asym::private_from_attrs(ck::CKK_EC, &|t| map.get(&t).cloned()).expect("private");
    let sk = Arc::new(Key::new(ck::CKO_PRIVATE_KEY, ck::CKK_EC, der));
    let sig = sign(&r, ck::CKM_ECDSA_SHA256, &sk, b"sample").expect("sign");
    verify(&r, ck::CKM_ECDSA_SHA256, &pk, b"sample", &sig).expect("verify own");
}

#[test]
fn ecdsa_round_trips_all_curves_and_hashes() {
    let r = registry();
    for c in Curve::ALL {
        let (sk, pk, kp) = generate(&r, c);
        assert_eq!(attr(&kp.public_attrs, ck::CKA_EC_PARAMS), params(c));
        let point = attr(&kp.public_attrs, ck::CKA_EC_POINT);
        assert_eq!(
            point.len(),
            2 * c.field_len() + 1 + if c == Curve::P521 { 3 } else { 2 }
        );
        assert_eq!(attr(&kp.private_attrs, ck::CKA_VALUE).len(), c.field_len());
        assert_eq!(
            attr(&kp.private_attrs, ck::CKA_PUBLIC_KEY_INFO),
            kp.public_value
        );
        for mech in [
            ck::CKM_ECDSA_SHA1,
            ck::CKM_ECDSA_SHA224,
            ck::CKM_ECDSA_SHA256,
            ck::CKM_ECDSA_SHA384,
            ck::CKM_ECDSA_SHA512,
        ] {
            let mut op = r
                .get(mech)
                .expect("m")
                .sign_init(&sk, &MechParam::None)
                .expect("init");
            assert_eq!(op.sig_len(), 2 * c.field_len());
            assert!(op.multipart());
            op.update(b"multi").expect("u");
            op.update(b"part").expect("u");
            let sig = op.finalize().expect("sign");
            assert_eq!(sig.len(), 2 * c.field_len());
            verify(&r, mech, &pk, b"multipart", &sig).expect("verify");
            assert_eq!(
                verify(&r, mech, &pk, b"multipart!", &sig)
                    .expect_err("bad")
                    .rv,
                ck::CKR_SIGNATURE_INVALID
            );
        }
        let op = r
            .get(ck::CKM_ECDSA)
            .expect("m")
            .sign_init(&sk, &MechParam::None)
            .expect("init");
        assert!(!op.multipart());
        // The public key rebuilt from CKA_EC_PARAMS + CKA_EC_POINT is the same.
        let pk2 = public_key(&kp.public_attrs);
        assert_eq!(pk2.value[..], pk.value[..]);
    }
}

#[test]
fn ecdsa_raw_input_is_truncated_or_padded() {
    let r = registry();
    for c in Curve::ALL {
        let (sk, pk, _) = generate(&r, c);
        let n = match c {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 64,
        };
        for len in [1usize, 16, 20, 28, 32, 48, 64, 100] {
            let h: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(37).wrapping_add(1))
                .collect();
            let res = sign(&r, ck::CKM_ECDSA, &sk, &h);
            if c == Curve::P521 && len > 64 {
                assert_eq!(res.expect_err("long").rv, ck::CKR_DATA_LEN_RANGE);
                continue;
            }
            let sig = res.expect("sign");
            verify(&r, ck::CKM_ECDSA, &pk, &h, &sig).expect("verify");
            // Same integer, other encoding: leftmost n bytes, or zero-padded.
            let same = if len >= n {
                h[..n].to_vec()
            } else {
                let mut v = vec![0u8; n - len];
                v.extend_from_slice(&h);
                v
            };
            verify(&r, ck::CKM_ECDSA, &pk, &same, &sig).expect("equivalent input");
        }
        assert_eq!(
            sign(&r, ck::CKM_ECDSA, &sk, &[1u8; 2000])
                .expect_err("huge")
                .rv,
            ck::CKR_DATA_LEN_RANGE
        );
    }
}

fn ecdh(kdf: u64, shared: &[u8], public: &[u8]) -> MechParam {
    MechParam::Ecdh1 {
        kdf,
        shared_data: shared.to_vec(),
        public_data: public.to_vec(),
    }
}

#[test]
fn ecdh_derive_both_sides() {
    let r = registry();
    for c in Curve::ALL {
        let (a, _, akp) = generate(&r, c);
        let (b, _, bkp) = generate(&r, c);
        let a_point_der = attr(&akp.public_attrs, ck::CKA_EC_POINT);
        let b_point_der = attr(&bkp.public_attrs, ck::CKA_EC_POINT);
        let b_point_raw = b_point_der[if c == Curve::P521 { 3 } else { 2 }..].to_vec();
        for mech in [ck::CKM_ECDH1_DERIVE, ck::CKM_ECDH1_COFACTOR_DERIVE] {
            let m = r.get(mech).expect("m");
            let z1 = m
                .derive(&ecdh(ck::CKD_NULL, &[], &b_point_raw), &a, None)
                .expect("a");
            let z2 = m
                .derive(&ecdh(ck::CKD_NULL, &[], &a_point_der), &b, None)
                .expect("b");
            let z3 = m
                .derive(&ecdh(ck::CKD_NULL, &[], &b_point_der), &a, None)
                .expect("a der");
            assert_eq!(z1.len(), c.field_len());
            assert_eq!(z1, z2);
            assert_eq!(z1, z3);
            // Truncation keeps the trailing bytes.
            let t = m
                .derive(&ecdh(ck::CKD_NULL, &[], &b_point_raw), &a, Some(16))
                .expect("trunc");
            assert_eq!(&t[..], &z1[z1.len() - 16..]);
            // X9.63 KDF with shared data, checked against its definition.
            let k = m
                .derive(
                    &ecdh(ck::CKD_SHA256_KDF, b"info", &b_point_raw),
                    &a,
                    Some(40),
                )
                .expect("kdf");
            let mut want = Vec::new();
            for counter in [1u32, 2] {
                let mut input = z1.to_vec();
                input.extend_from_slice(&counter.to_be_bytes());
                input.extend_from_slice(b"info");
                want.extend(provider::digest(Hash::Sha256, &input));
            }
            assert_eq!(&k[..], &want[..40]);
            let k2 = m
                .derive(
                    &ecdh(ck::CKD_SHA256_KDF, b"info", &a_point_der),
                    &b,
                    Some(40),
                )
                .expect("kdf b");
            assert_eq!(k, k2);
        }
    }
}

#[test]
fn ecdh_bad_params() {
    let r = registry();
    let (a, _, _) = generate(&r, Curve::P256);
    let (_, _, other) = generate(&r, Curve::P384);
    let m = r.get(ck::CKM_ECDH1_DERIVE).expect("m");
    let good = hex(P256_POINT);
    let mut off_curve = good.clone();
    off_curve[40] ^= 1;
    for p in [
        MechParam::None,
        ecdh(ck::CKD_NULL, b"shared", &good),
        ecdh(99, &[], &good),
        ecdh(ck::CKD_NULL, &[], &off_curve),
        ecdh(ck::CKD_NULL, &[], &good[..33]),
        ecdh(
            ck::CKD_NULL,
            &[],
            &attr(&other.public_attrs, ck::CKA_EC_POINT),
        ),
        ecdh(ck::CKD_NULL, &[], &[]),
    ] {
        assert_eq!(
            m.derive(&p, &a, None).expect_err("bad").rv,
            ck::CKR_MECHANISM_PARAM_INVALID,
            "{p:?}"
        );
    }
    assert_eq!(
        m.derive(&ecdh(ck::CKD_NULL, &[], &good), &a, Some(33))
            .expect_err("long")
            .rv,
        ck::CKR_TEMPLATE_INCONSISTENT
    );
}

#[test]
fn key_generation_params() {
    let r = registry();
    let m = r.get(ck::CKM_EC_KEY_PAIR_GEN).expect("m");
    let gen = |v: Vec<u8>| {
        m.generate_key_pair(
            &MechParam::None,
            &[Attribute::new(ck::CKA_EC_PARAMS, v)],
            &[],
        )
        .map(|_| ())
        .err()
        .map(|e| e.rv)
    };
    assert_eq!(
        m.generate_key_pair(&MechParam::None, &[], &[])
            .err()
            .expect("missing")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    assert_eq!(
        gen(EcCurve::Ed25519.params()),
        Some(ck::CKR_CURVE_NOT_SUPPORTED)
    );
    // secp256k1 is well-formed but unsupported.
    assert_eq!(
        gen(vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]),
        Some(ck::CKR_CURVE_NOT_SUPPORTED)
    );
    assert_eq!(
        gen(vec![0x06, 0x50, 0x01]),
        Some(ck::CKR_ATTRIBUTE_VALUE_INVALID)
    );
    assert_eq!(
        gen(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        Some(ck::CKR_ATTRIBUTE_VALUE_INVALID)
    );
    // Curve names as PrintableString are accepted.
    assert_eq!(gen(asym::tlv(0x13, b"secp384r1")), None);
}

#[test]
fn wrong_key_types() {
    let r = registry();
    let (sk, pk, _) = generate(&r, Curve::P256);
    let rsa = Arc::new(Key::new(
        ck::CKO_PRIVATE_KEY,
        ck::CKK_RSA,
        Zeroizing::new(vec![0x30, 0]),
    ));
    for k in [&rsa, &pk] {
        let e = r
            .get(ck::CKM_ECDSA)
            .expect("m")
            .sign_init(k, &MechParam::None)
            .err()
            .expect("fail");
        assert_eq!(e.rv, ck::CKR_KEY_TYPE_INCONSISTENT);
    }
    let e = r
        .get(ck::CKM_ECDSA)
        .expect("m")
        .verify_init(&sk, &MechParam::None)
        .err()
        .expect("fail");
    assert_eq!(e.rv, ck::CKR_KEY_TYPE_INCONSISTENT);
    let e = r
        .get(ck::CKM_ECDH1_DERIVE)
        .expect("m")
        .derive(&ecdh(ck::CKD_NULL, &[], &hex(P256_POINT)), &rsa, None)
        .expect_err("fail");
    assert_eq!(e.rv, ck::CKR_KEY_TYPE_INCONSISTENT);
    let e = r
        .get(ck::CKM_ECDSA)
        .expect("m")
        .sign_init(&sk, &MechParam::Bytes(vec![]))
        .err()
        .expect("fail");
    assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID);
}

#[test]
fn mechanism_info() {
    let r = registry();
    let i = r.get(ck::CKM_ECDSA).expect("m").info();
    assert_eq!((i.min_key_size, i.max_key_size), (256, 521));
    assert_eq!(
        i.flags,
        ck::CKF_SIGN
            | ck::CKF_VERIFY
            | ck::CKF_EC_F_P
            | ck::CKF_EC_NAMEDCURVE
            | ck::CKF_EC_UNCOMPRESS
    );
    assert_eq!(
        r.get(ck::CKM_ECDH1_DERIVE).expect("m").info().flags,
        ck::CKF_DERIVE | EC_FLAGS
    );
    assert_eq!(
        r.get(ck::CKM_EC_KEY_PAIR_GEN).expect("m").info().flags,
        ck::CKF_GENERATE_KEY_PAIR | EC_FLAGS
    );
}
