//! The crypto-provider boundary for asymmetric algorithms.
//!
//! Every call into aws-lc-rs or the `rsa` crate made for RSA, ECDSA/ECDH
//! and Ed25519/X25519 happens in this file; the mechanism files (`rsa.rs`,
//! `ec.rs`, `edwards.rs`) and the DER helpers (`asym.rs`) see only the types
//! and functions below. Swapping the provider means rewriting this file.
//!
//! Who does what (issue 3 has the measurements: aws-lc-rs signs RSA-2048
//! about 6.7× and P-256 about 5.6× faster than RustCrypto here):
//!
//! | operation                                            | provider  |
//! |------------------------------------------------------|-----------|
//! | RSA 2048..8192: PKCS#1 v1.5 / PSS signing over SHA-256/384/512 digests, including a caller's DigestInfo for `CKM_RSA_PKCS` | aws-lc-rs |
//! | RSA 2048..8192: verification (PKCS#1 SHA-1/256/384/512, PSS SHA-256/384/512, any salt length) | aws-lc-rs |
//! | RSA 2048..8192: PKCS#1 v1.5 and OAEP (SHA-1/256/384/512) encryption and decryption | aws-lc-rs |
//! | RSA key generation 2048/3072/4096/8192 with e = 65537 | aws-lc-rs |
//! | P-256/P-384/P-521 ECDSA over any digest, ECDH, key generation | aws-lc-rs |
//! | Ed25519 sign/verify/generation, X25519 agreement/generation | aws-lc-rs |
//! | RSA raw (`CKM_RSA_X_509`) private and public operations | `rsa` |
//! | RSA SHA-1/SHA-224 signing (PKCS#1 and PSS), SHA-224 verification, OAEP with SHA-224 | `rsa` |
//! | `CKM_RSA_PKCS` signing/verification of data that is not a SHA-256/384/512 DigestInfo | `rsa` |
//! | every RSA operation on 1024..2047-bit keys (aws-lc-rs refuses them) | `rsa` |
//! | RSA key generation with another public exponent; RSA component ⇄ DER conversion and prime recovery | `rsa` |
//!
//! aws-lc-rs signs precomputed digests through `KeyPair::sign_digest` /
//! `EcdsaKeyPair::sign_digest` with `digest::Digest::import_less_safe`,
//! which is what makes `CKM_RSA_PKCS` over a DigestInfo (the OpenSSL libp11
//! engine's path) and `CKM_ECDSA` fast. Both are outside aws-lc's FIPS
//! boundary; a FIPS build would route them elsewhere.
//!
//! Errors from here carry neutral codes; the mechanism files translate
//! them into the code of their context.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use aws_lc_rs as lc;
use lc::encoding::{AsBigEndian, AsDer};
use lc::signature::{KeyPair as _, RsaParameters, RsaPssSaltLength, RsaSignatureEncoding};
use pkcs11_sys as ck;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::BoxedUint;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

// ---------------------------------------------------------------- digests

/// The hash functions PKCS#11 pairs with RSA and ECDSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

// A hash output, a modulus: never empty, so no `is_empty`.
#[allow(clippy::len_without_is_empty)]
impl Hash {
    /// All of them, shortest first.
    pub const ALL: [Hash; 5] = [
        Hash::Sha1,
        Hash::Sha224,
        Hash::Sha256,
        Hash::Sha384,
        Hash::Sha512,
    ];

    /// Output length in bytes.
    pub fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// From a digest mechanism code (`CKM_SHA256`, ...), as found in
    /// `CK_RSA_PKCS_PSS_PARAMS.hashAlg` and `CK_RSA_PKCS_OAEP_PARAMS.hashAlg`.
    pub fn from_ckm(m: u64) -> Option<Hash> {
        Some(match m {
            ck::CKM_SHA_1 => Hash::Sha1,
            ck::CKM_SHA224 => Hash::Sha224,
            ck::CKM_SHA256 => Hash::Sha256,
            ck::CKM_SHA384 => Hash::Sha384,
            ck::CKM_SHA512 => Hash::Sha512,
            _ => return None,
        })
    }

    /// From a `CKG_MGF1_*` code.
    pub fn from_mgf(g: u64) -> Option<Hash> {
        Some(match g {
            ck::CKG_MGF1_SHA1 => Hash::Sha1,
            ck::CKG_MGF1_SHA224 => Hash::Sha224,
            ck::CKG_MGF1_SHA256 => Hash::Sha256,
            ck::CKG_MGF1_SHA384 => Hash::Sha384,
            ck::CKG_MGF1_SHA512 => Hash::Sha512,
            _ => return None,
        })
    }

    /// DER prefix of the `DigestInfo` for this hash (RFC 8017 §9.2, note 1).
    pub fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
            Hash::Sha224 => &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x04, 0x05, 0x00, 0x04, 0x1c,
            ],
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// `DigestInfo` of `digest`.
    pub fn digest_info(self, digest: &[u8]) -> Vec<u8> {
        let mut v = self.digest_info_prefix().to_vec();
        v.extend_from_slice(digest);
        v
    }

    fn lc(self) -> &'static lc::digest::Algorithm {
        match self {
            Hash::Sha1 => &lc::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha224 => &lc::digest::SHA224,
            Hash::Sha256 => &lc::digest::SHA256,
            Hash::Sha384 => &lc::digest::SHA384,
            Hash::Sha512 => &lc::digest::SHA512,
        }
    }
}

