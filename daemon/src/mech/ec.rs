//! Elliptic curves P-256, P-384, P-521 (PKCS#11 3.0 current mechanisms
//! §2.3): key pair generation, ECDSA with and without hashing, ECDH.
//!
//! - Signatures are r||s, each `field_len` bytes (§2.3.1), never DER.
//! - `CKM_ECDSA` signs the caller's hash as given, of any length: ECDSA
//!   uses its leftmost order-size bits (see `provider::Curve`); on P-521
//!   inputs over 64 bytes → `CKR_DATA_LEN_RANGE`.
//! - `CKM_ECDH1_DERIVE` and `CKM_ECDH1_COFACTOR_DERIVE` are the same on
//!   these curves (cofactor 1). They also serve X25519 when the base key is
//!   `CKK_EC_MONTGOMERY` (§2.3.9). The public value may be a raw point or a
//!   DER OCTET STRING. KDFs: `CKD_NULL` (no shared data allowed) and the
//!   ANSI X9.63 KDF with SHA-1/224/256/384/512. With `CKD_NULL` and a
//!   `CKA_VALUE_LEN` shorter than the shared secret, the trailing bytes are
//!   kept, as SoftHSM does; without `CKA_VALUE_LEN` the whole secret (or as
//!   many KDF bytes) is returned.

use std::sync::Arc;

use p11kms_protocol::{Attribute, MechParam, MechanismInfo};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::asym::{self, EcCurve};
use super::provider::{self, Curve, EcPrivate, EcPublic, Hash, Hasher};
use super::{GeneratedKeyPair, Key, Mechanism, Registry, SignOp, VerifyOp};
use crate::error::{Error, Result};

/// Capability flags every EC mechanism reports (prime fields, named
/// curves, uncompressed points).
pub const EC_FLAGS: u64 = ck::CKF_EC_F_P | ck::CKF_EC_NAMEDCURVE | ck::CKF_EC_UNCOMPRESS;

/// Longest `CKM_ECDSA` input accepted (a hash; anything longer is not one).
const MAX_ECDSA_INPUT: usize = 1024;

/// Register the EC mechanisms and their known-answer tests.
pub fn register(r: &mut Registry) {
    r.add(KeyPairGen);
    r.add(Ecdsa {
        mech: ck::CKM_ECDSA,
        hash: None,
    });
    for (mech, hash) in [
        (ck::CKM_ECDSA_SHA1, Hash::Sha1),
        (ck::CKM_ECDSA_SHA224, Hash::Sha224),
        (ck::CKM_ECDSA_SHA256, Hash::Sha256),
        (ck::CKM_ECDSA_SHA384, Hash::Sha384),
        (ck::CKM_ECDSA_SHA512, Hash::Sha512),
    ] {
        r.add(Ecdsa {
            mech,
            hash: Some(hash),
        });
    }
    r.add(Ecdh {
        mech: ck::CKM_ECDH1_DERIVE,
    });
    r.add(Ecdh {
        mech: ck::CKM_ECDH1_COFACTOR_DERIVE,
    });
    r.add_self_test(
        "ECDSA P-256 (RFC 6979 A.2.5 signature verify)",
        self_test_verify,
    );
    r.add_self_test(
        "ECDSA P-256 sign/verify and ECDH round trip",
        self_test_round_trip,
    );
}

fn info(flags: u64) -> MechanismInfo {
    MechanismInfo {
        min_key_size: 256,
        max_key_size: 521,
        flags: flags | EC_FLAGS,
    }
}

fn private(key: &Key) -> Result<Arc<EcPrivate>> {
    if key.class != ck::CKO_PRIVATE_KEY || key.key_type != ck::CKK_EC {
        return Err(Error::key_type_inconsistent());
    }
    key.cached(EcPrivate::from_pkcs8)
}

fn public(key: &Key) -> Result<Arc<EcPublic>> {
    if key.class != ck::CKO_PUBLIC_KEY || key.key_type != ck::CKK_EC {
        return Err(Error::key_type_inconsistent());
    }
    key.cached(EcPublic::from_spki)
}

// ---------------------------------------------------------------- key generation

struct KeyPairGen;

