//! Input a multi-part operation must keep until its final call (GCM needs
//! the whole message before it can release plaintext; key wrap used as a
//! cipher works on the whole key). Bounded per operation
//! (`limits.max_multipart_bytes`: `CKR_DATA_LEN_RANGE` for encryption,
//! `CKR_ENCRYPTED_DATA_LEN_RANGE` for decryption) and across the daemon
//! (`limits.max_multipart_bytes_total`: `CKR_DEVICE_MEMORY`), so that many
//! sessions each buffering a little cannot add up to all memory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use pkcs11_sys as ck;
use zeroize::Zeroizing;

use crate::config::Limits;
use crate::error::{Error, Result};

static PER_OP: AtomicUsize = AtomicUsize::new(usize::MAX);
static TOTAL_MAX: AtomicU64 = AtomicU64::new(u64::MAX);
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Apply the configured bounds (once, at start; unbounded until then).
pub fn set_limits(l: &Limits) {
    PER_OP.store(l.max_multipart_bytes, Ordering::Relaxed);
    TOTAL_MAX.store(l.max_multipart_bytes_total, Ordering::Relaxed);
}

/// Bytes buffered by all multi-part operations now.
pub fn buffered_total() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}

/// A multi-part operation's buffered input, counted while it lives.
#[derive(Default)]
pub struct Multipart {
    data: Zeroizing<Vec<u8>>,
    /// Bytes of `data` counted in the daemon-wide total.
    counted: u64,
}

impl std::ops::Deref for Multipart {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Multipart {
    /// Append one update's input, within the bounds.
    pub fn append(&mut self, more: &[u8], encrypt: bool) -> Result<()> {
        self.append_within(more, encrypt, PER_OP.load(Ordering::Relaxed))
    }

    fn append_within(&mut self, more: &[u8], encrypt: bool, per_op: usize) -> Result<()> {
        if self.data.len().saturating_add(more.len()) > per_op {
            return Err(Error::new(
                if encrypt {
                    ck::CKR_DATA_LEN_RANGE
                } else {
                    ck::CKR_ENCRYPTED_DATA_LEN_RANGE
                },
                format!("multi-part input beyond {per_op} bytes (limits.max_multipart_bytes)"),
            ));
        }
        let n = more.len() as u64;
        let total = TOTAL.fetch_add(n, Ordering::SeqCst).saturating_add(n);
        if total > TOTAL_MAX.load(Ordering::Relaxed) {
            TOTAL.fetch_sub(n, Ordering::SeqCst);
            return Err(Error::new(
                ck::CKR_DEVICE_MEMORY,
                "multi-part input of all sessions at limits.max_multipart_bytes_total",
            ));
        }
        self.counted += n;
        self.data.extend_from_slice(more);
        Ok(())
    }

    /// Replace the content with a single call's input (not counted: it
    /// lives for that call only, already bounded by the frame size).
    pub fn set(&mut self, data: &[u8]) {
        self.release();
        self.data.clear();
        self.data.extend_from_slice(data);
    }

    /// Take everything buffered, leaving the buffer empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.release();
        std::mem::take(&mut *self.data)
    }

    fn release(&mut self) {
        TOTAL.fetch_sub(std::mem::take(&mut self.counted), Ordering::SeqCst);
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_while_buffered_and_releases() {
        let mut m = Multipart::default();
        m.append(b"abc", true).expect("append");
        m.append(b"de", true).expect("append");
        assert_eq!(&*m, b"abcde");
        assert_eq!(m.counted, 5);
        assert_eq!(m.take(), b"abcde".to_vec());
        assert_eq!(m.counted, 0);
        m.set(b"xy");
        assert_eq!(m.counted, 0, "single calls are not counted");
    }

    #[test]
    fn per_operation_bound_has_the_direction_s_code() {
        let mut m = Multipart::default();
        m.append_within(&[0; 10], true, 16).expect("within");
        let e = m.append_within(&[0; 7], true, 16).expect_err("beyond");
        assert_eq!(e.rv, ck::CKR_DATA_LEN_RANGE);
        let e = m.append_within(&[0; 7], false, 16).expect_err("beyond");
        assert_eq!(e.rv, ck::CKR_ENCRYPTED_DATA_LEN_RANGE);
        assert_eq!(m.len(), 10, "a refused update adds nothing");
        m.append_within(&[0; 6], false, 16)
            .expect("up to the bound");
    }
}
