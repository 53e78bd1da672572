//! AES key generation and the unauthenticated AES modes: `CKM_AES_KEY_GEN`,
//! `CKM_AES_ECB`, `CKM_AES_CBC`, `CKM_AES_CBC_PAD` (also wrap/unwrap) and
//! `CKM_AES_CTR` (PKCS#11 3.0 current mechanisms §2.10).
//!
//! Multi-part operations accept any chunking: partial blocks wait in a
//! buffer, and CBC-PAD decryption holds back the last full block until
//! `C_DecryptFinal` because only then is it known to carry the padding.

use std::sync::Arc;

use cipher::block_padding::{Padding, Pkcs7};
use cipher::common::InnerInit;
use cipher::consts::U16;
use cipher::{
    Array, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit,
    StreamCipher, StreamCipherCoreWrapper,
};
use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::{CipherOp, GeneratedKey, Key, Mechanism, Registry};
use crate::error::{Error, Result};

pub mod block;

pub use block::AesBlock;

/// AES block size in bytes.
pub const BLOCK: usize = 16;

/// A 128-bit block cipher the modes of this file run on: [`AesBlock`], and
/// SM4 (`mech::sm4`), which reuses ECB/CBC/CBC-PAD/CTR from here.
pub trait Block16:
    BlockCipherEncrypt<BlockSize = U16>
    + BlockCipherDecrypt<BlockSize = U16>
    + Clone
    + Send
    + Sync
    + 'static
{
    /// CBC-encrypt whole blocks in place, chained from `iv`, which becomes
    /// the last ciphertext block. CBC encryption cannot be parallelized,
    /// so a cipher with a faster chained path (SM4's) overrides this.
    fn cbc_encrypt(&self, iv: &mut [u8; BLOCK], blocks: &mut [[u8; BLOCK]]) {
        cbc::Encryptor::inner_iv_init(self.clone(), &Array::from(*iv))
            .encrypt_blocks(Array::cast_slice_from_core_mut(blocks));
        if let Some(last) = blocks.last() {
            *iv = *last;
        }
    }
}

impl Block16 for AesBlock {}

/// `CK_MECHANISM_INFO` of an AES mechanism with the given flags.
pub fn info(flags: u64) -> MechanismInfo {
    MechanismInfo {
        min_key_size: block::MIN_KEY_BYTES,
        max_key_size: block::MAX_KEY_BYTES,
        flags,
    }
}

/// Register the mechanisms of this file and their known-answer test.
pub fn register(r: &mut Registry) {
    r.add(AesKeyGen);
    r.add(BlockMode::<AesBlock>::new(Mode::Ecb));
    r.add(BlockMode::<AesBlock>::new(Mode::Cbc));
    r.add(BlockMode::<AesBlock>::new(Mode::CbcPad));
    r.add(AesCtr);
    r.add_self_test("AES-CBC (SP 800-38A F.2.1)", self_test);
}

/// `CKM_AES_KEY_GEN`: `CKA_VALUE_LEN` of 16, 24 or 32 bytes, random from the
/// operating system.
struct AesKeyGen;

impl Mechanism for AesKeyGen {
    fn mech(&self) -> u64 {
        ck::CKM_AES_KEY_GEN
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_GENERATE)
    }
    fn generate_key(&self, param: &MechParam, value_len: Option<usize>) -> Result<GeneratedKey> {
        no_param(param)?;
        let len = value_len.ok_or_else(|| {
            Error::new(
                ck::CKR_TEMPLATE_INCOMPLETE,
                "AES key generation needs CKA_VALUE_LEN",
            )
        })?;
        if !matches!(len, 16 | 24 | 32) {
            return Err(Error::attribute_value_invalid(format!(
                "AES key length {len} is not 16, 24 or 32"
            )));
        }
        Ok(GeneratedKey {
            key_type: ck::CKK_AES,
            value: random(len)?,
        })
    }
}

/// `len` bytes from the operating system's generator.
pub fn random(len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut v).map_err(|e| Error::general(format!("getrandom: {e}")))?;
    Ok(v)
}

/// Whether `len` is a whole number of `unit`s. (`usize::is_multiple_of`
/// is newer than the workspace's minimum Rust 1.85.)
#[allow(clippy::manual_is_multiple_of)]
pub fn whole(len: usize, unit: usize) -> bool {
    len % unit == 0
}

