//! Storage in two layers (as kryoptic's `src/storage/`): a raw row store
//! ([`RawStore`], SQLite today, PostgreSQL later) that only keeps opaque
//! blobs, and the sealing format ([`format`]) that encrypts and authenticates
//! every record under the instance master key before it reaches the raw
//! store. The database never sees plaintext attributes or key material.

pub mod datadir;
pub mod format;
pub mod masterkey;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pkcs11_sys as ck;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
pub use format::Sealer;
use format::{blob_version, Entry, VERSION};
pub use masterkey::{KeyFile, MasterKey};

/// What a record holds. Part of the associated data, so a blob cannot be
/// moved from one kind to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// Token state: label, PIN hashes, counters.
    Token = 1,
    /// A token object's attributes.
    Object = 2,
    /// Import parameters handed out and not used yet (KMS BYOK tokens).
    Import = 3,
    /// The integrity manifest (id 0): see [`SealedStore`].
    Manifest = 4,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(RecordKind::Token),
            2 => Some(RecordKind::Object),
            3 => Some(RecordKind::Import),
            4 => Some(RecordKind::Manifest),
            _ => None,
        }
    }
}

/// One stored row: `(instance, kind, id)` is the key.
#[derive(Debug, Clone)]
pub struct Row {
    pub instance: String,
    pub kind: RecordKind,
    pub id: u64,
    pub blob: Vec<u8>,
}

/// A change applied atomically: all of it or none of it reaches disk.
#[derive(Debug, Clone)]
pub enum Change {
    Put(Row),
    Delete {
        instance: String,
        kind: RecordKind,
        id: u64,
    },
    /// Remove every row of this kind for the instance (token re-init).
    DeleteKind {
        instance: String,
        kind: RecordKind,
    },
}

/// A row store. Implementations make each [`RawStore::apply`] durable and
/// atomic before returning.
pub trait RawStore: Send {
    /// Every row of an instance.
    fn load(&mut self, instance: &str) -> Result<Vec<Row>>;
    /// Apply the changes in one transaction.
    fn apply(&mut self, changes: &[Change]) -> Result<()>;
    /// Highest object id ever stored, to continue numbering after it.
    fn max_id(&mut self) -> Result<u64>;
    /// Rewrite the store so that nothing deleted or overwritten lingers in
    /// free pages or journals (after a master key rotation).
    fn compact(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One opened record: kind, id and plaintext.
pub type OpenedRecord = (RecordKind, u64, Zeroizing<Vec<u8>>);
/// One change for [`SealedStore::apply`]: a put (`Some(plaintext)`) or a
/// delete (`None`).
pub type SealedChange = (RecordKind, u64, Option<Zeroizing<Vec<u8>>>);

/// The integrity manifest of one instance (sealed as record
/// `Manifest/0`, rewritten in the transaction of every change).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    /// Number of committed change sets since the manifest was created.
    epoch: u64,
    /// Live records (the manifest itself not counted).
    records: u64,
    /// XOR of the ledger entries of the live records.
    acc: Entry,
}

/// The ledger entries of the live records, their XOR and the epoch of the
/// last committed change.
#[derive(Default)]
struct Ledger {
    entries: HashMap<(RecordKind, u64), Entry>,
    acc: Entry,
    epoch: u64,
}

fn xor_into(acc: &mut Entry, e: &Entry) {
    for (a, b) in acc.iter_mut().zip(e) {
        *a ^= b;
    }
}

fn device(msg: String) -> Error {
    Error::new(ck::CKR_DEVICE_ERROR, msg)
}

/// The instance's view of storage: sealed records over a shared raw store.
///
/// Rollback detection: every record's blob has a ledger entry (a MAC under
/// a key derived from the master key, [`Sealer::entry`]); the sealed
/// manifest holds the XOR of the entries of all live records and their
/// number, and is rewritten in the same transaction as every change. At
/// [`SealedStore::load`] the entries are recomputed: a record restored from
/// an older copy, a deleted record brought back, or a live one removed
/// changes the XOR, and the instance refuses to start. The cost per change
/// is one more small row in the same transaction; nothing grows with the
/// number of records except an in-memory map of their entries.
pub struct SealedStore {
    raw: Arc<Mutex<Box<dyn RawStore>>>,
    sealer: Sealer,
    instance: String,
    /// `None` until [`SealedStore::load`] has verified the store.
    ledger: Mutex<Option<Ledger>>,
}

impl SealedStore {
    pub fn new(raw: Arc<Mutex<Box<dyn RawStore>>>, master: MasterKey, instance: &str) -> Self {
        SealedStore {
            raw,
            sealer: Sealer::new(master, instance),
            instance: instance.to_string(),
            ledger: Mutex::new(None),
        }
    }

