//! Storage in two layers (as kryoptic's `src/storage/`): a raw row store
//! ([`RawStore`], SQLite today, PostgreSQL later) that only keeps opaque
//! blobs, and the sealing format ([`format`]) that encrypts and authenticates
//! every record under the instance master key before it reaches the raw
//! store. The database never sees plaintext attributes or key material.

pub mod format;
pub mod masterkey;
pub mod sqlite;

use zeroize::Zeroizing;

use crate::error::Result;
pub use format::Sealer;
pub use masterkey::MasterKey;

/// What a record holds. Part of the associated data, so a blob cannot be
/// moved from one kind to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Token state: label, PIN hashes, counters.
    Token = 1,
    /// A token object's attributes.
    Object = 2,
    /// Import parameters handed out and not used yet (KMS BYOK tokens).
    Import = 3,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(RecordKind::Token),
            2 => Some(RecordKind::Object),
            3 => Some(RecordKind::Import),
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
}

/// One opened record: kind, id and plaintext.
pub type OpenedRecord = (RecordKind, u64, Zeroizing<Vec<u8>>);
/// One change for [`SealedStore::apply`]: a put (`Some(plaintext)`) or a
/// delete (`None`).
pub type SealedChange = (RecordKind, u64, Option<Zeroizing<Vec<u8>>>);

/// The instance's view of storage: sealed records over a shared raw store.
pub struct SealedStore {
    raw: std::sync::Arc<std::sync::Mutex<Box<dyn RawStore>>>,
    sealer: Sealer,
    instance: String,
}

impl SealedStore {
    pub fn new(
        raw: std::sync::Arc<std::sync::Mutex<Box<dyn RawStore>>>,
        master: MasterKey,
        instance: &str,
    ) -> Self {
        SealedStore {
            raw,
            sealer: Sealer::new(master, instance),
            instance: instance.to_string(),
        }
    }

    fn raw(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn RawStore>>> {
        self.raw
            .lock()
            .map_err(|_| crate::error::Error::general("store lock poisoned"))
    }

    /// Load and open every record of this instance. A record that fails
    /// authentication is an error: the store was tampered with or the master
    /// key is wrong, and the instance must not serve.
    pub fn load(&self) -> Result<Vec<OpenedRecord>> {
        let rows = self.raw()?.load(&self.instance)?;
        rows.into_iter()
            .map(|r| {
                let plain = self.sealer.open(r.kind, r.id, &r.blob)?;
                Ok((r.kind, r.id, plain))
            })
            .collect()
    }

    /// Seal and write one record.
    pub fn put(&self, kind: RecordKind, id: u64, plain: &[u8]) -> Result<()> {
        let blob = self.sealer.seal(kind, id, plain)?;
        self.raw()?.apply(&[Change::Put(Row {
            instance: self.instance.clone(),
            kind,
            id,
            blob,
        })])
    }

    /// Seal and apply several puts (`Some`) and deletes (`None`) in one
    /// transaction.
    pub fn apply(&self, changes: &[SealedChange]) -> Result<()> {
        let mut raw_changes = Vec::with_capacity(changes.len());
        for (kind, id, plain) in changes {
            raw_changes.push(match plain {
                Some(p) => Change::Put(Row {
                    instance: self.instance.clone(),
                    kind: *kind,
                    id: *id,
                    blob: self.sealer.seal(*kind, *id, p)?,
                }),
                None => Change::Delete {
                    instance: self.instance.clone(),
                    kind: *kind,
                    id: *id,
                },
            });
        }
        self.raw()?.apply(&raw_changes)
    }

    /// Wipe all objects (and the import parameters issued for them) and
    /// write the new token record, atomically.
    pub fn reinit(&self, token_plain: &[u8]) -> Result<()> {
        let blob = self.sealer.seal(RecordKind::Token, 0, token_plain)?;
        self.raw()?.apply(&[
            Change::DeleteKind {
                instance: self.instance.clone(),
                kind: RecordKind::Object,
            },
            Change::DeleteKind {
                instance: self.instance.clone(),
                kind: RecordKind::Import,
            },
            Change::Put(Row {
                instance: self.instance.clone(),
                kind: RecordKind::Token,
                id: 0,
                blob,
            }),
        ])
    }

    pub fn max_id(&self) -> Result<u64> {
        self.raw()?.max_id()
    }

    /// Hold the store lock (used at shutdown so that no write is in flight
    /// when the process exits).
    pub fn quiesce(&self) -> Option<std::sync::MutexGuard<'_, Box<dyn RawStore>>> {
        self.raw.lock().ok()
    }
}
