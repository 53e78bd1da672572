//! The kernels against the standard's examples, against the portable path,
//! and against an independent implementation (RustCrypto `sm4`), bit for
//! bit, over every block count a mode can hand them.

use cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use p11kms_sm4::Sm4;

fn hex(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

/// A deterministic byte stream (xorshift64*), so failures reproduce.
struct Stream(u64);

impl Stream {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        out
    }
}

fn both(key: &[u8; 16]) -> [Sm4; 2] {
    [Sm4::new(key), Sm4::portable(key)]
}

#[test]
fn reports_its_implementation() {
    let s = Sm4::new(&[0; 16]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("avx") {
        assert!(
            s.implementation().starts_with("aes-ni"),
            "{}",
            s.implementation()
        );
    }
    assert_eq!(Sm4::portable(&[0; 16]).implementation(), "portable");
    eprintln!("SM4 implementation on this CPU: {}", s.implementation());
}

/// GB/T 32907-2016 Appendix A, example 1.
#[test]
fn standard_example_1() {
    let key = hex("0123456789abcdeffedcba9876543210");
    let ct = hex("681edf34d206965e86b3e94f536e4246");
    for s in both(&key) {
        let mut b = key;
        s.encrypt_block(&mut b);
        assert_eq!(b, ct, "{}", s.implementation());
        s.decrypt_block(&mut b);
        assert_eq!(b, key, "{}", s.implementation());
        let mut blocks = [key; 5];
        s.encrypt_blocks(&mut blocks);
        assert_eq!(blocks, [ct; 5], "{}", s.implementation());
        s.decrypt_blocks(&mut blocks);
        assert_eq!(blocks, [key; 5], "{}", s.implementation());
    }
}

/// GB/T 32907-2016 Appendix A, example 2: one million encryptions.
#[test]
fn standard_example_2() {
    let key = hex("0123456789abcdeffedcba9876543210");
    for s in both(&key) {
        let mut b = key;
        for _ in 0..1_000_000 {
            s.encrypt_block(&mut b);
        }
        assert_eq!(
            b,
            hex("595298c7c6fd271f0402f804c33d3f66"),
            "{}",
            s.implementation()
        );
        for _ in 0..1_000_000 {
            s.decrypt_block(&mut b);
        }
        assert_eq!(b, key, "{}", s.implementation());
    }
}

#[test]
fn single_blocks_match_rustcrypto() {
    let mut rng = Stream(0x5eed_0001);
    for _ in 0..2000 {
        let key: [u8; 16] = rng.bytes();
        let block: [u8; 16] = rng.bytes();
        let reference = sm4::Sm4::new(&Array::from(key));
        let mut expect = Array::from(block);
        reference.encrypt_block(&mut expect);
        for s in both(&key) {
            let mut b = block;
            s.encrypt_block(&mut b);
            assert_eq!(b, <[u8; 16]>::from(expect), "{}", s.implementation());
            s.decrypt_block(&mut b);
            assert_eq!(b, block, "{}", s.implementation());
            // The decryption kernel on its own, from the reference's output.
            let mut c: [u8; 16] = expect.into();
            s.decrypt_block(&mut c);
            assert_eq!(c, block, "{}", s.implementation());
        }
    }
}

#[test]
fn every_block_count_matches_rustcrypto() {
    let mut rng = Stream(0x5eed_0002);
    for n in 0..=67 {
        let key: [u8; 16] = rng.bytes();
        let blocks: Vec<[u8; 16]> = (0..n).map(|_| rng.bytes()).collect();
        let reference = sm4::Sm4::new(&Array::from(key));
        let expect: Vec<[u8; 16]> = blocks
            .iter()
            .map(|b| {
                let mut a = Array::from(*b);
                reference.encrypt_block(&mut a);
                a.into()
            })
            .collect();
        for s in both(&key) {
            let mut got = blocks.clone();
            s.encrypt_blocks(&mut got);
            assert_eq!(got, expect, "{} blocks, {}", n, s.implementation());
            s.decrypt_blocks(&mut got);
            assert_eq!(got, blocks, "{} blocks, {}", n, s.implementation());
        }
    }
}

/// Through the RustCrypto traits the modes use: `encrypt_blocks` hands the
/// backend eight blocks at a time and then a tail.
#[test]
fn cipher_traits_match_rustcrypto() {
    let mut rng = Stream(0x5eed_0003);
    for n in [1usize, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 257] {
        let key: [u8; 16] = rng.bytes();
        let data: Vec<Array<u8, cipher::consts::U16>> =
            (0..n).map(|_| Array::from(rng.bytes::<16>())).collect();
        let mine = <Sm4 as KeyInit>::new(&Array::from(key));
        let reference = sm4::Sm4::new(&Array::from(key));
        let mut a = data.clone();
        let mut b = data.clone();
        BlockCipherEncrypt::encrypt_blocks(&mine, &mut a);
        reference.encrypt_blocks(&mut b);
        assert_eq!(a, b, "{n} blocks");
        BlockCipherDecrypt::decrypt_blocks(&mine, &mut a);
        assert_eq!(a, data, "{n} blocks");
        let mut one = data[0];
        BlockCipherEncrypt::encrypt_block(&mine, &mut one);
        assert_eq!(one, b[0]);
    }
}

#[test]
fn cbc_encryption_matches_block_by_block() {
    let mut rng = Stream(0x5eed_0004);
    for n in [0usize, 1, 2, 5, 16, 33] {
        let key: [u8; 16] = rng.bytes();
        let iv: [u8; 16] = rng.bytes();
        let blocks: Vec<[u8; 16]> = (0..n).map(|_| rng.bytes()).collect();
        let reference = sm4::Sm4::new(&Array::from(key));
        let mut chain = iv;
        let expect: Vec<[u8; 16]> = blocks
            .iter()
            .map(|b| {
                let mut a = Array::from(*b);
                for (x, y) in a.iter_mut().zip(chain) {
                    *x ^= y;
                }
                reference.encrypt_block(&mut a);
                chain = a.into();
                chain
            })
            .collect();
        for s in both(&key) {
            let mut got = blocks.clone();
            let mut v = iv;
            // In two pieces: the returned IV carries the chain.
            let (a, b) = got.split_at_mut(n / 2);
            s.encrypt_cbc(&mut v, a);
            s.encrypt_cbc(&mut v, b);
            assert_eq!(got, expect, "{n} blocks, {}", s.implementation());
            assert_eq!(v, *expect.last().unwrap_or(&iv), "{}", s.implementation());
        }
    }
}