    fn raw(&self) -> Result<MutexGuard<'_, Box<dyn RawStore>>> {
        self.raw
            .lock()
            .map_err(|_| Error::general("store lock poisoned"))
    }

    fn ledger(&self) -> MutexGuard<'_, Option<Ledger>> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Load, open and verify every record of this instance. A record that
    /// fails authentication, or a set of records that does not match the
    /// manifest, is an error: the store was tampered with, restored in
    /// part, or the master key is wrong, and the instance must not serve.
    ///
    /// A store written before manifests existed (every record in format 1,
    /// no manifest) is migrated here in one transaction: every record
    /// re-sealed in the current format, the manifest written.
    pub fn load(&self) -> Result<Vec<OpenedRecord>> {
        let mut raw = self.raw()?;
        let rows = raw.load(&self.instance)?;
        let mut manifest = None;
        let mut records = Vec::with_capacity(rows.len());
        for r in rows {
            if r.kind == RecordKind::Manifest {
                manifest = Some(r);
            } else {
                records.push(r);
            }
        }
        let (ledger, opened) = match manifest {
            Some(m) => self.verify(&m, &records)?,
            None => self.migrate(&mut **raw, records)?,
        };
        *self.ledger() = Some(ledger);
        Ok(opened)
    }

    /// Open every record and check the set against the manifest.
    fn verify(&self, m: &Row, records: &[Row]) -> Result<(Ledger, Vec<OpenedRecord>)> {
        let plain = self
            .sealer
            .open(RecordKind::Manifest, m.id, &m.blob)
            .map_err(|_| {
                device(format!(
                    "the integrity manifest of instance {} does not open with its master key: \
                 the key file does not belong to this database (restore the matching key file)",
                    self.instance
                ))
            })?;
        let man: Manifest = postcard::from_bytes(&plain)
            .map_err(|e| device(format!("manifest of {} is unreadable: {e}", self.instance)))?;
        let mut ledger = Ledger {
            epoch: man.epoch,
            ..Ledger::default()
        };
        let mut opened = Vec::with_capacity(records.len());
        for r in records {
            if blob_version(&r.blob) != Some(VERSION) {
                return Err(device(format!(
                    "record {:?}/{} of instance {} is in format {} although the store has an integrity \
                     manifest: it was restored from a copy older than the store; restore the whole data \
                     directory from one backup",
                    r.kind,
                    r.id,
                    self.instance,
                    blob_version(&r.blob).unwrap_or(0)
                )));
            }
            let plain = self.sealer.open(r.kind, r.id, &r.blob)?;
            let e = self.sealer.entry(r.kind, r.id, &r.blob);
            xor_into(&mut ledger.acc, &e);
            ledger.entries.insert((r.kind, r.id), e);
            opened.push((r.kind, r.id, plain));
        }
        if records.len() as u64 != man.records || ledger.acc != man.acc {
            return Err(device(format!(
                "the records of instance {} do not match its integrity manifest (change #{}, {} records; \
                 found {}): a record was restored from an older copy, removed, or added outside p11kmsd. \
                 Refusing to serve a rolled-back token; restore the whole data directory from one backup",
                self.instance,
                man.epoch,
                man.records,
                records.len()
            )));
        }
        Ok((ledger, opened))
    }