/// Mechanisms without a parameter reject any.
pub fn no_param(param: &MechParam) -> Result<()> {
    match param {
        MechParam::None => Ok(()),
        _ => Err(Error::param_invalid("this mechanism takes no parameter")),
    }
}

/// The 16-byte IV of CBC and CBC-PAD.
pub fn iv_param(param: &MechParam) -> Result<[u8; BLOCK]> {
    match param {
        MechParam::Bytes(iv) => iv.as_slice().try_into().map_err(|_| {
            Error::param_invalid(format!("AES IV must be 16 bytes, got {}", iv.len()))
        }),
        _ => Err(Error::param_invalid("AES-CBC needs a 16-byte IV")),
    }
}

/// The block modes of [`BlockOp`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Ecb,
    Cbc,
    CbcPad,
}

/// A 128-bit block cipher offered in ECB, CBC and CBC-PAD (AES, SM4): its
/// mechanism codes, key sizes and how its key schedule is made.
pub trait ModeCipher: Block16 + Sized {
    /// `CKM_*` codes of its ECB, CBC and CBC-PAD mechanisms.
    const CODES: [u64; 3];
    /// `C_GetMechanismInfo` with these flags.
    fn mech_info(flags: u64) -> MechanismInfo;
    /// The cached schedule of a key of this cipher
    /// (`CKR_KEY_TYPE_INCONSISTENT` / `CKR_KEY_SIZE_RANGE` otherwise).
    fn for_key(key: &Key) -> Result<Self>;
    /// [`ModeCipher::for_key`] with the errors `C_WrapKey` names.
    fn for_wrapping_key(key: &Key) -> Result<Self> {
        Self::for_key(key).map_err(Error::of_wrapping_key)
    }
    /// [`ModeCipher::for_key`] with the errors `C_UnwrapKey` names.
    fn for_unwrapping_key(key: &Key) -> Result<Self> {
        Self::for_key(key).map_err(Error::of_unwrapping_key)
    }
}

impl ModeCipher for AesBlock {
    const CODES: [u64; 3] = [ck::CKM_AES_ECB, ck::CKM_AES_CBC, ck::CKM_AES_CBC_PAD];
    fn mech_info(flags: u64) -> MechanismInfo {
        info(flags)
    }
    fn for_key(key: &Key) -> Result<Self> {
        AesBlock::for_key(key)
    }
}

/// ECB, CBC and CBC-PAD over any [`ModeCipher`]: one implementation for
/// AES and SM4.
pub struct BlockMode<C>(pub Mode, std::marker::PhantomData<fn() -> C>);

impl<C> BlockMode<C> {
    pub fn new(mode: Mode) -> Self {
        BlockMode(mode, std::marker::PhantomData)
    }
}

impl<C: ModeCipher> Mechanism for BlockMode<C> {
    fn mech(&self) -> u64 {
        match self.0 {
            Mode::Ecb => C::CODES[0],
            Mode::Cbc => C::CODES[1],
            Mode::CbcPad => C::CODES[2],
        }
    }
    fn info(&self) -> MechanismInfo {
        let mut flags = ck::CKF_ENCRYPT | ck::CKF_DECRYPT;
        if self.0 == Mode::CbcPad {
            flags |= ck::CKF_WRAP | ck::CKF_UNWRAP;
        }
        C::mech_info(flags)
    }
    fn encrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(BlockOp::new(
            self.0,
            true,
            C::for_key(key)?,
            param,
        )?))
    }
    fn decrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(BlockOp::new(
            self.0,
            false,
            C::for_key(key)?,
            param,
        )?))
    }
    fn wrap_len(
        &self,
        param: &MechParam,
        wrapping_key: &Arc<Key>,
        key_len: usize,
    ) -> Result<usize> {
        self.wrap_only()?;
        BlockOp::new(self.0, true, C::for_wrapping_key(wrapping_key)?, param)?.oneshot_len(key_len)
    }
    /// CBC-PAD wrap: the key value encrypted with PKCS#7 padding
    /// (PKCS#11 3.0 current mechanisms §2.10.7).
    fn wrap(
        &self,
        param: &MechParam,
        wrapping_key: &Arc<Key>,
        key_value: &[u8],
    ) -> Result<Vec<u8>> {
        self.wrap_only()?;
        BlockOp::new(self.0, true, C::for_wrapping_key(wrapping_key)?, param)?.oneshot(key_value)
    }
    fn unwrap(
        &self,
        param: &MechParam,
        unwrapping_key: &Arc<Key>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.wrap_only()?;
        let mut op = BlockOp::new(self.0, false, C::for_unwrapping_key(unwrapping_key)?, param)?;
        op.oneshot(wrapped)
            .map(Zeroizing::new)
            .map_err(|e| match e.rv {
                ck::CKR_ENCRYPTED_DATA_LEN_RANGE => {
                    Error::new(ck::CKR_WRAPPED_KEY_LEN_RANGE, e.msg)
                }
                ck::CKR_ENCRYPTED_DATA_INVALID => Error::new(ck::CKR_WRAPPED_KEY_INVALID, e.msg),
                _ => e,
            })
    }
}

