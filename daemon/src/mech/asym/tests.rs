//! DER and attribute conversions: curve parameters, points, RSA/EC/Curve25519
//! import from attributes and from PKCS#8, and malformed input.

use std::collections::HashMap;

use super::*;
use crate::mech::rsa::kat::{hex, PKCS8_HEX, SPKI_HEX};

type Map = HashMap<u64, Vec<u8>>;

fn getter(m: &Map) -> impl Fn(u64) -> Option<Vec<u8>> + '_ {
    |t| m.get(&t).cloned()
}

fn attr(a: &[(u64, Vec<u8>)], t: u64) -> Vec<u8> {
    a.iter()
        .find(|(x, _)| *x == t)
        .map(|(_, v)| v.clone())
        .expect("attr")
}

/// RFC 8410 §10.3 example Ed25519 private key and its public key.
const ED_PKCS8: &str = "302e020100300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842";
const ED_PUBLIC: &str = "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";

#[test]
fn ec_params() {
    assert_eq!(
        parse_ec_params(&hex("06082a8648ce3d030107")).expect("p256"),
        EcCurve::Nist(Curve::P256)
    );
    assert_eq!(
        parse_ec_params(&hex("06052b81040022")).expect("p384"),
        EcCurve::Nist(Curve::P384)
    );
    assert_eq!(
        parse_ec_params(&hex("06052b81040023")).expect("p521"),
        EcCurve::Nist(Curve::P521)
    );
    assert_eq!(
        parse_ec_params(&hex("06032b6570")).expect("ed"),
        EcCurve::Ed25519
    );
    assert_eq!(
        parse_ec_params(&hex("06032b656e")).expect("x"),
        EcCurve::X25519
    );
    assert_eq!(
        parse_ec_params(&tlv(0x13, b"edwards25519")).expect("name"),
        EcCurve::Ed25519
    );
    assert_eq!(
        parse_ec_params(&tlv(0x13, b"prime256v1")).expect("name"),
        EcCurve::Nist(Curve::P256)
    );
    for c in [
        EcCurve::Nist(Curve::P256),
        EcCurve::Nist(Curve::P384),
        EcCurve::Nist(Curve::P521),
        EcCurve::Ed25519,
        EcCurve::X25519,
    ] {
        assert_eq!(parse_ec_params(&c.params()).expect("round trip"), c);
    }
    assert_eq!(
        parse_ec_params(&hex("06032b6571")).expect_err("ed448").rv,
        ck::CKR_CURVE_NOT_SUPPORTED
    );
    assert_eq!(
        parse_ec_params(&tlv(0x13, b"brainpoolP256r1"))
            .expect_err("bp")
            .rv,
        ck::CKR_CURVE_NOT_SUPPORTED
    );
    for bad in [
        "",
        "06",
        "0609",
        "06082a8648ce3d03010700",
        "0500",
        "3000",
        "068100",
    ] {
        assert_eq!(
            parse_ec_params(&hex(bad)).expect_err(bad).rv,
            ck::CKR_ATTRIBUTE_VALUE_INVALID,
            "{bad}"
        );
    }
}

#[test]
fn ec_points_raw_or_der() {
    let p = crate::mech::ec::kat::P256_POINT;
    let raw = hex(p);
    let der = octet_string(&raw);
    let c = EcCurve::Nist(Curve::P256);
    assert_eq!(parse_ec_point(c, &raw).expect("raw"), raw);
    assert_eq!(parse_ec_point(c, &der).expect("der"), raw);
    assert!(parse_ec_point(c, &raw[1..]).is_err());
    assert!(parse_ec_point(c, &der[..der.len() - 1]).is_err());
    let mut compressed = raw[..33].to_vec();
    compressed[0] = 2;
    assert!(parse_ec_point(c, &compressed).is_err());
    assert!(parse_ec_point(c, &octet_string(&compressed)).is_err());
    let x = [9u8; 32];
    assert_eq!(parse_ec_point(EcCurve::X25519, &x).expect("raw"), x);
    assert_eq!(
        parse_ec_point(EcCurve::X25519, &octet_string(&x)).expect("der"),
        x
    );
    // Long-form DER lengths (P-521).
    let long = octet_string(&[4u8; 133]);
    assert_eq!(&long[..3], &[0x04, 0x81, 0x85]);
    assert_eq!(
        parse_ec_point(EcCurve::Nist(Curve::P521), &long)
            .expect("p521")
            .len(),
        133
    );
}

