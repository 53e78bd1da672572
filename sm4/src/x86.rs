//! The AES-NI kernels.
//!
//! SM4's S-box is a GF(2^8) inversion between two affine maps, and so is
//! AES's: `S_sm4 = B2 ∘ S_aes ∘ B1` (`tools/gen_tables.py` derives B1 and B2).
//! `AESENCLAST` with a zero round key computes `S_aes` on 16 bytes at once
//! (after ShiftRows, which the kernels cancel or make a no-op), and each
//! affine byte map is two `PSHUFB` nibble lookups. Nothing here indexes
//! memory with secret data: every table is a 16-byte register operand.
//!
//! Two kernels:
//! - **many blocks** ([`crypt_blocks`], the technique of Linux's
//!   `sm4-aesni-avx`): four blocks transposed so that a register holds the
//!   same word of four blocks; eight blocks in flight. For ECB, CBC
//!   decryption, CTR and GCM. With VAES and AVX2, the same on 256-bit
//!   registers (two groups of four per register, sixteen blocks in flight).
//! - **one block** ([`crypt_block`], [`cbc_encrypt`]), for CBC encryption,
//!   whose blocks depend on each other, so only the latency of a round
//!   counts. Each word lives in the odd lanes of its own register, in B1's
//!   linear image (the "B1 domain"), so B1 costs nothing per round;
//!   `L ∘ B2` followed by B1 is four byte maps `F_d` (byte d of
//!   `L(B2(s) << 24)`), of which only two are distinct lookups, and three
//!   byte permutations. See the section comment above `LANE_BYTE`.
//!
//! The functions carrying `#[target_feature]` are entered only through
//! [`Ni`], a token that exists only once the CPU is known to have AES-NI,
//! SSSE3, SSE4.1 and AVX (and records whether it also has VAES and AVX2);
//! those entry points and the `fence` below are the only `unsafe` in the
//! crate.

use core::arch::x86_64::*;

use zeroize::Zeroize;

use crate::tables::*;

/// Proof that the CPU has the features of the kernels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ni {
    /// Also VAES and AVX2: the 256-bit many-block kernel.
    wide: bool,
}

impl Ni {
    /// The token, if this CPU can run the kernels.
    pub(crate) fn detect() -> Option<Ni> {
        let ok = std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("avx");
        let wide = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("vaes");
        ok.then_some(Ni { wide })
    }

    /// Whether the 256-bit kernel runs (for reports).
    pub(crate) fn wide(self) -> bool {
        self.wide
    }

    /// τ (the S-box on each byte of a word), for the key schedule.
    #[allow(unsafe_code)]
    pub(crate) fn tau(self, w: u32) -> u32 {
        // SAFETY: an `Ni` exists only when `detect` found every feature
        // `tau_ni` is compiled for.
        unsafe { tau_ni(w) }
    }

    /// One block, in place, with keys of the B1 domain.
    #[allow(unsafe_code)]
    pub(crate) fn crypt_block(self, keys: &DomainKeys, block: &mut [u8; 16]) {
        // SAFETY: as in `tau`.
        unsafe { crypt_block(keys, block) }
    }

    /// CBC encryption in place; `iv` becomes the last ciphertext block.
    #[allow(unsafe_code)]
    pub(crate) fn cbc_encrypt(self, keys: &DomainKeys, iv: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
        // SAFETY: as in `tau`.
        unsafe { cbc_encrypt(keys, iv, blocks) }
    }

    /// Any number of blocks, in place, with the plain round keys.
    #[allow(unsafe_code)]
    pub(crate) fn crypt_blocks(self, rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
        if self.wide && blocks.len() >= 16 {
            // SAFETY: `wide` is set only when `detect` also found AVX2 and
            // VAES, the further features `crypt_blocks_wide` needs.
            return unsafe { crypt_blocks_wide(rk, blocks) };
        }
        // SAFETY: as in `tau`.
        unsafe { crypt_blocks(rk, blocks) }
    }
}

