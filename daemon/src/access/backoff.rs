//! Wrong admin SO PINs slow their uid down instead of locking the token.
//!
//! The admin path (`p11kms key ...`) is reachable by any uid allowed to
//! administer, without a PKCS#11 session. Counting its failures toward the
//! token's SO PIN lockout would let such a caller lock the token for good
//! (issue 10, finding 3); not counting them at all would allow unbounded
//! guessing. So each uid gets its own delay: after `n` wrong PINs in a row
//! its next attempt waits `base · 2^(n-1)` (capped), attempts of one uid are
//! served one at a time, and a right PIN clears the count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Consecutive failures of one uid and when it may try again.
#[derive(Default)]
struct UidState {
    failures: u32,
    next_try: Option<Instant>,
}

/// Per-uid back-off for admin PIN checks.
#[derive(Default)]
pub struct Backoff {
    uids: Mutex<HashMap<u32, Arc<Mutex<UidState>>>>,
}

impl Backoff {
    /// Run `check` (true = right PIN) for `uid` after that uid's current
    /// delay, one attempt of the uid at a time. Returns `check`'s result.
    pub fn attempt(
        &self,
        uid: u32,
        base: Duration,
        max: Duration,
        check: impl FnOnce() -> bool,
    ) -> bool {
        let state = self
            .uids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(uid)
            .or_default()
            .clone();
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = st.next_try {
            let wait = at.saturating_duration_since(Instant::now()).min(max);
            if !wait.is_zero() {
                tracing::info!(
                    uid,
                    failures = st.failures,
                    "admin PIN back-off: waiting {wait:?}"
                );
                std::thread::sleep(wait);
            }
        }
        let ok = check();
        if ok {
            *st = UidState::default();
        } else {
            st.failures = st.failures.saturating_add(1);
            st.next_try = Some(Instant::now() + delay(st.failures, base, max));
        }
        ok
    }

    /// Consecutive failures recorded for `uid` (for tests and logs).
    pub fn failures(&self, uid: u32) -> u32 {
        let map = self.uids.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&uid).map_or(0, |s| {
            s.lock().unwrap_or_else(PoisonError::into_inner).failures
        })
    }
}

/// Delay after `failures` wrong PINs in a row: `base · 2^(failures-1)`, at
/// most `max`.
pub fn delay(failures: u32, base: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let b = Duration::from_millis(100);
        let m = Duration::from_secs(1);
        assert_eq!(delay(0, b, m), Duration::ZERO);
        assert_eq!(delay(1, b, m), Duration::from_millis(100));
        assert_eq!(delay(2, b, m), Duration::from_millis(200));
        assert_eq!(delay(4, b, m), Duration::from_millis(800));
        assert_eq!(delay(5, b, m), m);
        assert_eq!(delay(100, b, m), m);
    }

    #[test]
    fn failures_wait_and_success_clears() {
        let b = Backoff::default();
        let base = Duration::from_millis(40);
        let max = Duration::from_secs(1);
        assert!(!b.attempt(7, base, max, || false));
        assert!(!b.attempt(7, base, max, || false));
        assert_eq!(b.failures(7), 2);
        assert_eq!(b.failures(8), 0, "per uid");
        let t = Instant::now();
        assert!(b.attempt(7, base, max, || true));
        assert!(
            t.elapsed() >= Duration::from_millis(70),
            "waited {:?}",
            t.elapsed()
        );
        assert_eq!(b.failures(7), 0, "a right PIN clears the count");
    }
}