#[test]
fn rsa_from_attrs_with_and_without_primes() {
    let (kt, der, attrs) = private_from_pkcs8(&hex(PKCS8_HEX)).expect("pkcs8");
    assert_eq!(kt, ck::CKK_RSA);
    assert_eq!(attr(&attrs, ck::CKA_PUBLIC_KEY_INFO), hex(SPKI_HEX));
    let full: Map = attrs.iter().cloned().collect();
    let (der2, attrs2) = private_from_attrs(ck::CKK_RSA, &getter(&full)).expect("full");
    assert_eq!(der2, der);
    assert_eq!(attrs2, attrs);

    // Primes recovered from n, e, d.
    let mut partial: Map = Map::new();
    for t in [
        ck::CKA_MODULUS,
        ck::CKA_PUBLIC_EXPONENT,
        ck::CKA_PRIVATE_EXPONENT,
    ] {
        partial.insert(t, full[&t].clone());
    }
    let (der3, attrs3) = private_from_attrs(ck::CKK_RSA, &getter(&partial)).expect("recovered");
    assert_eq!(der3, der);
    let mut p = [
        attr(&attrs3, ck::CKA_PRIME_1),
        attr(&attrs3, ck::CKA_PRIME_2),
    ];
    let mut want = [
        full[&ck::CKA_PRIME_1].clone(),
        full[&ck::CKA_PRIME_2].clone(),
    ];
    p.sort();
    want.sort();
    assert_eq!(p, want);

    // Missing and inconsistent pieces.
    let mut m = partial.clone();
    m.remove(&ck::CKA_PRIVATE_EXPONENT);
    assert_eq!(
        private_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("no d")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    let mut m = partial.clone();
    m.insert(ck::CKA_PRIME_1, full[&ck::CKA_PRIME_1].clone());
    assert_eq!(
        private_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("one prime")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    let mut m = full.clone();
    let mut c = m[&ck::CKA_COEFFICIENT].clone();
    c[5] ^= 1;
    m.insert(ck::CKA_COEFFICIENT, c);
    assert_eq!(
        private_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("crt")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
    let mut m = full.clone();
    let mut d = m[&ck::CKA_PRIVATE_EXPONENT].clone();
    d[10] ^= 1;
    m.insert(ck::CKA_PRIVATE_EXPONENT, d);
    assert_eq!(
        private_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("d")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
    let mut m = full.clone();
    m.insert(ck::CKA_MODULUS, vec![0xff; 40]);
    assert_eq!(
        private_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("n")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
}

#[test]
fn rsa_public_from_attrs() {
    let (_, _, attrs) = private_from_pkcs8(&hex(PKCS8_HEX)).expect("pkcs8");
    let mut m: Map = Map::new();
    m.insert(ck::CKA_MODULUS, attr(&attrs, ck::CKA_MODULUS));
    m.insert(ck::CKA_PUBLIC_EXPONENT, vec![0, 1, 0, 1]);
    let (spki, out) = public_from_attrs(ck::CKK_RSA, &getter(&m)).expect("public");
    assert_eq!(spki, hex(SPKI_HEX));
    assert_eq!(attr(&out, ck::CKA_MODULUS_BITS), 2048u64.to_le_bytes());
    assert_eq!(attr(&out, ck::CKA_PUBLIC_EXPONENT), vec![1, 0, 1]);
    m.remove(&ck::CKA_PUBLIC_EXPONENT);
    assert_eq!(
        public_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("e")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    m.insert(ck::CKA_PUBLIC_EXPONENT, vec![1, 0, 1]);
    m.insert(ck::CKA_MODULUS, vec![0xc5; 64]);
    assert_eq!(
        public_from_attrs(ck::CKK_RSA, &getter(&m))
            .expect_err("small")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
}

#[test]
fn ec_from_attrs() {
    let scalar = hex(crate::mech::ec::kat::P256_SCALAR);
    let point = hex(crate::mech::ec::kat::P256_POINT);
    let params = EcCurve::Nist(Curve::P256).params();
    let m: Map = [
        (ck::CKA_EC_PARAMS, params.clone()),
        (ck::CKA_VALUE, scalar.clone()),
    ]
    .into_iter()
    .collect();
    let (der, attrs) = private_from_attrs(ck::CKK_EC, &getter(&m)).expect("private");
    let pm: Map = [
        (ck::CKA_EC_PARAMS, params.clone()),
        (ck::CKA_EC_POINT, point.clone()),
    ]
    .into_iter()
    .collect();
    let (spki, pattrs) = public_from_attrs(ck::CKK_EC, &getter(&pm)).expect("public");
    assert_eq!(attr(&attrs, ck::CKA_PUBLIC_KEY_INFO), spki);
    assert_eq!(attr(&pattrs, ck::CKA_EC_POINT), octet_string(&point));
    // Unwrapping the PKCS#8 gives the same key back.
    let (kt, der2, attrs2) = private_from_pkcs8(&der).expect("pkcs8");
    assert_eq!(kt, ck::CKK_EC);
    assert_eq!(der2, der);
    assert_eq!(attr(&attrs2, ck::CKA_VALUE), scalar);
    // A short scalar is padded; zero and n are refused.
    let mut m2 = m.clone();
    m2.insert(ck::CKA_VALUE, vec![1]);
    assert_eq!(
        attr(
            &private_from_attrs(ck::CKK_EC, &getter(&m2))
                .expect("short")
                .1,
            ck::CKA_VALUE
        )
        .len(),
        32
    );
    for bad in [
        vec![0u8; 32],
        hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
        vec![1u8; 33],
    ] {
        m2.insert(ck::CKA_VALUE, bad);
        assert_eq!(
            private_from_attrs(ck::CKK_EC, &getter(&m2))
                .expect_err("range")
                .rv,
            ck::CKR_ATTRIBUTE_VALUE_INVALID
        );
    }
    // Off-curve point, wrong key type for the curve, missing pieces.
    let mut pm2 = pm.clone();
    let mut off = point.clone();
    off[64] ^= 1;
    pm2.insert(ck::CKA_EC_POINT, off);
    assert_eq!(
        public_from_attrs(ck::CKK_EC, &getter(&pm2))
            .expect_err("off")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
    assert_eq!(
        public_from_attrs(ck::CKK_EC_EDWARDS, &getter(&pm))
            .expect_err("type")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
    let only: Map = [(ck::CKA_EC_PARAMS, params)].into_iter().collect();
    assert_eq!(
        public_from_attrs(ck::CKK_EC, &getter(&only))
            .expect_err("point")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    assert_eq!(
        private_from_attrs(ck::CKK_EC, &getter(&only))
            .expect_err("value")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    assert_eq!(
        private_from_attrs(ck::CKK_AES, &getter(&only))
            .expect_err("aes")
            .rv,
        ck::CKR_ATTRIBUTE_VALUE_INVALID
    );
}

#[test]
fn curve25519_pkcs8_rfc8410() {
    let (kt, der, attrs) = private_from_pkcs8(&hex(ED_PKCS8)).expect("pkcs8");
    assert_eq!(kt, ck::CKK_EC_EDWARDS);
    assert_eq!(der[..], hex(ED_PKCS8)[..]);
    let spki = attr(&attrs, ck::CKA_PUBLIC_KEY_INFO);
    assert_eq!(
        curve25519_public(&spki).expect("spki"),
        (EcCurve::Ed25519, hex(ED_PUBLIC))
    );
    assert_eq!(attr(&attrs, ck::CKA_EC_PARAMS), EcCurve::Ed25519.params());
    // X25519 key of the same bytes: other OID, other key type.
    let x = hex(&ED_PKCS8.replace("2b6570", "2b656e"));
    assert_eq!(
        private_from_pkcs8(&x).expect("x25519").0,
        ck::CKK_EC_MONTGOMERY
    );
}

#[test]
fn malformed_pkcs8_never_panics() {
    for good in [hex(PKCS8_HEX), hex(ED_PKCS8)] {
        for n in 0..good.len() {
            let e = private_from_pkcs8(&good[..n]).expect_err("truncated");
            assert_eq!(e.rv, ck::CKR_WRAPPED_KEY_INVALID);
        }
        for i in (0..good.len()).step_by(7) {
            let mut v = good.clone();
            v[i] ^= 0x5a;
            if let Err(e) = private_from_pkcs8(&v) {
                assert_eq!(e.rv, ck::CKR_WRAPPED_KEY_INVALID);
            }
        }
    }
    // Unknown algorithm (DSA).
    let dsa = hex("3019020100300b06072a8648ce38040105000407040500000000");
    assert_eq!(
        private_from_pkcs8(&dsa).expect_err("dsa").rv,
        ck::CKR_WRAPPED_KEY_INVALID
    );
}

#[test]
fn der_lengths() {
    assert_eq!(tlv(4, &[0; 127])[..2], [4, 127]);
    assert_eq!(tlv(4, &[0; 128])[..3], [4, 0x81, 128]);
    assert_eq!(tlv(4, &[0; 300])[..4], [4, 0x82, 1, 44]);
    let mut d = Der(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]);
    assert!(d.read().is_err());
    let mut d = Der(&[0x04, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert!(d.read().is_err());
}