// ---------------------------------------------------------------- helpers

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn reg(b: &[u8; 16]) -> __m128i {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    _mm_set_epi64x(i64::from_le_bytes(hi), i64::from_le_bytes(lo))
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn put(v: __m128i, out: &mut [u8; 16]) {
    out[..8].copy_from_slice(&_mm_cvtsi128_si64(v).to_le_bytes());
    out[8..].copy_from_slice(&_mm_extract_epi64::<1>(v).to_le_bytes());
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn xor(a: __m128i, b: __m128i) -> __m128i {
    _mm_xor_si128(a, b)
}

/// An affine byte map given as its two nibble tables, on 16 bytes.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn affine(x: __m128i, lo: __m128i, hi: __m128i) -> __m128i {
    let m = _mm_set1_epi8(0x0f);
    let l = _mm_and_si128(x, m);
    let h = _mm_and_si128(_mm_srli_epi16::<4>(x), m);
    xor(_mm_shuffle_epi8(lo, l), _mm_shuffle_epi8(hi, h))
}

/// The SM4 S-box on 16 bytes laid out so that ShiftRows must be undone.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn sbox(x: __m128i, c: &Consts) -> __m128i {
    let a = _mm_shuffle_epi8(affine(x, c.b1_lo, c.b1_hi), c.inv_shift_rows);
    affine(
        _mm_aesenclast_si128(a, _mm_setzero_si128()),
        c.b2_lo,
        c.b2_hi,
    )
}

/// The registers of the many-block kernel.
struct Consts {
    b1_lo: __m128i,
    b1_hi: __m128i,
    b2_lo: __m128i,
    b2_hi: __m128i,
    inv_shift_rows: __m128i,
    rol8: __m128i,
    rol16: __m128i,
    rol24: __m128i,
    bswap: __m128i,
}

impl Consts {
    #[inline]
    #[target_feature(enable = "aes,ssse3,sse4.1,avx")]
    fn new() -> Self {
        Consts {
            b1_lo: reg(&B1_LO),
            b1_hi: reg(&B1_HI),
            b2_lo: reg(&B2_LO),
            b2_hi: reg(&B2_HI),
            // PSHUFB picks out[i] = in[mask[i]]; AESENCLAST's ShiftRows then
            // puts every byte back where it was.
            inv_shift_rows: reg(&[0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3]),
            // Rotations of little-endian 32-bit lanes by whole bytes.
            rol8: reg(&[3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14]),
            rol16: reg(&[2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13]),
            rol24: reg(&[1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12]),
            bswap: reg(&[3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12]),
        }
    }
}

/// τ on one word: the word in all four columns makes ShiftRows a no-op.
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn tau_ni(w: u32) -> u32 {
    let v = _mm_set1_epi32(w as i32);
    let a = affine(v, reg(&B1_LO), reg(&B1_HI));
    let s = affine(
        _mm_aesenclast_si128(a, _mm_setzero_si128()),
        reg(&B2_LO),
        reg(&B2_HI),
    );
    _mm_cvtsi128_si32(s) as u32
}

// ---------------------------------------------------------------- many blocks

/// L on four little-endian words: x ^ rol24(x) ^ rol2(x ^ rol8(x) ^ rol16(x)).
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn el(x: __m128i, c: &Consts) -> __m128i {
    let a = xor(
        x,
        xor(_mm_shuffle_epi8(x, c.rol8), _mm_shuffle_epi8(x, c.rol16)),
    );
    let rol2 = _mm_or_si128(_mm_slli_epi32::<2>(a), _mm_srli_epi32::<30>(a));
    xor(xor(x, _mm_shuffle_epi8(x, c.rol24)), rol2)
}

/// Four blocks as four registers of words: `x[j]` holds word j of each.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn transpose(b: [__m128i; 4]) -> [__m128i; 4] {
    let t0 = _mm_unpacklo_epi32(b[0], b[1]);
    let t1 = _mm_unpacklo_epi32(b[2], b[3]);
    let t2 = _mm_unpackhi_epi32(b[0], b[1]);
    let t3 = _mm_unpackhi_epi32(b[2], b[3]);
    [
        _mm_unpacklo_epi64(t0, t1),
        _mm_unpackhi_epi64(t0, t1),
        _mm_unpacklo_epi64(t2, t3),
        _mm_unpackhi_epi64(t2, t3),
    ]
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn load4(blocks: &[[u8; 16]], c: &Consts) -> [__m128i; 4] {
    transpose([0, 1, 2, 3].map(|i| _mm_shuffle_epi8(reg(&blocks[i]), c.bswap)))
}

/// The output of the rounds is (X35, X34, X33, X32): the words reversed.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn store4(x: [__m128i; 4], blocks: &mut [[u8; 16]], c: &Consts) {
    let b = transpose([x[3], x[2], x[1], x[0]]);
    for (out, v) in blocks.iter_mut().zip(b) {
        put(_mm_shuffle_epi8(v, c.bswap), out);
    }
}

