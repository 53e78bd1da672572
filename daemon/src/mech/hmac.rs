//! HMAC (RFC 2104) over SHA-1, SHA-2 and SHA-3: `CKM_SHA*_HMAC` with the
//! full-length MAC and `CKM_SHA*_HMAC_GENERAL` with a `CK_MAC_GENERAL_PARAMS`
//! length of 1 up to the full length (PKCS#11 3.0 current mechanisms
//! §2.20ff).
//!
//! Keys are `CKK_GENERIC_SECRET` or the key type named after the hash
//! (`CKK_SHA256_HMAC` for the SHA-256 mechanisms, ...), 1 to 512 bytes. The
//! keyed inner/outer state is computed once per key and mechanism (through
//! [`Key::cached`]) and cloned for each operation.

use std::marker::PhantomData;
use std::sync::Arc;

use ::hmac::{Hmac, KeyInit, Mac, SimpleHmac};
use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;
use subtle::ConstantTimeEq;

use super::{Key, Mechanism, Registry, SignOp, VerifyOp};
use crate::error::{Error, Result};

/// Shortest HMAC key accepted, in bytes (RFC 4231 test case 2 uses 4).
pub const MIN_KEY_BYTES: u64 = 1;
/// Longest HMAC key accepted, in bytes; matches generic secret generation.
pub const MAX_KEY_BYTES: u64 = 512;

/// Register every HMAC mechanism and the known-answer test.
pub fn register(r: &mut Registry) {
    add::<Hmac<sha1::Sha1>>(
        r,
        ck::CKM_SHA_1_HMAC,
        ck::CKM_SHA_1_HMAC_GENERAL,
        ck::CKK_SHA_1_HMAC,
    );
    add::<Hmac<sha2::Sha224>>(
        r,
        ck::CKM_SHA224_HMAC,
        ck::CKM_SHA224_HMAC_GENERAL,
        ck::CKK_SHA224_HMAC,
    );
    add::<Hmac<sha2::Sha256>>(
        r,
        ck::CKM_SHA256_HMAC,
        ck::CKM_SHA256_HMAC_GENERAL,
        ck::CKK_SHA256_HMAC,
    );
    add::<Hmac<sha2::Sha384>>(
        r,
        ck::CKM_SHA384_HMAC,
        ck::CKM_SHA384_HMAC_GENERAL,
        ck::CKK_SHA384_HMAC,
    );
    add::<Hmac<sha2::Sha512>>(
        r,
        ck::CKM_SHA512_HMAC,
        ck::CKM_SHA512_HMAC_GENERAL,
        ck::CKK_SHA512_HMAC,
    );
    // The sha3 crate's sponge has no eager block API, which `Hmac` needs;
    // `SimpleHmac` is the same RFC 2104 construction over any `Digest`.
    add::<SimpleHmac<sha3::Sha3_224>>(
        r,
        ck::CKM_SHA3_224_HMAC,
        ck::CKM_SHA3_224_HMAC_GENERAL,
        ck::CKK_SHA3_224_HMAC,
    );
    add::<SimpleHmac<sha3::Sha3_256>>(
        r,
        ck::CKM_SHA3_256_HMAC,
        ck::CKM_SHA3_256_HMAC_GENERAL,
        ck::CKK_SHA3_256_HMAC,
    );
    add::<SimpleHmac<sha3::Sha3_384>>(
        r,
        ck::CKM_SHA3_384_HMAC,
        ck::CKM_SHA3_384_HMAC_GENERAL,
        ck::CKK_SHA3_384_HMAC,
    );
    add::<SimpleHmac<sha3::Sha3_512>>(
        r,
        ck::CKM_SHA3_512_HMAC,
        ck::CKM_SHA3_512_HMAC_GENERAL,
        ck::CKK_SHA3_512_HMAC,
    );
    r.add_self_test("HMAC-SHA-256 (RFC 4231 case 2)", self_test);
}

/// Register `mech` (full-length MAC) and `general` (`CK_MAC_GENERAL_PARAMS`)
/// computed by `M`, for `CKK_GENERIC_SECRET` keys and keys of `key_type`.
/// `mech::sm3` registers HMAC-SM3 through this.
pub fn add<M: HmacState>(r: &mut Registry, mech: u64, general: u64, key_type: u64) {
    r.add(HmacMech::<M> {
        mech,
        general: false,
        key_type,
        _mac: PhantomData,
    });
    r.add(HmacMech::<M> {
        mech: general,
        general: true,
        key_type,
        _mac: PhantomData,
    });
}

/// What an HMAC implementation must offer: keying, MAC traits, and a cheap
/// copy of the keyed state.
pub trait HmacState: Mac + KeyInit + Clone + Send + Sync + 'static {}

impl<M: Mac + KeyInit + Clone + Send + Sync + 'static> HmacState for M {}

