//! A token: its persistent state (label, PINs, counters), its token objects
//! with their find index, and its mechanisms. One token per instance; the
//! software backend keeps material here, encrypted at rest by the store.

pub mod attrs;
pub mod limits;
pub mod object;
pub mod pin;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use p11kms_protocol::{vendor, Attribute, TokenInfo};
use pkcs11_sys as ck;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mech::Registry;
use crate::storage::{OpenedRecord, RecordKind, SealedStore};
use object::{Attrs, Object};

/// Persistent token state (sealed as record `Token/0`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenState {
    pub initialized: bool,
    pub label: String,
    /// Argon2id PHC strings.
    pub so_pin: Option<String>,
    pub user_pin: Option<String>,
    pub so_failures: u32,
    pub user_failures: u32,
    pub serial: String,
}

impl TokenState {
    /// The token record among an instance's loaded records.
    pub fn from_records(instance: &str, records: &[OpenedRecord]) -> Result<Self> {
        let (_, _, plain) = records
            .iter()
            .find(|(k, id, _)| *k == RecordKind::Token && *id == 0)
            .ok_or_else(|| {
                Error::new(
                    ck::CKR_DEVICE_ERROR,
                    format!("instance {instance} has no token record (it never started)"),
                )
            })?;
        postcard::from_bytes(plain).map_err(|e| {
            Error::new(
                ck::CKR_DEVICE_ERROR,
                format!("token record of {instance} is unreadable: {e}"),
            )
        })
    }
}

/// `p11kms-recover reset-so-pin`: give an initialized token a new SO PIN
/// and clear its failure count (a locked SO PIN cannot be unlocked through
/// PKCS#11). Offline: the daemon must not be running; `records` are the
/// instance's records as `store.load()` returned them.
pub fn reset_so_pin(
    instance: &str,
    store: &SealedStore,
    records: &[OpenedRecord],
    new_pin: &[u8],
) -> Result<()> {
    pin::check_len(new_pin)?;
    let mut state = TokenState::from_records(instance, records)?;
    if !state.initialized || state.so_pin.is_none() {
        return Err(Error::new(
            ck::CKR_USER_PIN_NOT_INITIALIZED,
            format!(
                "the token of instance {instance} is not initialized: C_InitToken sets its SO PIN"
            ),
        ));
    }
    state.so_pin = Some(pin::hash(new_pin)?);
    state.so_failures = 0;
    let bytes =
        Zeroizing::new(postcard::to_stdvec(&state).map_err(|e| Error::general(e.to_string()))?);
    store.put(RecordKind::Token, 0, &bytes)
}

/// Objects with the indexes `C_FindObjects` uses (token objects of a
/// token, and an application's session objects on one slot).
#[derive(Default)]
pub struct Objects {
    all: HashMap<u64, Arc<Object>>,
    by_label: HashMap<Vec<u8>, Vec<u64>>,
    by_id: HashMap<Vec<u8>, Vec<u64>>,
    by_class: HashMap<u64, Vec<u64>>,
    by_key_id: HashMap<Vec<u8>, Vec<u64>>,
    /// Sum of the objects' [`Attrs::size`].
    bytes: u64,
}

fn index_add(map: &mut HashMap<Vec<u8>, Vec<u64>>, key: &[u8], id: u64) {
    map.entry(key.to_vec()).or_default().push(id);
}

fn index_remove(map: &mut HashMap<Vec<u8>, Vec<u64>>, key: &[u8], id: u64) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|x| *x != id);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

