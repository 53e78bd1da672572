//! DER and attribute conversions for asymmetric keys.
//!
//! The object layer stores a private key as PKCS#8 DER and a public key as
//! SubjectPublicKeyInfo DER (`Key::value`) next to the PKCS#11 attributes a
//! consumer reads (`CKA_MODULUS`, `CKA_EC_POINT`, ...). The functions here
//! turn one form into the other for `C_CreateObject`, `C_UnwrapKey` and key
//! generation, checking that the pieces belong together (PKCS#11 3.0 §2.1
//! RSA, §2.3 EC, §2.3.5/§2.3.7 Edwards/Montgomery key objects).
//!
//! Conventions of the attribute values:
//! - `CKA_EC_PARAMS` is the DER OID of a named curve; a DER PrintableString
//!   with the curve's name (as SoftHSM and OpenSC write for Edwards curves)
//!   is accepted on input and stored as the OID.
//! - `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed point (or
//!   the 32-byte Curve25519 key); raw points are accepted on input.
//! - RSA integers are big-endian without leading zeros.
//!
//! Malformed input gives `CKR_ATTRIBUTE_VALUE_INVALID` (or
//! `CKR_WRAPPED_KEY_INVALID` for an unwrapped PKCS#8 blob), never a panic.

use p11kms_protocol::{Attribute, MechParam};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::provider::{self, Curve, EcParts, RsaParts};
use super::GeneratedKeyPair;
use crate::error::{Error, Result};

/// Attribute list returned to the object layer.
pub type Attrs = Vec<(u64, Vec<u8>)>;
/// Attribute lookup the object layer hands in (the value of one type).
pub type AttrGet<'a> = &'a dyn Fn(u64) -> Option<Vec<u8>>;

// ---------------------------------------------------------------- DER

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_PRINTABLE: u8 = 0x13;
const TAG_SEQUENCE: u8 = 0x30;

/// OID contents (without tag and length).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_X25519: &[u8] = &[0x2b, 0x65, 0x6e];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One DER element: tag, contents.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        v.push(0x80 | (len.len() - skip) as u8);
        v.extend_from_slice(&len[skip..]);
    }
    v.extend_from_slice(content);
    v
}

/// A DER OCTET STRING.
pub fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, content)
}

/// Reads DER elements one after the other.
pub struct Der<'a>(pub &'a [u8]);

impl<'a> Der<'a> {
    /// The next element's tag and contents (definite lengths only, as DER
    /// requires). Any truncation or bad length → `CKR_ATTRIBUTE_VALUE_INVALID`.
    pub fn read(&mut self) -> Result<(u8, &'a [u8])> {
        let bad = || Error::attribute_value_invalid("malformed DER");
        let d = self.0;
        let tag = *d.first().ok_or_else(bad)?;
        let first = *d.get(1).ok_or_else(bad)?;
        let (len, hdr) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(bad());
            }
            let bytes = d.get(2..2 + n).ok_or_else(bad)?;
            let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            // DER: the shortest form only.
            if len < 0x80 || bytes[0] == 0 {
                return Err(bad());
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len).ok_or_else(bad)?;
        let content = d.get(hdr..end).ok_or_else(bad)?;
        self.0 = &d[end..];
        Ok((tag, content))
    }

    /// The next element, which must have tag `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8]> {
        match self.read()? {
            (t, c) if t == tag => Ok(c),
            _ => Err(Error::attribute_value_invalid("unexpected DER element")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The single DER element making up all of `v`.
fn whole(v: &[u8], tag: u8) -> Result<&[u8]> {
    let mut d = Der(v);
    let c = d.expect(tag)?;
    if !d.is_empty() {
        return Err(Error::attribute_value_invalid(
            "trailing data after DER element",
        ));
    }
    Ok(c)
}

// ---------------------------------------------------------------- curves

/// The curve named by `CKA_EC_PARAMS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcCurve {
    Nist(Curve),
    Ed25519,
    X25519,
}

impl EcCurve {
    /// `CKA_EC_PARAMS` value: the DER OID.
    pub fn params(self) -> Vec<u8> {
        tlv(TAG_OID, self.oid())
    }

    fn oid(self) -> &'static [u8] {
        match self {
            EcCurve::Nist(Curve::P256) => OID_P256,
            EcCurve::Nist(Curve::P384) => OID_P384,
            EcCurve::Nist(Curve::P521) => OID_P521,
            EcCurve::Ed25519 => OID_ED25519,
            EcCurve::X25519 => OID_X25519,
        }
    }

    /// The `CKK_*` key type that goes with the curve.
    pub fn key_type(self) -> u64 {
        match self {
            EcCurve::Nist(_) => ck::CKK_EC,
            EcCurve::Ed25519 => ck::CKK_EC_EDWARDS,
            EcCurve::X25519 => ck::CKK_EC_MONTGOMERY,
        }
    }

    /// Length of the raw public value (uncompressed point or 32 bytes).
    pub fn point_len(self) -> usize {
        match self {
            EcCurve::Nist(c) => 1 + 2 * c.field_len(),
            _ => 32,
        }
    }
}