/// One round on a group of four blocks.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn round4(x0: __m128i, x1: __m128i, x2: __m128i, x3: __m128i, k: __m128i, c: &Consts) -> __m128i {
    xor(x0, el(sbox(xor(xor(x1, x2), xor(x3, k)), c), c))
}

/// Eight blocks (two groups of four, interleaved so the CPU overlaps them).
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn crypt8(rk: &[u32; 32], blocks: &mut [[u8; 16]], c: &Consts) {
    let mut a = load4(&blocks[..4], c);
    let mut b = load4(&blocks[4..8], c);
    for r in rk.chunks_exact(4) {
        for (j, &w) in r.iter().enumerate() {
            let k = _mm_set1_epi32(w as i32);
            let (i1, i2, i3) = ((j + 1) % 4, (j + 2) % 4, (j + 3) % 4);
            a[j] = round4(a[j], a[i1], a[i2], a[i3], k, c);
            b[j] = round4(b[j], b[i1], b[i2], b[i3], k, c);
        }
    }
    store4(a, &mut blocks[..4], c);
    store4(b, &mut blocks[4..8], c);
}

/// Four blocks.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn crypt4(rk: &[u32; 32], blocks: &mut [[u8; 16]], c: &Consts) {
    let mut a = load4(&blocks[..4], c);
    for r in rk.chunks_exact(4) {
        for (j, &w) in r.iter().enumerate() {
            let k = _mm_set1_epi32(w as i32);
            a[j] = round4(a[j], a[(j + 1) % 4], a[(j + 2) % 4], a[(j + 3) % 4], k, c);
        }
    }
    store4(a, &mut blocks[..4], c);
}

/// Any number of independent blocks with the round keys `rk` (reversed
/// for decryption).
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn crypt_blocks(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let c = Consts::new();
    let mut eights = blocks.chunks_exact_mut(8);
    for chunk in &mut eights {
        crypt8(rk, chunk, &c);
    }
    let rest = eights.into_remainder();
    let (four, tail) = if rest.len() >= 4 {
        rest.split_at_mut(4)
    } else {
        rest.split_at_mut(0)
    };
    if !four.is_empty() {
        crypt4(rk, four, &c);
    }
    if !tail.is_empty() {
        let mut pad = [[0u8; 16]; 4];
        pad[..tail.len()].copy_from_slice(tail);
        crypt4(rk, &mut pad, &c);
        tail.copy_from_slice(&pad[..tail.len()]);
        pad.zeroize();
    }
}

// ---------------------------------------------------------------- many blocks, 256 bits
//
// The same kernel on 256-bit registers with VAES: each 128-bit lane is a
// group of four blocks (PSHUFB and AESENCLAST work lane by lane), so one
// instruction does the work of two; sixteen blocks in flight.

/// The registers of the 256-bit kernel: `Consts` in both lanes.
struct Wide {
    b1_lo: __m256i,
    b1_hi: __m256i,
    b2_lo: __m256i,
    b2_hi: __m256i,
    inv_shift_rows: __m256i,
    rol8: __m256i,
    rol16: __m256i,
    rol24: __m256i,
}

