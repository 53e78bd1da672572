//! How much a token may hold: token objects (stored, and kept in memory)
//! and, instance-wide, the session objects of every application on it.
//! Beyond a bound the call fails with `CKR_DEVICE_MEMORY`, the code
//! PKCS#11 gives for "the token does not have sufficient memory".

use std::sync::atomic::{AtomicU64, Ordering};

use pkcs11_sys as ck;

use super::Token;
use crate::config::Limits;
use crate::error::{Error, Result};

/// Instance-wide usage counters and the token-object bounds.
pub struct TokenLimits {
    max_objects: AtomicU64,
    max_bytes: AtomicU64,
    session_objects: AtomicU64,
    session_bytes: AtomicU64,
}

impl Default for TokenLimits {
    /// Unbounded until the daemon applies its configuration.
    fn default() -> Self {
        TokenLimits {
            max_objects: AtomicU64::new(u64::MAX),
            max_bytes: AtomicU64::new(u64::MAX),
            session_objects: AtomicU64::new(0),
            session_bytes: AtomicU64::new(0),
        }
    }
}

impl Token {
    /// Bound the token objects (`limits.max_token_objects` / `_bytes`).
    pub fn set_limits(&self, l: &Limits) {
        self.limits
            .max_objects
            .store(l.max_token_objects as u64, Ordering::Relaxed);
        self.limits
            .max_bytes
            .store(l.max_token_object_bytes, Ordering::Relaxed);
    }

    /// Refuse a batch that would grow the token objects past the bounds.
    pub(super) fn check_room(
        &self,
        objects: u64,
        bytes: u64,
        net_objects: i64,
        net_bytes: i64,
    ) -> Result<()> {
        let max_o = self.limits.max_objects.load(Ordering::Relaxed);
        let max_b = self.limits.max_bytes.load(Ordering::Relaxed);
        let grows_past = |have: u64, net: i64, max: u64| {
            net > 0 && have.saturating_add(net.unsigned_abs()) > max
        };
        if grows_past(objects, net_objects, max_o) || grows_past(bytes, net_bytes, max_b) {
            return Err(Error::new(
                ck::CKR_DEVICE_MEMORY,
                format!(
                    "token {} holds {objects} objects of {bytes} bytes \
                     (limits.max_token_objects = {max_o}, max_token_object_bytes = {max_b})",
                    self.instance
                ),
            ));
        }
        Ok(())
    }

    /// Count `objects` more session objects of `bytes` on this instance, or
    /// refuse past `limits.max_session_objects_per_instance` / `_bytes_`.
    pub fn reserve_session_object(&self, objects: u64, bytes: u64, l: &Limits) -> Result<()> {
        let o = self
            .limits
            .session_objects
            .fetch_add(objects, Ordering::SeqCst)
            + objects;
        let b = self.limits.session_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if o > l.max_session_objects_per_instance as u64
            || b > l.max_session_object_bytes_per_instance
        {
            self.release_session_object(objects, bytes);
            return Err(Error::new(
                ck::CKR_DEVICE_MEMORY,
                format!(
                    "instance {} holds too many session objects \
                     (limits.max_session_objects_per_instance / max_session_object_bytes_per_instance)",
                    self.instance
                ),
            ));
        }
        Ok(())
    }

    /// Undo [`Token::reserve_session_object`].
    pub fn release_session_object(&self, objects: u64, bytes: u64) {
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.limits.session_objects, objects);
        sub(&self.limits.session_bytes, bytes);
    }

    /// Session objects of all applications on this instance, and their bytes.
    pub fn session_object_usage(&self) -> (u64, u64) {
        (
            self.limits.session_objects.load(Ordering::Relaxed),
            self.limits.session_bytes.load(Ordering::Relaxed),
        )
    }
}
