//! SM4 (GB/T 32907-2016) with 16-byte `CKK_SM4` keys: key generation, ECB,
//! CBC, CBC-PAD (also wrap/unwrap), CTR, GCM (as RFC 8998 uses it), CBC-MAC
//! and key wrap (RFC 5649 over SM4). Codes and formats: `include/p11kms.h`.
//!
//! The modes are the ones AES uses (`aes::BlockOp`, `aes::CtrOp`,
//! `gcm::GcmOp`, the `aes-kw` crate's generic KWP) instantiated over
//! [`Sm4Block`], so SM4 behaves like AES in every multi-part and length
//! rule. Only CBC-MAC is SM4's own here (PKCS#11 has no AES CBC-MAC in
//! p11kms).

use std::sync::Arc;

use aes_kw::AesKwp;
use cipher::common::InnerInit;
use cipher::consts::U16;
use cipher::{
    Array, BlockCipherDecClosure, BlockCipherDecrypt, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockSizeUser,
};
use p11kms_protocol::{vendor, MechParam, MechanismInfo};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::aes::{
    no_param, random, whole, Block16, BlockMode, BlockOp, CtrOp, Mode, ModeCipher, BLOCK,
};
use super::gcm::{gcm_over, GcmOp};
use super::hmac::verify_mac;
use super::{CipherOp, GeneratedKey, Key, Mechanism, Registry, SignOp, VerifyOp};
use crate::error::{Error, Result};

/// SM4 keys are 16 bytes, always.
pub const KEY_BYTES: usize = 16;

/// Register the SM4 mechanisms and their known-answer tests.
pub fn register(r: &mut Registry) {
    r.add(Sm4KeyGen);
    // ECB, CBC, CBC-PAD: the AES block-mode mechanism over SM4.
    r.add(BlockMode::<Sm4Block>::new(Mode::Ecb));
    r.add(BlockMode::<Sm4Block>::new(Mode::Cbc));
    r.add(BlockMode::<Sm4Block>::new(Mode::CbcPad));
    r.add(Sm4Ctr);
    r.add(Sm4Gcm);
    r.add(Sm4Mac { general: false });
    r.add(Sm4Mac { general: true });
    r.add(Sm4KeyWrap);
    r.add_self_test("SM4 (GB/T 32907 A.1, kernels vs portable)", self_test_block);
    r.add_self_test("SM4-GCM (RFC 8998 A.1)", self_test_gcm);
}

fn info(flags: u64) -> MechanismInfo {
    MechanismInfo {
        min_key_size: KEY_BYTES as u64,
        max_key_size: KEY_BYTES as u64,
        flags,
    }
}

// ---------------------------------------------------------------- the cipher

/// A shared SM4 key schedule usable as a RustCrypto block cipher; cloning
/// only bumps a reference count. Built once per key through [`Key::cached`].
/// The cipher is `p11kms-sm4`: AES-NI kernels where the CPU has them.
#[derive(Clone)]
pub struct Sm4Block(Arc<p11kms_sm4::Sm4>);

impl Sm4Block {
    /// The cached schedule of an SM4 secret key of 16 bytes
    /// (`CKR_KEY_TYPE_INCONSISTENT` / `CKR_KEY_SIZE_RANGE` otherwise).
    pub fn for_key(key: &Key) -> Result<Self> {
        if key.class != ck::CKO_SECRET_KEY || key.key_type != vendor::CKK_SM4 {
            return Err(Error::key_type_inconsistent());
        }
        Ok(Sm4Block(key.cached(schedule)?))
    }

    /// A schedule straight from raw key bytes (self-tests, SM2 envelope use).
    pub fn from_raw(value: &[u8]) -> Result<Self> {
        Ok(Sm4Block(Arc::new(schedule(value)?)))
    }
}

fn schedule(value: &[u8]) -> Result<p11kms_sm4::Sm4> {
    let key: &[u8; KEY_BYTES] = value.try_into().map_err(|_| Error::key_size_range())?;
    Ok(p11kms_sm4::Sm4::new(key))
}

impl BlockSizeUser for Sm4Block {
    type BlockSize = U16;
}

impl BlockCipherEncrypt for Sm4Block {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = U16>) {
        self.0.encrypt_with_backend(f)
    }
}

impl BlockCipherDecrypt for Sm4Block {
    fn decrypt_with_backend(&self, f: impl BlockCipherDecClosure<BlockSize = U16>) {
        self.0.decrypt_with_backend(f)
    }
}

impl Block16 for Sm4Block {
    /// The chained kernel of `p11kms-sm4`, which keeps the chain in its own
    /// representation from block to block.
    fn cbc_encrypt(&self, iv: &mut [u8; BLOCK], blocks: &mut [[u8; BLOCK]]) {
        self.0.encrypt_cbc(iv, blocks)
    }
}