impl Objects {
    pub fn get(&self, id: u64) -> Option<&Arc<Object>> {
        self.all.get(&id)
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Approximate bytes held (sum of `C_GetObjectSize`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Objects matching `template`, using the label, key id, id or class
    /// index when the template names one. Private objects only when
    /// `user`. Sorted by handle.
    pub fn find(&self, template: &[Attribute], user: bool) -> Vec<u64> {
        let value = |ty| {
            template
                .iter()
                .find(|a| a.ty == ty)
                .map(|a| a.value.as_deref().unwrap_or_default())
        };
        let candidates: Box<dyn Iterator<Item = &u64>> = if let Some(l) = value(ck::CKA_LABEL) {
            Box::new(self.by_label.get(l).into_iter().flatten())
        } else if let Some(k) = value(vendor::CKA_P11KMS_KEY_ID) {
            Box::new(self.by_key_id.get(k).into_iter().flatten())
        } else if let Some(i) = value(ck::CKA_ID) {
            Box::new(self.by_id.get(i).into_iter().flatten())
        } else if let Some(c) = value(ck::CKA_CLASS).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
            Box::new(
                self.by_class
                    .get(&u64::from_le_bytes(c))
                    .into_iter()
                    .flatten(),
            )
        } else {
            Box::new(self.all.keys())
        };
        let mut out: Vec<u64> = candidates
            .filter_map(|id| self.all.get(id))
            .filter(|o| (user || !o.private) && o.matches(template))
            .map(|o| o.id)
            .collect();
        out.sort_unstable();
        out
    }

    /// Replace an object's attributes, keeping the indexes right.
    pub fn update(&mut self, o: &Arc<Object>, attrs: Attrs) {
        self.remove(o.id);
        o.replace(attrs);
        self.insert(o.clone());
    }

    pub fn insert(&mut self, o: Arc<Object>) {
        {
            let a = o.attrs();
            index_add(
                &mut self.by_label,
                a.get(ck::CKA_LABEL).unwrap_or_default(),
                o.id,
            );
            index_add(&mut self.by_id, a.get(ck::CKA_ID).unwrap_or_default(), o.id);
            if let Some(k) = a.get(vendor::CKA_P11KMS_KEY_ID) {
                index_add(&mut self.by_key_id, k, o.id);
            }
        }
        self.by_class.entry(o.class).or_default().push(o.id);
        self.bytes = self.bytes.saturating_add(o.attrs().size());
        if let Some(old) = self.all.insert(o.id, o) {
            self.bytes = self.bytes.saturating_sub(old.attrs().size());
        }
    }

    pub fn remove(&mut self, id: u64) -> Option<Arc<Object>> {
        let o = self.all.remove(&id)?;
        {
            let a = o.attrs();
            index_remove(
                &mut self.by_label,
                a.get(ck::CKA_LABEL).unwrap_or_default(),
                id,
            );
            index_remove(&mut self.by_id, a.get(ck::CKA_ID).unwrap_or_default(), id);
            if let Some(k) = a.get(vendor::CKA_P11KMS_KEY_ID) {
                index_remove(&mut self.by_key_id, k, id);
            }
        }
        if let Some(v) = self.by_class.get_mut(&o.class) {
            v.retain(|x| *x != id);
        }
        self.bytes = self.bytes.saturating_sub(o.attrs().size());
        Some(o)
    }
}

/// One change of a batch applied by [`Token::apply`].
pub enum ObjectChange {
    Add(Attrs),
    Update(Arc<Object>, Attrs),
    Destroy(u64),
}

enum Prepared {
    Add(u64, Attrs),
    Update(Arc<Object>, Attrs),
    Destroy(u64),
}

/// Which kind of user a PIN belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    So,
    User,
}

/// One token.
pub struct Token {
    pub instance: String,
    pub slot: u64,
    pub model: String,
    pub max_pin_failures: u32,
    /// Whether key material may come in from outside (instance setting).
    pub allow_import: bool,
    pub registry: Registry,
    state: Mutex<TokenState>,
    /// Serializes PIN checks so parallel guesses cannot outrun the counter.
    pin_lock: Mutex<()>,
    objects: RwLock<Objects>,
    store: SealedStore,
    next_id: Arc<AtomicU64>,
    /// Import-parameter records read at load, until the KMS layer takes them.
    loaded_imports: Mutex<Vec<(u64, Zeroizing<Vec<u8>>)>>,
    pub sessions: AtomicU64,
    pub rw_sessions: AtomicU64,
    /// Object bounds and instance-wide session-object usage ([`limits`]).
    limits: limits::TokenLimits,
}