    /// Re-seal a store without a manifest (empty, or written by an older
    /// daemon) and write its first manifest, in one transaction.
    fn migrate(
        &self,
        raw: &mut dyn RawStore,
        records: Vec<Row>,
    ) -> Result<(Ledger, Vec<OpenedRecord>)> {
        if let Some(r) = records
            .iter()
            .find(|r| blob_version(&r.blob) == Some(VERSION))
        {
            return Err(device(format!(
                "the integrity manifest of instance {} is missing although record {:?}/{} was written \
                 with one: the store was tampered with; restore the whole data directory from one backup",
                self.instance, r.kind, r.id
            )));
        }
        let mut ledger = Ledger::default();
        let mut opened = Vec::with_capacity(records.len());
        let mut changes = Vec::with_capacity(records.len() + 1);
        for r in records {
            let (kind, id) = (r.kind, r.id);
            let plain = self.sealer.open_legacy(kind, id, &r.blob)?;
            let blob = self.sealer.seal(kind, id, &plain)?;
            let e = self.sealer.entry(kind, id, &blob);
            xor_into(&mut ledger.acc, &e);
            ledger.entries.insert((kind, id), e);
            changes.push(Change::Put(Row { blob, ..r }));
            opened.push((kind, id, plain));
        }
        ledger.epoch = 1;
        changes.push(self.manifest_change(&self.sealer, &ledger)?);
        raw.apply(&changes)?;
        if opened.is_empty() {
            tracing::debug!(instance = %self.instance, "integrity manifest created");
        } else {
            tracing::info!(instance = %self.instance, records = opened.len(),
                "store written by an older p11kmsd: records re-sealed and an integrity manifest written");
        }
        Ok((ledger, opened))
    }

    fn manifest_change(&self, sealer: &Sealer, ledger: &Ledger) -> Result<Change> {
        self.manifest_row(
            sealer,
            &Manifest {
                epoch: ledger.epoch,
                records: ledger.entries.len() as u64,
                acc: ledger.acc,
            },
        )
    }

    fn manifest_row(&self, sealer: &Sealer, man: &Manifest) -> Result<Change> {
        let plain = postcard::to_stdvec(man).map_err(|e| Error::general(e.to_string()))?;
        Ok(Change::Put(Row {
            instance: self.instance.clone(),
            kind: RecordKind::Manifest,
            id: 0,
            blob: sealer.seal(RecordKind::Manifest, 0, &plain)?,
        }))
    }

    /// Apply `changes` and the updated manifest in one transaction; the
    /// in-memory ledger follows only once it committed.
    fn commit(&self, mut changes: Vec<Change>) -> Result<()> {
        let mut raw = self.raw()?;
        let mut guard = self.ledger();
        let ledger = guard.as_mut().ok_or_else(|| {
            Error::general(format!(
                "store of {} written before it was loaded",
                self.instance
            ))
        })?;
        // What each touched record's entry becomes (None: deleted).
        let mut overlay: HashMap<(RecordKind, u64), Option<Entry>> = HashMap::new();
        let mut acc = ledger.acc;
        let current =
            |overlay: &HashMap<_, Option<Entry>>, k: &(RecordKind, u64)| match overlay.get(k) {
                Some(v) => *v,
                None => ledger.entries.get(k).copied(),
            };
        for c in &changes {
            match c {
                Change::Put(r) => {
                    let k = (r.kind, r.id);
                    if let Some(old) = current(&overlay, &k) {
                        xor_into(&mut acc, &old);
                    }
                    let e = self.sealer.entry(r.kind, r.id, &r.blob);
                    xor_into(&mut acc, &e);
                    overlay.insert(k, Some(e));
                }
                Change::Delete { kind, id, .. } => {
                    let k = (*kind, *id);
                    if let Some(old) = current(&overlay, &k) {
                        xor_into(&mut acc, &old);
                    }
                    overlay.insert(k, None);
                }
                Change::DeleteKind { kind, .. } => {
                    let keys: Vec<(RecordKind, u64)> = ledger
                        .entries
                        .keys()
                        .chain(overlay.keys())
                        .filter(|k| k.0 == *kind)
                        .copied()
                        .collect();
                    for k in keys {
                        if let Some(old) = current(&overlay, &k) {
                            xor_into(&mut acc, &old);
                            overlay.insert(k, None);
                        }
                    }
                }
            }
        }
        let mut next = Ledger {
            entries: HashMap::new(),
            acc,
            epoch: ledger.epoch + 1,
        };
        let mut records = ledger.entries.len() as u64;
        for (k, v) in &overlay {
            match (ledger.entries.contains_key(k), v) {
                (false, Some(_)) => records += 1,
                (true, None) => records -= 1,
                _ => {}
            }
        }
        changes.push(self.manifest_row(
            &self.sealer,
            &Manifest {
                epoch: next.epoch,
                records,
                acc,
            },
        )?);
        raw.apply(&changes)?;
        for (k, v) in overlay {
            match v {
                Some(e) => ledger.entries.insert(k, e),
                None => ledger.entries.remove(&k),
            };
        }
        next.entries = std::mem::take(&mut ledger.entries);
        *ledger = next;
        Ok(())
    }