/// Which SM4 implementation this CPU runs (`aes-ni+vaes`, `aes-ni` or
/// `portable`), for the start-up log.
pub fn implementation() -> &'static str {
    p11kms_sm4::Sm4::new(&[0; KEY_BYTES]).implementation()
}

/// `CKA_CHECK_VALUE` of an SM4 key: the first 3 bytes of the encryption of
/// a zero block, the rule PKCS#11 §4.10 gives for AES. Empty for a value
/// that is not an SM4 key.
pub fn check_value(value: &[u8]) -> Vec<u8> {
    let Ok(c) = schedule(value) else {
        return Vec::new();
    };
    let mut block = [0u8; BLOCK];
    c.encrypt_block(&mut block);
    block[..3].to_vec()
}

// ---------------------------------------------------------------- key generation

/// `CKM_SM4_KEY_GEN`: 16 random bytes; `CKA_VALUE_LEN` may be omitted.
struct Sm4KeyGen;

impl Mechanism for Sm4KeyGen {
    fn mech(&self) -> u64 {
        vendor::CKM_SM4_KEY_GEN
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_GENERATE)
    }
    fn generate_key(&self, param: &MechParam, value_len: Option<usize>) -> Result<GeneratedKey> {
        no_param(param)?;
        match value_len {
            None | Some(KEY_BYTES) => Ok(GeneratedKey {
                key_type: vendor::CKK_SM4,
                value: random(KEY_BYTES)?,
            }),
            Some(n) => Err(Error::attribute_value_invalid(format!(
                "SM4 keys are 16 bytes, not {n}"
            ))),
        }
    }
}

// ---------------------------------------------------------------- block modes

impl ModeCipher for Sm4Block {
    const CODES: [u64; 3] = [
        vendor::CKM_SM4_ECB,
        vendor::CKM_SM4_CBC,
        vendor::CKM_SM4_CBC_PAD,
    ];
    fn mech_info(flags: u64) -> MechanismInfo {
        info(flags)
    }
    fn for_key(key: &Key) -> Result<Self> {
        Sm4Block::for_key(key)
    }
}

/// `CKM_SM4_CTR` with `CK_AES_CTR_PARAMS` (same counter rules as AES-CTR).
struct Sm4Ctr;

impl Mechanism for Sm4Ctr {
    fn mech(&self) -> u64 {
        vendor::CKM_SM4_CTR
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_ENCRYPT | ck::CKF_DECRYPT)
    }
    fn encrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(CtrOp::new(Sm4Block::for_key(key)?, param, true)?))
    }
    fn decrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(CtrOp::new(Sm4Block::for_key(key)?, param, false)?))
    }
}

/// `CKM_SM4_GCM` with `CK_GCM_PARAMS` (same parameter rules as AES-GCM).
struct Sm4Gcm;

impl Sm4Gcm {
    fn op(key: &Key, param: &MechParam, encrypt: bool) -> Result<GcmOp> {
        let cipher = Sm4Block::for_key(key)?;
        GcmOp::with(param, encrypt, |iv, tag| gcm_over(key, cipher, iv, tag))
    }
}

impl Mechanism for Sm4Gcm {
    fn mech(&self) -> u64 {
        vendor::CKM_SM4_GCM
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_ENCRYPT | ck::CKF_DECRYPT)
    }
    fn encrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(Self::op(key, param, true)?))
    }
    fn decrypt_init(&self, key: &Arc<Key>, param: &MechParam) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(Self::op(key, param, false)?))
    }
}

// ---------------------------------------------------------------- CBC-MAC

/// `CKM_SM4_MAC` (8 bytes, half a block like `CKM_AES_MAC`) and
/// `CKM_SM4_MAC_GENERAL` (1..=16 bytes): CBC-MAC with a zero IV, the last
/// partial block padded with zero bytes, empty input taken as one zero
/// block.
struct Sm4Mac {
    general: bool,
}

impl Sm4Mac {
    fn start(&self, key: &Key, param: &MechParam) -> Result<MacOp> {
        let len = match (self.general, param) {
            (false, MechParam::None) => BLOCK / 2,
            (true, MechParam::MacLen(n)) => match usize::try_from(*n) {
                Ok(n @ 1..=BLOCK) => n,
                _ => {
                    return Err(Error::param_invalid(format!(
                        "SM4 MAC length {n} not in 1..=16"
                    )))
                }
            },
            (false, _) => return Err(Error::param_invalid("CKM_SM4_MAC takes no parameter")),
            (true, _) => {
                return Err(Error::param_invalid(
                    "CKM_SM4_MAC_GENERAL needs CK_MAC_GENERAL_PARAMS",
                ))
            }
        };
        Ok(MacOp {
            cipher: Sm4Block::for_key(key)?,
            state: Array::default(),
            pending: Zeroizing::new(Vec::with_capacity(BLOCK)),
            seen: false,
            done: false,
            len,
        })
    }
}