impl Mechanism for KeyPairGen {
    fn mech(&self) -> u64 {
        ck::CKM_EC_KEY_PAIR_GEN
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_GENERATE_KEY_PAIR)
    }
    fn generate_key_pair(
        &self,
        param: &MechParam,
        public: &[Attribute],
        _private: &[Attribute],
    ) -> Result<GeneratedKeyPair> {
        let EcCurve::Nist(curve) = asym::keygen_curve(param, public)? else {
            return Err(Error::new(
                ck::CKR_CURVE_NOT_SUPPORTED,
                "CKM_EC_KEY_PAIR_GEN is for P-256/P-384/P-521",
            ));
        };
        Ok(asym::ec_generated(provider::ec_generate(curve)?))
    }
}

// ---------------------------------------------------------------- ECDSA

/// `CKM_ECDSA` (`hash: None`) and `CKM_ECDSA_SHA*`.
struct Ecdsa {
    mech: u64,
    hash: Option<Hash>,
}

/// The input of an ECDSA operation: a running hash or the caller's hash.
enum Input {
    Hash(Option<Hasher>),
    Data(Vec<u8>),
}

impl Input {
    fn new(hash: Option<Hash>) -> Self {
        match hash {
            Some(h) => Input::Hash(Some(Hasher::new(h))),
            None => Input::Data(Vec::new()),
        }
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Input::Hash(Some(h)) => h.update(data),
            Input::Hash(None) => return Err(Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED)),
            Input::Data(d) => {
                if d.len() + data.len() > MAX_ECDSA_INPUT {
                    return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
                }
                d.extend_from_slice(data);
            }
        }
        Ok(())
    }
    fn take(&mut self) -> Result<Vec<u8>> {
        match self {
            Input::Hash(h) => h
                .take()
                .map(Hasher::finish)
                .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED)),
            Input::Data(d) => Ok(std::mem::take(d)),
        }
    }
}

struct EcdsaSign {
    key: Arc<EcPrivate>,
    input: Input,
}

impl SignOp for EcdsaSign {
    fn sig_len(&self) -> usize {
        2 * self.key.curve().field_len()
    }
    fn multipart(&self) -> bool {
        matches!(self.input, Input::Hash(_))
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data)
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        let h = self.input.take()?;
        self.key.sign_hash(&h)
    }
}

struct EcdsaVerify {
    key: Arc<EcPublic>,
    input: Input,
}

impl VerifyOp for EcdsaVerify {
    fn multipart(&self) -> bool {
        matches!(self.input, Input::Hash(_))
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data)
    }
    fn finalize(&mut self, signature: &[u8]) -> Result<()> {
        let h = self.input.take()?;
        if signature.len() != 2 * self.key.curve().field_len() {
            return Err(Error::rv(ck::CKR_SIGNATURE_LEN_RANGE));
        }
        if self.key.verify_hash(&h, signature) {
            Ok(())
        } else {
            Err(Error::rv(ck::CKR_SIGNATURE_INVALID))
        }
    }
}

impl Mechanism for Ecdsa {
    fn mech(&self) -> u64 {
        self.mech
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_SIGN | ck::CKF_VERIFY)
    }
    fn sign_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn SignOp>> {
        if *param != MechParam::None {
            return Err(Error::param_invalid("ECDSA takes no parameter"));
        }
        Ok(Box::new(EcdsaSign {
            key: private(key)?,
            input: Input::new(self.hash),
        }))
    }
    fn verify_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn VerifyOp>> {
        if *param != MechParam::None {
            return Err(Error::param_invalid("ECDSA takes no parameter"));
        }
        Ok(Box::new(EcdsaVerify {
            key: public(key)?,
            input: Input::new(self.hash),
        }))
    }
}

// ---------------------------------------------------------------- ECDH

/// `CKM_ECDH1_DERIVE` / `CKM_ECDH1_COFACTOR_DERIVE`.
struct Ecdh {
    mech: u64,
}