/// One HMAC mechanism computed by `M` (`Hmac<Sha256>`, ...).
struct HmacMech<M> {
    mech: u64,
    /// `*_HMAC_GENERAL`: the MAC length comes from the parameter.
    general: bool,
    /// The hash-specific key type accepted besides `CKK_GENERIC_SECRET`.
    key_type: u64,
    _mac: PhantomData<fn() -> M>,
}

impl<M: HmacState> HmacMech<M> {
    fn full_len() -> usize {
        <M as ::digest::OutputSizeUser>::output_size()
    }

    /// The MAC length this operation produces, from the parameter.
    fn mac_len(&self, param: &MechParam) -> Result<usize> {
        let full = Self::full_len();
        match (self.general, param) {
            (false, MechParam::None) => Ok(full),
            (true, MechParam::MacLen(n)) => match usize::try_from(*n) {
                Ok(n @ 1..) if n <= full => Ok(n),
                _ => Err(Error::param_invalid(format!(
                    "HMAC length {n} not in 1..={full}"
                ))),
            },
            (false, _) => Err(Error::param_invalid("HMAC takes no parameter")),
            (true, _) => Err(Error::param_invalid(
                "HMAC_GENERAL needs CK_MAC_GENERAL_PARAMS",
            )),
        }
    }

    /// A fresh MAC state keyed with `key`, from the per-key cache.
    fn keyed(&self, key: &Key) -> Result<M> {
        if key.class != ck::CKO_SECRET_KEY
            || (key.key_type != ck::CKK_GENERIC_SECRET && key.key_type != self.key_type)
        {
            return Err(Error::key_type_inconsistent());
        }
        let len = key.value.len() as u64;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&len) {
            return Err(Error::key_size_range());
        }
        let state =
            key.cached(|v| <M as KeyInit>::new_from_slice(v).map_err(|_| Error::key_size_range()))?;
        Ok((*state).clone())
    }

    fn start(&self, key: &Key, param: &MechParam) -> Result<HmacOp<M>> {
        let len = self.mac_len(param)?;
        Ok(HmacOp {
            mac: Some(self.keyed(key)?),
            len,
        })
    }
}

impl<M: HmacState> Mechanism for HmacMech<M> {
    fn mech(&self) -> u64 {
        self.mech
    }
    fn info(&self) -> MechanismInfo {
        MechanismInfo {
            min_key_size: MIN_KEY_BYTES,
            max_key_size: MAX_KEY_BYTES,
            flags: ck::CKF_SIGN | ck::CKF_VERIFY,
        }
    }
    fn sign_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn SignOp>> {
        Ok(Box::new(self.start(key, param)?))
    }
    fn verify_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn VerifyOp>> {
        Ok(Box::new(self.start(key, param)?))
    }
}

/// A running HMAC, truncated to `len` bytes at the end.
struct HmacOp<M> {
    /// `None` once finalized.
    mac: Option<M>,
    len: usize,
}

impl<M: HmacState> HmacOp<M> {
    fn tag(&mut self) -> Result<Vec<u8>> {
        let mac = self
            .mac
            .take()
            .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))?;
        let full = mac.finalize().into_bytes();
        Ok(full[..self.len].to_vec())
    }
}

impl<M: HmacState> SignOp for HmacOp<M> {
    fn sig_len(&self) -> usize {
        self.len
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.mac
            .as_mut()
            .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))?
            .update(data);
        Ok(())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        self.tag()
    }
}

impl<M: HmacState> VerifyOp for HmacOp<M> {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        SignOp::update(self, data)
    }
    fn finalize(&mut self, signature: &[u8]) -> Result<()> {
        verify_mac(&self.tag()?, signature)
    }
}

/// Compare a computed MAC with the caller's in constant time
/// (`CKR_SIGNATURE_LEN_RANGE` / `CKR_SIGNATURE_INVALID`).
pub fn verify_mac(expected: &[u8], signature: &[u8]) -> Result<()> {
    if signature.len() != expected.len() {
        return Err(Error::rv(ck::CKR_SIGNATURE_LEN_RANGE));
    }
    if bool::from(expected.ct_eq(signature)) {
        Ok(())
    } else {
        Err(Error::rv(ck::CKR_SIGNATURE_INVALID))
    }
}

/// RFC 4231 test case 2 through the mechanism, sign and verify.
fn self_test() -> Result<()> {
    let key = Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_GENERIC_SECRET,
        zeroize::Zeroizing::new(b"Jefe".to_vec()),
    ));
    let mech = HmacMech::<Hmac<sha2::Sha256>> {
        mech: ck::CKM_SHA256_HMAC,
        general: false,
        key_type: ck::CKK_SHA256_HMAC,
        _mac: PhantomData,
    };
    let want =
        super::aes::hex_bytes("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    let msg = b"what do ya want for nothing?";
    let got = mech.sign_init(&key, &MechParam::None)?.oneshot(msg)?;
    if got != want {
        return Err(Error::general("HMAC-SHA-256 known answer mismatch"));
    }
    mech.verify_init(&key, &MechParam::None)?
        .oneshot(msg, &want)
}

#[cfg(test)]
mod tests;