    fn put_change(&self, kind: RecordKind, id: u64, plain: &[u8]) -> Result<Change> {
        Ok(Change::Put(Row {
            instance: self.instance.clone(),
            kind,
            id,
            blob: self.sealer.seal(kind, id, plain)?,
        }))
    }

    /// Seal and write one record.
    pub fn put(&self, kind: RecordKind, id: u64, plain: &[u8]) -> Result<()> {
        self.commit(vec![self.put_change(kind, id, plain)?])
    }

    /// Seal and apply several puts (`Some`) and deletes (`None`) in one
    /// transaction.
    pub fn apply(&self, changes: &[SealedChange]) -> Result<()> {
        let mut raw_changes = Vec::with_capacity(changes.len());
        for (kind, id, plain) in changes {
            raw_changes.push(match plain {
                Some(p) => self.put_change(*kind, *id, p)?,
                None => Change::Delete {
                    instance: self.instance.clone(),
                    kind: *kind,
                    id: *id,
                },
            });
        }
        self.commit(raw_changes)
    }

    /// Wipe all objects (and the import parameters issued for them) and
    /// write the new token record, atomically.
    pub fn reinit(&self, token_plain: &[u8]) -> Result<()> {
        self.commit(vec![
            Change::DeleteKind {
                instance: self.instance.clone(),
                kind: RecordKind::Object,
            },
            Change::DeleteKind {
                instance: self.instance.clone(),
                kind: RecordKind::Import,
            },
            self.put_change(RecordKind::Token, 0, token_plain)?,
        ])
    }

    /// Re-seal every record of the instance (and its manifest) under `new`,
    /// in one transaction, and return the store under the new key with the
    /// number of records re-sealed. The store must have been loaded; the
    /// records are verified again against the ledger before anything is
    /// written.
    pub fn reseal(self, new: MasterKey) -> Result<(SealedStore, usize)> {
        let next = Sealer::new(new, &self.instance);
        let fresh = {
            let mut raw = self.raw()?;
            let guard = self.ledger();
            let ledger = guard
                .as_ref()
                .ok_or_else(|| Error::general("re-sealing a store that was not loaded"))?;
            let rows = raw.load(&self.instance)?;
            let mut fresh = Ledger {
                epoch: ledger.epoch + 1,
                ..Ledger::default()
            };
            let mut changes = Vec::with_capacity(rows.len());
            for r in rows.into_iter().filter(|r| r.kind != RecordKind::Manifest) {
                let (kind, id) = (r.kind, r.id);
                if ledger.entries.get(&(kind, id)) != Some(&self.sealer.entry(kind, id, &r.blob)) {
                    return Err(device(format!(
                        "record {kind:?}/{id} of instance {} changed since it was loaded; nothing re-sealed",
                        self.instance
                    )));
                }
                let plain = self.sealer.open(kind, id, &r.blob)?;
                let blob = next.seal(kind, id, &plain)?;
                let e = next.entry(kind, id, &blob);
                xor_into(&mut fresh.acc, &e);
                fresh.entries.insert((kind, id), e);
                changes.push(Change::Put(Row { blob, ..r }));
            }
            if fresh.entries.len() != ledger.entries.len() {
                return Err(device(format!(
                    "records of instance {} changed since they were loaded; nothing re-sealed",
                    self.instance
                )));
            }
            changes.push(self.manifest_change(&next, &fresh)?);
            raw.apply(&changes)?;
            fresh
        };
        let count = fresh.entries.len();
        let store = SealedStore {
            raw: self.raw.clone(),
            sealer: next,
            instance: self.instance.clone(),
            ledger: Mutex::new(Some(fresh)),
        };
        Ok((store, count))
    }

    /// Whether `key` opens this instance's manifest as stored in `rows`
    /// (used to tell which of two key files a store was last sealed under).
    pub fn manifest_opens(rows: &[Row], key: &MasterKey, instance: &str) -> bool {
        rows.iter()
            .find(|r| r.kind == RecordKind::Manifest)
            .is_some_and(|m| {
                Sealer::new(key.clone(), instance)
                    .open(RecordKind::Manifest, m.id, &m.blob)
                    .is_ok()
            })
    }

    pub fn max_id(&self) -> Result<u64> {
        self.raw()?.max_id()
    }