impl Token {
    /// Load the token's state and objects from the store.
    #[allow(clippy::too_many_arguments)] // the instance's settings, each used once
    pub fn load(
        instance: &str,
        slot: u64,
        model: String,
        max_pin_failures: u32,
        allow_import: bool,
        registry: Registry,
        store: SealedStore,
        next_id: Arc<AtomicU64>,
    ) -> Result<Self> {
        let mut state = None;
        let mut objects = Objects::default();
        let mut imports = Vec::new();
        for (kind, id, plain) in store.load()? {
            match kind {
                RecordKind::Token => {
                    state = Some(postcard::from_bytes::<TokenState>(&plain).map_err(|e| {
                        Error::new(
                            ck::CKR_DEVICE_ERROR,
                            format!("token record of {instance} is unreadable: {e}"),
                        )
                    })?)
                }
                RecordKind::Object => {
                    objects.insert(Arc::new(Object::new(id, Attrs::from_bytes(&plain)?)))
                }
                RecordKind::Import => imports.push((id, plain)),
                // Kept by the store itself, never handed out.
                RecordKind::Manifest => {}
            }
        }
        let state = match state {
            Some(s) => s,
            None => {
                let mut serial = [0u8; 8];
                getrandom::fill(&mut serial)
                    .map_err(|e| Error::general(format!("getrandom: {e}")))?;
                let s = TokenState {
                    serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
                    ..Default::default()
                };
                store.put(
                    RecordKind::Token,
                    0,
                    &postcard::to_stdvec(&s).map_err(|e| Error::general(e.to_string()))?,
                )?;
                s
            }
        };
        Ok(Token {
            instance: instance.to_string(),
            slot,
            model,
            max_pin_failures,
            allow_import,
            registry,
            state: Mutex::new(state),
            pin_lock: Mutex::new(()),
            objects: RwLock::new(objects),
            store,
            next_id,
            loaded_imports: Mutex::new(imports),
            sessions: AtomicU64::new(0),
            rw_sessions: AtomicU64::new(0),
            limits: limits::TokenLimits::default(),
        })
    }

