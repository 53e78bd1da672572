//! `CKM_AES_CMAC` (16-byte MAC) and `CKM_AES_CMAC_GENERAL` (1..=16 bytes
//! from `CK_MAC_GENERAL_PARAMS`): NIST SP 800-38B / RFC 4493, PKCS#11 3.0
//! current mechanisms §2.10.10. Multi-part sign and verify.

use std::sync::Arc;

use ::cmac::{Cmac, Mac};
use cipher::common::InnerInit;
use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;

use super::aes::{info, AesBlock, BLOCK};
use super::hmac::verify_mac;
use super::{Key, Mechanism, Registry, SignOp, VerifyOp};
use crate::error::{Error, Result};

/// Register both CMAC mechanisms and the known-answer test.
pub fn register(r: &mut Registry) {
    r.add(AesCmac { general: false });
    r.add(AesCmac { general: true });
    r.add_self_test("AES-CMAC (RFC 4493 example 2)", self_test);
}

/// `CKM_AES_CMAC` or, with `general`, `CKM_AES_CMAC_GENERAL`.
struct AesCmac {
    general: bool,
}

impl AesCmac {
    fn mac_len(&self, param: &MechParam) -> Result<usize> {
        match (self.general, param) {
            (false, MechParam::None) => Ok(BLOCK),
            (true, MechParam::MacLen(n)) => match usize::try_from(*n) {
                Ok(n @ 1..=BLOCK) => Ok(n),
                _ => Err(Error::param_invalid(format!(
                    "CMAC length {n} not in 1..=16"
                ))),
            },
            (false, _) => Err(Error::param_invalid("AES-CMAC takes no parameter")),
            (true, _) => Err(Error::param_invalid(
                "AES-CMAC_GENERAL needs CK_MAC_GENERAL_PARAMS",
            )),
        }
    }

    fn start(&self, key: &Key, param: &MechParam) -> Result<CmacOp> {
        let len = self.mac_len(param)?;
        // Cmac keeps no per-key precomputation beyond the cipher, whose
        // schedule comes from the key's cache.
        Ok(CmacOp {
            mac: Some(Cmac::inner_init(AesBlock::for_key(key)?)),
            len,
        })
    }
}

impl Mechanism for AesCmac {
    fn mech(&self) -> u64 {
        if self.general {
            ck::CKM_AES_CMAC_GENERAL
        } else {
            ck::CKM_AES_CMAC
        }
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_SIGN | ck::CKF_VERIFY)
    }
    fn sign_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn SignOp>> {
        Ok(Box::new(self.start(key, param)?))
    }
    fn verify_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn VerifyOp>> {
        Ok(Box::new(self.start(key, param)?))
    }
}

/// A running CMAC, truncated to `len` bytes.
struct CmacOp {
    /// `None` once finalized.
    mac: Option<Cmac<AesBlock>>,
    len: usize,
}

impl CmacOp {
    fn tag(&mut self) -> Result<Vec<u8>> {
        let mac = self
            .mac
            .take()
            .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))?;
        Ok(mac.finalize().into_bytes()[..self.len].to_vec())
    }
}

impl SignOp for CmacOp {
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

impl VerifyOp for CmacOp {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        SignOp::update(self, data)
    }
    fn finalize(&mut self, signature: &[u8]) -> Result<()> {
        verify_mac(&self.tag()?, signature)
    }
}

