//! `CKM_AES_GCM` (NIST SP 800-38D; PKCS#11 3.0 current mechanisms §2.10.15)
//! with `CK_GCM_PARAMS` in either layout.
//!
//! Parameters:
//! - IV: any length from 1 to 256 bytes (`ulIvLen`; PKCS#11 allows up to
//!   2^32 − 1, 256 is this token's bound). 12 bytes (96 bits, what SP 800-38D
//!   §8.2 recommends and nearly every client sends) runs on the `aes-gcm`
//!   crate with `J0 = IV || 0^31 || 1`; every other length on [`GcmAnyIv`],
//!   the same composition of the RustCrypto `ctr` and `ghash` crates with the
//!   IV length chosen at run time, where `J0 = GHASH(IV || 0^(s+64) ||
//!   [len(IV)]_64)` (SP 800-38D §7.1 step 2). Checked against NIST CAVP
//!   vectors with 8- and 1024-bit IVs (`testdata/aes_gcm_cavp_ext_iv.txt`).
//! - `ulIvBits` (3.0 layout only): advisory. PKCS#11 3.0 says the IV length
//!   comes from `ulIvLen`, and clients fill `ulIvBits` inconsistently (0,
//!   the matching bit count, or something else), so it is ignored.
//! - `ulTagBits`: 32, 64, 96, 104, 112, 120 or 128 (SP 800-38D §5.2.1.2).
//!
//! Encryption outputs ciphertext || tag. Multi-part encryption buffers and
//! emits everything at `C_EncryptFinal`; multi-part decryption must, and
//! releases plaintext only at `C_DecryptFinal` after the tag verified.

use std::sync::Arc;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{AesGcm, Nonce, Tag};
use cipher::array::{Array, ArraySize};
use cipher::consts::{U12, U13, U14, U15, U16, U4, U8};
use cipher::{InnerIvInit, StreamCipherCore};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::aes::{info, AesBlock, Block16};
use super::multipart::Multipart;
use super::{CipherOp, Key, Mechanism, Registry};
use crate::error::{Error, Result};

/// Register `CKM_AES_GCM` and its known-answer test.
pub fn register(r: &mut Registry) {
    r.add(AesGcmMech);
    r.add_self_test("AES-GCM (GCM spec test case 4)", self_test);
}

/// `CKM_AES_GCM`.
struct AesGcmMech;

impl Mechanism for AesGcmMech {
    fn mech(&self) -> u64 {
        ck::CKM_AES_GCM
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_ENCRYPT | ck::CKF_DECRYPT)
    }
    fn encrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(GcmOp::new(key, param, true)?))
    }
    fn decrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(GcmOp::new(key, param, false)?))
    }
}

/// One GCM instance (block cipher, IV length and tag length fixed by its
/// type), seen through an object-safe interface. SM4-GCM (`mech::sm4`) is
/// the same construction over SM4.
pub trait Gcm: Send + Sync {
    /// Encrypt `data` in place and append the tag.
    fn seal(&self, iv: &[u8], aad: &[u8], data: &mut Vec<u8>) -> Result<()>;
    /// Verify and strip the tag at the end of `data`, then decrypt in place.
    fn open(&self, iv: &[u8], aad: &[u8], data: &mut Vec<u8>) -> Result<()>;
}

