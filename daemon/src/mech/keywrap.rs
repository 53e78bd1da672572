//! AES key wrap: `CKM_AES_KEY_WRAP` (RFC 3394 / SP 800-38F KW),
//! `CKM_AES_KEY_WRAP_KWP` (RFC 5649 / SP 800-38F KWP) and the 2.40 code
//! `CKM_AES_KEY_WRAP_PAD`, which p11kms implements as RFC 5649 like
//! SoftHSM does (PKCS#11 3.0 current mechanisms §2.14).
//!
//! All three wrap and unwrap keys and, as the spec allows, encrypt and
//! decrypt data. The algorithms are not incremental: multi-part input is
//! buffered and processed at `C_EncryptFinal` / `C_DecryptFinal`.
//!
//! The optional IV parameter may only be the default initial value
//! (`A6A6A6A6A6A6A6A6` for KW, the 4-byte prefix `A65959A6` for KWP/PAD):
//! the aes-kw crate has the RFC constants built in and no custom IVs, and
//! SP 800-38F defines none. Any other IV → `CKR_MECHANISM_PARAM_INVALID`.

use std::sync::Arc;

use aes_kw::{AesKw, AesKwp};
use cipher::common::InnerInit;
use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::aes::{info, whole, AesBlock, ModeCipher};
use super::multipart::Multipart;
use super::{CipherOp, Key, Mechanism, Registry};
use crate::error::{Error, Result};

/// RFC 3394 §2.2.3.1 default initial value.
const KW_IV: [u8; 8] = [0xa6; 8];
/// RFC 5649 §3 alternative initial value prefix.
const KWP_IV: [u8; 4] = [0xa6, 0x59, 0x59, 0xa6];
/// Semiblock size.
const SEMI: usize = 8;

/// Register the three key wrap mechanisms and the known-answer test.
pub fn register(r: &mut Registry) {
    r.add(AesKeyWrap {
        mech: ck::CKM_AES_KEY_WRAP,
        pad: false,
    });
    r.add(AesKeyWrap {
        mech: ck::CKM_AES_KEY_WRAP_KWP,
        pad: true,
    });
    r.add(AesKeyWrap {
        mech: ck::CKM_AES_KEY_WRAP_PAD,
        pad: true,
    });
    r.add_self_test("AES key wrap (RFC 3394 4.1)", self_test);
}

/// One key wrap mechanism; `pad` selects RFC 5649.
struct AesKeyWrap {
    mech: u64,
    pad: bool,
}

/// Why a wrap or unwrap failed, before it is given the code of its context
/// (encrypt, decrypt, wrap or unwrap).
enum Fail {
    Length,
    Integrity,
}

impl AesKeyWrap {
    fn check_param(&self, param: &MechParam) -> Result<()> {
        match param {
            MechParam::None => Ok(()),
            MechParam::Bytes(iv) if !self.pad && iv[..] == KW_IV => Ok(()),
            MechParam::Bytes(iv) if self.pad && iv[..] == KWP_IV => Ok(()),
            _ => Err(Error::param_invalid(
                "AES key wrap accepts only the default IV",
            )),
        }
    }

    /// Output length for `len` input bytes, or why `len` is unusable.
    fn out_len(&self, len: usize, wrap: bool) -> std::result::Result<usize, Fail> {
        let ok = match (self.pad, wrap) {
            // KW needs at least two semiblocks of key data.
            (false, true) => len >= 2 * SEMI && whole(len, SEMI),
            (false, false) => len >= 3 * SEMI && whole(len, SEMI),
            (true, true) => len >= 1 && u32::try_from(len).is_ok(),
            (true, false) => len >= 2 * SEMI && whole(len, SEMI),
        };
        match (ok, wrap) {
            (false, _) => Err(Fail::Length),
            (true, true) => Ok(len.div_ceil(SEMI) * SEMI + SEMI),
            // KWP unwrapping may end shorter (the padding is removed).
            (true, false) => Ok(len - SEMI),
        }
    }

    fn seal(&self, cipher: AesBlock, data: &[u8]) -> std::result::Result<Vec<u8>, Fail> {
        let mut out = vec![0u8; self.out_len(data.len(), true)?];
        let done = if self.pad {
            AesKwp::inner_init(cipher)
                .wrap_key(data, &mut out)
                .map(<[u8]>::len)
        } else {
            AesKw::inner_init(cipher)
                .wrap_key(data, &mut out)
                .map(<[u8]>::len)
        };
        let n = done.map_err(|_| Fail::Length)?;
        out.truncate(n);
        Ok(out)
    }

    fn open(&self, cipher: AesBlock, data: &[u8]) -> std::result::Result<Zeroizing<Vec<u8>>, Fail> {
        let mut out = Zeroizing::new(vec![0u8; self.out_len(data.len(), false)?]);
        let done = if self.pad {
            AesKwp::inner_init(cipher)
                .unwrap_key(data, &mut out)
                .map(<[u8]>::len)
        } else {
            AesKw::inner_init(cipher)
                .unwrap_key(data, &mut out)
                .map(<[u8]>::len)
        };
        let n = done.map_err(|e| match e {
            aes_kw::Error::IntegrityCheckFailed => Fail::Integrity,
            _ => Fail::Length,
        })?;
        out.truncate(n);
        Ok(out)
    }

