//! Mechanisms: one file per algorithm family, each exposing
//! `register(&mut Registry)`. Adding an algorithm is one file plus one line in
//! [`Registry::with_defaults`].
//!
//! A mechanism implements only what it supports; every other method of
//! [`Mechanism`] answers `CKR_MECHANISM_INVALID`. Mechanisms see key material
//! through [`Key`] and never touch objects, sessions, policy or storage: the
//! token layer checks `CKA_ENCRYPT`/`CKA_SIGN`/... and login state before it
//! calls in here. A mechanism checks its own parameters
//! (`CKR_MECHANISM_PARAM_INVALID`), the key's type
//! (`CKR_KEY_TYPE_INCONSISTENT`) and size (`CKR_KEY_SIZE_RANGE`).

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use p11kms_protocol::{vendor, MechParam, MechanismInfo};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub mod aes;
pub mod asym;
pub mod cmac;
pub mod digest;
pub mod ec;
pub mod edwards;
pub mod gcm;
pub mod generic;
pub mod hmac;
pub mod keywrap;
pub mod multipart;
pub mod provider;
pub mod rsa;
pub mod sm2;
pub mod sm3;
pub mod sm4;

/// Key material as mechanisms see it.
///
/// `value` is the raw key for secret keys, PKCS#8 DER for private keys and
/// SubjectPublicKeyInfo DER for public keys. Expanded forms (AES key
/// schedules, parsed RSA keys...) are built once per key through
/// [`Key::cached`] and reused by every later operation.
pub struct Key {
    pub class: u64,
    pub key_type: u64,
    pub value: Zeroizing<Vec<u8>>,
    cache: RwLock<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("class", &self.class)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn new(class: u64, key_type: u64, value: Zeroizing<Vec<u8>>) -> Self {
        Key {
            class,
            key_type,
            value,
            cache: RwLock::new(Vec::new()),
        }
    }

    /// The expanded form `T` of this key, built by `build` on first use and
    /// shared afterwards. Different mechanisms may cache different types for
    /// the same key (e.g. an AES-GCM state and an AES block cipher).
    pub fn cached<T, F>(&self, build: F) -> Result<Arc<T>>
    where
        T: Any + Send + Sync,
        F: FnOnce(&[u8]) -> Result<T>,
    {
        let id = TypeId::of::<T>();
        if let Ok(cache) = self.cache.read() {
            if let Some((_, v)) = cache.iter().find(|(t, _)| *t == id) {
                if let Ok(v) = Arc::clone(v).downcast::<T>() {
                    return Ok(v);
                }
            }
        }
        let built = Arc::new(build(&self.value)?);
        if let Ok(mut cache) = self.cache.write() {
            if !cache.iter().any(|(t, _)| *t == id) {
                cache.push((id, built.clone() as Arc<dyn Any + Send + Sync>));
            }
        }
        Ok(built)
    }
}

/// A freshly generated secret key.
pub struct GeneratedKey {
    /// `CKA_KEY_TYPE` of the new key.
    pub key_type: u64,
    pub value: Zeroizing<Vec<u8>>,
}

/// A freshly generated key pair. `*_attrs` are the attributes the mechanism
/// derives from the material (`CKA_MODULUS`, `CKA_EC_POINT`, ...) as
/// `(type, value)` pairs, added to the objects by the token layer.
pub struct GeneratedKeyPair {
    pub key_type: u64,
    /// SubjectPublicKeyInfo DER.
    pub public_value: Vec<u8>,
    /// PKCS#8 DER.
    pub private_value: Zeroizing<Vec<u8>>,
    pub public_attrs: Vec<(u64, Vec<u8>)>,
    pub private_attrs: Vec<(u64, Vec<u8>)>,
}