impl<C> BlockMode<C> {
    fn wrap_only(&self) -> Result<()> {
        if self.0 == Mode::CbcPad {
            Ok(())
        } else {
            Err(Error::mechanism_invalid())
        }
    }
}

/// The running chain of a block mode.
enum Engine<C: Block16> {
    EcbEnc(ecb::Encryptor<C>),
    EcbDec(ecb::Decryptor<C>),
    /// The cipher and the chaining value (see [`Block16::cbc_encrypt`]).
    CbcEnc(C, Zeroizing<[u8; BLOCK]>),
    CbcDec(cbc::Decryptor<C>),
}

impl<C: Block16> Engine<C> {
    /// Encrypt or decrypt whole blocks in place; `data.len()` is a multiple
    /// of [`BLOCK`].
    fn process(&mut self, data: &mut [u8]) {
        let (blocks, rest) = Array::slice_as_chunks_mut(data);
        debug_assert!(rest.is_empty());
        match self {
            Engine::EcbEnc(m) => m.encrypt_blocks(blocks),
            Engine::EcbDec(m) => m.decrypt_blocks(blocks),
            Engine::CbcEnc(c, iv) => c.cbc_encrypt(iv, Array::cast_slice_to_core_mut(blocks)),
            Engine::CbcDec(m) => m.decrypt_blocks(blocks),
        }
    }
}

/// One ECB/CBC/CBC-PAD encryption or decryption over the cipher `C`.
pub struct BlockOp<C: Block16 = AesBlock> {
    mode: Mode,
    encrypt: bool,
    engine: Engine<C>,
    /// Input not yet processed: a partial block, or for CBC-PAD decryption
    /// up to one full block held back for the padding check.
    pending: Zeroizing<Vec<u8>>,
}

impl<C: Block16> BlockOp<C> {
    /// Start a block mode; `param` is the IV of CBC/CBC-PAD, none for ECB.
    pub fn new(mode: Mode, encrypt: bool, cipher: C, param: &MechParam) -> Result<Self> {
        let engine = match mode {
            Mode::Ecb => {
                no_param(param)?;
                if encrypt {
                    Engine::EcbEnc(ecb::Encryptor::inner_init(cipher))
                } else {
                    Engine::EcbDec(ecb::Decryptor::inner_init(cipher))
                }
            }
            Mode::Cbc | Mode::CbcPad => {
                let iv = iv_param(param)?;
                if encrypt {
                    Engine::CbcEnc(cipher, Zeroizing::new(iv))
                } else {
                    Engine::CbcDec(cbc::Decryptor::inner_iv_init(cipher, &Array::from(iv)))
                }
            }
        };
        Ok(BlockOp {
            mode,
            encrypt,
            engine,
            pending: Zeroizing::new(Vec::new()),
        })
    }

    fn len_range(&self) -> Error {
        Error::rv(if self.encrypt {
            ck::CKR_DATA_LEN_RANGE
        } else {
            ck::CKR_ENCRYPTED_DATA_LEN_RANGE
        })
    }

    /// Bytes of `pending + more` that an update may process now.
    fn ready(&self, total: usize) -> usize {
        if self.mode == Mode::CbcPad && !self.encrypt {
            // Keep at least one byte back so the final block stays pending.
            total.saturating_sub(1) / BLOCK * BLOCK
        } else {
            total / BLOCK * BLOCK
        }
    }
}

impl<C: Block16> CipherOp for BlockOp<C> {
    fn oneshot_len(&self, in_len: usize) -> Result<usize> {
        match (self.mode, self.encrypt) {
            (Mode::CbcPad, true) => Ok(in_len / BLOCK * BLOCK + BLOCK),
            (Mode::CbcPad, false) if in_len == 0 || !whole(in_len, BLOCK) => Err(self.len_range()),
            // The padding takes at least one byte of the last block.
            (Mode::CbcPad, false) => Ok(in_len - 1),
            _ if !whole(in_len, BLOCK) => Err(self.len_range()),
            _ => Ok(in_len),
        }
    }

