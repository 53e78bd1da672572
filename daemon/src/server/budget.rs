//! A daemon-wide budget for large requests in flight
//! (`limits.max_request_bytes_in_flight`).
//!
//! A request that really carries its bytes is served, however large (up to
//! one frame). Without a budget, many connections sending 64 MiB requests at
//! once would make the daemon hold all of them (each several times over:
//! frame, decoded request, answer). A request above [`LARGE`] therefore
//! reserves its whole announced length before its body is read, all or
//! nothing — so a reservation always completes and reservations cannot
//! deadlock each other — and gives it back once its answer is written. A
//! request that finds no room waits (its sender is held back by the socket)
//! until room frees up or its request timeout passes. One uid may hold at
//! most half the budget while others want some, except that every uid may
//! always have one large request in flight when there is room for it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

/// Requests up to this size need no reservation.
pub const LARGE: usize = 1024 * 1024;

#[derive(Default)]
struct State {
    total: u64,
    per_uid: HashMap<u32, u64>,
}

/// The budget, shared by all connections.
#[derive(Default)]
pub struct Budget {
    state: Mutex<State>,
    freed: Condvar,
}

/// A reservation, given back on drop.
pub struct Grant {
    budget: Arc<Budget>,
    uid: u32,
    bytes: u64,
}

impl Budget {
    /// Reserve `bytes` for `uid` within `max`, waiting until `deadline` at
    /// most. `None`: no room in time.
    pub fn acquire(
        self: &Arc<Self>,
        uid: u32,
        bytes: u64,
        max: u64,
        deadline: Instant,
    ) -> Option<Grant> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let mine = st.per_uid.get(&uid).copied().unwrap_or(0);
            let fits = st.total.saturating_add(bytes) <= max
                && (mine == 0 || mine.saturating_add(bytes) <= max / 2);
            if st.total == 0 || fits {
                st.total = st.total.saturating_add(bytes);
                *st.per_uid.entry(uid).or_default() += bytes;
                return Some(Grant {
                    budget: self.clone(),
                    uid,
                    bytes,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub fn in_flight(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut st = self
            .budget
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        st.total = st.total.saturating_sub(self.bytes);
        if let Some(m) = st.per_uid.get_mut(&self.uid) {
            *m = m.saturating_sub(self.bytes);
            if *m == 0 {
                st.per_uid.remove(&self.uid);
            }
        }
        drop(st);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn all_or_nothing_with_a_share_per_uid() {
        let b = Arc::new(Budget::default());
        let soon = || Instant::now() + Duration::from_millis(30);
        let a = b.acquire(1, 60, 100, soon()).expect("first of uid 1");
        assert!(b.acquire(1, 20, 100, soon()).is_none(), "uid 1 past half");
        let c = b.acquire(2, 40, 100, soon()).expect("uid 2 has room");
        assert!(b.acquire(3, 10, 100, soon()).is_none(), "budget full");
        assert_eq!(b.in_flight(), 100);
        drop(a);
        let d = b.acquire(3, 10, 100, soon()).expect("room again");
        drop((c, d));
        assert_eq!(b.in_flight(), 0);
        let huge = b
            .acquire(4, 500, 100, soon())
            .expect("alone, even past the budget");
        drop(huge);
    }

    #[test]
    fn a_waiter_gets_room_when_it_frees() {
        let b = Arc::new(Budget::default());
        let g = b.acquire(1, 80, 100, Instant::now()).expect("first");
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || {
            b2.acquire(2, 80, 100, Instant::now() + Duration::from_secs(30))
                .map(|g| g.bytes)
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        assert_eq!(waiter.join().expect("waiter"), Some(80));
    }
}
