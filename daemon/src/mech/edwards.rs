//! Curve25519: Ed25519 signatures (`CKM_EC_EDWARDS_KEY_PAIR_GEN`,
//! `CKM_EDDSA`) and X25519 key agreement (`CKM_EC_MONTGOMERY_KEY_PAIR_GEN`;
//! the derivation itself is `CKM_ECDH1_DERIVE` in `ec.rs`), PKCS#11 3.0
//! current mechanisms §2.3.5–§2.3.9.
//!
//! `CKM_EDDSA` is pure Ed25519 (RFC 8032 §5.1) and single-part (the whole
//! message is hashed twice). Ed25519ctx and Ed25519ph (`CK_EDDSA_PARAMS`
//! with a context or `phFlag`) are not offered by aws-lc-rs' API →
//! `CKR_MECHANISM_PARAM_INVALID`. Ed448/X448 are not supported
//! (`CKR_CURVE_NOT_SUPPORTED`).
//!
//! Key objects keep the 32-byte private value in `CKA_VALUE` and the
//! 32-byte public key, as a DER OCTET STRING, in `CKA_EC_POINT`.

use std::sync::Arc;

use p11kms_protocol::{Attribute, MechParam, MechanismInfo};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::asym::{self, EcCurve};
use super::provider::{self, Ed25519Private, Ed25519Public, X25519Private};
use super::{GeneratedKeyPair, Key, Mechanism, Registry, SignOp, VerifyOp};
use crate::error::{Error, Result};

/// Largest message `CKM_EDDSA` takes (it is single-part, so the message is
/// held in memory whole).
const MAX_MESSAGE: usize = p11kms_protocol::MAX_DATA;

/// Register the Curve25519 mechanisms and their known-answer tests.
pub fn register(r: &mut Registry) {
    r.add(KeyPairGen {
        curve: EcCurve::Ed25519,
    });
    r.add(KeyPairGen {
        curve: EcCurve::X25519,
    });
    r.add(Eddsa);
    r.add_self_test("Ed25519 (RFC 8032 test 1)", self_test_ed25519);
    r.add_self_test("X25519 (RFC 7748 §6.1)", self_test_x25519);
}

fn info(flags: u64) -> MechanismInfo {
    MechanismInfo {
        min_key_size: 255,
        max_key_size: 255,
        flags,
    }
}

/// The private value of a Curve25519 key object of key type `key_type`.
fn private_value(key: &Key, key_type: u64, curve: EcCurve) -> Result<Zeroizing<Vec<u8>>> {
    if key.class != ck::CKO_PRIVATE_KEY || key.key_type != key_type {
        return Err(Error::key_type_inconsistent());
    }
    let (c, v) = asym::curve25519_private(&key.value)
        .map_err(|_| Error::general("stored Curve25519 key unreadable"))?;
    if c != curve {
        return Err(Error::key_type_inconsistent());
    }
    Ok(v)
}

fn ed_private(key: &Key) -> Result<Arc<Ed25519Private>> {
    private_value(key, ck::CKK_EC_EDWARDS, EcCurve::Ed25519)?;
    key.cached(|der| {
        let (_, seed) = asym::curve25519_private(der)?;
        Ed25519Private::from_seed(&seed)
    })
}

fn ed_public(key: &Key) -> Result<Arc<Ed25519Public>> {
    if key.class != ck::CKO_PUBLIC_KEY || key.key_type != ck::CKK_EC_EDWARDS {
        return Err(Error::key_type_inconsistent());
    }
    key.cached(|spki| match asym::curve25519_public(spki) {
        Ok((EcCurve::Ed25519, raw)) => Ed25519Public::from_raw(&raw),
        _ => Err(Error::key_type_inconsistent()),
    })
}

/// X25519 shared secret of the private key `key` (`CKK_EC_MONTGOMERY`)
/// and a raw 32-byte peer public value, for `CKM_ECDH1_DERIVE`.
pub fn x25519_agree(key: &Key, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if key.class != ck::CKO_PRIVATE_KEY || key.key_type != ck::CKK_EC_MONTGOMERY {
        return Err(Error::key_type_inconsistent());
    }
    let k = key.cached(|der| match asym::curve25519_private(der) {
        Ok((EcCurve::X25519, v)) => X25519Private::from_private(&v),
        _ => Err(Error::key_type_inconsistent()),
    })?;
    k.agree(peer)
}

// ---------------------------------------------------------------- key generation

struct KeyPairGen {
    curve: EcCurve,
}

