//! The daemon's state: instances (slots), application contexts, and the
//! shared store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use p11kms_protocol::{DaemonStatus, InstanceStatus, PROTOCOL_VERSION};

use crate::access::{App, AppKey, Peer};
use crate::config::{Config, InstanceConfig};
use crate::error::{Error, Result};
use crate::mech::{gm_allowed, Registry};
use crate::storage::{self, sqlite::SqliteStore, KeyFile, RawStore};
use crate::token::Token;

/// First handle used for session objects; token objects use store ids below.
pub const SESSION_OBJECT_BASE: u64 = 1 << 48;

/// One KMS instance, seen through PKCS#11 as one slot with its token.
pub struct Instance {
    pub name: String,
    pub kind: String,
    /// `standard` or `gm` (SM algorithms only, docs/sm.md).
    pub mode: String,
    /// False when a known-answer self-test failed at start-up: the slot is
    /// listed, but sessions and admin commands answer
    /// `CKR_P11KMS_INSTANCE_UNAVAILABLE`.
    pub serving: bool,
    pub slot: u64,
    pub token: Arc<Token>,
}

/// Everything the request handlers share.
pub struct Daemon {
    pub config: Config,
    pub instances: Vec<Arc<Instance>>,
    apps: Mutex<HashMap<AppKey, Arc<App>>>,
    next_session: AtomicU64,
    next_session_object: AtomicU64,
    pub connections: AtomicU64,
    pub started: Instant,
    pub kms: crate::kms::KmsState,
    store: Arc<Mutex<Box<dyn RawStore>>>,
}

impl Daemon {
    /// Open the store, unseal each instance's master key, run the
    /// known-answer tests, and load every token.
    pub fn open(config: Config) -> Result<Self> {
        Self::open_with(config, |_| Registry::with_defaults())
    }

    /// [`Daemon::open`] with the instance's full mechanism set from `base`
    /// (tests inject failing self-tests through it). The compliance mode
    /// then narrows it: a `gm` instance keeps only [`gm_allowed`]
    /// mechanisms. Each instance runs its registry's known-answer tests; a
    /// failure leaves that instance loaded but not serving.
    ///
    /// At rest: the data dir is made (or tightened to) 0700 and must belong
    /// to the daemon's user; the store is locked against a second daemon or
    /// `p11kms-recover`; each master key file is checked (see
    /// [`storage::masterkey`]) and a missing one is made only for an
    /// instance without records; each instance's records are verified
    /// against its integrity manifest (see [`storage::SealedStore`]).
    pub fn open_with(config: Config, base: impl Fn(&InstanceConfig) -> Registry) -> Result<Self> {
        storage::datadir::prepare(&config.data_dir, true)?;
        let raw: Box<dyn RawStore> =
            Box::new(SqliteStore::open(&config.data_dir.join("p11kms.db"))?);
        let store = Arc::new(Mutex::new(raw));
        let max_id = store
            .lock()
            .map_err(|_| Error::general("store lock"))?
            .max_id()?;
        let next_id = Arc::new(AtomicU64::new(max_id + 1));
        let mut instances = Vec::new();
        for (slot, ic) in config.instances.iter().enumerate() {
            let mut registry = base(ic);
            crate::kms::envelope::register(&mut registry);
            let gm = ic.mode == "gm";
            if gm {
                registry.retain(gm_allowed);
            }
            let serving = match registry.run_self_tests() {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(instance = %ic.name, error = %e.msg, "known-answer test failed: instance not serving");
                    false
                }
            };
            let key_file = KeyFile::new(
                &config.data_dir,
                &ic.name,
                ic.master_key_passphrase_file.as_deref(),
            )?;
            let sealed = storage::open_instance(&store, &key_file)?;
            let model = if gm {
                format!("p11kms {} gm", ic.kind)
            } else {
                format!("p11kms {}", ic.kind)
            };
            let token = Token::load(
                &ic.name,
                slot as u64,
                model,
                ic.max_pin_failures,
                ic.allow_import,
                registry.clone(),
                sealed,
                next_id.clone(),
            )?;
            tracing::info!(instance = %ic.name, slot, objects = token.object_count(), "instance loaded");
            instances.push(Arc::new(Instance {
                name: ic.name.clone(),
                kind: ic.kind.clone(),
                mode: ic.mode.clone(),
                serving,
                slot: slot as u64,
                token: Arc::new(token),
            }));
        }
        let kms = crate::kms::KmsState::default();
        for i in &instances {
            kms.load_imports(&i.token)?;
        }
        Ok(Daemon {
            config,
            instances,
            apps: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            next_session_object: AtomicU64::new(SESSION_OBJECT_BASE),
            connections: AtomicU64::new(0),
            started: Instant::now(),
            kms,
            store,
        })
    }

    pub fn instance(&self, slot: u64) -> Result<&Arc<Instance>> {
        usize::try_from(slot)
            .ok()
            .and_then(|s| self.instances.get(s))
            .ok_or_else(|| Error::rv(pkcs11_sys::CKR_SLOT_ID_INVALID))
    }

    pub fn new_session_handle(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn new_session_object_id(&self) -> u64 {
        self.next_session_object.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection completed its handshake: join (or create) its
    /// application context.
    pub fn attach(&self, key: AppKey, peer: Peer) -> Arc<App> {
        let mut apps = self
            .apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let app = apps
            .entry(key)
            .or_insert_with(|| Arc::new(App::new(key, peer)))
            .clone();
        app.connection_opened();
        self.connections.fetch_add(1, Ordering::Relaxed);
        app
    }

    /// A connection closed. The last one of an application ends it: its
    /// sessions close (session objects destroyed, users logged out).
    pub fn detach(&self, app: &Arc<App>) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        let mut apps = self
            .apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if app.connection_closed() {
            apps.remove(&app.key);
            drop(apps);
            for (handle, _) in app.sessions_on(None) {
                crate::dispatch::close_session(self, app, handle);
            }
            tracing::debug!(pid = app.peer.pid, "application context ended");
        }
    }

    pub fn status(&self) -> DaemonStatus {
        let apps = self.apps.lock().map(|a| a.len() as u64).unwrap_or(0);
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
            socket: self.config.socket.display().to_string(),
            data_dir: self.config.data_dir.display().to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            applications: apps,
            connections: self.connections.load(Ordering::Relaxed),
            instances: self
                .instances
                .iter()
                .map(|i| {
                    let info = i.token.info();
                    InstanceStatus {
                        name: i.name.clone(),
                        kind: i.kind.clone(),
                        mode: i.mode.clone(),
                        slot: i.slot,
                        token_label: info.label,
                        token_initialized: i.token.initialized(),
                        user_pin_initialized: i.token.user_pin_initialized(),
                        objects: i.token.object_count() as u64,
                        sessions: info.session_count,
                        serving: i.serving,
                    }
                })
                .collect(),
        }
    }

    /// Block store writes for good (called at shutdown before exiting).
    pub fn quiesce(&self) -> Option<std::sync::MutexGuard<'_, Box<dyn RawStore>>> {
        self.store.lock().ok()
    }
}