impl<C, N, T> Gcm for AesGcm<C, N, T>
where
    C: Block16,
    N: ArraySize,
    T: aes_gcm::TagSize,
    AesGcm<C, N, T>: Send + Sync,
{
    fn seal(&self, iv: &[u8], aad: &[u8], data: &mut Vec<u8>) -> Result<()> {
        let nonce = Nonce::<N>::try_from(iv).map_err(|_| Error::param_invalid("GCM IV length"))?;
        let tag = self
            .encrypt_inout_detached(&nonce, aad, data.as_mut_slice().into())
            .map_err(|_| {
                Error::new(
                    ck::CKR_DATA_LEN_RANGE,
                    "GCM input over the SP 800-38D limits",
                )
            })?;
        data.extend_from_slice(&tag);
        Ok(())
    }

    fn open(&self, iv: &[u8], aad: &[u8], data: &mut Vec<u8>) -> Result<()> {
        let nonce = Nonce::<N>::try_from(iv).map_err(|_| Error::param_invalid("GCM IV length"))?;
        let split = data
            .len()
            .checked_sub(T::USIZE)
            .ok_or_else(|| Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE))?;
        let tag = Tag::<T>::try_from(&data[split..])
            .map_err(|_| Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE))?;
        data.truncate(split);
        self.decrypt_inout_detached(&nonce, aad, data.as_mut_slice().into(), &tag)
            .map_err(|_| Error::new(ck::CKR_ENCRYPTED_DATA_INVALID, "GCM tag mismatch"))
    }
}

/// The per-key cached GCM state for an IV length and tag length, built
/// from the key's cached AES schedule.
fn gcm_for(key: &Key, iv_len: usize, tag_len: usize) -> Result<Arc<dyn Gcm>> {
    gcm_over(key, AesBlock::for_key(key)?, iv_len, tag_len)
}

/// The per-key cached GCM state over the block cipher `aes` (the key's
/// expanded schedule) for an IV length and tag length. A 96-bit IV takes
/// the `aes-gcm` crate; any other length [`GcmAnyIv`].
pub fn gcm_over<C: Block16>(
    key: &Key,
    aes: C,
    iv_len: usize,
    tag_len: usize,
) -> Result<Arc<dyn Gcm>> {
    fn get<C, N, T>(key: &Key, aes: C) -> Result<Arc<dyn Gcm>>
    where
        C: Block16,
        N: ArraySize + 'static,
        T: aes_gcm::TagSize + 'static,
        AesGcm<C, N, T>: Send + Sync,
    {
        Ok(key.cached(|_| Ok(AesGcm::<C, N, T>::from(aes)))?)
    }
    if !TAG_BYTES.contains(&tag_len) {
        return Err(Error::param_invalid(format!("GCM tag of {tag_len} bytes")));
    }
    if !IV_BYTES.contains(&iv_len) {
        return Err(Error::param_invalid(format!(
            "GCM IV of {iv_len} bytes (1 to 256)"
        )));
    }
    if iv_len != 12 {
        let gcm = key.cached(|_| Ok(GcmAnyIv::new(aes)))?;
        return Ok(Arc::new(AnyIvTag { gcm, tag_len }));
    }
    match tag_len {
        4 => get::<C, U12, U4>(key, aes),
        8 => get::<C, U12, U8>(key, aes),
        12 => get::<C, U12, U12>(key, aes),
        13 => get::<C, U12, U13>(key, aes),
        14 => get::<C, U12, U14>(key, aes),
        15 => get::<C, U12, U15>(key, aes),
        _ => get::<C, U12, U16>(key, aes),
    }
}

/// GCM tag lengths in bytes (SP 800-38D §5.2.1.2, with the 32- and 64-bit
/// tags its Appendix C allows).
const TAG_BYTES: [usize; 7] = [4, 8, 12, 13, 14, 15, 16];

/// IV lengths in bytes this token takes (`ulIvLen`).
const IV_BYTES: std::ops::RangeInclusive<usize> = 1..=256;

/// Largest plaintext of one GCM invocation, 2^39 − 256 bits (SP 800-38D
/// §5.2.1.1).
const P_MAX: u64 = (1 << 36) - 32;

/// GCM (SP 800-38D §7) over a 128-bit block cipher with the IV length
/// chosen at run time: the RustCrypto `ctr` (GCTR, 32-bit big-endian
/// counter) and `ghash` crates composed as the `aes-gcm` crate composes
/// them, with `J0` derived from an IV of any length. One per key, shared by
/// every operation whatever its IV and tag lengths.
pub struct GcmAnyIv<C> {
    cipher: C,
    ghash: GHash,
}

