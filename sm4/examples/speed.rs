//! Quick in-process SM4 throughput: `cargo run --release -p p11kms-sm4 --example speed`.
//! (The benchmark that compares against OpenSSL is `p11kms-bench --sm4`.)
use std::time::Instant;

use p11kms_sm4::Sm4;

fn main() {
    let key = [7u8; 16];
    for s in [Sm4::new(&key), Sm4::portable(&key)] {
        let mut buf = vec![[0x5au8; 16]; 256]; // 4 KiB
        let t = Instant::now();
        let mut bytes = 0usize;
        while t.elapsed().as_millis() < 1000 {
            // CBC encryption: each block chained to the previous one.
            let mut iv = [0u8; 16];
            s.encrypt_cbc(&mut iv, &mut buf);
            bytes += 4096;
        }
        let cbc = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
        let t = Instant::now();
        let mut bytes = 0usize;
        while t.elapsed().as_millis() < 1000 {
            s.encrypt_blocks(&mut buf);
            bytes += 4096;
        }
        let ecb = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
        println!(
            "{:9} chained (CBC encrypt) {cbc:7.1} MB/s   independent (ECB) {ecb:7.1} MB/s",
            s.implementation()
        );
    }
}