/// RFC 4493 §4 example 2 (16-byte message).
fn self_test() -> Result<()> {
    let cipher = AesBlock::from_raw(&super::aes::hex_bytes("2b7e151628aed2a6abf7158809cf4f3c"))?;
    let mut op = CmacOp {
        mac: Some(Cmac::inner_init(cipher)),
        len: BLOCK,
    };
    let got = SignOp::oneshot(
        &mut op,
        &super::aes::hex_bytes("6bc1bee22e409f96e93d7e117393172a"),
    )?;
    if got != super::aes::hex_bytes("070a16b46b4d4144f79bdd9dd04a287c") {
        return Err(Error::general("AES-CMAC known answer mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn registry() -> Registry {
        let mut r = Registry::default();
        register(&mut r);
        r
    }

    fn aes_key(v: &[u8]) -> Arc<Key> {
        Arc::new(Key::new(
            ck::CKO_SECRET_KEY,
            ck::CKK_AES,
            Zeroizing::new(v.to_vec()),
        ))
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    const MSG: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

    /// RFC 4493 §4 (AES-128) and SP 800-38B D.2/D.3 (AES-192/256):
    /// (key, message length, MAC).
    const VECTORS: &[(&str, usize, &str)] = &[
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            0,
            "bb1d6929e95937287fa37d129b756746",
        ),
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            16,
            "070a16b46b4d4144f79bdd9dd04a287c",
        ),
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            40,
            "dfa66747de9ae63030ca32611497c827",
        ),
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            64,
            "51f0bebf7e3b9d92fc49741779363cfe",
        ),
        (
            "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
            0,
            "d17ddf46adaacde531cac483de7a9367",
        ),
        (
            "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
            64,
            "a1d5df0eed790f794d77589659f39a11",
        ),
        (
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            0,
            "028962f61b7bf89efc6b551f4667d983",
        ),
        (
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            64,
            "e1992190549f6ed5696a2c056c315410",
        ),
    ];

    #[test]
    fn rfc4493_and_sp800_38b_vectors() {
        let r = registry();
        let msg = h(MSG);
        for (k, len, want) in VECTORS {
            let key = aes_key(&h(k));
            let want = h(want);
            let data = &msg[..*len];
            let m = r.get(ck::CKM_AES_CMAC).expect("registered");
            assert_eq!(
                m.sign_init(&key, &MechParam::None)
                    .expect("init")
                    .oneshot(data)
                    .expect("sign"),
                want,
                "{k} {len}"
            );
            m.verify_init(&key, &MechParam::None)
                .expect("init")
                .oneshot(data, &want)
                .expect("verify");
            for chunk in [1, 5, 16, 17] {
                let mut op = m.sign_init(&key, &MechParam::None).expect("init");
                for c in data.chunks(chunk) {
                    op.update(c).expect("update");
                }
                assert_eq!(op.finalize().expect("final"), want, "{k} {len} by {chunk}");
            }
            let g = r.get(ck::CKM_AES_CMAC_GENERAL).expect("registered");
            for n in [1usize, 4, 8, 16] {
                let p = MechParam::MacLen(n as u64);
                let mut op = g.sign_init(&key, &p).expect("init");
                assert_eq!(op.sig_len(), n);
                assert_eq!(op.oneshot(data).expect("sign"), &want[..n]);
                g.verify_init(&key, &p)
                    .expect("init")
                    .oneshot(data, &want[..n])
                    .expect("verify");
            }
        }
    }

    #[test]
    fn errors() {
        let r = registry();
        let key = aes_key(&[1; 16]);
        let m = r.get(ck::CKM_AES_CMAC).expect("registered");
        let sig = m
            .sign_init(&key, &MechParam::None)
            .expect("init")
            .oneshot(b"x")
            .expect("sign");
        let mut bad = sig.clone();
        bad[15] ^= 1;
        assert_eq!(
            m.verify_init(&key, &MechParam::None)
                .expect("init")
                .oneshot(b"x", &bad)
                .expect_err("bad")
                .rv,
            ck::CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            m.verify_init(&key, &MechParam::None)
                .expect("init")
                .oneshot(b"x", &sig[..8])
                .expect_err("len")
                .rv,
            ck::CKR_SIGNATURE_LEN_RANGE
        );
        let g = r.get(ck::CKM_AES_CMAC_GENERAL).expect("registered");
        for n in [0u64, 17] {
            assert_eq!(
                g.sign_init(&key, &MechParam::MacLen(n))
                    .err()
                    .expect("len")
                    .rv,
                ck::CKR_MECHANISM_PARAM_INVALID
            );
        }
        assert_eq!(
            g.sign_init(&key, &MechParam::None).err().expect("param").rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
        assert_eq!(
            m.sign_init(&key, &MechParam::MacLen(8))
                .err()
                .expect("param")
                .rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
        let generic = Arc::new(Key::new(
            ck::CKO_SECRET_KEY,
            ck::CKK_GENERIC_SECRET,
            Zeroizing::new(vec![0; 16]),
        ));
        assert_eq!(
            m.sign_init(&generic, &MechParam::None)
                .err()
                .expect("type")
                .rv,
            ck::CKR_KEY_TYPE_INCONSISTENT
        );
        for mech in [ck::CKM_AES_CMAC, ck::CKM_AES_CMAC_GENERAL] {
            let i = r.get(mech).expect("registered").info();
            assert_eq!(
                (i.min_key_size, i.max_key_size, i.flags),
                (16, 32, ck::CKF_SIGN | ck::CKF_VERIFY)
            );
        }
        r.run_self_tests().expect("self-test");
    }
}