type Block = Array<u8, U16>;

impl<C: Block16> GcmAnyIv<C> {
    fn new(cipher: C) -> Self {
        let mut h = Block::default();
        cipher.encrypt_block(&mut h);
        let ghash = GHash::new(&h);
        zeroize::Zeroize::zeroize(h.as_mut_slice());
        GcmAnyIv { cipher, ghash }
    }

    /// The pre-counter block (SP 800-38D §7.1 step 2).
    fn j0(&self, iv: &[u8]) -> Block {
        let mut block = Block::default();
        if iv.len() == 12 {
            block[..12].copy_from_slice(iv);
            block[15] = 1;
            return block;
        }
        let mut g = self.ghash.clone();
        g.update_padded(iv);
        block[8..].copy_from_slice(&((iv.len() as u64) * 8).to_be_bytes());
        g.update(&[block]);
        g.finalize()
    }

    /// GCTR positioned at `inc32(J0)` and the tag mask `E(K, J0)`.
    fn ctr(&self, iv: &[u8]) -> (ctr::CtrCore<&C, ctr::flavors::Ctr32BE>, Block) {
        let j0 = self.j0(iv);
        let mut ctr = ctr::CtrCore::<&C, ctr::flavors::Ctr32BE>::inner_iv_init(&self.cipher, &j0);
        let mut mask = Block::default();
        ctr.write_keystream_block(&mut mask);
        (ctr, mask)
    }

    /// The full 128-bit tag over `aad` and `ct` (SP 800-38D §7.1 steps 5–6).
    fn tag(&self, mask: &Block, aad: &[u8], ct: &[u8]) -> Block {
        let mut g = self.ghash.clone();
        g.update_padded(aad);
        g.update_padded(ct);
        let mut lens = Block::default();
        lens[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
        lens[8..].copy_from_slice(&((ct.len() as u64) * 8).to_be_bytes());
        g.update(&[lens]);
        let mut tag = g.finalize();
        for (t, m) in tag.iter_mut().zip(mask.iter()) {
            *t ^= m;
        }
        tag
    }

    fn check_len(data: usize) -> Result<()> {
        if data as u64 > P_MAX {
            return Err(Error::new(
                ck::CKR_DATA_LEN_RANGE,
                "GCM input over the SP 800-38D limits",
            ));
        }
        Ok(())
    }
}

/// A [`GcmAnyIv`] with the operation's tag length.
struct AnyIvTag<C> {
    gcm: Arc<GcmAnyIv<C>>,
    tag_len: usize,
}

impl<C: Block16> Gcm for AnyIvTag<C> {
    fn seal(&self, iv: &[u8], aad: &[u8], data: &mut Vec<u8>) -> Result<()> {
        GcmAnyIv::<C>::check_len(data.len())?;
        let (ctr, mask) = self.gcm.ctr(iv);
        ctr.apply_keystream_partial(data.as_mut_slice().into());
        let tag = self.gcm.tag(&mask, aad, data);
        data.extend_from_slice(&tag[..self.tag_len]);
        Ok(())
    }

    fn open(&self, iv: &[u8], aad: &[u8], data: &mut Vec<u8>) -> Result<()> {
        let split = data
            .len()
            .checked_sub(self.tag_len)
            .ok_or_else(|| Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE))?;
        GcmAnyIv::<C>::check_len(split)?;
        let (ctr, mask) = self.gcm.ctr(iv);
        let want = self.gcm.tag(&mask, aad, &data[..split]);
        if !bool::from(want[..self.tag_len].ct_eq(&data[split..])) {
            return Err(Error::new(
                ck::CKR_ENCRYPTED_DATA_INVALID,
                "GCM tag mismatch",
            ));
        }
        data.truncate(split);
        ctr.apply_keystream_partial(data.as_mut_slice().into());
        Ok(())
    }
}