    /// Hold the store lock (used at shutdown so that no write is in flight
    /// when the process exits).
    pub fn quiesce(&self) -> Option<MutexGuard<'_, Box<dyn RawStore>>> {
        self.raw.lock().ok()
    }
}

/// Open the master key of one instance — creating it on the instance's
/// first start, finishing or undoing an interrupted rotation, wrapping a
/// raw key file when a passphrase is configured — and return the store
/// sealed under it (to be [`SealedStore::load`]ed).
///
/// A missing key file next to records of the instance is an error: a new
/// key could open none of them, and making one would bury the old records
/// for good.
pub fn open_instance(raw: &Arc<Mutex<Box<dyn RawStore>>>, kf: &KeyFile) -> Result<SealedStore> {
    let instance = &kf.instance;
    // Temp files are renamed into place only once complete; a leftover is
    // from a crash before that and was never used.
    masterkey::remove_if_exists(&masterkey::with_suffix(&kf.path, ".tmp"))?;
    masterkey::remove_if_exists(&masterkey::with_suffix(&kf.next_path(), ".tmp"))?;
    let rows = raw
        .lock()
        .map_err(|_| Error::general("store lock poisoned"))?
        .load(instance)?;
    if kf.next_path().symlink_metadata().is_ok() {
        resolve_rotation(kf, &rows)?;
    }
    let key = match kf.path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !rows.is_empty() {
                return Err(device(format!(
                    "master key file {} is missing, but the store holds {} records of instance {instance}: \
                     they cannot be opened without their key, so no new key is made. Restore the key file \
                     from your backup (or, to discard the instance's data for good, delete its records)",
                    kf.path.display(),
                    rows.len()
                )));
            }
            let key = MasterKey::generate()?;
            kf.write(&kf.path, &key, false)?;
            tracing::info!(instance = %instance, file = %kf.path.display(),
                wrapped = kf.passphrase.is_some(), "new master key created");
            key
        }
        Err(e) => {
            return Err(device(format!("stat {}: {e}", kf.path.display())));
        }
        Ok(_) => {
            let key = kf.read(&kf.path)?;
            if kf.needs_wrapping(&kf.path)? {
                kf.write(&kf.path, &key, true)?;
                tracing::info!(instance = %instance, file = %kf.path.display(),
                    "master key file wrapped under the configured passphrase");
            }
            key
        }
    };
    Ok(SealedStore::new(raw.clone(), key, instance))
}

/// A `<name>.key.new` is there: a rotation was interrupted. If the store
/// opens under the new key, the re-sealing committed and only the rename
/// is missing: finish it. If it opens under the old key (or has no
/// manifest, which a committed rotation always writes), it never
/// committed: remove the new key.
fn resolve_rotation(kf: &KeyFile, rows: &[Row]) -> Result<()> {
    let next_path = kf.next_path();
    let new = kf.read(&next_path);
    if let Ok(k) = &new {
        if SealedStore::manifest_opens(rows, k, &kf.instance) {
            std::fs::rename(&next_path, &kf.path).map_err(|e| {
                device(format!(
                    "rename {} to {}: {e}",
                    next_path.display(),
                    kf.path.display()
                ))
            })?;
            masterkey::sync_dir_of(&kf.path)?;
            tracing::warn!(instance = %kf.instance, file = %kf.path.display(),
                "finished an interrupted master key rotation: the store was already re-sealed under the new key");
            return Ok(());
        }
    }
    let old = kf.read(&kf.path);
    let has_manifest = rows.iter().any(|r| r.kind == RecordKind::Manifest);
    match &old {
        Ok(k) if !has_manifest || SealedStore::manifest_opens(rows, k, &kf.instance) => {
            masterkey::remove_if_exists(&next_path)?;
            masterkey::sync_dir_of(&next_path)?;
            tracing::warn!(instance = %kf.instance, file = %next_path.display(),
                "removed the key of a master key rotation that never committed; the old key stays");
            Ok(())
        }
        _ => Err(device(format!(
            "an interrupted master key rotation left {} and {}, and the store of instance {} opens \
             under neither ({}; {}). Restore the key file from your backup",
            kf.path.display(),
            next_path.display(),
            kf.instance,
            match &old {
                Ok(_) => "the old key does not open it".to_string(),
                Err(e) => e.msg.clone(),
            },
            match &new {
                Ok(_) => "the new key does not open it".to_string(),
                Err(e) => e.msg.clone(),
            },
        ))),
    }
}
