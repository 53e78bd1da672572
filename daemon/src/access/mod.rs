//! Application contexts: PKCS#11 login state and sessions belong to an
//! application (one `C_Initialize` in one process), not to a connection.
//! Connections that present the same application id from the same peer uid
//! and pid share one [`App`]; it dies — sessions closed, session objects
//! destroyed, users logged out — when its last connection closes, unless
//! the daemon closed that connection for idleness while the process lives
//! on (see `Daemon::detach_idle`).
//!
//! [`rules`] decides who may connect and administer; [`backoff`] slows
//! down wrong admin PINs; the application's own bounds (sessions, session
//! objects and their bytes) are enforced here.

pub mod backoff;
pub mod rules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::session::Session;
use p11kms_protocol::Attribute;
use pkcs11_sys as ck;

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::token::object::{Attrs, Object};
use crate::token::Objects;
use crate::token::{Token, User};

/// Who is on the other end of a connection (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Identity of an application context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppKey {
    pub app_id: [u8; 16],
    pub uid: u32,
    pub pid: u32,
}

/// An application's session objects on one slot.
struct SessionObjects {
    index: Objects,
    /// handle → owning session.
    owner: HashMap<u64, u64>,
    /// The slot's token, which counts session objects instance-wide.
    token: Arc<Token>,
}

impl SessionObjects {
    /// Forget one object, instance counters included.
    fn remove(&mut self, handle: u64) -> bool {
        self.owner.remove(&handle);
        match self.index.remove(handle) {
            Some(o) => {
                self.token.release_session_object(1, o.attrs().size());
                true
            }
            None => false,
        }
    }
}

impl Drop for SessionObjects {
    fn drop(&mut self) {
        self.token
            .release_session_object(self.index.len() as u64, self.index.bytes());
    }
}

/// One PKCS#11 application.
pub struct App {
    pub key: AppKey,
    pub peer: Peer,
    /// The peer may administer (`access::rules::may_administer`), decided
    /// once when the application is created.
    pub admin: bool,
    /// Start time of the peer process (`rules::process_start`), if known:
    /// tells whether a parked application's process still lives.
    pub started: Option<u64>,
    limits: Limits,
    pub connections: AtomicUsize,
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
    login: Mutex<HashMap<u64, User>>,
    /// Session objects per slot, indexed like token objects.
    objects: RwLock<HashMap<u64, SessionObjects>>,
}

impl App {
    pub fn new(key: AppKey, peer: Peer, admin: bool, limits: Limits) -> Self {
        App {
            key,
            peer,
            admin,
            started: rules::process_start(peer.pid),
            limits,
            connections: AtomicUsize::new(0),
            sessions: Mutex::new(HashMap::new()),
            login: Mutex::new(HashMap::new()),
            objects: RwLock::new(HashMap::new()),
        }
    }

    fn sessions_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Mutex<Session>>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn session(&self, handle: u64) -> Option<Arc<Mutex<Session>>> {
        self.sessions_map().get(&handle).cloned()
    }

    /// Add a session, unless the application already has
    /// `max_sessions_per_app` (`CKR_SESSION_COUNT`).
    pub fn add_session(&self, s: Session) -> Result<Arc<Mutex<Session>>> {
        let h = s.handle;
        let s = Arc::new(Mutex::new(s));
        let mut map = self.sessions_map();
        if map.len() >= self.limits.max_sessions_per_app {
            return Err(Error::new(
                ck::CKR_SESSION_COUNT,
                format!(
                    "the application has {} sessions (limits.max_sessions_per_app)",
                    map.len()
                ),
            ));
        }
        map.insert(h, s.clone());
        Ok(s)
    }

    /// Whether the application has any session (and so state worth keeping).
    pub fn has_sessions(&self) -> bool {
        !self.sessions_map().is_empty()
    }

    pub fn remove_session(&self, handle: u64) -> Option<Arc<Mutex<Session>>> {
        self.sessions_map().remove(&handle)
    }

    /// Handles of this application's sessions on `slot` (all slots if None),
    /// with their read-only flag.
    pub fn sessions_on(&self, slot: Option<u64>) -> Vec<(u64, bool)> {
        let map = self.sessions_map();
        map.values()
            .filter_map(|s| {
                let s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                (slot.is_none() || Some(s.slot) == slot).then_some((s.handle, s.rw))
            })
            .collect()
    }

