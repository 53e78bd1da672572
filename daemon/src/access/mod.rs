//! Application contexts: PKCS#11 login state and sessions belong to an
//! application (one `C_Initialize` in one process), not to a connection.
//! Connections that present the same application id from the same peer uid
//! and pid share one [`App`]; it dies — sessions closed, session objects
//! destroyed, users logged out — when its last connection closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::session::Session;
use p11kms_protocol::Attribute;

use crate::token::object::{Attrs, Object};
use crate::token::Objects;
use crate::token::User;

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
#[derive(Default)]
struct SessionObjects {
    index: Objects,
    /// handle → owning session.
    owner: HashMap<u64, u64>,
}

/// One PKCS#11 application.
pub struct App {
    pub key: AppKey,
    pub peer: Peer,
    pub connections: AtomicUsize,
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
    login: Mutex<HashMap<u64, User>>,
    /// Session objects per slot, indexed like token objects.
    objects: RwLock<HashMap<u64, SessionObjects>>,
}

impl App {
    pub fn new(key: AppKey, peer: Peer) -> Self {
        App {
            key,
            peer,
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

    pub fn add_session(&self, s: Session) -> Arc<Mutex<Session>> {
        let h = s.handle;
        let s = Arc::new(Mutex::new(s));
        self.sessions_map().insert(h, s.clone());
        s
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

    pub fn add_session_object(&self, owner: u64, slot: u64, o: Arc<Object>) {
        let mut objs = self.objects_write();
        let so = objs.entry(slot).or_default();
        so.owner.insert(o.id, owner);
        so.index.insert(o);
    }

    pub fn remove_session_object(&self, handle: u64, slot: u64) -> bool {
        let mut objs = self.objects_write();
        let Some(so) = objs.get_mut(&slot) else {
            return false;
        };
        so.owner.remove(&handle);
        so.index.remove(handle).is_some()
    }

    /// Replace a session object's attributes (indexes kept right).
    pub fn update_session_object(&self, slot: u64, o: &Arc<Object>, attrs: Attrs) {
        let mut objs = self.objects_write();
        match objs.get_mut(&slot) {
            Some(so) => so.index.update(o, attrs),
            None => o.replace(attrs),
        }
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
                so.owner.remove(&h);
                so.index.remove(h);
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