/// If `t` is a `DigestInfo`, its hash and digest.
pub fn split_digest_info(t: &[u8]) -> Option<(Hash, &[u8])> {
    Hash::ALL.into_iter().find_map(|h| {
        let p = h.digest_info_prefix();
        (t.len() == p.len() + h.len() && t.starts_with(p)).then(|| (h, &t[p.len()..]))
    })
}

/// A running hash for the multi-part hashed signature mechanisms.
pub struct Hasher(lc::digest::Context);

impl Hasher {
    pub fn new(h: Hash) -> Self {
        Hasher(lc::digest::Context::new(h.lc()))
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

/// One-shot hash.
pub fn digest(h: Hash, data: &[u8]) -> Vec<u8> {
    lc::digest::digest(h.lc(), data).as_ref().to_vec()
}

/// Random bytes from the provider's DRBG.
pub fn random(buf: &mut [u8]) -> Result<()> {
    lc::rand::fill(buf).map_err(|_| Error::new(ck::CKR_DEVICE_ERROR, "random generator failed"))
}

fn lc_digest(h: Hash, digest: &[u8]) -> Result<lc::digest::Digest> {
    lc::digest::Digest::import_less_safe(digest, h.lc())
        .map_err(|_| Error::rv(ck::CKR_DATA_LEN_RANGE))
}

/// Why an operation failed, for the mechanism layer to name.
fn failed(what: &str) -> Error {
    Error::new(ck::CKR_FUNCTION_FAILED, format!("{what} failed"))
}

fn bad_key(what: &str) -> Error {
    Error::attribute_value_invalid(format!("malformed or inconsistent {what}"))
}

// ---------------------------------------------------------------- RSA

/// Smallest RSA modulus p11kms uses at all (verification, import).
pub const RSA_MIN_BITS: usize = 1024;
/// Largest RSA modulus.
pub const RSA_MAX_BITS: usize = 8192;
/// aws-lc-rs handles moduli from this size up.
const LC_RSA_MIN_BYTES: usize = 256;

/// RSA key components, big-endian without leading zeros. `d` and the CRT
/// values are empty for a public key.
#[derive(Default)]
pub struct RsaParts {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Zeroizing<Vec<u8>>,
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qinv: Zeroizing<Vec<u8>>,
}

impl RsaParts {
    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        bit_len(&self.n)
    }
}

/// Bit length of a big-endian unsigned integer.
pub fn bit_len(v: &[u8]) -> usize {
    let v = trim(v);
    match v.first() {
        None => 0,
        Some(b) => v.len() * 8 - b.leading_zeros() as usize,
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let z = v.iter().take_while(|b| **b == 0).count();
    &v[z..]
}

fn uint(v: &[u8]) -> BoxedUint {
    BoxedUint::from_be_slice_vartime(trim(v))
}

fn bytes(v: &BoxedUint) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(v.to_be_bytes_trimmed_vartime().to_vec())
}

fn soft_parts(k: &rsa::PrivateKey) -> Result<RsaParts> {
    let primes = k.primes();
    if primes.len() != 2 {
        return Err(Error::attribute_value_invalid(
            "multi-prime RSA keys are not supported",
        ));
    }
    let missing = || bad_key("RSA key");
    Ok(RsaParts {
        n: bytes(k.n().as_ref()).to_vec(),
        e: bytes(k.e()).to_vec(),
        d: bytes(k.d()),
        p: bytes(primes[0].as_ref()),
        q: bytes(primes[1].as_ref()),
        dp: bytes(k.dp().ok_or_else(missing)?),
        dq: bytes(k.dq().ok_or_else(missing)?),
        qinv: bytes(&k.crt_coefficient().ok_or_else(missing)?),
    })
}

/// Components of an RSA PKCS#8 private key, validated, with the key
/// re-encoded in normal form (CRT values recomputed).
pub fn rsa_from_pkcs8(der: &[u8]) -> Result<(Zeroizing<Vec<u8>>, RsaParts)> {
    let k = rsa::PrivateKey::from_pkcs8_der(der).map_err(|_| bad_key("RSA private key"))?;
    let der = k.to_pkcs8_der().map_err(|_| bad_key("RSA private key"))?;
    Ok((Zeroizing::new(der.as_bytes().to_vec()), soft_parts(&k)?))
}

/// PKCS#8 DER of the RSA key with these components, after checking that
/// they belong together. Without `primes` they are recovered from `n`,
/// `e` and `d` (NIST SP 800-56B Appendix C.2, needs e > 2^16). Returns the
/// complete, normalized components too.
pub fn rsa_pkcs8_from_parts(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    primes: Option<(&[u8], &[u8])>,
) -> Result<(Zeroizing<Vec<u8>>, RsaParts)> {
    let bits = bit_len(n);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(Error::attribute_value_invalid(format!(
            "RSA modulus of {bits} bits"
        )));
    }
    let primes = primes
        .map(|(p, q)| vec![uint(p), uint(q)])
        .unwrap_or_default();
    let k = rsa::PrivateKey::from_components(uint(n), uint(e), uint(d), primes)
        .map_err(|_| bad_key("RSA private key"))?;
    let der = k.to_pkcs8_der().map_err(|_| bad_key("RSA private key"))?;
    Ok((Zeroizing::new(der.as_bytes().to_vec()), soft_parts(&k)?))
}

/// SubjectPublicKeyInfo DER of an RSA public key.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    let k = rsa::PublicKey::new(uint(n), uint(e)).map_err(|_| bad_key("RSA public key"))?;
    Ok(k.to_public_key_der()
        .map_err(|_| bad_key("RSA public key"))?
        .into_vec())
}