    fn op(&self, key: &Key, param: &MechParam, encrypt: bool) -> Result<Box<dyn CipherOp>> {
        self.check_param(param)?;
        let cipher = AesBlock::for_key(key)?;
        Ok(Box::new(KwOp {
            mech: AesKeyWrap {
                mech: self.mech,
                pad: self.pad,
            },
            cipher,
            encrypt,
            data: Multipart::default(),
        }))
    }
}

impl Mechanism for AesKeyWrap {
    fn mech(&self) -> u64 {
        self.mech
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_ENCRYPT | ck::CKF_DECRYPT | ck::CKF_WRAP | ck::CKF_UNWRAP)
    }
    fn encrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        self.op(key, param, true)
    }
    fn decrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        self.op(key, param, false)
    }
    fn wrap_len(
        &self,
        param: &MechParam,
        wrapping_key: &Arc<Key>,
        key_len: usize,
    ) -> Result<usize> {
        self.check_param(param)?;
        AesBlock::for_wrapping_key(wrapping_key)?;
        self.out_len(key_len, true).map_err(|_| {
            Error::new(
                ck::CKR_KEY_SIZE_RANGE,
                "key length unsuitable for AES key wrap",
            )
        })
    }
    fn wrap(
        &self,
        param: &MechParam,
        wrapping_key: &Arc<Key>,
        key_value: &[u8],
    ) -> Result<Vec<u8>> {
        self.check_param(param)?;
        let cipher = AesBlock::for_wrapping_key(wrapping_key)?;
        self.seal(cipher, key_value).map_err(|_| {
            Error::new(
                ck::CKR_KEY_SIZE_RANGE,
                "key length unsuitable for AES key wrap",
            )
        })
    }
    fn unwrap(
        &self,
        param: &MechParam,
        unwrapping_key: &Arc<Key>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.check_param(param)?;
        let cipher = AesBlock::for_unwrapping_key(unwrapping_key)?;
        self.open(cipher, wrapped).map_err(|f| match f {
            Fail::Length => Error::rv(ck::CKR_WRAPPED_KEY_LEN_RANGE),
            Fail::Integrity => Error::new(
                ck::CKR_WRAPPED_KEY_INVALID,
                "AES key wrap integrity check failed",
            ),
        })
    }
}

/// Key wrap used as a cipher: all input is buffered until the end.
struct KwOp {
    mech: AesKeyWrap,
    cipher: AesBlock,
    encrypt: bool,
    data: Multipart,
}

impl KwOp {
    fn error(&self, f: Fail) -> Error {
        match (f, self.encrypt) {
            (Fail::Length, true) => Error::rv(ck::CKR_DATA_LEN_RANGE),
            (Fail::Length, false) => Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE),
            (Fail::Integrity, _) => Error::new(
                ck::CKR_ENCRYPTED_DATA_INVALID,
                "AES key wrap integrity check failed",
            ),
        }
    }
}

impl CipherOp for KwOp {
    fn oneshot_len(&self, in_len: usize) -> Result<usize> {
        self.mech
            .out_len(in_len, self.encrypt)
            .map_err(|f| self.error(f))
    }
    fn update_len(&self, _in_len: usize) -> usize {
        0
    }
    fn final_len(&self) -> usize {
        self.mech
            .out_len(self.data.len(), self.encrypt)
            .unwrap_or(0)
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.data.set(data);
        self.finalize()
    }
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.data.append(data, self.encrypt)?;
        Ok(Vec::new())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        let data = Zeroizing::new(self.data.take());
        let cipher = self.cipher.clone();
        let done = if self.encrypt {
            self.mech.seal(cipher, &data)
        } else {
            self.mech.open(cipher, &data).map(|p| p.to_vec())
        };
        done.map_err(|f| self.error(f))
    }
}

/// RFC 3394 §4.1: 128-bit key data with a 128-bit KEK, wrap and unwrap.
fn self_test() -> Result<()> {
    let kw = AesKeyWrap {
        mech: ck::CKM_AES_KEY_WRAP,
        pad: false,
    };
    let cipher = AesBlock::from_raw(&super::aes::hex_bytes("000102030405060708090a0b0c0d0e0f"))?;
    let key = super::aes::hex_bytes("00112233445566778899aabbccddeeff");
    let want = super::aes::hex_bytes("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5");
    let fail = |_| Error::general("AES key wrap known answer failed");
    let ok = kw.seal(cipher.clone(), &key).map_err(fail)? == want
        && kw.open(cipher, &want).map_err(fail)?.as_slice() == key;
    if ok {
        Ok(())
    } else {
        Err(Error::general("AES key wrap known answer mismatch"))
    }
}

#[cfg(test)]
mod tests;
