//! SQLite raw store: one database file per daemon, WAL journal,
//! `synchronous=FULL`, one transaction per change set. Opening it takes the
//! data directory's [`StoreLock`], and creates or tightens the database
//! files to 0600 (see [`super::datadir`]).

use std::path::Path;

use pkcs11_sys as ck;
use rusqlite::{params, Connection};

use super::datadir::{self, StoreLock};
use super::{Change, RawStore, RecordKind, Row};
use crate::error::{Error, Result};

pub struct SqliteStore {
    conn: Connection,
    /// Held as long as the store is open.
    _lock: StoreLock,
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::new(ck::CKR_DEVICE_ERROR, format!("sqlite: {e}"))
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, holding
    /// `p11kms.lock` next to it for as long as the store lives.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    /// Open an existing database only (offline tools: a missing database
    /// is an error, never a new empty store).
    pub fn open_existing(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Self> {
        if !create && !path.is_file() {
            return Err(Error::new(
                ck::CKR_DEVICE_ERROR,
                format!("database {} does not exist", path.display()),
            ));
        }
        let lock = StoreLock::acquire(&path.with_extension("lock"))?;
        if create {
            datadir::create_private(path)?;
        }
        for f in datadir::db_files(path) {
            datadir::check_file(&f)?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                 instance TEXT NOT NULL,
                 kind INTEGER NOT NULL,
                 id INTEGER NOT NULL,
                 blob BLOB NOT NULL,
                 PRIMARY KEY (instance, kind, id)
             ) WITHOUT ROWID;",
        )
        .map_err(db_err)?;
        // Deleted and overwritten records are zeroed where that costs no
        // extra I/O (they are sealed anyway; this keeps old blobs from
        // lingering for a key that was rotated away).
        conn.pragma_update(None, "secure_delete", "FAST")
            .map_err(db_err)?;
        // The WAL and SHM now exist (with the database's mode); check them.
        for f in datadir::db_files(path) {
            datadir::check_file(&f)?;
        }
        Ok(SqliteStore { conn, _lock: lock })
    }
}

impl RawStore for SqliteStore {
    fn load(&mut self, instance: &str) -> Result<Vec<Row>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, id, blob FROM records WHERE instance = ?1 ORDER BY kind, id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![instance], |r| {
                Ok((
                    r.get::<_, u8>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, id, blob) = row.map_err(db_err)?;
            let kind = RecordKind::from_u8(kind).ok_or_else(|| {
                Error::new(ck::CKR_DEVICE_ERROR, format!("unknown record kind {kind}"))
            })?;
            out.push(Row {
                instance: instance.to_string(),
                kind,
                id: id as u64,
                blob,
            });
        }
        Ok(out)
    }

    fn apply(&mut self, changes: &[Change]) -> Result<()> {
        let tx = self.conn.transaction().map_err(db_err)?;
        for c in changes {
            match c {
                Change::Put(r) => {
                    tx.prepare_cached("INSERT OR REPLACE INTO records (instance, kind, id, blob) VALUES (?1, ?2, ?3, ?4)")
                        .and_then(|mut s| s.execute(params![r.instance, r.kind as u8, r.id as i64, r.blob]))
                        .map_err(db_err)?;
                }
                Change::Delete { instance, kind, id } => {
                    tx.prepare_cached(
                        "DELETE FROM records WHERE instance = ?1 AND kind = ?2 AND id = ?3",
                    )
                    .and_then(|mut s| s.execute(params![instance, *kind as u8, *id as i64]))
                    .map_err(db_err)?;
                }
                Change::DeleteKind { instance, kind } => {
                    tx.prepare_cached("DELETE FROM records WHERE instance = ?1 AND kind = ?2")
                        .and_then(|mut s| s.execute(params![instance, *kind as u8]))
                        .map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    fn compact(&mut self) -> Result<()> {
        self.conn.execute_batch("VACUUM;").map_err(db_err)?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db_err)
    }

    fn max_id(&mut self) -> Result<u64> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM records", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|v| v as u64)
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_load_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = SqliteStore::open(&dir.path().join("db")).expect("open");
        let row = |id| Row {
            instance: "a".into(),
            kind: RecordKind::Object,
            id,
            blob: vec![id as u8],
        };
        s.apply(&[Change::Put(row(1)), Change::Put(row(2))])
            .expect("put");
        s.apply(&[Change::Put(Row {
            instance: "b".into(),
            ..row(3)
        })])
        .expect("put");
        assert_eq!(s.load("a").expect("load").len(), 2);
        assert_eq!(s.max_id().expect("max"), 3);
        s.apply(&[Change::Delete {
            instance: "a".into(),
            kind: RecordKind::Object,
            id: 1,
        }])
        .expect("del");
        assert_eq!(s.load("a").expect("load").len(), 1);
        s.apply(&[Change::DeleteKind {
            instance: "a".into(),
            kind: RecordKind::Object,
        }])
        .expect("wipe");
        assert!(s.load("a").expect("load").is_empty());
        assert_eq!(s.load("b").expect("load").len(), 1);
        s.compact().expect("compact");
        assert_eq!(s.load("b").expect("load").len(), 1);
    }

    #[test]
    fn files_0600_and_one_opener_at_a_time() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("p11kms.db");
        let mut s = SqliteStore::open(&db).expect("open");
        s.apply(&[Change::Put(Row {
            instance: "a".into(),
            kind: RecordKind::Object,
            id: 1,
            blob: vec![1],
        })])
        .expect("put");
        for f in datadir::db_files(&db) {
            if let Ok(m) = std::fs::metadata(&f) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", f.display());
            }
        }
        assert!(
            std::fs::metadata(dir.path().join("p11kms.db-wal")).is_ok(),
            "WAL mode"
        );
        let e = SqliteStore::open(&db).err().expect("second opener refused");
        assert!(e.msg.contains("in use"), "{}", e.msg);
        drop(s);
        SqliteStore::open_existing(&db).expect("free again");
        assert!(SqliteStore::open_existing(&dir.path().join("none.db")).is_err());
    }
}