    /// The import-parameter records found at load, handed over once (to the
    /// KMS layer, which owns their meaning).
    pub fn take_loaded_imports(&self) -> Vec<(u64, Zeroizing<Vec<u8>>)> {
        std::mem::take(
            &mut *self
                .loaded_imports
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Persist an import-parameter record (sealed like every record).
    pub fn put_import_record(&self, id: u64, plain: &[u8]) -> Result<()> {
        self.store.put(RecordKind::Import, id, plain)
    }

    /// Delete an import-parameter record; durable when this returns.
    pub fn delete_import_record(&self, id: u64) -> Result<()> {
        self.store.apply(&[(RecordKind::Import, id, None)])
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn objs(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn objs_mut(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save_state(&self, s: &TokenState) -> Result<()> {
        let bytes =
            Zeroizing::new(postcard::to_stdvec(s).map_err(|e| Error::general(e.to_string()))?);
        self.store.put(RecordKind::Token, 0, &bytes)
    }

    pub fn initialized(&self) -> bool {
        self.state().initialized
    }

    pub fn user_pin_initialized(&self) -> bool {
        self.state().user_pin.is_some()
    }

    pub fn object_count(&self) -> usize {
        self.objs().all.len()
    }

    /// `C_GetTokenInfo`.
    pub fn info(&self) -> TokenInfo {
        let s = self.state();
        let mut flags = ck::CKF_RNG | ck::CKF_LOGIN_REQUIRED;
        if s.initialized {
            flags |= ck::CKF_TOKEN_INITIALIZED;
        }
        if s.user_pin.is_some() {
            flags |= ck::CKF_USER_PIN_INITIALIZED;
        }
        flags |= pin_flags(s.user_failures, self.max_pin_failures, false);
        flags |= pin_flags(s.so_failures, self.max_pin_failures, true);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The token keeps no operation state a caller could save and
        // restore (C_GetOperationState is not supported), so no key is ever
        // needed to restore one; its clock is the host's, in UTC.
        flags |= ck::CKF_CLOCK_ON_TOKEN | ck::CKF_RESTORE_KEY_NOT_NEEDED;
        TokenInfo {
            label: if s.initialized {
                s.label.clone()
            } else {
                String::new()
            },
            manufacturer: "p11kms".into(),
            model: self.model.clone(),
            serial: s.serial.clone(),
            flags,
            max_session_count: ck::CK_EFFECTIVELY_INFINITE,
            session_count: self.sessions.load(Ordering::Relaxed),
            max_rw_session_count: ck::CK_EFFECTIVELY_INFINITE,
            rw_session_count: self.rw_sessions.load(Ordering::Relaxed),
            max_pin_len: pin::MAX_PIN_LEN as u64,
            min_pin_len: pin::MIN_PIN_LEN as u64,
            total_public_memory: ck::CK_UNAVAILABLE_INFORMATION,
            free_public_memory: ck::CK_UNAVAILABLE_INFORMATION,
            total_private_memory: ck::CK_UNAVAILABLE_INFORMATION,
            free_private_memory: ck::CK_UNAVAILABLE_INFORMATION,
            hardware_version: (0, 1),
            firmware_version: (0, 1),
            utc_time: utc_time(now),
        }
    }

    /// `C_InitToken`: set the SO PIN and label on a fresh token, or (with
    /// the right SO PIN) wipe every object of an initialized one.
    pub fn init(&self, so_pin: &[u8], label: &[u8]) -> Result<()> {
        pin::check_len(so_pin)?;
        let label = String::from_utf8_lossy(label)
            .trim_end_matches([' ', '\0'])
            .to_string();
        let _g = self
            .pin_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.state().clone();
        if current.initialized {
            self.verify_locked(User::So, so_pin, &current)?;
        }
        let mut next = current.clone();
        next.initialized = true;
        next.label = label;
        next.so_pin = Some(pin::hash(so_pin)?);
        next.user_pin = None;
        next.so_failures = 0;
        next.user_failures = 0;
        let bytes =
            Zeroizing::new(postcard::to_stdvec(&next).map_err(|e| Error::general(e.to_string()))?);
        // Wipe and re-key in one transaction, then drop the objects in memory.
        self.store.reinit(&bytes)?;
        *self.objs_mut() = Objects::default();
        *self.state() = next;
        Ok(())
    }

    /// Check a PIN without counting a failure: for callers that bound
    /// guessing their own way (the admin path's per-uid back-off). A locked
    /// PIN stays locked here too (`CKR_PIN_LOCKED`).
    pub fn check_pin(&self, user: User, pin_bytes: &[u8]) -> Result<bool> {
        let s = self.state().clone();
        let (hash, failures) = match user {
            User::So => (s.so_pin.as_ref(), s.so_failures),
            User::User => (s.user_pin.as_ref(), s.user_failures),
        };
        let Some(hash) = hash else {
            return Err(Error::new(
                ck::CKR_USER_PIN_NOT_INITIALIZED,
                "PIN not initialized",
            ));
        };
        if self.max_pin_failures > 0 && failures >= self.max_pin_failures {
            return Err(Error::rv(ck::CKR_PIN_LOCKED));
        }
        Ok(pin::verify(hash, pin_bytes))
    }

    /// Check a PIN, counting failures and locking at the limit.
    pub fn verify_pin(&self, user: User, pin: &[u8]) -> Result<()> {
        let _g = self
            .pin_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.state().clone();
        self.verify_locked(user, pin, &current)
    }

    fn verify_locked(&self, user: User, pin_bytes: &[u8], s: &TokenState) -> Result<()> {
        let (hash, failures) = match user {
            User::So => (s.so_pin.as_ref(), s.so_failures),
            User::User => (s.user_pin.as_ref(), s.user_failures),
        };
        let Some(hash) = hash else {
            return Err(Error::new(
                ck::CKR_USER_PIN_NOT_INITIALIZED,
                "PIN not initialized",
            ));
        };
        if self.max_pin_failures > 0 && failures >= self.max_pin_failures {
            return Err(Error::rv(ck::CKR_PIN_LOCKED));
        }
        let ok = pin::verify(hash, pin_bytes);
        let mut next = s.clone();
        let slot = match user {
            User::So => &mut next.so_failures,
            User::User => &mut next.user_failures,
        };
        let before = *slot;
        *slot = if ok { 0 } else { before.saturating_add(1) };
        if *slot != before {
            self.save_state(&next)?;
            *self.state() = next.clone();
        }
        if ok {
            Ok(())
        } else {
            let now = match user {
                User::So => next.so_failures,
                User::User => next.user_failures,
            };
            if self.max_pin_failures > 0 && now >= self.max_pin_failures {
                Err(Error::new(
                    ck::CKR_PIN_LOCKED,
                    "PIN locked after too many failures",
                ))
            } else {
                Err(Error::rv(ck::CKR_PIN_INCORRECT))
            }
        }
    }

    /// Set `who`'s PIN and clear its failure count: `C_InitPIN` (the user's,
    /// by the SO) and `C_SetPIN`.
    pub fn set_pin(&self, who: User, new_pin: &[u8]) -> Result<()> {
        pin::check_len(new_pin)?;
        let hash = pin::hash(new_pin)?;
        let _g = self
            .pin_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = self.state().clone();
        match who {
            User::So => (next.so_pin, next.so_failures) = (Some(hash), 0),
            User::User => (next.user_pin, next.user_failures) = (Some(hash), 0),
        }
        self.save_state(&next)?;
        *self.state() = next;
        Ok(())
    }

    /// A new token object id (also its handle).
    pub fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Persist and publish a new token object.
    pub fn add_object(&self, attrs: Attrs) -> Result<Arc<Object>> {
        let id = self.apply(vec![ObjectChange::Add(attrs)])?;
        id.first()
            .and_then(|id| self.get(*id))
            .ok_or_else(|| Error::general("new object vanished"))
    }

    /// Persist and apply new attributes for a token object.
    pub fn update_object(&self, o: &Arc<Object>, attrs: Attrs) -> Result<()> {
        self.apply(vec![ObjectChange::Update(o.clone(), attrs)])
            .map(drop)
    }

    pub fn destroy_object(&self, id: u64) -> Result<()> {
        self.apply(vec![ObjectChange::Destroy(id)]).map(drop)
    }

    /// Every token object of a KMS key (primary, other half of a pair,
    /// older versions), in handle order.
    pub fn objects_of_key(&self, key_id: &str) -> Vec<Arc<Object>> {
        let objs = self.objs();
        let mut v: Vec<Arc<Object>> = objs
            .by_key_id
            .get(key_id.as_bytes())
            .into_iter()
            .flatten()
            .filter_map(|id| objs.all.get(id).cloned())
            .collect();
        v.sort_by_key(|o| o.id);
        v
    }

    /// All token objects (for the KMS layer's listings and sweeps).
    pub fn all_objects(&self) -> Vec<Arc<Object>> {
        let mut v: Vec<Arc<Object>> = self.objs().all.values().cloned().collect();
        v.sort_by_key(|o| o.id);
        v
    }

    /// Apply several object changes in one store transaction, then publish
    /// them. Returns the handles of added objects in order.
    pub fn apply(&self, changes: Vec<ObjectChange>) -> Result<Vec<u64>> {
        let mut store_changes = Vec::with_capacity(changes.len());
        let mut added = Vec::new();
        let mut prepared = Vec::with_capacity(changes.len());
        {
            let objs = self.objs();
            let (mut net_objects, mut net_bytes) = (0i64, 0i64);
            let size = |a: &Attrs| i64::try_from(a.size()).unwrap_or(i64::MAX);
            for c in &changes {
                match c {
                    ObjectChange::Add(a) => {
                        net_objects += 1;
                        net_bytes = net_bytes.saturating_add(size(a));
                    }
                    ObjectChange::Update(o, a) => {
                        net_bytes = net_bytes
                            .saturating_add(size(a))
                            .saturating_sub(size(&o.attrs()));
                    }
                    ObjectChange::Destroy(id) => {
                        if let Some(o) = objs.get(*id) {
                            net_objects -= 1;
                            net_bytes = net_bytes.saturating_sub(size(&o.attrs()));
                        }
                    }
                }
            }
            self.check_room(objs.len() as u64, objs.bytes(), net_objects, net_bytes)?;
        }
        for c in changes {
            match c {
                ObjectChange::Add(attrs) => {
                    let id = self.allocate_id();
                    store_changes.push((RecordKind::Object, id, Some(attrs.to_bytes()?)));
                    added.push(id);
                    prepared.push(Prepared::Add(id, attrs));
                }
                ObjectChange::Update(o, attrs) => {
                    store_changes.push((RecordKind::Object, o.id, Some(attrs.to_bytes()?)));
                    prepared.push(Prepared::Update(o, attrs));
                }
                ObjectChange::Destroy(id) => {
                    store_changes.push((RecordKind::Object, id, None));
                    prepared.push(Prepared::Destroy(id));
                }
            }
        }
        self.store.apply(&store_changes)?;
        let mut objs = self.objs_mut();
        for p in prepared {
            match p {
                Prepared::Add(id, attrs) => objs.insert(Arc::new(Object::new(id, attrs))),
                Prepared::Update(o, attrs) => objs.update(&o, attrs),
                Prepared::Destroy(id) => {
                    objs.remove(id);
                }
            }
        }
        Ok(added)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Object>> {
        self.objs().all.get(&id).cloned()
    }

    /// Token objects matching `template` (see [`Objects::find`]).
    pub fn find(&self, template: &[Attribute], user: bool) -> Vec<u64> {
        self.objs().find(template, user)
    }
}

fn pin_flags(failures: u32, max: u32, so: bool) -> u64 {
    if failures == 0 || max == 0 {
        return 0;
    }
    let (low, last, locked) = if so {
        (
            ck::CKF_SO_PIN_COUNT_LOW,
            ck::CKF_SO_PIN_FINAL_TRY,
            ck::CKF_SO_PIN_LOCKED,
        )
    } else {
        (
            ck::CKF_USER_PIN_COUNT_LOW,
            ck::CKF_USER_PIN_FINAL_TRY,
            ck::CKF_USER_PIN_LOCKED,
        )
    };
    if failures >= max {
        locked
    } else if failures + 1 == max {
        low | last
    } else {
        low
    }
}

/// `YYYYMMDDhhmmss00` for a Unix time (civil-from-days, proleptic Gregorian).
fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_format() {
        assert_eq!(utc_time(0), "1970010100000000");
        assert_eq!(utc_time(1_700_000_000), "2023111422132000");
    }

    #[test]
    fn pin_flag_progression() {
        assert_eq!(pin_flags(0, 3, false), 0);
        assert_eq!(pin_flags(1, 3, false), ck::CKF_USER_PIN_COUNT_LOW);
        assert_eq!(
            pin_flags(2, 3, false),
            ck::CKF_USER_PIN_COUNT_LOW | ck::CKF_USER_PIN_FINAL_TRY
        );
        assert_eq!(pin_flags(3, 3, true), ck::CKF_SO_PIN_LOCKED);
    }
}