/// Modulus and public exponent of an RSA SubjectPublicKeyInfo.
pub fn rsa_public_parts(spki: &[u8]) -> Result<RsaParts> {
    let k = rsa::PublicKey::from_public_key_der(spki).map_err(|_| bad_key("RSA public key"))?;
    Ok(RsaParts {
        n: bytes(k.n().as_ref()).to_vec(),
        e: bytes(k.e()).to_vec(),
        ..Default::default()
    })
}

/// A new RSA key as PKCS#8 DER. aws-lc-rs generates 2048/3072/4096/8192-bit
/// keys with e = 65537; another (odd, > 2^16, < 2^33) exponent goes to the
/// `rsa` crate (slower, same sizes). Other sizes → `CKR_KEY_SIZE_RANGE`.
pub fn rsa_generate(bits: usize, e: u64) -> Result<Zeroizing<Vec<u8>>> {
    let size = match bits {
        2048 => lc::rsa::KeySize::Rsa2048,
        3072 => lc::rsa::KeySize::Rsa3072,
        4096 => lc::rsa::KeySize::Rsa4096,
        8192 => lc::rsa::KeySize::Rsa8192,
        _ => {
            return Err(Error::new(
                ck::CKR_KEY_SIZE_RANGE,
                format!("RSA key generation of {bits} bits"),
            ))
        }
    };
    if e == 65537 {
        let k = lc::rsa::KeyPair::generate(size).map_err(|_| failed("RSA key generation"))?;
        let der = k.as_der().map_err(|_| failed("RSA key encoding"))?;
        return Ok(Zeroizing::new(der.as_ref().to_vec()));
    }
    if e & 1 == 0 || e <= 1 << 16 || e >= 1 << 33 {
        return Err(Error::new(
            ck::CKR_TEMPLATE_INCONSISTENT,
            format!("RSA public exponent {e} not accepted"),
        ));
    }
    let k = rsa::PrivateKey::new_with_exp(&mut getrandom::SysRng, bits, BoxedUint::from(e))
        .map_err(|_| failed("RSA key generation"))?;
    let der = k.to_pkcs8_der().map_err(|_| failed("RSA key encoding"))?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}

/// Leaked, hence `'static`, PSS encodings for salt lengths other than the
/// digest length: aws-lc-rs takes its algorithms by `'static` reference.
/// Bounded: at most 3 hashes × 1 k salt lengths (salt < modulus length).
fn pss_sign_alg(h: Hash, salt: usize) -> Option<&'static RsaSignatureEncoding> {
    let base = match h {
        Hash::Sha256 => &lc::signature::RSA_PSS_SHA256,
        Hash::Sha384 => &lc::signature::RSA_PSS_SHA384,
        Hash::Sha512 => &lc::signature::RSA_PSS_SHA512,
        _ => return None,
    };
    if salt == h.len() {
        return Some(base);
    }
    static CACHE: OnceLock<Mutex<HashMap<(Hash, u16), &'static RsaSignatureEncoding>>> =
        OnceLock::new();
    let salt = u16::try_from(salt).ok()?;
    let mut m = CACHE.get_or_init(Default::default).lock().ok()?;
    Some(*m.entry((h, salt)).or_insert_with(|| {
        let alg = match h {
            Hash::Sha256 => lc::signature::RSA_PSS_SHA256,
            Hash::Sha384 => lc::signature::RSA_PSS_SHA384,
            _ => lc::signature::RSA_PSS_SHA512,
        };
        Box::leak(Box::new(
            alg.with_pss_salt_length(RsaPssSaltLength::Custom(salt)),
        ))
    }))
}

fn pss_verify_alg(h: Hash, salt: usize) -> Option<&'static RsaParameters> {
    let base = match h {
        Hash::Sha256 => &lc::signature::RSA_PSS_2048_8192_SHA256,
        Hash::Sha384 => &lc::signature::RSA_PSS_2048_8192_SHA384,
        Hash::Sha512 => &lc::signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    };
    if salt == h.len() {
        return Some(base);
    }
    static CACHE: OnceLock<Mutex<HashMap<(Hash, u16), &'static RsaParameters>>> = OnceLock::new();
    let salt = u16::try_from(salt).ok()?;
    let mut m = CACHE.get_or_init(Default::default).lock().ok()?;
    Some(*m.entry((h, salt)).or_insert_with(|| {
        let alg = match h {
            Hash::Sha256 => lc::signature::RSA_PSS_2048_8192_SHA256,
            Hash::Sha384 => lc::signature::RSA_PSS_2048_8192_SHA384,
            _ => lc::signature::RSA_PSS_2048_8192_SHA512,
        };
        Box::leak(Box::new(
            alg.with_pss_salt_length(RsaPssSaltLength::Custom(salt)),
        ))
    }))
}

fn pkcs1_sign_alg(h: Hash) -> Option<&'static RsaSignatureEncoding> {
    match h {
        Hash::Sha256 => Some(&lc::signature::RSA_PKCS1_SHA256),
        Hash::Sha384 => Some(&lc::signature::RSA_PKCS1_SHA384),
        Hash::Sha512 => Some(&lc::signature::RSA_PKCS1_SHA512),
        _ => None,
    }
}