impl Mechanism for Sm4Mac {
    fn mech(&self) -> u64 {
        if self.general {
            vendor::CKM_SM4_MAC_GENERAL
        } else {
            vendor::CKM_SM4_MAC
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

/// A running CBC-MAC.
struct MacOp {
    cipher: Sm4Block,
    /// The chaining value (last cipher block).
    state: Array<u8, U16>,
    /// A partial block waiting for more input.
    pending: Zeroizing<Vec<u8>>,
    /// Whether any input arrived (empty input is one zero block).
    seen: bool,
    done: bool,
    len: usize,
}

impl MacOp {
    fn absorb(&mut self, block: &[u8]) {
        for (s, b) in self.state.iter_mut().zip(block) {
            *s ^= b;
        }
        self.cipher.encrypt_block(&mut self.state);
    }

    fn tag(&mut self) -> Result<Vec<u8>> {
        if self.done {
            return Err(Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED));
        }
        self.done = true;
        if !self.pending.is_empty() || !self.seen {
            let mut last = [0u8; BLOCK];
            last[..self.pending.len()].copy_from_slice(&self.pending);
            self.absorb(&last);
        }
        Ok(self.state[..self.len].to_vec())
    }
}

impl SignOp for MacOp {
    fn sig_len(&self) -> usize {
        self.len
    }
    fn update(&mut self, mut data: &[u8]) -> Result<()> {
        if self.done {
            return Err(Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED));
        }
        self.seen |= !data.is_empty();
        if !self.pending.is_empty() {
            let take = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < BLOCK {
                return Ok(());
            }
            let block = std::mem::take(&mut *self.pending);
            self.absorb(&block);
        }
        // Whole blocks through the chained kernel: CBC-MAC is the last
        // block of a CBC encryption with a zero IV.
        let (whole, rest) = data.as_chunks::<BLOCK>();
        if !whole.is_empty() {
            let mut blocks = Zeroizing::new(whole.to_vec());
            let mut chain: [u8; BLOCK] = self.state.into();
            self.cipher.cbc_encrypt(&mut chain, &mut blocks);
            self.state = Array::from(chain);
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        self.tag()
    }
}

impl VerifyOp for MacOp {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        SignOp::update(self, data)
    }
    fn finalize(&mut self, signature: &[u8]) -> Result<()> {
        verify_mac(&self.tag()?, signature)
    }
}

// ---------------------------------------------------------------- key wrap

/// `CKM_SM4_KEY_WRAP`: RFC 5649 (KWP) over SM4, wrap and unwrap only.
/// RFC 5649 rather than RFC 3394 so that any key value wraps (PKCS#8 SM2
/// keys are not a multiple of 8 bytes). No parameter.
struct Sm4KeyWrap;

/// Semiblock size of key wrap.
const SEMI: usize = 8;

impl Sm4KeyWrap {
    fn wrapped_len(key_len: usize) -> Result<usize> {
        if key_len == 0 || u32::try_from(key_len).is_err() {
            return Err(Error::new(
                ck::CKR_KEY_SIZE_RANGE,
                "key length unsuitable for SM4 key wrap",
            ));
        }
        Ok(key_len.div_ceil(SEMI) * SEMI + SEMI)
    }
}

impl Mechanism for Sm4KeyWrap {
    fn mech(&self) -> u64 {
        vendor::CKM_SM4_KEY_WRAP
    }
    fn info(&self) -> MechanismInfo {
        info(ck::CKF_WRAP | ck::CKF_UNWRAP)
    }
    fn wrap_len(
        &self,
        param: &MechParam,
        wrapping_key: &Arc<Key>,
        key_len: usize,
    ) -> Result<usize> {
        no_param(param)?;
        Sm4Block::for_wrapping_key(wrapping_key)?;
        Self::wrapped_len(key_len)
    }
    fn wrap(
        &self,
        param: &MechParam,
        wrapping_key: &Arc<Key>,
        key_value: &[u8],
    ) -> Result<Vec<u8>> {
        no_param(param)?;
        let cipher = Sm4Block::for_wrapping_key(wrapping_key)?;
        kwp_wrap(cipher, key_value)
    }
    fn unwrap(
        &self,
        param: &MechParam,
        unwrapping_key: &Arc<Key>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        no_param(param)?;
        let cipher = Sm4Block::for_unwrapping_key(unwrapping_key)?;
        kwp_unwrap(cipher, wrapped)
    }
}

fn kwp_wrap(cipher: Sm4Block, key_value: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; Sm4KeyWrap::wrapped_len(key_value.len())?];
    let n = AesKwp::inner_init(cipher)
        .wrap_key(key_value, &mut out)
        .map_err(|_| {
            Error::new(
                ck::CKR_KEY_SIZE_RANGE,
                "key length unsuitable for SM4 key wrap",
            )
        })?
        .len();
    out.truncate(n);
    Ok(out)
}