/// A running encryption or decryption.
///
/// Length functions return upper bounds (PKCS#11 allows the reported length
/// to be "somewhat larger" than the exact one). The token layer answers
/// length queries from them without running the operation, and never calls
/// `update`/`finalize` twice for one piece of input.
pub trait CipherOp: Send {
    /// Output length bound of a single-part call on `in_len` bytes. An input
    /// length the mechanism can never accept is an error here already
    /// (`CKR_DATA_LEN_RANGE` / `CKR_ENCRYPTED_DATA_LEN_RANGE`).
    fn oneshot_len(&self, in_len: usize) -> Result<usize>;
    /// Output length bound of an `update` on `in_len` more bytes.
    fn update_len(&self, in_len: usize) -> usize;
    /// Output length bound of `finalize`.
    fn final_len(&self) -> usize;
    /// Single-part operation (`C_Encrypt` / `C_Decrypt`).
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>>;
    /// Multi-part step.
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>>;
    /// Multi-part end.
    fn finalize(&mut self) -> Result<Vec<u8>>;
}

/// A running digest.
#[allow(clippy::len_without_is_empty)] // a digest's length, not a collection's
pub trait DigestOp: Send {
    /// Digest length in bytes (never zero).
    fn len(&self) -> usize;
    fn update(&mut self, data: &[u8]);
    fn finalize(&mut self) -> Vec<u8>;
}

/// A running signature or MAC computation.
pub trait SignOp: Send {
    /// Exact (or upper bound) signature length, known before signing.
    fn sig_len(&self) -> usize;
    /// Whether `C_SignUpdate` is allowed (`CKR_FUNCTION_NOT_SUPPORTED`
    /// otherwise... mechanisms such as raw ECDSA are single-part only).
    fn multipart(&self) -> bool {
        true
    }
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finalize(&mut self) -> Result<Vec<u8>>;
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.update(data)?;
        self.finalize()
    }
}

/// A running signature or MAC verification. Failures:
/// `CKR_SIGNATURE_LEN_RANGE` for a wrong length, `CKR_SIGNATURE_INVALID` for
/// a wrong value; MACs compare in constant time.
pub trait VerifyOp: Send {
    fn multipart(&self) -> bool {
        true
    }
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finalize(&mut self, signature: &[u8]) -> Result<()>;
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        self.update(data)?;
        self.finalize(signature)
    }
}

/// One PKCS#11 mechanism. Defaults answer `CKR_MECHANISM_INVALID`.
pub trait Mechanism: Send + Sync {
    /// The `CKM_*` code.
    fn mech(&self) -> u64;
    /// What `C_GetMechanismInfo` reports. Flags must list exactly what the
    /// methods below implement.
    fn info(&self) -> MechanismInfo;

    fn encrypt_init(&self, _key: &Arc<Key>, _param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Err(Error::mechanism_invalid())
    }
    fn decrypt_init(&self, _key: &Arc<Key>, _param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Err(Error::mechanism_invalid())
    }
    fn digest_init(&self, _param: &MechParam) -> Result<Box<dyn DigestOp>> {
        Err(Error::mechanism_invalid())
    }
    fn sign_init(&self, _key: &Arc<Key>, _param: &MechParam) -> Result<Box<dyn SignOp>> {
        Err(Error::mechanism_invalid())
    }
    fn verify_init(&self, _key: &Arc<Key>, _param: &MechParam) -> Result<Box<dyn VerifyOp>> {
        Err(Error::mechanism_invalid())
    }
    /// `C_GenerateKey`. `value_len` is `CKA_VALUE_LEN` from the template.
    fn generate_key(&self, _param: &MechParam, _value_len: Option<usize>) -> Result<GeneratedKey> {
        Err(Error::mechanism_invalid())
    }
    /// `C_GenerateKeyPair`. Templates are passed as given by the caller so
    /// the mechanism can read `CKA_MODULUS_BITS`, `CKA_EC_PARAMS`, ...
    fn generate_key_pair(
        &self,
        _param: &MechParam,
        _public_template: &[p11kms_protocol::Attribute],
        _private_template: &[p11kms_protocol::Attribute],
    ) -> Result<GeneratedKeyPair> {
        Err(Error::mechanism_invalid())
    }
    /// Upper bound of the wrapped length for a key value of `key_len` bytes.
    fn wrap_len(
        &self,
        _param: &MechParam,
        _wrapping_key: &Arc<Key>,
        _key_len: usize,
    ) -> Result<usize> {
        Err(Error::mechanism_invalid())
    }
    /// `C_WrapKey` on the key's value (raw secret value or PKCS#8 DER).
    fn wrap(
        &self,
        _param: &MechParam,
        _wrapping_key: &Arc<Key>,
        _key_value: &[u8],
    ) -> Result<Vec<u8>> {
        Err(Error::mechanism_invalid())
    }
    /// `C_UnwrapKey`: the recovered key value. Bad wrapped data →
    /// `CKR_WRAPPED_KEY_INVALID` / `CKR_WRAPPED_KEY_LEN_RANGE`.
    fn unwrap(
        &self,
        _param: &MechParam,
        _unwrapping_key: &Arc<Key>,
        _wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        Err(Error::mechanism_invalid())
    }
    /// `C_DeriveKey`: the derived secret value (`value_len` from the template).
    fn derive(
        &self,
        _param: &MechParam,
        _base: &Arc<Key>,
        _value_len: Option<usize>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        Err(Error::mechanism_invalid())
    }
}