fn pkcs1_verify_alg(h: Hash) -> Option<&'static RsaParameters> {
    match h {
        Hash::Sha1 => Some(&lc::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY),
        Hash::Sha256 => Some(&lc::signature::RSA_PKCS1_2048_8192_SHA256),
        Hash::Sha384 => Some(&lc::signature::RSA_PKCS1_2048_8192_SHA384),
        Hash::Sha512 => Some(&lc::signature::RSA_PKCS1_2048_8192_SHA512),
        Hash::Sha224 => None,
    }
}

macro_rules! with_hash {
    ($h:expr, $D:ident => $body:expr) => {
        match $h {
            Hash::Sha1 => {
                type $D = sha1::Sha1;
                $body
            }
            Hash::Sha224 => {
                type $D = sha2::Sha224;
                $body
            }
            Hash::Sha256 => {
                type $D = sha2::Sha256;
                $body
            }
            Hash::Sha384 => {
                type $D = sha2::Sha384;
                $body
            }
            Hash::Sha512 => {
                type $D = sha2::Sha512;
                $body
            }
        }
    };
}

/// aws-lc-rs' decryption keys for one RSA private key.
struct LcDecrypt {
    pkcs1: lc::rsa::Pkcs1PrivateDecryptingKey,
    oaep: lc::rsa::OaepPrivateDecryptingKey,
}

/// A parsed RSA private key. Built once per key object (through
/// `Key::cached`); the `rsa` crate's form is parsed only when an operation
/// needs it.
pub struct RsaPrivate {
    der: Zeroizing<Vec<u8>>,
    len: usize,
    sign: Option<lc::rsa::KeyPair>,
    decrypt: OnceLock<Option<LcDecrypt>>,
    soft: OnceLock<Option<rsa::PrivateKey>>,
}

#[allow(clippy::len_without_is_empty)]
impl RsaPrivate {
    /// Parse PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let sign = lc::rsa::KeyPair::from_pkcs8(der).ok();
        let (len, soft) = match &sign {
            Some(k) => (k.public_modulus_len(), OnceLock::new()),
            None => {
                let k =
                    rsa::PrivateKey::from_pkcs8_der(der).map_err(|_| Error::key_size_range())?;
                (k.size(), OnceLock::from(Some(k)))
            }
        };
        Ok(RsaPrivate {
            der: Zeroizing::new(der.to_vec()),
            len,
            sign,
            decrypt: OnceLock::new(),
            soft,
        })
    }

    /// Modulus length in bytes (= signature and ciphertext length).
    pub fn len(&self) -> usize {
        self.len
    }

    fn soft(&self) -> Result<&rsa::PrivateKey> {
        self.soft
            .get_or_init(|| rsa::PrivateKey::from_pkcs8_der(&self.der).ok())
            .as_ref()
            .ok_or_else(|| {
                Error::new(
                    ck::CKR_KEY_SIZE_RANGE,
                    "RSA key unusable for this operation",
                )
            })
    }

    fn lc_decrypt(&self) -> Option<&LcDecrypt> {
        self.decrypt
            .get_or_init(|| {
                self.sign.as_ref()?;
                let k = lc::rsa::PrivateDecryptingKey::from_pkcs8(&self.der).ok()?;
                Some(LcDecrypt {
                    pkcs1: lc::rsa::Pkcs1PrivateDecryptingKey::new(k.clone()).ok()?,
                    oaep: lc::rsa::OaepPrivateDecryptingKey::new(k).ok()?,
                })
            })
            .as_ref()
    }

    /// RSASSA-PKCS1-v1_5 signature of `t`, the encoded message body: a
    /// `DigestInfo` for the hashed mechanisms, anything up to k-11 bytes for
    /// `CKM_RSA_PKCS`.
    pub fn sign_pkcs1(&self, t: &[u8]) -> Result<Vec<u8>> {
        if t.len() + 11 > self.len {
            return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
        }
        if let (Some(k), Some((h, d))) = (&self.sign, split_digest_info(t)) {
            if let Some(alg) = pkcs1_sign_alg(h) {
                let mut sig = vec![0u8; self.len];
                k.sign_digest(alg, &lc_digest(h, d)?, &mut sig)
                    .map_err(|_| failed("RSA signature"))?;
                return Ok(sig);
            }
        }
        self.soft()?
            .sign(rsa::Pkcs1v15Sign::new_unprefixed(), t)
            .map_err(|_| failed("RSA signature"))
    }

    /// RSASSA-PSS signature of a digest made with `h` (MGF1 with `h` too).
    pub fn sign_pss(&self, h: Hash, digest: &[u8], salt: usize) -> Result<Vec<u8>> {
        if digest.len() != h.len() {
            return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
        }
        if self.len < h.len() + salt + 2 {
            return Err(Error::param_invalid("PSS salt too long for the key"));
        }
        if let (Some(k), Some(alg)) = (&self.sign, pss_sign_alg(h, salt)) {
            let mut sig = vec![0u8; self.len];
            k.sign_digest(alg, &lc_digest(h, digest)?, &mut sig)
                .map_err(|_| failed("RSA-PSS signature"))?;
            return Ok(sig);
        }
        let k = self.soft()?;
        with_hash!(h, D => k.sign(rsa::Pss::<D>::new_with_salt(salt), digest))
            .map_err(|_| failed("RSA-PSS signature"))
    }

    /// RSAES-PKCS1-v1_5 decryption. Every failure is the same
    /// `CKR_ENCRYPTED_DATA_INVALID`.
    pub fn decrypt_pkcs1(&self, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if ct.len() != self.len {
            return Err(Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE));
        }
        let bad = || Error::rv(ck::CKR_ENCRYPTED_DATA_INVALID);
        if let Some(k) = self.lc_decrypt() {
            let mut out = Zeroizing::new(vec![0u8; k.pkcs1.min_output_size()]);
            let n = k.pkcs1.decrypt(ct, &mut out).map_err(|_| bad())?.len();
            out.truncate(n);
            return Ok(out);
        }
        self.soft()?
            .decrypt(rsa::Pkcs1v15Encrypt, ct)
            .map(Zeroizing::new)
            .map_err(|_| bad())
    }

    /// RSAES-OAEP decryption with `h` for the label hash and MGF1. Every
    /// failure is the same `CKR_ENCRYPTED_DATA_INVALID` (no oracle).
    pub fn decrypt_oaep(&self, h: Hash, label: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if ct.len() != self.len {
            return Err(Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE));
        }
        let bad = || Error::rv(ck::CKR_ENCRYPTED_DATA_INVALID);
        if let (Some(k), Some(alg)) = (self.lc_decrypt(), oaep_alg(h)) {
            let mut out = Zeroizing::new(vec![0u8; k.oaep.min_output_size()]);
            let label = (!label.is_empty()).then_some(label);
            let n = k
                .oaep
                .decrypt(alg, ct, &mut out, label)
                .map_err(|_| bad())?
                .len();
            out.truncate(n);
            return Ok(out);
        }
        let k = self.soft()?;
        with_hash!(h, D => k.decrypt(rsa::Oaep::<D>::new_with_label(label.to_vec()), ct))
            .map(Zeroizing::new)
            .map_err(|_| bad())
    }

    /// The raw private-key operation m^d mod n (`CKM_RSA_X_509`), blinded.
    /// Input ≥ n → `CKR_DATA_INVALID`. Output is k bytes.
    pub fn raw(&self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let k = self.soft()?;
        let c = raw_input(k.n().as_ref(), input)?;
        let m = rsa::hazmat::rsa_decrypt_and_check(k, Some(&mut getrandom::SysRng), &c)
            .map_err(|_| failed("RSA private operation"))?;
        Ok(Zeroizing::new(left_pad(&bytes(&m), self.len)))
    }
}