impl Wide {
    #[inline]
    #[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
    fn new(c: &Consts) -> Self {
        let both = _mm256_broadcastsi128_si256;
        Wide {
            b1_lo: both(c.b1_lo),
            b1_hi: both(c.b1_hi),
            b2_lo: both(c.b2_lo),
            b2_hi: both(c.b2_hi),
            inv_shift_rows: both(c.inv_shift_rows),
            rol8: both(c.rol8),
            rol16: both(c.rol16),
            rol24: both(c.rol24),
        }
    }
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn xor_w(a: __m256i, b: __m256i) -> __m256i {
    _mm256_xor_si256(a, b)
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn affine_w(x: __m256i, lo: __m256i, hi: __m256i) -> __m256i {
    let m = _mm256_set1_epi8(0x0f);
    let l = _mm256_and_si256(x, m);
    let h = _mm256_and_si256(_mm256_srli_epi16::<4>(x), m);
    xor_w(_mm256_shuffle_epi8(lo, l), _mm256_shuffle_epi8(hi, h))
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn round_w(x0: __m256i, x1: __m256i, x2: __m256i, x3: __m256i, k: __m256i, c: &Wide) -> __m256i {
    let t = xor_w(xor_w(x1, x2), xor_w(x3, k));
    let a = _mm256_shuffle_epi8(affine_w(t, c.b1_lo, c.b1_hi), c.inv_shift_rows);
    let s = affine_w(
        _mm256_aesenclast_epi128(a, _mm256_setzero_si256()),
        c.b2_lo,
        c.b2_hi,
    );
    let r = xor_w(
        s,
        xor_w(
            _mm256_shuffle_epi8(s, c.rol8),
            _mm256_shuffle_epi8(s, c.rol16),
        ),
    );
    let rol2 = _mm256_or_si256(_mm256_slli_epi32::<2>(r), _mm256_srli_epi32::<30>(r));
    xor_w(x0, xor_w(xor_w(s, _mm256_shuffle_epi8(s, c.rol24)), rol2))
}

/// Eight blocks: blocks 0-3 in the low lanes, 4-7 in the high lanes.
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn load8_w(blocks: &[[u8; 16]], c: &Consts) -> [__m256i; 4] {
    let lo = load4(&blocks[..4], c);
    let hi = load4(&blocks[4..8], c);
    [0, 1, 2, 3].map(|j| _mm256_set_m128i(hi[j], lo[j]))
}

#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn store8_w(x: [__m256i; 4], blocks: &mut [[u8; 16]], c: &Consts) {
    store4(x.map(|v| _mm256_castsi256_si128(v)), &mut blocks[..4], c);
    store4(
        x.map(|v| _mm256_extracti128_si256::<1>(v)),
        &mut blocks[4..8],
        c,
    );
}

/// Sixteen blocks (two groups of eight, interleaved).
#[inline]
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn crypt16_w(rk: &[u32; 32], blocks: &mut [[u8; 16]], w: &Wide, c: &Consts) {
    let mut a = load8_w(&blocks[..8], c);
    let mut b = load8_w(&blocks[8..16], c);
    for r in rk.chunks_exact(4) {
        for (j, &k) in r.iter().enumerate() {
            let k = _mm256_set1_epi32(k as i32);
            let (i1, i2, i3) = ((j + 1) % 4, (j + 2) % 4, (j + 3) % 4);
            a[j] = round_w(a[j], a[i1], a[i2], a[i3], k, w);
            b[j] = round_w(b[j], b[i1], b[i2], b[i3], k, w);
        }
    }
    store8_w(a, &mut blocks[..8], c);
    store8_w(b, &mut blocks[8..16], c);
}

/// [`crypt_blocks`] sixteen at a time on 256-bit registers; the rest on
/// the 128-bit kernel.
#[target_feature(enable = "aes,ssse3,sse4.1,avx,avx2,vaes")]
fn crypt_blocks_wide(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let c = Consts::new();
    let w = Wide::new(&c);
    let mut sixteens = blocks.chunks_exact_mut(16);
    for chunk in &mut sixteens {
        crypt16_w(rk, chunk, &w, &c);
    }
    crypt_blocks(rk, sixteens.into_remainder());
}

// ---------------------------------------------------------------- one block
//
// The single-block kernel keeps each word of the state in the odd lanes of
// a register, in B1's linear image (the "B1 domain"). Odd lanes only ever
// feed odd lanes (ShiftRows maps odd lanes to odd lanes; lookups and XORs
// are lane-wise; the permutations below read odd lanes), and the high
// nibble of an odd lane is one 16-bit shift away, with no mask. Lane i
// holds byte `LANE_BYTE[i]` (0 = most significant) of its word, arranged
// so that after AESENCLAST's ShiftRows lane i holds the S-box output of
// byte `LANE_BYTE[i] - 1`: the F_1 term of T is then lane-local, and the
// F_0, F_2 and F_3 terms are one PSHUFB each. F_2 = F_3 = G and
// F_1 = F_0 ^ G, so a round is AESENCLAST, a shift, a mask, four lookups,
// three permutations and XORs; by latency 11 cycles, measured ~13-14 on
// Zen 3, where each further PSHUFB on the path costs about a cycle.

/// Which byte of its word an odd lane holds (even lanes are unused).
const LANE_BYTE: [u8; 16] = [0, 0, 0, 0, 0, 3, 0, 1, 0, 2, 0, 2, 0, 1, 0, 3];

/// An odd lane holding byte `b` (row 1 of the AES state has all four).
const fn lane_of(b: u8) -> u8 {
    match b {
        0 => 1,
        3 => 5,
        2 => 9,
        _ => 13,
    }
}

/// PSHUFB mask of the F_d term: odd lane i takes the lane whose S-box
/// output is that of byte `LANE_BYTE[i] - d`. After AESENCLAST lane j
/// holds the output of byte `LANE_BYTE[j] - 1`, so that source is the lane
/// holding byte `LANE_BYTE[i] - d + 1`.
const fn term_mask(d: u8) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    let mut i = 1;
    while i < 16 {
        m[i] = lane_of((LANE_BYTE[i] + 5 - d) % 4);
        i += 2;
    }
    m
}

/// PSHUFB mask taking word `w` of a block (bytes 4w..4w+4) into the lanes.
const fn word_mask(w: u8) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    let mut i = 1;
    while i < 16 {
        m[i] = 4 * w + LANE_BYTE[i];
        i += 2;
    }
    m
}