/// The curve a key-pair generation asks for: no mechanism parameter, and
/// `CKA_EC_PARAMS` in the public template (`CKR_TEMPLATE_INCOMPLETE`
/// without it), parsed by [`parse_ec_params`].
pub fn keygen_curve(param: &MechParam, public: &[Attribute]) -> Result<EcCurve> {
    if *param != MechParam::None {
        return Err(Error::param_invalid(
            "key pair generation takes no parameter",
        ));
    }
    let params = template_bytes(public, ck::CKA_EC_PARAMS)
        .ok_or_else(|| Error::new(ck::CKR_TEMPLATE_INCOMPLETE, "CKA_EC_PARAMS missing"))?;
    parse_ec_params(params)
}

/// Parse `CKA_EC_PARAMS`: a named-curve OID or a PrintableString curve
/// name. Well-formed but unknown → `CKR_CURVE_NOT_SUPPORTED`; explicit
/// domain parameters and malformed DER → `CKR_ATTRIBUTE_VALUE_INVALID`.
pub fn parse_ec_params(v: &[u8]) -> Result<EcCurve> {
    let mut d = Der(v);
    let (tag, c) = d.read()?;
    if !d.is_empty() {
        return Err(Error::attribute_value_invalid(
            "trailing data in CKA_EC_PARAMS",
        ));
    }
    if c.is_empty() {
        return Err(Error::attribute_value_invalid("empty CKA_EC_PARAMS"));
    }
    let curve = match tag {
        TAG_OID => match c {
            OID_P256 => Some(EcCurve::Nist(Curve::P256)),
            OID_P384 => Some(EcCurve::Nist(Curve::P384)),
            OID_P521 => Some(EcCurve::Nist(Curve::P521)),
            OID_ED25519 => Some(EcCurve::Ed25519),
            OID_X25519 => Some(EcCurve::X25519),
            _ => None,
        },
        TAG_PRINTABLE => match c {
            b"prime256v1" | b"secp256r1" | b"P-256" => Some(EcCurve::Nist(Curve::P256)),
            b"secp384r1" | b"P-384" => Some(EcCurve::Nist(Curve::P384)),
            b"secp521r1" | b"P-521" => Some(EcCurve::Nist(Curve::P521)),
            b"edwards25519" | b"Ed25519" => Some(EcCurve::Ed25519),
            b"curve25519" | b"X25519" => Some(EcCurve::X25519),
            _ => None,
        },
        _ => {
            return Err(Error::attribute_value_invalid(
                "CKA_EC_PARAMS is neither a curve OID nor a curve name",
            ))
        }
    };
    curve.ok_or_else(|| Error::rv(ck::CKR_CURVE_NOT_SUPPORTED))
}

