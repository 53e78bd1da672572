//! SM4 (GB/T 32907-2016) for p11kms.
//!
//! On x86-64 CPUs with AES-NI (and SSSE3, SSE4.1, AVX) the cipher runs on
//! the AES hardware: SM4's S-box is AES's S-box between two affine byte
//! maps, computed with `AESENCLAST` and `PSHUFB` lookups, so no memory is
//! indexed by secret data (see `x86.rs`). Elsewhere it falls back to the
//! standard's table-driven form ([`Sm4::portable`]).
//!
//! [`Sm4`] is a RustCrypto block cipher (`cipher` 0.5), so the `ecb`,
//! `cbc`, `ctr` crates and p11kms's GCM run on it unchanged; its backend
//! hands them sixteen blocks at a time, which is where the many-block kernels
//! pay off (ECB, CBC decryption, CTR, GCM). CBC encryption, which chains
//! block to block, gets a kernel built for the latency of one block.
//!
//! This crate is the one place outside the PKCS#11 module's boundary where
//! p11kms has `unsafe`: calling a `#[target_feature]` function, only after
//! the CPU features were detected (the `Ni` token in `x86.rs`).

#![deny(unsafe_code)]

mod soft;
mod tables;
#[cfg(target_arch = "x86_64")]
mod x86;

use cipher::consts::U16;
use cipher::{
    AlgorithmName, Block, BlockCipherDecBackend, BlockCipherDecClosure, BlockCipherDecrypt,
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, InOut,
    InOutBuf, Key, KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The AES-NI kernels with the key in their forms.
#[cfg(target_arch = "x86_64")]
#[derive(Clone)]
struct NiKeys {
    ni: x86::Ni,
    enc: x86::DomainKeys,
    dec: x86::DomainKeys,
}

/// An SM4 key schedule. Round keys are wiped when it is dropped.
#[derive(Clone)]
pub struct Sm4 {
    enc: [u32; 32],
    /// `enc` reversed: SM4 decrypts by running the rounds backwards.
    dec: [u32; 32],
    #[cfg(target_arch = "x86_64")]
    ni: Option<NiKeys>,
}

impl Sm4 {
    /// The schedule of a 16-byte key, on the fastest implementation this
    /// CPU has.
    pub fn new(key: &[u8; 16]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(ni) = x86::Ni::detect() {
            let enc = soft::round_keys(key, |w| ni.tau(w));
            let dec = reversed(&enc);
            let keys = NiKeys {
                ni,
                enc: x86::DomainKeys::new(&enc),
                dec: x86::DomainKeys::new(&dec),
            };
            return Sm4 {
                enc,
                dec,
                ni: Some(keys),
            };
        }
        Self::portable(key)
    }

    /// The schedule of a 16-byte key on the portable implementation (the
    /// standard's S-box table), whatever the CPU: the reference the
    /// kernels are tested and benchmarked against.
    pub fn portable(key: &[u8; 16]) -> Self {
        let enc = soft::round_keys(key, soft::tau);
        let dec = reversed(&enc);
        Sm4 {
            enc,
            dec,
            #[cfg(target_arch = "x86_64")]
            ni: None,
        }
    }

    /// Which implementation this schedule runs on: `"aes-ni+vaes"` (the
    /// 256-bit many-block kernel too), `"aes-ni"` or `"portable"`.
    pub fn implementation(&self) -> &'static str {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = &self.ni {
            return if k.ni.wide() { "aes-ni+vaes" } else { "aes-ni" };
        }
        "portable"
    }

    /// Encrypt one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = &self.ni {
            return k.ni.crypt_block(&k.enc, block);
        }
        soft::crypt_block(&self.enc, block)
    }

    /// Decrypt one block in place.
    pub fn decrypt_block(&self, block: &mut [u8; 16]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = &self.ni {
            return k.ni.crypt_block(&k.dec, block);
        }
        soft::crypt_block(&self.dec, block)
    }

    /// CBC-encrypt `blocks` in place, chained from `iv`, which becomes the
    /// last ciphertext block (so a message can be fed in pieces).
    pub fn encrypt_cbc(&self, iv: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = &self.ni {
            return k.ni.cbc_encrypt(&k.enc, iv, blocks);
        }
        for block in blocks.iter_mut() {
            for (b, v) in block.iter_mut().zip(iv.iter()) {
                *b ^= v;
            }
            soft::crypt_block(&self.enc, block);
            *iv = *block;
        }
    }

    /// Encrypt independent blocks (ECB) in place, eight or sixteen at a time where
    /// the CPU allows.
    pub fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        self.crypt_blocks(&self.enc, blocks, false)
    }

    /// Decrypt independent blocks (ECB) in place.
    pub fn decrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        self.crypt_blocks(&self.dec, blocks, true)
    }

    fn crypt_blocks(&self, rk: &[u32; 32], blocks: &mut [[u8; 16]], decrypt: bool) {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = &self.ni {
            // A single block is cheaper on the one-block kernel than padded
            // to four.
            if let [block] = blocks {
                let keys = if decrypt { &k.dec } else { &k.enc };
                return k.ni.crypt_block(keys, block);
            }
            return k.ni.crypt_blocks(rk, blocks);
        }
        let _ = decrypt;
        for block in blocks {
            soft::crypt_block(rk, block);
        }
    }
}

