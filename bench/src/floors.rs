//! The floors, measured in the same run: what a bare unix-socket round trip
//! costs, and what the crypto itself costs in-process with the same crates
//! the daemon uses. The difference to a p11kms figure is the path overhead.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::stats::Sample;

/// Runs `f` repeatedly for `dur` (at least once) and records each latency.
fn time_loop(
    dur: Duration,
    mut f: impl FnMut(u64) -> Result<(), String>,
) -> Result<Sample, String> {
    let mut lat = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    let deadline = start + dur;
    let mut i = 0u64;
    loop {
        let t0 = Instant::now();
        f(i)?;
        let t1 = Instant::now();
        lat.push((t1 - t0).as_nanos() as u64);
        i += 1;
        if t1 >= deadline {
            break;
        }
    }
    Ok(Sample {
        ops: i,
        wall: start.elapsed(),
        lat_ns: lat,
    })
}

/// 64-byte message to an echo thread over a unix socket pair and back,
/// blocking I/O on both ends (the daemon's design: one thread per connection).
pub fn socket_rtt(dur: Duration) -> Result<Sample, String> {
    let (mut a, mut b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let echo = std::thread::spawn(move || {
        let mut m = [0u8; 64];
        while b.read_exact(&mut m).is_ok() {
            if b.write_all(&m).is_err() {
                break;
            }
        }
    });
    let mut msg = [0x42u8; 64];
    let r = time_loop(dur, |_| {
        a.write_all(&msg).map_err(|e| format!("echo write: {e}"))?;
        a.read_exact(&mut msg)
            .map_err(|e| format!("echo read: {e}"))
    });
    drop(a);
    let _ = echo.join();
    r
}

/// AES-256-GCM over `n` bytes in-process (aes-gcm 0.11, key schedule once).
pub fn gcm_inproc(dur: Duration, n: usize) -> Result<Sample, String> {
    let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).map_err(|e| format!("aes-gcm key: {e}"))?;
    let mut buf = vec![0x5au8; n];
    time_loop(dur, |i| {
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&i.to_le_bytes());
        let nonce = Nonce::from(iv);
        cipher
            .encrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into())
            .map(|_| ())
            .map_err(|e| format!("aes-gcm: {e}"))
    })
}

/// SHA-256 over `n` bytes in-process (sha2 0.11).
pub fn sha256_inproc(dur: Duration, n: usize) -> Result<Sample, String> {
    let buf = vec![0x5au8; n];
    let mut sink = 0u8;
    let r = time_loop(dur, |_| {
        let d = Sha256::digest(&buf);
        sink ^= d[0];
        Ok(())
    });
    std::hint::black_box(sink);
    r
}