fn raw_input(n: &BoxedUint, input: &[u8]) -> Result<BoxedUint> {
    let c = BoxedUint::from_be_slice(input, n.bits_precision())
        .map_err(|_| Error::rv(ck::CKR_DATA_LEN_RANGE))?;
    if c >= *n {
        return Err(Error::rv(ck::CKR_DATA_INVALID));
    }
    Ok(c)
}

fn left_pad(v: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}

fn oaep_alg(h: Hash) -> Option<&'static lc::rsa::OaepAlgorithm> {
    match h {
        Hash::Sha1 => Some(&lc::rsa::OAEP_SHA1_MGF1SHA1),
        Hash::Sha256 => Some(&lc::rsa::OAEP_SHA256_MGF1SHA256),
        Hash::Sha384 => Some(&lc::rsa::OAEP_SHA384_MGF1SHA384),
        Hash::Sha512 => Some(&lc::rsa::OAEP_SHA512_MGF1SHA512),
        Hash::Sha224 => None,
    }
}

struct LcEncrypt {
    pkcs1: lc::rsa::Pkcs1PublicEncryptingKey,
    oaep: lc::rsa::OaepPublicEncryptingKey,
}

/// A parsed RSA public key (SubjectPublicKeyInfo).
pub struct RsaPublic {
    spki: Vec<u8>,
    len: usize,
    /// aws-lc-rs verification keys for the digest-length-salt algorithms,
    /// parsed on first use: PKCS#1 SHA-1/256/384/512, PSS SHA-256/384/512.
    verify: [OnceLock<Option<lc::signature::ParsedPublicKey>>; 7],
    encrypt: OnceLock<Option<LcEncrypt>>,
    soft: rsa::PublicKey,
}

#[allow(clippy::len_without_is_empty)]
impl RsaPublic {
    pub fn from_spki(spki: &[u8]) -> Result<Self> {
        let soft =
            rsa::PublicKey::from_public_key_der(spki).map_err(|_| bad_key("RSA public key"))?;
        Ok(RsaPublic {
            spki: spki.to_vec(),
            len: soft.size(),
            verify: Default::default(),
            encrypt: OnceLock::new(),
            soft,
        })
    }