impl Mechanism for KeyPairGen {
    fn mech(&self) -> u64 {
        match self.curve {
            EcCurve::X25519 => ck::CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            _ => ck::CKM_EC_EDWARDS_KEY_PAIR_GEN,
        }
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
        if asym::keygen_curve(param, public)? != self.curve {
            return Err(Error::new(
                ck::CKR_CURVE_NOT_SUPPORTED,
                "curve does not match the mechanism",
            ));
        }
        let private = match self.curve {
            EcCurve::Ed25519 => provider::ed25519_generate()?,
            _ => provider::x25519_generate()?,
        };
        asym::curve25519_generated(self.curve, &private)
    }
}

// ---------------------------------------------------------------- EdDSA

struct Eddsa;

fn check_param(param: &MechParam) -> Result<()> {
    match param {
        MechParam::None => Ok(()),
        MechParam::Eddsa {
            ph_flag: false,
            context,
        } if context.is_empty() => Ok(()),
        _ => Err(Error::param_invalid(
            "only pure Ed25519 (no prehash, no context) is supported",
        )),
    }
}

struct EdSign {
    key: Arc<Ed25519Private>,
    msg: Vec<u8>,
}

impl SignOp for EdSign {
    fn sig_len(&self) -> usize {
        64
    }
    fn multipart(&self) -> bool {
        false
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        if self.msg.len() + data.len() > MAX_MESSAGE {
            return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
        }
        self.msg.extend_from_slice(data);
        Ok(())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        Ok(self.key.sign(&std::mem::take(&mut self.msg)))
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(self.key.sign(data))
    }
}

struct EdVerify {
    key: Arc<Ed25519Public>,
    msg: Vec<u8>,
}

impl EdVerify {
    fn check(&self, msg: &[u8], signature: &[u8]) -> Result<()> {
        if signature.len() != 64 {
            return Err(Error::rv(ck::CKR_SIGNATURE_LEN_RANGE));
        }
        if self.key.verify(msg, signature) {
            Ok(())
        } else {
            Err(Error::rv(ck::CKR_SIGNATURE_INVALID))
        }
    }
}

impl VerifyOp for EdVerify {
    fn multipart(&self) -> bool {
        false
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        if self.msg.len() + data.len() > MAX_MESSAGE {
            return Err(Error::rv(ck::CKR_DATA_LEN_RANGE));
        }
        self.msg.extend_from_slice(data);
        Ok(())
    }
    fn finalize(&mut self, signature: &[u8]) -> Result<()> {
        let msg = std::mem::take(&mut self.msg);
        self.check(&msg, signature)
    }
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        self.check(data, signature)
    }
}

impl Mechanism for Eddsa {
    fn mech(&self) -> u64 {
        ck::CKM_EDDSA
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_SIGN | ck::CKF_VERIFY)
    }
    fn sign_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn SignOp>> {
        check_param(param)?;
        Ok(Box::new(EdSign {
            key: ed_private(key)?,
            msg: Vec::new(),
        }))
    }
    fn verify_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn VerifyOp>> {
        check_param(param)?;
        Ok(Box::new(EdVerify {
            key: ed_public(key)?,
            msg: Vec::new(),
        }))
    }
}

// ---------------------------------------------------------------- self-tests

/// RFC 8032 §7.1 test 1 (empty message) and RFC 7748 §6.1.
pub(crate) mod kat {
    pub const ED_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    pub const ED_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    pub const ED_SIG_EMPTY: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    pub const X_ALICE_PRIVATE: &str =
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    pub const X_ALICE_PUBLIC: &str =
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    pub const X_BOB_PUBLIC: &str =
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    pub const X_SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
}

fn self_test_ed25519() -> Result<()> {
    let hex = super::rsa::kat::hex;
    let k = Ed25519Private::from_seed(&hex(kat::ED_SECRET))?;
    let sig = k.sign(b"");
    if sig != hex(kat::ED_SIG_EMPTY)
        || !Ed25519Public::from_raw(&hex(kat::ED_PUBLIC))?.verify(b"", &sig)
    {
        return Err(Error::general("Ed25519 known answer failed"));
    }
    Ok(())
}

fn self_test_x25519() -> Result<()> {
    let hex = super::rsa::kat::hex;
    let alice = hex(kat::X_ALICE_PRIVATE);
    if provider::x25519_public(&alice)? != hex(kat::X_ALICE_PUBLIC) {
        return Err(Error::general("X25519 public key known answer failed"));
    }
    let shared = X25519Private::from_private(&alice)?.agree(&hex(kat::X_BOB_PUBLIC))?;
    if shared.len() != 32 || shared[..] != hex(kat::X_SHARED)[..] {
        return Err(Error::general("X25519 known answer failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