    fn update_len(&self, in_len: usize) -> usize {
        self.ready(self.pending.len().saturating_add(in_len))
    }

    fn final_len(&self) -> usize {
        match (self.mode, self.encrypt) {
            (Mode::CbcPad, true) => BLOCK,
            (Mode::CbcPad, false) => self.pending.len().saturating_sub(1),
            _ => 0,
        }
    }

    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.oneshot_len(data.len())?;
        let mut out = self.update(data)?;
        out.extend_from_slice(&self.finalize()?);
        Ok(out)
    }

    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        // Copy each input byte once: the ready blocks straight into the
        // output buffer, the remainder into `pending`.
        let n = self.ready(self.pending.len() + data.len());
        let from_pending = n.min(self.pending.len());
        let from_data = n - from_pending;
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&self.pending[..from_pending]);
        out.extend_from_slice(&data[..from_data]);
        self.pending.drain(..from_pending);
        self.pending.extend_from_slice(&data[from_data..]);
        self.engine.process(&mut out);
        Ok(out)
    }

    fn finalize(&mut self) -> Result<Vec<u8>> {
        let pending = std::mem::take(&mut *self.pending);
        let mut block = Zeroizing::new([0u8; BLOCK]);
        match (self.mode, self.encrypt) {
            (Mode::CbcPad, true) => {
                block[..pending.len()].copy_from_slice(&pending);
                Pkcs7::raw_pad(&mut block[..], pending.len());
                self.engine.process(&mut block[..]);
                Ok(block.to_vec())
            }
            (Mode::CbcPad, false) => {
                if pending.len() != BLOCK {
                    return Err(self.len_range());
                }
                block.copy_from_slice(&pending);
                self.engine.process(&mut block[..]);
                let plain = Pkcs7::raw_unpad(&block[..]).map_err(|_| {
                    Error::new(ck::CKR_ENCRYPTED_DATA_INVALID, "bad CBC-PAD padding")
                })?;
                Ok(plain.to_vec())
            }
            _ if !pending.is_empty() => Err(self.len_range()),
            _ => Ok(Vec::new()),
        }
    }
}

/// `CKM_AES_CTR` with `CK_AES_CTR_PARAMS`.
///
/// The low `ulCounterBits` bits of the counter block are the counter; they
/// wrap modulo 2^`ulCounterBits` and never carry into the bits above them
/// (the nonce). Every width from 1 to 128 is supported: the stream runs on
/// the ctr crate's `Ctr128BE`, restarted at each wrap of the counter field
/// with the field reset to zero, so within a segment the 128-bit increment
/// and the field increment agree. An operation refuses
/// (`CKR_DATA_LEN_RANGE` / `CKR_ENCRYPTED_DATA_LEN_RANGE`) to go past
/// 2^`ulCounterBits` blocks in total, since the counter would come back to
/// its first value and repeat the keystream (NSS does the same).
struct AesCtr;

impl Mechanism for AesCtr {
    fn mech(&self) -> u64 {
        ck::CKM_AES_CTR
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_ENCRYPT | ck::CKF_DECRYPT)
    }
    fn encrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(CtrOp::new(AesBlock::for_key(key)?, param, true)?))
    }
    fn decrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(CtrOp::new(AesBlock::for_key(key)?, param, false)?))
    }
}

/// One CTR encryption or decryption (the same operation) over the cipher
/// `C`, with `CK_AES_CTR_PARAMS` semantics (also used by SM4-CTR).
pub struct CtrOp<C: Block16 = AesBlock> {
    cipher: C,
    encrypt: bool,
    /// The counter block the next segment starts from.
    next_block: [u8; BLOCK],
    /// Width of the counter field in bits.
    bits: u32,
    /// The keystream of the current segment.
    stream: ctr::Ctr128BE<C>,
    /// Bytes the current segment can still produce before the field wraps.
    segment_left: u128,
    /// Bytes the whole operation can still produce before the keystream
    /// would repeat (`u128::MAX` standing for "no practical limit").
    total_left: u128,
}