fn reversed(rk: &[u32; 32]) -> [u32; 32] {
    let mut r = *rk;
    r.reverse();
    r
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = &mut self.ni {
            k.enc.zeroize();
            k.dec.zeroize();
        }
    }
}

impl ZeroizeOnDrop for Sm4 {}

impl std::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sm4 {{ implementation: {}, .. }}", self.implementation())
    }
}

// ---------------------------------------------------------------- RustCrypto traits

impl KeySizeUser for Sm4 {
    type KeySize = U16;
}

impl KeyInit for Sm4 {
    fn new(key: &Key<Self>) -> Self {
        let mut k: [u8; 16] = (*key).into();
        let s = Sm4::new(&k);
        k.zeroize();
        s
    }
}

impl BlockSizeUser for Sm4 {
    type BlockSize = U16;
}

impl AlgorithmName for Sm4 {
    fn write_alg_name(f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SM4")
    }
}

impl BlockCipherEncrypt for Sm4 {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = U16>) {
        f.call(&Backend(self))
    }
}

impl BlockCipherDecrypt for Sm4 {
    fn decrypt_with_backend(&self, f: impl BlockCipherDecClosure<BlockSize = U16>) {
        f.call(&Backend(self))
    }
}

/// The backend the modes drive: sixteen blocks per call where they can.
struct Backend<'a>(&'a Sm4);

impl BlockSizeUser for Backend<'_> {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Backend<'_> {
    type ParBlocksSize = U16;
}

/// Run `$f` over the `$n` in-out blocks of `$blocks` through a stack
/// buffer (the kernels work in place on `[u8; 16]` blocks).
macro_rules! through_buffer {
    ($blocks:ident, $n:expr, $f:expr) => {{
        let n = $n;
        let mut buf = [[0u8; 16]; 16];
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = $blocks.get(i).clone_in().into();
        }
        $f(&mut buf[..n]);
        for (i, b) in buf[..n].iter().enumerate() {
            *$blocks.get(i).get_out() = (*b).into();
        }
        buf.zeroize();
    }};
}

impl BlockCipherEncBackend for Backend<'_> {
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut b: [u8; 16] = block.clone_in().into();
        self.0.encrypt_block(&mut b);
        *block.get_out() = b.into();
    }

    fn encrypt_par_blocks(&self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
        through_buffer!(blocks, 16, |b: &mut [[u8; 16]]| self.0.encrypt_blocks(b));
    }

    fn encrypt_tail_blocks(&self, mut blocks: InOutBuf<'_, '_, Block<Self>>) {
        through_buffer!(blocks, blocks.len(), |b: &mut [[u8; 16]]| self
            .0
            .encrypt_blocks(b));
    }
}

impl BlockCipherDecBackend for Backend<'_> {
    fn decrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut b: [u8; 16] = block.clone_in().into();
        self.0.decrypt_block(&mut b);
        *block.get_out() = b.into();
    }

    fn decrypt_par_blocks(&self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
        through_buffer!(blocks, 16, |b: &mut [[u8; 16]]| self.0.decrypt_blocks(b));
    }

    fn decrypt_tail_blocks(&self, mut blocks: InOutBuf<'_, '_, Block<Self>>) {
        through_buffer!(blocks, blocks.len(), |b: &mut [[u8; 16]]| self
            .0
            .decrypt_blocks(b));
    }
}