    /// Modulus length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    fn lc_usable(&self) -> bool {
        self.len >= LC_RSA_MIN_BYTES
    }

    fn parsed(
        &self,
        slot: usize,
        alg: &'static RsaParameters,
    ) -> Option<&lc::signature::ParsedPublicKey> {
        self.verify[slot]
            .get_or_init(|| lc::signature::ParsedPublicKey::new(alg, &self.spki).ok())
            .as_ref()
    }

    fn lc_encrypt(&self) -> Option<&LcEncrypt> {
        self.encrypt
            .get_or_init(|| {
                if !self.lc_usable() {
                    return None;
                }
                let k = lc::rsa::PublicEncryptingKey::from_der(&self.spki).ok()?;
                Some(LcEncrypt {
                    pkcs1: lc::rsa::Pkcs1PublicEncryptingKey::new(k.clone()).ok()?,
                    oaep: lc::rsa::OaepPublicEncryptingKey::new(k).ok()?,
                })
            })
            .as_ref()
    }

    /// Check a PKCS#1 v1.5 signature over the encoded message body `t`
    /// (see [`RsaPrivate::sign_pkcs1`]). `false` when invalid.
    pub fn verify_pkcs1(&self, t: &[u8], sig: &[u8]) -> bool {
        if let (true, Some((h, d))) = (self.lc_usable(), split_digest_info(t)) {
            if let Some(alg) = pkcs1_verify_alg(h) {
                let slot = match h {
                    Hash::Sha1 => 0,
                    Hash::Sha256 => 1,
                    Hash::Sha384 => 2,
                    _ => 3,
                };
                if let (Some(k), Ok(d)) = (self.parsed(slot, alg), lc_digest(h, d)) {
                    return k.verify_digest_sig(&d, sig).is_ok();
                }
            }
        }
        self.soft
            .verify(rsa::Pkcs1v15Sign::new_unprefixed(), t, sig)
            .is_ok()
    }

    /// Check an RSASSA-PSS signature over a digest made with `h`, with
    /// exactly `salt` bytes of salt.
    pub fn verify_pss(&self, h: Hash, digest: &[u8], salt: usize, sig: &[u8]) -> bool {
        if digest.len() != h.len() {
            return false;
        }
        if let (true, Some(alg)) = (self.lc_usable(), pss_verify_alg(h, salt)) {
            let Ok(d) = lc_digest(h, digest) else {
                return false;
            };
            if salt == h.len() {
                let slot = match h {
                    Hash::Sha256 => 4,
                    Hash::Sha384 => 5,
                    _ => 6,
                };
                if let Some(k) = self.parsed(slot, alg) {
                    return k.verify_digest_sig(&d, sig).is_ok();
                }
            } else {
                return lc::signature::UnparsedPublicKey::new(alg, &self.spki)
                    .verify_digest(&d, sig)
                    .is_ok();
            }
        }
        with_hash!(h, D => self.soft.verify(rsa::Pss::<D>::new_with_salt(salt), digest, sig))
            .is_ok()
    }

    /// RSAES-PKCS1-v1_5 encryption (at most k-11 bytes).
    pub fn encrypt_pkcs1(&self, pt: &[u8]) -> Result<Vec<u8>> {
        if pt.len() + 11 > self.len {
            return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
        }
        if let Some(k) = self.lc_encrypt() {
            let mut out = vec![0u8; k.pkcs1.ciphertext_size()];
            let n = k
                .pkcs1
                .encrypt(pt, &mut out)
                .map_err(|_| failed("RSA encryption"))?
                .len();
            out.truncate(n);
            return Ok(out);
        }
        self.soft
            .encrypt(&mut getrandom::SysRng, rsa::Pkcs1v15Encrypt, pt)
            .map_err(|_| failed("RSA encryption"))
    }

    /// Largest OAEP plaintext with hash `h`.
    pub fn oaep_max(&self, h: Hash) -> usize {
        self.len.saturating_sub(2 * h.len() + 2)
    }

    /// RSAES-OAEP encryption with `h` for the label hash and MGF1.
    pub fn encrypt_oaep(&self, h: Hash, label: &[u8], pt: &[u8]) -> Result<Vec<u8>> {
        if pt.len() > self.oaep_max(h) {
            return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
        }
        if let (Some(k), Some(alg)) = (self.lc_encrypt(), oaep_alg(h)) {
            let mut out = vec![0u8; k.oaep.ciphertext_size()];
            let label = (!label.is_empty()).then_some(label);
            let n = k
                .oaep
                .encrypt(alg, pt, &mut out, label)
                .map_err(|_| failed("RSA-OAEP encryption"))?
                .len();
            out.truncate(n);
            return Ok(out);
        }
        with_hash!(h, D => self.soft.encrypt(&mut getrandom::SysRng, rsa::Oaep::<D>::new_with_label(label.to_vec()), pt))
            .map_err(|_| failed("RSA-OAEP encryption"))
    }

    /// The raw public-key operation m^e mod n (`CKM_RSA_X_509`), k bytes out.
    pub fn raw(&self, input: &[u8]) -> Result<Vec<u8>> {
        let m = raw_input(self.soft.n().as_ref(), input)?;
        let c =
            rsa::hazmat::rsa_encrypt(&self.soft, &m).map_err(|_| failed("RSA public operation"))?;
        Ok(left_pad(&bytes(&c), self.len))
    }
}

// ---------------------------------------------------------------- NIST curves