    pub fn login_state(&self, slot: u64) -> Option<User> {
        self.login
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&slot)
            .copied()
    }

    pub fn set_login(&self, slot: u64, user: Option<User>) {
        let mut l = self
            .login
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match user {
            Some(u) => l.insert(slot, u),
            None => l.remove(&slot),
        };
    }

    fn objects_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, SessionObjects>> {
        self.objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn objects_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, SessionObjects>> {
        self.objects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session object of this application on `slot`.
    pub fn session_object(&self, handle: u64, slot: u64) -> Option<Arc<Object>> {
        self.objects_read()
            .get(&slot)
            .and_then(|so| so.index.get(handle).cloned())
    }

    /// Add a session object made by session `owner`, within the
    /// application's and the instance's bounds (`CKR_DEVICE_MEMORY`).
    pub fn add_session_object(&self, owner: u64, token: &Arc<Token>, o: Arc<Object>) -> Result<()> {
        let size = o.attrs().size();
        let mut objs = self.objects_write();
        let (count, bytes) = objs.values().fold((0usize, 0u64), |(c, b), so| {
            (c + so.index.len(), b.saturating_add(so.index.bytes()))
        });
        if count >= self.limits.max_session_objects_per_app
            || bytes.saturating_add(size) > self.limits.max_session_object_bytes_per_app
        {
            return Err(Error::new(
                ck::CKR_DEVICE_MEMORY,
                format!(
                    "the application holds {count} session objects of {bytes} bytes \
                     (limits.max_session_objects_per_app / max_session_object_bytes_per_app)"
                ),
            ));
        }
        token.reserve_session_object(1, size, &self.limits)?;
        let so = objs.entry(token.slot).or_insert_with(|| SessionObjects {
            index: Objects::default(),
            owner: HashMap::new(),
            token: token.clone(),
        });
        so.owner.insert(o.id, owner);
        so.index.insert(o);
        Ok(())
    }

    pub fn remove_session_object(&self, handle: u64, slot: u64) -> bool {
        let mut objs = self.objects_write();
        objs.get_mut(&slot).is_some_and(|so| so.remove(handle))
    }

    /// Replace a session object's attributes (indexes kept right), within
    /// the same bounds as [`App::add_session_object`] when it grows.
    pub fn update_session_object(&self, slot: u64, o: &Arc<Object>, attrs: Attrs) -> Result<()> {
        let mut objs = self.objects_write();
        let (old, new) = (o.attrs().size(), attrs.size());
        if new > old {
            let bytes: u64 = objs.values().map(|so| so.index.bytes()).sum();
            if bytes.saturating_add(new - old) > self.limits.max_session_object_bytes_per_app {
                return Err(Error::new(
                    ck::CKR_DEVICE_MEMORY,
                    "the application's session objects would exceed \
                     limits.max_session_object_bytes_per_app",
                ));
            }
        }
        match objs.get_mut(&slot) {
            Some(so) => {
                if new > old {
                    so.token
                        .reserve_session_object(0, new - old, &self.limits)?;
                } else {
                    so.token.release_session_object(0, old - new);
                }
                so.index.update(o, attrs);
            }
            None => o.replace(attrs),
        }
        Ok(())
    }

    /// Session objects on `slot` matching a find template.
    pub fn find_session_objects(&self, slot: u64, template: &[Attribute], user: bool) -> Vec<u64> {
        self.objects_read()
            .get(&slot)
            .map(|so| so.index.find(template, user))
            .unwrap_or_default()
    }

    /// Destroy the session objects created by `session`.
    pub fn drop_objects_of(&self, session: u64) {
        let mut objs = self.objects_write();
        for so in objs.values_mut() {
            let gone: Vec<u64> = so
                .owner
                .iter()
                .filter(|(_, s)| **s == session)
                .map(|(h, _)| *h)
                .collect();
            for h in gone {
                so.remove(h);
            }
        }
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    /// Returns true when this was the last connection.
    pub fn connection_closed(&self) -> bool {
        self.connections.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

#[cfg(test)]
mod tests;