/// Whether a `mode = "gm"` instance (Chinese commercial cryptography
/// compliance) serves `mech`: the SM2, SM3 and SM4 mechanisms, and random
/// generation (`CKM_GENERIC_SECRET_KEY_GEN`, for HMAC-SM3 keys;
/// `C_GenerateRandom` is not a mechanism and always served).
pub fn gm_allowed(mech: u64) -> bool {
    matches!(
        mech,
        vendor::CKM_SM3
            | vendor::CKM_SM3_HMAC
            | vendor::CKM_SM3_HMAC_GENERAL
            | vendor::CKM_SM4_KEY_GEN
            | vendor::CKM_SM4_ECB
            | vendor::CKM_SM4_CBC
            | vendor::CKM_SM4_CBC_PAD
            | vendor::CKM_SM4_CTR
            | vendor::CKM_SM4_GCM
            | vendor::CKM_SM4_MAC
            | vendor::CKM_SM4_MAC_GENERAL
            | vendor::CKM_SM4_KEY_WRAP
            | vendor::CKM_SM2_KEY_PAIR_GEN
            | vendor::CKM_SM2DSA
            | vendor::CKM_SM3_SM2DSA
            | vendor::CKM_SM2_ENCRYPT
            | vendor::CKM_P11KMS_AES_GCM_ENVELOPE
            | pkcs11_sys::CKM_GENERIC_SECRET_KEY_GEN
    )
}

/// A start-up known-answer test. A failure keeps the instance from serving.
pub type SelfTest = fn() -> Result<()>;

/// The set of mechanisms an instance serves.
#[derive(Default, Clone)]
pub struct Registry {
    mechs: BTreeMap<u64, Arc<dyn Mechanism>>,
    self_tests: Vec<(&'static str, SelfTest)>,
}

impl Registry {
    /// Every mechanism p11kms implements.
    pub fn with_defaults() -> Self {
        let mut r = Registry::default();
        digest::register(&mut r);
        hmac::register(&mut r);
        aes::register(&mut r);
        gcm::register(&mut r);
        cmac::register(&mut r);
        keywrap::register(&mut r);
        generic::register(&mut r);
        rsa::register(&mut r);
        ec::register(&mut r);
        edwards::register(&mut r);
        sm3::register(&mut r);
        sm4::register(&mut r);
        sm2::register(&mut r);
        r
    }

    pub fn add(&mut self, m: impl Mechanism + 'static) {
        self.mechs.insert(m.mech(), Arc::new(m));
    }

    pub fn add_self_test(&mut self, name: &'static str, t: SelfTest) {
        self.self_tests.push((name, t));
    }

    pub fn get(&self, mech: u64) -> Result<&Arc<dyn Mechanism>> {
        self.mechs.get(&mech).ok_or_else(Error::mechanism_invalid)
    }

    /// Mechanism codes in ascending order (`C_GetMechanismList`).
    pub fn list(&self) -> Vec<u64> {
        self.mechs.keys().copied().collect()
    }

    /// Keep only the mechanisms `keep` accepts (compliance modes).
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.mechs.retain(|m, _| keep(*m));
    }

    /// Run every known-answer test; the first failure is returned with the
    /// test's name.
    pub fn run_self_tests(&self) -> Result<()> {
        for (name, t) in &self.self_tests {
            t().map_err(|e| Error::general(format!("self-test {name} failed: {}", e.msg)))?;
        }
        Ok(())
    }
}