/// The prime curves p11kms supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    pub const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    /// Bytes of a field element (and of r and s in a signature).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
    /// Order size in bits (what `C_GetMechanismInfo` calls the key size).
    pub fn bits(self) -> usize {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }
    fn sign_alg(self) -> &'static lc::signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &lc::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &lc::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Curve::P521 => &lc::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }
    fn verify_alg(self) -> &'static lc::signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &lc::signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &lc::signature::ECDSA_P384_SHA384_FIXED,
            Curve::P521 => &lc::signature::ECDSA_P521_SHA512_FIXED,
        }
    }
    fn ecdh_alg(self) -> &'static lc::agreement::Algorithm {
        match self {
            Curve::P256 => &lc::agreement::ECDH_P256,
            Curve::P384 => &lc::agreement::ECDH_P384,
            Curve::P521 => &lc::agreement::ECDH_P521,
        }
    }
    /// The hash whose output length the signing algorithms above expect.
    fn digest_hash(self) -> Hash {
        match self {
            Curve::P256 => Hash::Sha256,
            Curve::P384 => Hash::Sha384,
            Curve::P521 => Hash::Sha512,
        }
    }

    /// The ECDSA input for a caller's hash of any length, as the
    /// fixed-length digest aws-lc-rs takes. ECDSA uses the leftmost
    /// `bits()` bits of the hash (FIPS 186-5 §6.4.1); a shorter hash is an
    /// integer as it stands. For P-256 and P-384 the order is byte-aligned,
    /// so cutting to the first 32/48 bytes or left-padding with zeros to
    /// that length gives the same integer. For P-521 aws-lc takes 64 bytes,
    /// under the 521-bit order, so hashes up to 64 bytes (every SHA-2 and
    /// SHA-3 output) are padded; longer ones → `CKR_DATA_LEN_RANGE`.
    fn ecdsa_digest(self, hash: &[u8]) -> Result<lc::digest::Digest> {
        let h = self.digest_hash();
        let n = h.len();
        let mut v = [0u8; 64];
        if hash.len() >= n {
            if self == Curve::P521 && hash.len() > n {
                return Err(Error::new(
                    ck::CKR_DATA_LEN_RANGE,
                    "ECDSA P-521 input longer than 64 bytes",
                ));
            }
            v[..n].copy_from_slice(&hash[..n]);
        } else {
            v[n - hash.len()..n].copy_from_slice(hash);
        }
        lc_digest(h, &v[..n])
    }
}

/// What a new or imported EC private key consists of.
pub struct EcParts {
    pub curve: Curve,
    /// The private scalar, big-endian, `field_len` bytes.
    pub scalar: Zeroizing<Vec<u8>>,
    /// The uncompressed point 04||X||Y.
    pub point: Vec<u8>,
    pub spki: Vec<u8>,
    pub pkcs8: Zeroizing<Vec<u8>>,
}

fn ec_parts(curve: Curve, k: &lc::signature::EcdsaKeyPair) -> Result<EcParts> {
    let scalar = k
        .private_key()
        .as_be_bytes()
        .map_err(|_| failed("EC key encoding"))?;
    let spki = k
        .public_key()
        .as_der()
        .map_err(|_| failed("EC key encoding"))?;
    let pkcs8 = k.to_pkcs8v1().map_err(|_| failed("EC key encoding"))?;
    Ok(EcParts {
        curve,
        scalar: Zeroizing::new(scalar.as_ref().to_vec()),
        point: k.public_key().as_ref().to_vec(),
        spki: spki.as_ref().to_vec(),
        pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
    })
}

/// A new EC key pair.
pub fn ec_generate(curve: Curve) -> Result<EcParts> {
    let k = lc::signature::EcdsaKeyPair::generate(curve.sign_alg())
        .map_err(|_| failed("EC key generation"))?;
    ec_parts(curve, &k)
}

/// Decode an EC PKCS#8 private key (any of the three curves).
pub fn ec_parts_from_pkcs8(der: &[u8]) -> Result<EcParts> {
    for c in Curve::ALL {
        if let Ok(k) = lc::signature::EcdsaKeyPair::from_pkcs8(c.sign_alg(), der) {
            return ec_parts(c, &k);
        }
    }
    Err(bad_key("EC private key"))
}

/// An EC key from its private scalar (checked to be in [1, n-1]).
pub fn ec_parts_from_scalar(curve: Curve, scalar: &[u8]) -> Result<EcParts> {
    let mut s = Zeroizing::new(vec![0u8; curve.field_len()]);
    let t = trim(scalar);
    if t.len() > s.len() {
        return Err(bad_key("EC private value"));
    }
    let off = s.len() - t.len();
    s[off..].copy_from_slice(t);
    let k = lc::agreement::PrivateKey::from_private_key(curve.ecdh_alg(), &s)
        .map_err(|_| bad_key("EC private value"))?;
    let der: lc::encoding::Pkcs8V1Der = k.as_der().map_err(|_| bad_key("EC private value"))?;
    let k = lc::signature::EcdsaKeyPair::from_pkcs8(curve.sign_alg(), der.as_ref())
        .map_err(|_| bad_key("EC private value"))?;
    ec_parts(curve, &k)
}

/// SubjectPublicKeyInfo of an uncompressed point, after checking that it
/// lies on the curve.
pub fn ec_spki(curve: Curve, point: &[u8]) -> Result<Vec<u8>> {
    let k = lc::signature::ParsedPublicKey::new(curve.verify_alg(), point)
        .map_err(|_| bad_key("EC point"))?;
    Ok(k.as_der()
        .map_err(|_| bad_key("EC point"))?
        .as_ref()
        .to_vec())
}

/// A parsed EC private key.
pub struct EcPrivate {
    curve: Curve,
    der: Zeroizing<Vec<u8>>,
    sign: lc::signature::EcdsaKeyPair,
    ecdh: OnceLock<Option<lc::agreement::PrivateKey>>,
}

impl EcPrivate {
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        for curve in Curve::ALL {
            if let Ok(sign) = lc::signature::EcdsaKeyPair::from_pkcs8(curve.sign_alg(), der) {
                return Ok(EcPrivate {
                    curve,
                    der: Zeroizing::new(der.to_vec()),
                    sign,
                    ecdh: OnceLock::new(),
                });
            }
        }
        Err(Error::general("stored EC key unreadable"))
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// ECDSA signature r||s over a caller's hash of any length.
    pub fn sign_hash(&self, hash: &[u8]) -> Result<Vec<u8>> {
        let d = self.curve.ecdsa_digest(hash)?;
        let sig = self
            .sign
            .sign_digest(&d)
            .map_err(|_| failed("ECDSA signature"))?;
        Ok(sig.as_ref().to_vec())
    }