impl<C: Block16> CtrOp<C> {
    /// Start a counter stream from `CK_AES_CTR_PARAMS` ([`MechParam::Ctr`]).
    pub fn new(cipher: C, param: &MechParam, encrypt: bool) -> Result<Self> {
        let MechParam::Ctr { counter_bits, cb } = param else {
            return Err(Error::param_invalid("AES-CTR needs CK_AES_CTR_PARAMS"));
        };
        let bits = match u32::try_from(*counter_bits) {
            Ok(b @ 1..=128) => b,
            _ => {
                return Err(Error::param_invalid(format!(
                    "ulCounterBits {counter_bits} not in 1..=128"
                )))
            }
        };
        // 2^bits blocks of 16 bytes; from 124 bits on more than any u128.
        let total_left = 1u128.checked_shl(bits + 4).unwrap_or(u128::MAX);
        let mut op = CtrOp {
            stream: ctr_stream(cipher.clone(), cb),
            cipher,
            encrypt,
            next_block: *cb,
            bits,
            segment_left: 0,
            total_left,
        };
        op.start_segment();
        Ok(op)
    }

    fn field_mask(&self) -> u128 {
        u128::MAX >> (128 - self.bits)
    }

    /// Start the keystream at `next_block`, and compute where its counter
    /// field wraps.
    fn start_segment(&mut self) {
        let block = u128::from_be_bytes(self.next_block);
        let mask = self.field_mask();
        let blocks = if self.bits == 128 {
            u128::MAX
        } else {
            (mask - (block & mask)) + 1
        };
        self.segment_left = blocks.saturating_mul(BLOCK as u128);
        self.stream = ctr_stream(self.cipher.clone(), &self.next_block);
        // The following segment starts with the field at zero.
        self.next_block = (block & !mask).to_be_bytes();
    }

    fn check(&self, in_len: usize) -> Result<()> {
        if in_len as u128 > self.total_left {
            return Err(Error::new(
                if self.encrypt {
                    ck::CKR_DATA_LEN_RANGE
                } else {
                    ck::CKR_ENCRYPTED_DATA_LEN_RANGE
                },
                "AES-CTR counter would wrap to its first value",
            ));
        }
        Ok(())
    }
}

/// A 128-bit big-endian counter stream starting at `block`.
fn ctr_stream<C: Block16>(cipher: C, block: &[u8; BLOCK]) -> ctr::Ctr128BE<C> {
    StreamCipherCoreWrapper::from_core(ctr::CtrCore::inner_iv_init(cipher, &Array::from(*block)))
}

impl<C: Block16> CipherOp for CtrOp<C> {
    fn oneshot_len(&self, in_len: usize) -> Result<usize> {
        self.check(in_len)?;
        Ok(in_len)
    }
    fn update_len(&self, in_len: usize) -> usize {
        in_len
    }
    fn final_len(&self) -> usize {
        0
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.update(data)
    }
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.check(data.len())?;
        self.total_left -= data.len() as u128;
        let mut out = data.to_vec();
        let mut rest = &mut out[..];
        while !rest.is_empty() {
            if self.segment_left == 0 {
                self.start_segment();
            }
            let n =
                usize::try_from(self.segment_left).map_or(rest.len(), |left| left.min(rest.len()));
            let (now, later) = rest.split_at_mut(n);
            self.stream.apply_keystream(now);
            self.segment_left -= n as u128;
            rest = later;
        }
        Ok(out)
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
}

/// SP 800-38A F.2.1 CBC-AES128.Encrypt, first block, and its inverse.
fn self_test() -> Result<()> {
    let key = hex_bytes("2b7e151628aed2a6abf7158809cf4f3c");
    let iv = MechParam::Bytes(hex_bytes("000102030405060708090a0b0c0d0e0f"));
    let pt = hex_bytes("6bc1bee22e409f96e93d7e117393172a");
    let ct = hex_bytes("7649abac8119b246cee98e9b12e9197d");
    let cipher = AesBlock::from_raw(&key)?;
    let got = BlockOp::new(Mode::Cbc, true, cipher.clone(), &iv)?.oneshot(&pt)?;
    let back = BlockOp::new(Mode::Cbc, false, cipher, &iv)?.oneshot(&ct)?;
    if got != ct || back != pt {
        return Err(Error::general("AES-CBC known answer mismatch"));
    }
    Ok(())
}

/// Decode a hex literal of a self-test. Only for compile-time constants.
pub(crate) fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| s.get(2 * i..2 * i + 2))
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
