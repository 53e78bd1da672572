//! Application contexts: PKCS#11 login state and sessions belong to an
//! application (one `C_Initialize` in one process), not to a connection.
//! Connections that present the same application id from the same peer uid
//! and pid share one [`App`]; it dies — sessions closed, session objects
//! destroyed, users logged out — when its last connection closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::session::Session;
use crate::token::object::Object;
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

/// One PKCS#11 application.
pub struct App {
    pub key: AppKey,
    pub peer: Peer,
    pub connections: AtomicUsize,
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
    login: Mutex<HashMap<u64, User>>,
    /// Session objects: handle → (owning session, slot, object).
    objects: RwLock<HashMap<u64, (u64, u64, Arc<Object>)>>,
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
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.login.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&slot).copied()
    }

    pub fn set_login(&self, slot: u64, user: Option<User>) {
        let mut l = self.login.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match user {
            Some(u) => l.insert(slot, u),
            None => l.remove(&slot),
        };
    }

    /// A session object of this application on `slot`.
    pub fn session_object(&self, handle: u64, slot: u64) -> Option<Arc<Object>> {
        self.objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&handle)
            .filter(|(_, s, _)| *s == slot)
            .map(|(_, _, o)| o.clone())
    }

    pub fn add_session_object(&self, owner: u64, slot: u64, o: Arc<Object>) {
        self.objects.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(o.id, (owner, slot, o));
    }

    pub fn remove_session_object(&self, handle: u64) -> bool {
        self.objects.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&handle).is_some()
    }

    /// Session objects on `slot` for which `f` holds, in handle order.
    pub fn session_objects_where(&self, slot: u64, f: impl Fn(&Object) -> bool) -> Vec<Arc<Object>> {
        let objs = self.objects.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<Arc<Object>> =
            objs.values().filter(|(_, s, o)| *s == slot && f(o)).map(|(_, _, o)| o.clone()).collect();
        v.sort_by_key(|o| o.id);
        v
    }

    /// Destroy the session objects created by `session`.
    pub fn drop_objects_of(&self, session: u64) {
        self.objects.write().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, (owner, _, _)| *owner != session);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    /// Returns true when this was the last connection.
    pub fn connection_closed(&self) -> bool {
        self.connections.fetch_sub(1, Ordering::SeqCst) == 1
    }
}