fn kwp_unwrap(cipher: Sm4Block, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if wrapped.len() < 2 * SEMI || !whole(wrapped.len(), SEMI) {
        return Err(Error::rv(ck::CKR_WRAPPED_KEY_LEN_RANGE));
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len() - SEMI]);
    let n = AesKwp::inner_init(cipher)
        .unwrap_key(wrapped, &mut out)
        .map_err(|e| match e {
            aes_kw::Error::IntegrityCheckFailed => Error::new(
                ck::CKR_WRAPPED_KEY_INVALID,
                "SM4 key wrap integrity check failed",
            ),
            _ => Error::rv(ck::CKR_WRAPPED_KEY_LEN_RANGE),
        })?
        .len();
    out.truncate(n);
    Ok(out)
}

// ---------------------------------------------------------------- self-tests

/// Known answers of the self-tests and unit tests.
pub(crate) mod kat {
    /// GB/T 32907-2016 A.1: key = plaintext, one block.
    pub const KEY: &str = "0123456789abcdeffedcba9876543210";
    pub const PT: &str = "0123456789abcdeffedcba9876543210";
    pub const CT: &str = "681edf34d206965e86b3e94f536e4246";
    /// RFC 8998 A.1 SM4-GCM (key as above).
    pub const GCM_IV: &str = "00001234567800000000abcd";
    pub const GCM_AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    pub const GCM_PT: &str = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccddddddddddddddddeeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa";
    pub const GCM_CT: &str = "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d";
    pub const GCM_TAG: &str = "83de3541e4c2b58177e065a9bf7b62ec";
}

fn self_test_block() -> Result<()> {
    let h = super::aes::hex_bytes;
    let cipher = Sm4Block::from_raw(&h(kat::KEY))?;
    let ct =
        BlockOp::new(Mode::Ecb, true, cipher.clone(), &MechParam::None)?.oneshot(&h(kat::PT))?;
    let pt = BlockOp::new(Mode::Ecb, false, cipher, &MechParam::None)?.oneshot(&h(kat::CT))?;
    if ct != h(kat::CT) || pt != h(kat::PT) {
        return Err(Error::general("SM4 known answer mismatch"));
    }
    // The kernels this CPU runs for many blocks (eight and sixteen at a
    // time) and for CBC encryption, against the portable cipher.
    let key: [u8; KEY_BYTES] = [0x5c; KEY_BYTES];
    let fast = Sm4Block::from_raw(&key)?;
    let reference = p11kms_sm4::Sm4::portable(&key);
    let data: Vec<u8> = (0..40 * BLOCK).map(|i| (i * 29 + 7) as u8).collect();
    let mut expect = data.clone();
    for b in expect.as_chunks_mut::<BLOCK>().0 {
        reference.encrypt_block(b);
    }
    let ecb = BlockOp::new(Mode::Ecb, true, fast.clone(), &MechParam::None)?.oneshot(&data)?;
    let mut chained = data.clone();
    let mut iv = [0u8; BLOCK];
    reference.encrypt_cbc(&mut iv, chained.as_chunks_mut::<BLOCK>().0);
    let cbc =
        BlockOp::new(Mode::Cbc, true, fast, &MechParam::Bytes(vec![0; BLOCK]))?.oneshot(&data)?;
    if ecb != expect || cbc != chained {
        return Err(Error::general(format!(
            "SM4 kernels ({}) disagree with the portable cipher",
            p11kms_sm4::Sm4::new(&key).implementation()
        )));
    }
    Ok(())
}

fn self_test_gcm() -> Result<()> {
    let h = super::aes::hex_bytes;
    let key = Key::new(
        ck::CKO_SECRET_KEY,
        vendor::CKK_SM4,
        Zeroizing::new(h(kat::KEY)),
    );
    let param = MechParam::Gcm {
        iv: h(kat::GCM_IV),
        iv_bits: None,
        aad: h(kat::GCM_AAD),
        tag_bits: 128,
    };
    let mut want = h(kat::GCM_CT);
    want.extend(h(kat::GCM_TAG));
    let got = Sm4Gcm::op(&key, &param, true)?.oneshot(&h(kat::GCM_PT))?;
    let back = Sm4Gcm::op(&key, &param, false)?.oneshot(&want)?;
    if got != want || back != h(kat::GCM_PT) {
        return Err(Error::general("SM4-GCM known answer mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