    /// ECDH shared secret (the x coordinate, `field_len` bytes) with an
    /// uncompressed peer point. Bad point → `CKR_MECHANISM_PARAM_INVALID`.
    pub fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let k = self
            .ecdh
            .get_or_init(|| {
                lc::agreement::PrivateKey::from_private_key_der(self.curve.ecdh_alg(), &self.der)
                    .ok()
            })
            .as_ref()
            .ok_or_else(|| Error::general("stored EC key unusable for ECDH"))?;
        let peer = lc::agreement::UnparsedPublicKey::new(self.curve.ecdh_alg(), peer);
        lc::agreement::agree(
            k,
            peer,
            Error::param_invalid("ECDH public value is not a point of the key's curve"),
            |s| Ok(Zeroizing::new(s.to_vec())),
        )
    }
}

/// A parsed EC public key.
pub struct EcPublic {
    curve: Curve,
    key: lc::signature::ParsedPublicKey,
}

impl EcPublic {
    pub fn from_spki(spki: &[u8]) -> Result<Self> {
        for curve in Curve::ALL {
            if let Ok(key) = lc::signature::ParsedPublicKey::new(curve.verify_alg(), spki) {
                return Ok(EcPublic { curve, key });
            }
        }
        Err(Error::general("stored EC public key unreadable"))
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// Check an r||s signature over a caller's hash (see
    /// [`EcPrivate::sign_hash`]). `false` when invalid.
    pub fn verify_hash(&self, hash: &[u8], sig: &[u8]) -> bool {
        match self.curve.ecdsa_digest(hash) {
            Ok(d) => self.key.verify_digest_sig(&d, sig).is_ok(),
            Err(_) => false,
        }
    }
}

// ---------------------------------------------------------------- Curve25519

/// Ed25519 public key from its 32-byte seed; also checks the seed length.
pub fn ed25519_public(seed: &[u8]) -> Result<Vec<u8>> {
    let k = lc::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|_| bad_key("Ed25519 private value"))?;
    Ok(k.public_key().as_ref().to_vec())
}

/// A new Ed25519 seed.
pub fn ed25519_generate() -> Result<Zeroizing<Vec<u8>>> {
    let k =
        lc::signature::Ed25519KeyPair::generate().map_err(|_| failed("Ed25519 key generation"))?;
    let seed = k.seed().map_err(|_| failed("Ed25519 key generation"))?;
    let bytes: lc::encoding::Curve25519SeedBin = seed
        .as_be_bytes()
        .map_err(|_| failed("Ed25519 key generation"))?;
    Ok(Zeroizing::new(bytes.as_ref().to_vec()))
}

/// A parsed Ed25519 private key.
pub struct Ed25519Private(lc::signature::Ed25519KeyPair);

impl Ed25519Private {
    pub fn from_seed(seed: &[u8]) -> Result<Self> {
        lc::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Ed25519Private)
            .map_err(|_| Error::general("stored Ed25519 key unreadable"))
    }
    /// Pure Ed25519 (RFC 8032 §5.1.6).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.0.sign(msg).as_ref().to_vec()
    }
}

/// A parsed Ed25519 public key.
pub struct Ed25519Public(lc::signature::ParsedPublicKey);

impl Ed25519Public {
    pub fn from_raw(public: &[u8]) -> Result<Self> {
        lc::signature::ParsedPublicKey::new(&lc::signature::ED25519, public)
            .map(Ed25519Public)
            .map_err(|_| bad_key("Ed25519 public key"))
    }
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.0.verify_sig(msg, sig).is_ok()
    }
}

/// X25519 public value of a 32-byte private value.
pub fn x25519_public(private: &[u8]) -> Result<Vec<u8>> {
    let k = lc::agreement::PrivateKey::from_private_key(&lc::agreement::X25519, private)
        .map_err(|_| bad_key("X25519 private value"))?;
    Ok(k.compute_public_key()
        .map_err(|_| bad_key("X25519 private value"))?
        .as_ref()
        .to_vec())
}

/// A new X25519 private value.
pub fn x25519_generate() -> Result<Zeroizing<Vec<u8>>> {
    let k = lc::agreement::PrivateKey::generate(&lc::agreement::X25519)
        .map_err(|_| failed("X25519 key generation"))?;
    let b: lc::encoding::Curve25519SeedBin = k
        .as_be_bytes()
        .map_err(|_| failed("X25519 key generation"))?;
    Ok(Zeroizing::new(b.as_ref().to_vec()))
}

/// A parsed X25519 private key.
pub struct X25519Private(lc::agreement::PrivateKey);

impl X25519Private {
    pub fn from_private(private: &[u8]) -> Result<Self> {
        lc::agreement::PrivateKey::from_private_key(&lc::agreement::X25519, private)
            .map(X25519Private)
            .map_err(|_| Error::general("stored X25519 key unreadable"))
    }
    /// RFC 7748 §6.1 shared secret. An all-zero result (small-order peer
    /// point) is refused by aws-lc → `CKR_MECHANISM_PARAM_INVALID`.
    pub fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let peer = lc::agreement::UnparsedPublicKey::new(&lc::agreement::X25519, peer);
        lc::agreement::agree(
            &self.0,
            peer,
            Error::param_invalid("bad X25519 public value"),
            |s| Ok(Zeroizing::new(s.to_vec())),
        )
    }
}