/// One GCM encryption or decryption.
pub struct GcmOp {
    gcm: Arc<dyn Gcm>,
    encrypt: bool,
    iv: Vec<u8>,
    aad: Vec<u8>,
    tag_len: usize,
    /// All input so far: GCM output needs the whole message.
    data: Multipart,
}

impl GcmOp {
    fn new(key: &Key, param: &MechParam, encrypt: bool) -> Result<Self> {
        Self::with(param, encrypt, |iv_len, tag_len| {
            gcm_for(key, iv_len, tag_len)
        })
    }

    /// A GCM operation from `CK_GCM_PARAMS`, whose state `gcm` builds for
    /// the IV length and tag length (in bytes) the parameter asks for.
    pub fn with(
        param: &MechParam,
        encrypt: bool,
        gcm: impl FnOnce(usize, usize) -> Result<Arc<dyn Gcm>>,
    ) -> Result<Self> {
        let MechParam::Gcm {
            iv,
            // Advisory (PKCS#11 3.0 §2.10.15): ulIvLen decides.
            iv_bits: _,
            aad,
            tag_bits,
        } = param
        else {
            return Err(Error::param_invalid("AES-GCM needs CK_GCM_PARAMS"));
        };
        let tag_len = match tag_bits {
            32 | 64 | 96 | 104 | 112 | 120 | 128 => (*tag_bits / 8) as usize,
            _ => return Err(Error::param_invalid(format!("GCM tag of {tag_bits} bits"))),
        };
        Ok(GcmOp {
            gcm: gcm(iv.len(), tag_len)?,
            encrypt,
            iv: iv.clone(),
            aad: aad.clone(),
            tag_len,
            data: Multipart::default(),
        })
    }

    fn out_len(&self, in_len: usize) -> Result<usize> {
        if self.encrypt {
            in_len
                .checked_add(self.tag_len)
                .ok_or_else(|| Error::rv(ck::CKR_DATA_LEN_RANGE))
        } else {
            in_len
                .checked_sub(self.tag_len)
                .ok_or_else(|| Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE))
        }
    }
}

impl CipherOp for GcmOp {
    fn oneshot_len(&self, in_len: usize) -> Result<usize> {
        self.out_len(in_len)
    }
    fn update_len(&self, _in_len: usize) -> usize {
        0
    }
    fn final_len(&self) -> usize {
        self.out_len(self.data.len()).unwrap_or(0)
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.out_len(data.len())?;
        self.data.set(data);
        self.finalize()
    }
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.data.append(data, self.encrypt)?;
        Ok(Vec::new())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        let mut buf = self.data.take();
        let done = if self.encrypt {
            self.gcm.seal(&self.iv, &self.aad, &mut buf)
        } else {
            self.gcm.open(&self.iv, &self.aad, &mut buf)
        };
        match done {
            Ok(()) => Ok(buf),
            Err(e) => {
                drop(Zeroizing::new(buf));
                Err(e)
            }
        }
    }
}

/// Test case 4 of McGrew & Viega's GCM specification (AES-128, 96-bit IV,
/// AAD, 60-byte message): encrypt and decrypt.
fn self_test() -> Result<()> {
    let key = Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_AES,
        Zeroizing::new(super::aes::hex_bytes("feffe9928665731c6d6a8f9467308308")),
    );
    let param = MechParam::Gcm {
        iv: super::aes::hex_bytes("cafebabefacedbaddecaf888"),
        iv_bits: None,
        aad: super::aes::hex_bytes("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
        tag_bits: 128,
    };
    let pt = super::aes::hex_bytes(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let ct = super::aes::hex_bytes(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e0915bc94fbc3221a5db94fae95ae7121a47",
    );
    let got = GcmOp::new(&key, &param, true)?.oneshot(&pt)?;
    let back = GcmOp::new(&key, &param, false)?.oneshot(&ct)?;
    if got != ct || back != pt {
        return Err(Error::general("AES-GCM known answer mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