/// PSHUFB mask putting a state word back as word `w` of a block.
const fn out_mask(w: u8) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    let mut b = 0;
    while b < 4 {
        m[(4 * w + b) as usize] = lane_of(b);
        b += 1;
    }
    m
}

/// A round key in the layout: byte `LANE_BYTE[i]` of the key's `B1_LIN`
/// image plus B1's constant in odd lane i.
fn domain_key(rk: u32) -> [u64; 2] {
    let lin = |x: u8| B1_LIN_LO[usize::from(x & 15)] ^ B1_LIN_HI[usize::from(x >> 4)];
    let bytes = rk.to_be_bytes().map(|b| lin(b) ^ B1_CONST);
    let mut lanes = [0u8; 16];
    for i in (1..16).step_by(2) {
        lanes[i] = bytes[usize::from(LANE_BYTE[i])];
    }
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&lanes[..8]);
    hi.copy_from_slice(&lanes[8..]);
    [u64::from_le_bytes(lo), u64::from_le_bytes(hi)]
}

/// Round keys of the single-block kernel (see [`domain_key`]).
#[derive(Clone)]
pub(crate) struct DomainKeys([[u64; 2]; 32]);

impl DomainKeys {
    pub(crate) fn new(rk: &[u32; 32]) -> Self {
        let mut keys = [[0u64; 2]; 32];
        for (k, &w) in keys.iter_mut().zip(rk) {
            *k = domain_key(w);
        }
        DomainKeys(keys)
    }
}

impl Zeroize for DomainKeys {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// Keep LLVM from re-associating XOR trees across this value: its
/// re-association makes a chain of what the kernel wants as a tree.
#[inline(always)]
#[allow(unsafe_code)]
fn fence(v: __m128i) -> __m128i {
    let mut v = v;
    // SAFETY: an empty instruction sequence; it reads and writes nothing
    // but the register it is given.
    unsafe {
        core::arch::asm!("/* {0} */", inout(xmm_reg) v, options(pure, nomem, nostack, preserves_flags));
    }
    v
}

/// The registers of the single-block kernel.
struct One {
    /// Nibble tables of F0 and G.
    f0: [__m128i; 2],
    g: [__m128i; 2],
    /// The permutations of the F_0, F_2 and F_3 terms.
    term: [__m128i; 3],
    word: [__m128i; 4],
    out: [__m128i; 4],
}

impl One {
    #[inline]
    #[target_feature(enable = "aes,ssse3,sse4.1,avx")]
    fn new() -> Self {
        One {
            f0: [reg(&F0_LO), reg(&F0_HI)],
            g: [reg(&G_LO), reg(&G_HI)],
            term: [reg(&term_mask(0)), reg(&term_mask(2)), reg(&term_mask(3))],
            word: [0, 1, 2, 3].map(|w| reg(&word_mask(w))),
            out: [0, 1, 2, 3].map(|w| reg(&out_mask(w))),
        }
    }

    /// A block's four words in the B1 domain.
    #[inline]
    #[target_feature(enable = "aes,ssse3,sse4.1,avx")]
    fn words(&self, block: &[u8; 16]) -> [__m128i; 4] {
        let d = affine(reg(block), reg(&B1_LIN_LO), reg(&B1_LIN_HI));
        self.word.map(|m| _mm_shuffle_epi8(d, m))
    }

    /// Four words in the B1 domain as a block, word j from `w[j]`.
    #[inline]
    #[target_feature(enable = "aes,ssse3,sse4.1,avx")]
    fn block(&self, w: [__m128i; 4]) -> [u8; 16] {
        let a = _mm_or_si128(
            _mm_shuffle_epi8(w[0], self.out[0]),
            _mm_shuffle_epi8(w[1], self.out[1]),
        );
        let b = _mm_or_si128(
            _mm_shuffle_epi8(w[2], self.out[2]),
            _mm_shuffle_epi8(w[3], self.out[3]),
        );
        let mut out = [0u8; 16];
        put(
            affine(_mm_or_si128(a, b), reg(&B1_LIN_INV_LO), reg(&B1_LIN_INV_HI)),
            &mut out,
        );
        out
    }