fn kdf_hash(kdf: u64) -> Result<Option<Hash>> {
    Ok(match kdf {
        ck::CKD_NULL => None,
        ck::CKD_SHA1_KDF => Some(Hash::Sha1),
        ck::CKD_SHA224_KDF => Some(Hash::Sha224),
        ck::CKD_SHA256_KDF => Some(Hash::Sha256),
        ck::CKD_SHA384_KDF => Some(Hash::Sha384),
        ck::CKD_SHA512_KDF => Some(Hash::Sha512),
        _ => return Err(Error::param_invalid("unsupported ECDH KDF")),
    })
}

/// ANSI X9.63 KDF (SEC 1 v2 §3.6.1): H(Z || counter || SharedInfo)...,
/// counter a 32-bit big-endian number from 1.
pub fn x963_kdf(h: Hash, z: &[u8], shared: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + h.len()));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut hasher = Hasher::new(h);
        hasher.update(z);
        hasher.update(&counter.to_be_bytes());
        hasher.update(shared);
        out.extend_from_slice(&Zeroizing::new(hasher.finish()));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

impl Mechanism for Ecdh {
    fn mech(&self) -> u64 {
        self.mech
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_DERIVE)
    }
    fn derive(
        &self,
        param: &MechParam,
        base: &Arc<Key>,
        value_len: Option<usize>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let MechParam::Ecdh1 {
            kdf,
            shared_data,
            public_data,
        } = param
        else {
            return Err(Error::param_invalid("ECDH needs CK_ECDH1_DERIVE_PARAMS"));
        };
        let kdf = kdf_hash(*kdf)?;
        if kdf.is_none() && !shared_data.is_empty() {
            return Err(Error::param_invalid("CKD_NULL takes no shared data"));
        }
        let bad_point =
            |_| Error::param_invalid("ECDH public value is not a point of the key's curve");
        let z = match base.key_type {
            ck::CKK_EC_MONTGOMERY => {
                let peer = asym::parse_ec_point(EcCurve::X25519, public_data).map_err(bad_point)?;
                super::edwards::x25519_agree(base, &peer)?
            }
            _ => {
                let key = private(base)?;
                let peer = asym::parse_ec_point(EcCurve::Nist(key.curve()), public_data)
                    .map_err(bad_point)?;
                key.agree(&peer)?
            }
        };
        let len = value_len.unwrap_or(z.len());
        match kdf {
            None if len > z.len() || len == 0 => Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                "CKA_VALUE_LEN longer than the ECDH shared secret",
            )),
            None => Ok(Zeroizing::new(z[z.len() - len..].to_vec())),
            Some(h) => Ok(x963_kdf(h, &z, shared_data, len)),
        }
    }
}

// ---------------------------------------------------------------- self-tests

/// RFC 6979 A.2.5: P-256 key, SHA-256 signature of "sample".
pub(crate) mod kat {
    /// Public point 04||Ux||Uy.
    pub const P256_POINT: &str = "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb67903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
    #[cfg(test)]
    pub const P256_SCALAR: &str =
        "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
    pub const SIG_SAMPLE_SHA256: &str = "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";
}

fn self_test_verify() -> Result<()> {
    let hex = super::rsa::kat::hex;
    let spki = provider::ec_spki(Curve::P256, &hex(kat::P256_POINT))?;
    let pk = EcPublic::from_spki(&spki)?;
    let h = provider::digest(Hash::Sha256, b"sample");
    if !pk.verify_hash(&h, &hex(kat::SIG_SAMPLE_SHA256)) {
        return Err(Error::general("ECDSA P-256 known answer failed"));
    }
    Ok(())
}

fn self_test_round_trip() -> Result<()> {
    let fail = || Error::general("ECDSA/ECDH round trip failed");
    let a = provider::ec_generate(Curve::P256)?;
    let b = provider::ec_generate(Curve::P256)?;
    let ka = EcPrivate::from_pkcs8(&a.pkcs8)?;
    let kb = EcPrivate::from_pkcs8(&b.pkcs8)?;
    let h = provider::digest(Hash::Sha256, b"self-test");
    let sig = ka.sign_hash(&h)?;
    if !EcPublic::from_spki(&a.spki)?.verify_hash(&h, &sig) {
        return Err(fail());
    }
    if ka.agree(&b.point)?[..] != kb.agree(&a.point)?[..] {
        return Err(fail());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