/// The raw public value from `CKA_EC_POINT`, given as a DER OCTET STRING
/// or raw. The two are told apart by length, which differs by the DER
/// header for every supported curve.
pub fn parse_ec_point(curve: EcCurve, v: &[u8]) -> Result<Vec<u8>> {
    let n = curve.point_len();
    let raw = if v.len() == n {
        v
    } else {
        whole(v, TAG_OCTET_STRING)?
    };
    if raw.len() != n || (matches!(curve, EcCurve::Nist(_)) && raw[0] != 0x04) {
        return Err(Error::attribute_value_invalid(
            "CKA_EC_POINT is not an uncompressed point of the curve",
        ));
    }
    Ok(raw.to_vec())
}

/// SubjectPublicKeyInfo of a Curve25519 key (RFC 8410 §4).
fn curve25519_spki(curve: EcCurve, public: &[u8]) -> Vec<u8> {
    let alg = tlv(TAG_SEQUENCE, &tlv(TAG_OID, curve.oid()));
    let mut bits = vec![0u8];
    bits.extend_from_slice(public);
    let mut body = alg;
    body.extend(tlv(TAG_BIT_STRING, &bits));
    tlv(TAG_SEQUENCE, &body)
}

/// PKCS#8 v1 of a Curve25519 private key (RFC 8410 §7).
fn curve25519_pkcs8(curve: EcCurve, private: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = tlv(TAG_INTEGER, &[0]);
    body.extend(tlv(TAG_SEQUENCE, &tlv(TAG_OID, curve.oid())));
    let inner = Zeroizing::new(octet_string(private));
    body.extend(octet_string(&inner));
    let out = Zeroizing::new(tlv(TAG_SEQUENCE, &body));
    zeroize::Zeroize::zeroize(&mut body);
    out
}

/// The 32-byte private value of a Curve25519 PKCS#8 key.
pub fn curve25519_private(pkcs8: &[u8]) -> Result<(EcCurve, Zeroizing<Vec<u8>>)> {
    let (oid, key) = pkcs8_parts(pkcs8)?;
    let curve = match oid {
        OID_ED25519 => EcCurve::Ed25519,
        OID_X25519 => EcCurve::X25519,
        _ => return Err(Error::attribute_value_invalid("not a Curve25519 key")),
    };
    let v = whole(key, TAG_OCTET_STRING)?;
    if v.len() != 32 {
        return Err(Error::attribute_value_invalid(
            "Curve25519 private key is not 32 bytes",
        ));
    }
    Ok((curve, Zeroizing::new(v.to_vec())))
}

/// The raw public key of a Curve25519 SubjectPublicKeyInfo.
pub fn curve25519_public(spki: &[u8]) -> Result<(EcCurve, Vec<u8>)> {
    let mut d = Der(whole(spki, TAG_SEQUENCE)?);
    let mut alg = Der(d.expect(TAG_SEQUENCE)?);
    let curve = match alg.expect(TAG_OID)? {
        OID_ED25519 => EcCurve::Ed25519,
        OID_X25519 => EcCurve::X25519,
        _ => return Err(Error::attribute_value_invalid("not a Curve25519 key")),
    };
    let bits = d.expect(TAG_BIT_STRING)?;
    match bits {
        [0, key @ ..] if key.len() == 32 => Ok((curve, key.to_vec())),
        _ => Err(Error::attribute_value_invalid("bad Curve25519 public key")),
    }
}

/// Algorithm OID and privateKey contents of a PKCS#8 PrivateKeyInfo (v1)
/// or OneAsymmetricKey (v2; the optional trailing fields are ignored).
fn pkcs8_parts(der: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut d = Der(whole(der, TAG_SEQUENCE)?);
    match d.expect(TAG_INTEGER)? {
        [0] | [1] => {}
        _ => return Err(Error::attribute_value_invalid("unknown PKCS#8 version")),
    }
    let mut alg = Der(d.expect(TAG_SEQUENCE)?);
    let oid = alg.expect(TAG_OID)?;
    let key = d.expect(TAG_OCTET_STRING)?;
    Ok((oid, key))
}

// ---------------------------------------------------------------- attributes

