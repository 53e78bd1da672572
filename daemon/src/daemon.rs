//! The daemon's state: instances (slots), application contexts, and the
//! shared store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use p11kms_protocol::{vendor, DaemonStatus, InstanceStatus, PROTOCOL_VERSION};

use crate::access::backoff::Backoff;
use crate::access::{rules, App, AppKey, Peer};
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
    /// Per-uid delay of wrong admin SO PINs (`kms::admin::handle_for`).
    pub admin_backoff: Backoff,
    store: Arc<Mutex<Box<dyn RawStore>>>,
}

/// Why a connection ended, which decides what happens to its application
/// when it was the last one (see [`Daemon::detach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or misbehaved: its application ends with its
    /// last connection (DESIGN §2).
    ByClient,
    /// The daemon closed it after `limits.idle_timeout_secs` without a
    /// request. The module reconnects on its next call, so an application
    /// with sessions is kept ("parked") while its process lives.
    Idle,
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
            i.token.set_limits(&config.limits);
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
            admin_backoff: Backoff::default(),
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

    fn apps(&self) -> std::sync::MutexGuard<'_, HashMap<AppKey, Arc<App>>> {
        self.apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection completed its handshake: join (or create) its
    /// application context. For in-process callers (tests); connections
    /// from the socket go through [`Daemon::attach_checked`].
    pub fn attach(&self, key: AppKey, peer: Peer) -> Arc<App> {
        let mut apps = self.apps();
        self.join(&mut apps, key, peer)
    }

    /// [`Daemon::attach`] for a peer on the socket: a new application is
    /// refused (`CKR_P11KMS_QUOTA_EXCEEDED`) when its uid already has
    /// `limits.max_apps_per_uid` of them, counting parked ones whose process
    /// still lives.
    pub fn attach_checked(&self, key: AppKey, peer: Peer) -> Result<Arc<App>> {
        let mut apps = self.apps();
        if !apps.contains_key(&key) {
            let max = self.config.limits.max_apps_per_uid;
            if apps.values().filter(|a| a.key.uid == key.uid).count() >= max {
                drop(apps);
                self.reap_parked();
                apps = self.apps();
                if apps.values().filter(|a| a.key.uid == key.uid).count() >= max {
                    return Err(Error::new(
                        vendor::CKR_P11KMS_QUOTA_EXCEEDED,
                        format!(
                            "uid {} has {max} applications (limits.max_apps_per_uid)",
                            key.uid
                        ),
                    ));
                }
            }
        }
        Ok(self.join(&mut apps, key, peer))
    }

    fn join(&self, apps: &mut HashMap<AppKey, Arc<App>>, key: AppKey, peer: Peer) -> Arc<App> {
        let app = apps
            .entry(key)
            .or_insert_with(|| {
                let admin = rules::may_administer(&self.config, &peer);
                Arc::new(App::new(key, peer, admin, self.config.limits))
            })
            .clone();
        app.connection_opened();
        self.connections.fetch_add(1, Ordering::Relaxed);
        app
    }

    /// A connection closed by its client. The last one of an application
    /// ends it: its sessions close (session objects destroyed, users logged
    /// out).
    pub fn detach(&self, app: &Arc<App>) {
        self.detach_as(app, Closed::ByClient);
    }

    /// A connection ended for `why`. When it was the application's last:
    /// [`Closed::ByClient`] ends the application; [`Closed::Idle`] keeps it
    /// (parked, with its sessions and login) if it has sessions and its
    /// process can be followed, until the process is gone
    /// ([`Daemon::reap_parked`]) or a connection of it closes normally.
    pub fn detach_as(&self, app: &Arc<App>, why: Closed) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        let mut apps = self.apps();
        if app.connection_closed() {
            if why == Closed::Idle && app.started.is_some() && app.has_sessions() {
                tracing::debug!(pid = app.peer.pid, "application parked (idle)");
                return;
            }
            apps.remove(&app.key);
            drop(apps);
            self.end(app);
        }
    }

    fn end(&self, app: &Arc<App>) {
        for (handle, _) in app.sessions_on(None) {
            crate::dispatch::close_session(self, app, handle);
        }
        tracing::debug!(pid = app.peer.pid, "application context ended");
    }

    /// End parked applications whose process is gone (pid no longer there,
    /// or reused by another process: a different start time). Returns how
    /// many ended.
    pub fn reap_parked(&self) -> usize {
        let gone: Vec<Arc<App>> = {
            let mut apps = self.apps();
            let dead: Vec<AppKey> = apps
                .values()
                .filter(|a| a.connections.load(Ordering::SeqCst) == 0)
                .filter(|a| rules::process_start(a.peer.pid) != a.started)
                .map(|a| a.key)
                .collect();
            dead.iter().filter_map(|k| apps.remove(k)).collect()
        };
        for app in &gone {
            self.end(app);
        }
        gone.len()
    }

    /// Applications kept without a connection (see [`Closed::Idle`]).
    pub fn parked(&self) -> usize {
        self.apps()
            .values()
            .filter(|a| a.connections.load(Ordering::SeqCst) == 0)
            .count()
    }

    /// `Request::Status` for an application: the data directory, labels
    /// and counts are for administrators only (docs/security.md); others
    /// get `CKR_P11KMS_ACCESS_DENIED` and learn what PKCS#11 tells any
    /// connected peer (`C_GetSlotList`, `C_GetTokenInfo`).
    pub fn status_for(&self, app: &App) -> Result<DaemonStatus> {
        if !app.admin {
            return Err(Error::new(
                vendor::CKR_P11KMS_ACCESS_DENIED,
                format!(
                    "uid {} may not read the daemon status (admin_uids/admin_gids)",
                    app.peer.uid
                ),
            ));
        }
        Ok(self.status())
    }

    pub fn status(&self) -> DaemonStatus {
        let apps = self.apps().len() as u64;
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