    /// The 32 rounds: from (X0, X1, X2, X3) to the output words
    /// (X35, X34, X33, X32), all in the B1 domain.
    #[inline]
    #[target_feature(enable = "aes,ssse3,sse4.1,avx")]
    fn rounds(&self, keys: &DomainKeys, x: [__m128i; 4]) -> [__m128i; 4] {
        let k = |i: usize| _mm_set_epi64x(keys.0[i][1] as i64, keys.0[i][0] as i64);
        let zero = _mm_setzero_si128();
        let m = _mm_set1_epi8(0x0f);
        let mut s = x;
        let mut input = xor(xor(s[1], s[2]), xor(s[3], k(0)));
        for i in 0..32 {
            let y = _mm_aesenclast_si128(input, zero);
            let l = _mm_and_si128(y, m);
            let h = _mm_srli_epi16::<4>(y);
            let look = |t: &[__m128i; 2]| xor(_mm_shuffle_epi8(t[0], l), _mm_shuffle_epi8(t[1], h));
            // Bytes 2 and 3 of L(v << 24) are one map (G) and byte 1 is
            // F0 ^ G, so four lookups serve all four terms: F_1 is the
            // lane-local F0 ^ G, F_0 is F0 permuted, F_2 and F_3 are G
            // permuted twice. (The PSHUFB ports, not the XORs, bound a
            // round.)
            let f0 = look(&self.f0);
            let g = look(&self.g);
            let r0 = _mm_shuffle_epi8(f0, self.term[0]);
            let r2 = _mm_shuffle_epi8(g, self.term[1]);
            let r3 = _mm_shuffle_epi8(g, self.term[2]);
            let r23 = fence(xor(r2, r3));
            // The next round's input is s2 ^ s3 ^ (s0 ^ T) ^ k: the part
            // known before this round's lookups joins the earliest terms.
            if i < 31 {
                let pre = fence(xor(xor(s[0], s[2]), xor(s[3], k(i + 1))));
                let early = fence(xor(fence(xor(pre, f0)), g));
                input = xor(fence(xor(early, r0)), r23);
            }
            let t = xor(xor(f0, g), xor(r0, r23));
            s = [s[1], s[2], s[3], xor(s[0], t)];
        }
        [s[3], s[2], s[1], s[0]]
    }
}

/// One block through the 32 rounds with B1-domain round keys.
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn crypt_block(keys: &DomainKeys, block: &mut [u8; 16]) {
    let one = One::new();
    let x = one.words(block);
    *block = one.block(one.rounds(keys, x));
}

/// CBC encryption: the chain stays in the B1 domain from one block to the
/// next, so converting a ciphertext out of it is off the critical path.
#[target_feature(enable = "aes,ssse3,sse4.1,avx")]
fn cbc_encrypt(keys: &DomainKeys, iv: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
    let one = One::new();
    let mut chain = one.words(iv);
    for block in blocks.iter_mut() {
        let p = one.words(block);
        let x = [0, 1, 2, 3].map(|j| xor(p[j], chain[j]));
        chain = one.rounds(keys, x);
        *block = one.block(chain);
    }
    if let Some(last) = blocks.last() {
        *iv = *last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft;

    /// The 128-bit many-block kernel is what CPUs without VAES run; on a
    /// CPU with VAES it would otherwise never be tested past 15 blocks.
    #[test]
    fn narrow_and_wide_kernels_match_the_portable_cipher() {
        let Some(ni) = Ni::detect() else {
            eprintln!("no AES-NI/AVX here: nothing to compare");
            return;
        };
        let narrow = Ni { wide: false };
        let rk = soft::round_keys(&[0x3c; 16], soft::tau);
        for n in [0usize, 1, 4, 8, 15, 16, 17, 31, 32, 33, 48, 100] {
            let blocks: Vec<[u8; 16]> = (0..n)
                .map(|i| core::array::from_fn(|j| (i * 16 + j) as u8 ^ 0x5a))
                .collect();
            let mut expect = blocks.clone();
            for b in &mut expect {
                soft::crypt_block(&rk, b);
            }
            for (name, k) in [("narrow", narrow), ("detected", ni)] {
                let mut got = blocks.clone();
                k.crypt_blocks(&rk, &mut got);
                assert_eq!(got, expect, "{name}, {n} blocks");
            }
        }
    }
}