/// `CK_ULONG` attribute value as it crosses the wire.
pub fn ulong_value(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// A `CK_ULONG` attribute from a template (8 or 4 native bytes).
pub fn template_ulong(t: &[Attribute], ty: u64) -> Result<Option<u64>> {
    let Some(a) = t.iter().find(|a| a.ty == ty) else {
        return Ok(None);
    };
    match a.value.as_deref() {
        Some(v) if v.len() == 8 => {
            Ok(Some(u64::from_le_bytes(v.try_into().map_err(|_| {
                Error::attribute_value_invalid("bad CK_ULONG")
            })?)))
        }
        Some(v) if v.len() == 4 => Ok(Some(u32::from_le_bytes(
            v.try_into()
                .map_err(|_| Error::attribute_value_invalid("bad CK_ULONG"))?,
        ) as u64)),
        _ => Err(Error::attribute_value_invalid("bad CK_ULONG attribute")),
    }
}

/// A byte-string attribute from a template.
pub fn template_bytes(t: &[Attribute], ty: u64) -> Option<&[u8]> {
    t.iter()
        .find(|a| a.ty == ty)
        .and_then(|a| a.value.as_deref())
}

fn need(get: &dyn Fn(u64) -> Option<Vec<u8>>, ty: u64, name: &str) -> Result<Vec<u8>> {
    get(ty).ok_or_else(|| Error::new(ck::CKR_TEMPLATE_INCOMPLETE, format!("{name} missing")))
}

fn rsa_private_attrs(parts: &RsaParts, spki: Vec<u8>) -> Attrs {
    vec![
        (ck::CKA_MODULUS, parts.n.clone()),
        (ck::CKA_PUBLIC_EXPONENT, parts.e.clone()),
        (ck::CKA_PRIVATE_EXPONENT, parts.d.to_vec()),
        (ck::CKA_PRIME_1, parts.p.to_vec()),
        (ck::CKA_PRIME_2, parts.q.to_vec()),
        (ck::CKA_EXPONENT_1, parts.dp.to_vec()),
        (ck::CKA_EXPONENT_2, parts.dq.to_vec()),
        (ck::CKA_COEFFICIENT, parts.qinv.to_vec()),
        (ck::CKA_PUBLIC_KEY_INFO, spki),
    ]
}

fn rsa_public_attrs(parts: &RsaParts, spki: Vec<u8>) -> Attrs {
    vec![
        (ck::CKA_MODULUS, parts.n.clone()),
        (ck::CKA_PUBLIC_EXPONENT, parts.e.clone()),
        (ck::CKA_MODULUS_BITS, ulong_value(parts.bits() as u64)),
        (ck::CKA_PUBLIC_KEY_INFO, spki),
    ]
}

fn ec_private_attrs(p: &EcParts) -> Attrs {
    vec![
        (ck::CKA_EC_PARAMS, EcCurve::Nist(p.curve).params()),
        (ck::CKA_VALUE, p.scalar.to_vec()),
        (ck::CKA_PUBLIC_KEY_INFO, p.spki.clone()),
    ]
}

fn ec_public_attrs(curve: EcCurve, point: &[u8], spki: Vec<u8>) -> Attrs {
    vec![
        (ck::CKA_EC_PARAMS, curve.params()),
        (ck::CKA_EC_POINT, octet_string(point)),
        (ck::CKA_PUBLIC_KEY_INFO, spki),
    ]
}

/// Private key of a Curve25519 curve from its 32-byte value: PKCS#8,
/// public value.
fn curve25519_from_private(
    curve: EcCurve,
    private: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    if private.len() != 32 {
        return Err(Error::attribute_value_invalid(
            "Curve25519 private value must be 32 bytes",
        ));
    }
    let public = match curve {
        EcCurve::Ed25519 => provider::ed25519_public(private)?,
        _ => provider::x25519_public(private)?,
    };
    Ok((curve25519_pkcs8(curve, private), public))
}

fn curve_for(key_type: u64, get: &dyn Fn(u64) -> Option<Vec<u8>>) -> Result<EcCurve> {
    let curve = parse_ec_params(&need(get, ck::CKA_EC_PARAMS, "CKA_EC_PARAMS")?)?;
    if curve.key_type() != key_type {
        return Err(Error::attribute_value_invalid(
            "CKA_EC_PARAMS names a curve of another key type",
        ));
    }
    Ok(curve)
}

/// PKCS#8 DER of a private key given by its `C_CreateObject` attributes,
/// plus the attributes to add to the object (normalized components,
/// recovered primes, `CKA_PUBLIC_KEY_INFO`). Secret components are in the
/// list; the object layer marks them sensitive per `CKA_SENSITIVE`.
///
/// RSA needs `CKA_MODULUS`, `CKA_PUBLIC_EXPONENT`, `CKA_PRIVATE_EXPONENT`;
/// `CKA_PRIME_1`/`CKA_PRIME_2` are recovered when both are missing (needs
/// e > 2^16, else `CKR_TEMPLATE_INCOMPLETE`); given CRT values must match.
/// EC, Edwards and Montgomery keys need `CKA_EC_PARAMS` and `CKA_VALUE`.
pub fn private_from_attrs(key_type: u64, get: AttrGet<'_>) -> Result<(Zeroizing<Vec<u8>>, Attrs)> {
    match key_type {
        ck::CKK_RSA => {
            let n = need(get, ck::CKA_MODULUS, "CKA_MODULUS")?;
            let e = need(get, ck::CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?;
            let d = Zeroizing::new(need(get, ck::CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT")?);
            let p = get(ck::CKA_PRIME_1).map(Zeroizing::new);
            let q = get(ck::CKA_PRIME_2).map(Zeroizing::new);
            let primes = match (&p, &q) {
                (Some(p), Some(q)) => Some((&p[..], &q[..])),
                (None, None) => None,
                _ => {
                    return Err(Error::new(
                        ck::CKR_TEMPLATE_INCOMPLETE,
                        "only one of CKA_PRIME_1/CKA_PRIME_2 given",
                    ))
                }
            };
            let (der, parts) =
                provider::rsa_pkcs8_from_parts(&n, &e, &d, primes).map_err(|err| {
                    if primes.is_none() {
                        Error::new(
                            ck::CKR_TEMPLATE_INCOMPLETE,
                            format!("RSA primes could not be recovered: {}", err.msg),
                        )
                    } else {
                        err
                    }
                })?;
            for (ty, have) in [
                (ck::CKA_EXPONENT_1, &parts.dp),
                (ck::CKA_EXPONENT_2, &parts.dq),
                (ck::CKA_COEFFICIENT, &parts.qinv),
            ] {
                if let Some(given) = get(ty).map(Zeroizing::new) {
                    if !bool::from(subtle::ConstantTimeEq::ct_eq(strip(&given), &have[..])) {
                        return Err(Error::attribute_value_invalid(
                            "RSA CRT component does not match the key",
                        ));
                    }
                }
            }
            let spki = provider::rsa_spki(&parts.n, &parts.e)?;
            Ok((der, rsa_private_attrs(&parts, spki)))
        }
        ck::CKK_EC => {
            let EcCurve::Nist(curve) = curve_for(key_type, get)? else {
                return Err(Error::attribute_value_invalid("not a NIST curve"));
            };
            let value = Zeroizing::new(need(get, ck::CKA_VALUE, "CKA_VALUE")?);
            let parts = provider::ec_parts_from_scalar(curve, &value)?;
            let attrs = ec_private_attrs(&parts);
            Ok((parts.pkcs8, attrs))
        }
        ck::CKK_EC_EDWARDS | ck::CKK_EC_MONTGOMERY => {
            let curve = curve_for(key_type, get)?;
            let value = Zeroizing::new(need(get, ck::CKA_VALUE, "CKA_VALUE")?);
            let (der, public) = curve25519_from_private(curve, &value)?;
            let attrs = vec![
                (ck::CKA_EC_PARAMS, curve.params()),
                (ck::CKA_VALUE, value.to_vec()),
                (ck::CKA_PUBLIC_KEY_INFO, curve25519_spki(curve, &public)),
            ];
            Ok((der, attrs))
        }
        p11kms_protocol::vendor::CKK_SM2 => {
            sm2_params(get)?;
            let value = Zeroizing::new(need(get, ck::CKA_VALUE, "CKA_VALUE")?);
            super::sm2::private_from_scalar(&value)
        }
        _ => Err(Error::new(
            ck::CKR_ATTRIBUTE_VALUE_INVALID,
            format!("key type 0x{key_type:x} is not an asymmetric type"),
        )),
    }
}

/// `CKA_EC_PARAMS` of an SM2 key, when given, must name the SM2 curve.
fn sm2_params(get: &dyn Fn(u64) -> Option<Vec<u8>>) -> Result<()> {
    match get(ck::CKA_EC_PARAMS) {
        Some(p) if p != super::sm2::params() => Err(Error::attribute_value_invalid(
            "CKA_EC_PARAMS of a CKK_SM2 key must be the SM2 curve OID",
        )),
        _ => Ok(()),
    }
}

/// Leading zeros off (callers may pad big-endian integers).
fn strip(v: &[u8]) -> &[u8] {
    let z = v.iter().take_while(|b| **b == 0).count();
    &v[z..]
}

/// SubjectPublicKeyInfo DER of a public key given by its attributes
/// (RSA: `CKA_MODULUS` + `CKA_PUBLIC_EXPONENT`; EC/Edwards/Montgomery:
/// `CKA_EC_PARAMS` + `CKA_EC_POINT`, raw or DER), plus the attributes to set:
/// `CKA_PUBLIC_KEY_INFO`, RSA `CKA_MODULUS_BITS`, the normalized
/// `CKA_EC_PARAMS` and `CKA_EC_POINT` (DER OCTET STRING).
pub fn public_from_attrs(key_type: u64, get: AttrGet<'_>) -> Result<(Vec<u8>, Attrs)> {
    match key_type {
        ck::CKK_RSA => {
            let n = need(get, ck::CKA_MODULUS, "CKA_MODULUS")?;
            let e = need(get, ck::CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?;
            let bits = provider::bit_len(&n);
            if !(provider::RSA_MIN_BITS..=provider::RSA_MAX_BITS).contains(&bits) {
                return Err(Error::attribute_value_invalid(format!(
                    "RSA modulus of {bits} bits"
                )));
            }
            let spki = provider::rsa_spki(&n, &e)?;
            let parts = RsaParts {
                n: strip(&n).to_vec(),
                e: strip(&e).to_vec(),
                ..Default::default()
            };
            let attrs = rsa_public_attrs(&parts, spki.clone());
            Ok((spki, attrs))
        }
        ck::CKK_EC | ck::CKK_EC_EDWARDS | ck::CKK_EC_MONTGOMERY => {
            let curve = curve_for(key_type, get)?;
            let point = parse_ec_point(curve, &need(get, ck::CKA_EC_POINT, "CKA_EC_POINT")?)?;
            let spki = match curve {
                EcCurve::Nist(c) => provider::ec_spki(c, &point)?,
                EcCurve::Ed25519 => {
                    provider::Ed25519Public::from_raw(&point)?;
                    curve25519_spki(curve, &point)
                }
                EcCurve::X25519 => curve25519_spki(curve, &point),
            };
            let attrs = ec_public_attrs(curve, &point, spki.clone());
            Ok((spki, attrs))
        }
        p11kms_protocol::vendor::CKK_SM2 => {
            sm2_params(get)?;
            super::sm2::public_from_point(&need(get, ck::CKA_EC_POINT, "CKA_EC_POINT")?)
        }
        _ => Err(Error::new(
            ck::CKR_ATTRIBUTE_VALUE_INVALID,
            format!("key type 0x{key_type:x} is not an asymmetric type"),
        )),
    }
}

/// Key type, normalized PKCS#8 and object attributes of an unwrapped
/// PKCS#8 private key (`C_UnwrapKey`). Anything unreadable or inconsistent
/// → `CKR_WRAPPED_KEY_INVALID`.
pub fn private_from_pkcs8(der: &[u8]) -> Result<(u64, Zeroizing<Vec<u8>>, Attrs)> {
    let wrapped = |e: Error| {
        Error::new(
            ck::CKR_WRAPPED_KEY_INVALID,
            format!("unwrapped key: {}", e.msg),
        )
    };
    let (oid, _) = pkcs8_parts(der).map_err(wrapped)?;
    match oid {
        OID_RSA => {
            let (der, parts) = provider::rsa_from_pkcs8(der).map_err(wrapped)?;
            let spki = provider::rsa_spki(&parts.n, &parts.e).map_err(wrapped)?;
            Ok((ck::CKK_RSA, der, rsa_private_attrs(&parts, spki)))
        }
        OID_EC_PUBLIC_KEY if super::sm2::pkcs8_is_sm2(der) => {
            let (der, attrs) = super::sm2::private_from_pkcs8(der).map_err(wrapped)?;
            Ok((p11kms_protocol::vendor::CKK_SM2, der, attrs))
        }
        OID_EC_PUBLIC_KEY => {
            let parts = provider::ec_parts_from_pkcs8(der).map_err(wrapped)?;
            let attrs = ec_private_attrs(&parts);
            Ok((ck::CKK_EC, parts.pkcs8, attrs))
        }
        OID_ED25519 | OID_X25519 => {
            let (curve, private) = curve25519_private(der).map_err(wrapped)?;
            let (der, public) = curve25519_from_private(curve, &private).map_err(wrapped)?;
            let attrs = vec![
                (ck::CKA_EC_PARAMS, curve.params()),
                (ck::CKA_VALUE, private.to_vec()),
                (ck::CKA_PUBLIC_KEY_INFO, curve25519_spki(curve, &public)),
            ];
            Ok((curve.key_type(), der, attrs))
        }
        _ => Err(Error::new(
            ck::CKR_WRAPPED_KEY_INVALID,
            "unsupported PKCS#8 key algorithm",
        )),
    }
}

// ---------------------------------------------------------------- generation

/// Objects of a new RSA key pair from its PKCS#8.
pub fn rsa_generated(pkcs8: Zeroizing<Vec<u8>>) -> Result<GeneratedKeyPair> {
    let (_, parts) = provider::rsa_from_pkcs8(&pkcs8)
        .map_err(|e| Error::general(format!("generated RSA key: {}", e.msg)))?;
    let spki = provider::rsa_spki(&parts.n, &parts.e)?;
    Ok(GeneratedKeyPair {
        key_type: ck::CKK_RSA,
        public_value: spki.clone(),
        private_value: pkcs8,
        public_attrs: rsa_public_attrs(&parts, spki.clone()),
        private_attrs: rsa_private_attrs(&parts, spki),
    })
}

/// Objects of a new EC key pair.
pub fn ec_generated(parts: EcParts) -> GeneratedKeyPair {
    let curve = EcCurve::Nist(parts.curve);
    GeneratedKeyPair {
        key_type: ck::CKK_EC,
        public_value: parts.spki.clone(),
        public_attrs: ec_public_attrs(curve, &parts.point, parts.spki.clone()),
        private_attrs: ec_private_attrs(&parts),
        private_value: parts.pkcs8,
    }
}

/// Objects of a new Ed25519 or X25519 key pair from its private value.
pub fn curve25519_generated(curve: EcCurve, private: &[u8]) -> Result<GeneratedKeyPair> {
    let (der, public) = curve25519_from_private(curve, private)?;
    let spki = curve25519_spki(curve, &public);
    Ok(GeneratedKeyPair {
        key_type: curve.key_type(),
        public_value: spki.clone(),
        private_value: der,
        public_attrs: ec_public_attrs(curve, &public, spki.clone()),
        private_attrs: vec![
            (ck::CKA_EC_PARAMS, curve.params()),
            (ck::CKA_VALUE, private.to_vec()),
            (ck::CKA_PUBLIC_KEY_INFO, spki),
        ],
    })
}

#[cfg(test)]
mod tests;
