//! Connection caps: how many connections are in their handshake and how
//! many are served (each by its own thread), in total and per uid
//! (`limits.max_handshakes[_per_uid]`, `limits.max_connections[_per_uid]`).
//! A [`Permit`] holds one place and gives it back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Limits;

#[derive(Default)]
struct Inner {
    handshaking: usize,
    serving: usize,
    /// uid → (handshaking, serving)
    per_uid: HashMap<u32, (usize, usize)>,
}

/// Places in use.
#[derive(Default)]
pub struct Counts {
    inner: Mutex<Inner>,
}

/// Which cap refused a connection (for the log line and the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Handshakes,
    HandshakesOfUid,
    Connections,
    ConnectionsOfUid,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Full::Handshakes => "limits.max_handshakes",
            Full::HandshakesOfUid => "limits.max_handshakes_per_uid",
            Full::Connections => "limits.max_connections",
            Full::ConnectionsOfUid => "limits.max_connections_per_uid",
        })
    }
}

/// One place (handshaking, then serving), released on drop.
pub struct Permit {
    counts: Arc<Counts>,
    uid: u32,
    serving: bool,
}

impl Counts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a connection of `uid` in its handshake.
    pub fn handshake(self: &Arc<Self>, uid: u32, l: &Limits) -> Result<Permit, Full> {
        let mut g = self.lock();
        let per = g.per_uid.get(&uid).map_or(0, |p| p.0);
        if g.handshaking >= l.max_handshakes {
            return Err(Full::Handshakes);
        }
        if per >= l.max_handshakes_per_uid {
            return Err(Full::HandshakesOfUid);
        }
        g.handshaking += 1;
        g.per_uid.entry(uid).or_default().0 += 1;
        Ok(Permit {
            counts: self.clone(),
            uid,
            serving: false,
        })
    }

    /// (handshaking, serving) now, in total.
    pub fn totals(&self) -> (usize, usize) {
        let g = self.lock();
        (g.handshaking, g.serving)
    }
}

impl Permit {
    /// Turn a handshake place into a serving one (a thread), if the caps
    /// allow; the handshake place is given back either way on drop.
    pub fn promote(&mut self, l: &Limits) -> Result<(), Full> {
        if self.serving {
            return Ok(());
        }
        let mut g = self.counts.lock();
        let per = g.per_uid.get(&self.uid).map_or(0, |p| p.1);
        if g.serving >= l.max_connections {
            return Err(Full::Connections);
        }
        if per >= l.max_connections_per_uid {
            return Err(Full::ConnectionsOfUid);
        }
        g.handshaking -= 1;
        g.serving += 1;
        let e = g.per_uid.entry(self.uid).or_default();
        e.0 -= 1;
        e.1 += 1;
        self.serving = true;
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = self.counts.lock();
        let serving = self.serving;
        if serving {
            g.serving = g.serving.saturating_sub(1);
        } else {
            g.handshaking = g.handshaking.saturating_sub(1);
        }
        if let Some(e) = g.per_uid.get_mut(&self.uid) {
            if serving {
                e.1 = e.1.saturating_sub(1);
            } else {
                e.0 = e.0.saturating_sub(1);
            }
            if *e == (0, 0) {
                g.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_uid_and_in_total() {
        let l = Limits {
            max_handshakes: 3,
            max_handshakes_per_uid: 2,
            max_connections: 2,
            max_connections_per_uid: 1,
            ..Limits::default()
        };
        let c = Arc::new(Counts::default());
        let mut a = c.handshake(1, &l).expect("a");
        let mut b = c.handshake(1, &l).expect("b");
        assert_eq!(c.handshake(1, &l).err(), Some(Full::HandshakesOfUid));
        let mut d = c.handshake(2, &l).expect("d");
        assert_eq!(c.handshake(3, &l).err(), Some(Full::Handshakes));
        a.promote(&l).expect("serve a");
        assert_eq!(b.promote(&l).err(), Some(Full::ConnectionsOfUid));
        d.promote(&l).expect("serve d");
        assert_eq!(c.totals(), (1, 2));
        let mut e = c
            .handshake(3, &l)
            .expect("handshake places freed by promotion");
        assert_eq!(e.promote(&l).err(), Some(Full::Connections));
        drop((a, b, d, e));
        assert_eq!(c.totals(), (0, 0));
        assert!(c.lock().per_uid.is_empty());
    }
}
