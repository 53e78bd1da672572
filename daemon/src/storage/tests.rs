//! The sealed store over a real SQLite file: rollback detection through
//! the manifest, migration of older stores, master key creation rules,
//! rotation and the resolution of an interrupted one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::storage::sqlite::SqliteStore;

type Raw = Arc<Mutex<Box<dyn RawStore>>>;

fn raw(dir: &Path) -> Raw {
    Arc::new(Mutex::new(Box::new(
        SqliteStore::open(&dir.join("p11kms.db")).expect("open db"),
    )))
}

fn key_file(dir: &Path) -> KeyFile {
    KeyFile::new(dir, "default", None).expect("key file")
}

/// The raw blob of one record.
fn blob_of(raw: &Raw, kind: RecordKind, id: u64) -> Vec<u8> {
    raw.lock()
        .expect("lock")
        .load("default")
        .expect("load")
        .into_iter()
        .find(|r| r.kind == kind && r.id == id)
        .expect("record present")
        .blob
}

/// Write a blob behind the store's back (what restoring a row from an
/// old copy of the database does).
fn raw_put(raw: &Raw, kind: RecordKind, id: u64, blob: Vec<u8>) {
    raw.lock()
        .expect("lock")
        .apply(&[Change::Put(Row {
            instance: "default".into(),
            kind,
            id,
            blob,
        })])
        .expect("raw put");
}

fn reopen(raw: &Raw, dir: &Path) -> Result<Vec<OpenedRecord>> {
    open_instance(raw, &key_file(dir))?.load()
}

fn fresh(dir: &Path) -> (Raw, SealedStore) {
    let raw = raw(dir);
    let s = open_instance(&raw, &key_file(dir)).expect("open instance");
    assert!(s.load().expect("load").is_empty());
    (raw, s)
}

#[test]
fn records_survive_reopen_and_match_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Token, 0, b"token v1").expect("put");
    s.apply(&[
        (
            RecordKind::Object,
            5,
            Some(Zeroizing::new(b"five".to_vec())),
        ),
        (RecordKind::Object, 6, Some(Zeroizing::new(b"six".to_vec()))),
        (
            RecordKind::Object,
            6,
            Some(Zeroizing::new(b"six again".to_vec())),
        ),
    ])
    .expect("apply");
    s.apply(&[(RecordKind::Object, 5, None)]).expect("delete");
    s.put(RecordKind::Import, 9, b"import").expect("put");
    drop(s);
    let recs = reopen(&raw, dir.path()).expect("reopen");
    let got: Vec<(RecordKind, u64, Vec<u8>)> = recs
        .into_iter()
        .map(|(k, i, p)| (k, i, p.to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            (RecordKind::Token, 0, b"token v1".to_vec()),
            (RecordKind::Object, 6, b"six again".to_vec()),
            (RecordKind::Import, 9, b"import".to_vec()),
        ]
    );
}

#[test]
fn reinit_keeps_the_manifest_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Token, 0, b"t").expect("put");
    for id in 1..5 {
        s.put(RecordKind::Object, id, b"o").expect("put");
    }
    s.put(RecordKind::Import, 7, b"i").expect("put");
    s.reinit(b"t2").expect("reinit");
    s.put(RecordKind::Object, 8, b"after").expect("put");
    drop(s);
    assert_eq!(reopen(&raw, dir.path()).expect("reopen").len(), 2);
}

#[test]
fn an_old_token_record_restored_from_a_copy_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Token, 0, b"failures=0").expect("put");
    let old = blob_of(&raw, RecordKind::Token, 0);
    s.put(RecordKind::Token, 0, b"failures=9").expect("put");
    drop(s);
    raw_put(&raw, RecordKind::Token, 0, old);
    let e = reopen(&raw, dir.path()).expect_err("rollback detected");
    assert!(
        e.msg.contains("do not match its integrity manifest"),
        "{}",
        e.msg
    );
}

#[test]
fn a_deleted_record_brought_back_or_a_live_one_removed_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Object, 3, b"destroyed key").expect("put");
    s.put(RecordKind::Object, 4, b"live key").expect("put");
    let gone = blob_of(&raw, RecordKind::Object, 3);
    s.apply(&[(RecordKind::Object, 3, None)]).expect("delete");
    drop(s);
    raw_put(&raw, RecordKind::Object, 3, gone);
    assert!(
        reopen(&raw, dir.path()).is_err(),
        "resurrected record detected"
    );
    raw.lock()
        .expect("lock")
        .apply(&[
            Change::Delete {
                instance: "default".into(),
                kind: RecordKind::Object,
                id: 3,
            },
            Change::Delete {
                instance: "default".into(),
                kind: RecordKind::Object,
                id: 4,
            },
        ])
        .expect("raw delete");
    assert!(reopen(&raw, dir.path()).is_err(), "removed record detected");
}

#[test]
fn a_removed_manifest_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Object, 3, b"k").expect("put");
    drop(s);
    raw.lock()
        .expect("lock")
        .apply(&[Change::Delete {
            instance: "default".into(),
            kind: RecordKind::Manifest,
            id: 0,
        }])
        .expect("raw delete");
    let e = reopen(&raw, dir.path()).expect_err("detected");
    assert!(
        e.msg.contains("manifest of instance default is missing"),
        "{}",
        e.msg
    );
}

#[test]
fn a_store_of_an_older_daemon_is_migrated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = raw(dir.path());
    let key = MasterKey::generate().expect("key");
    key_file(dir.path())
        .write(&dir.path().join("default.key"), &key, false)
        .expect("key");
    let legacy = Sealer::new(key, "default");
    for (kind, id) in [(RecordKind::Token, 0), (RecordKind::Object, 2)] {
        raw_put(
            &raw,
            kind,
            id,
            legacy.seal_legacy(kind, id, b"old").expect("seal"),
        );
    }
    assert_eq!(reopen(&raw, dir.path()).expect("migrate").len(), 2);
    assert_eq!(
        format::blob_version(&blob_of(&raw, RecordKind::Object, 2)),
        Some(format::VERSION),
        "re-sealed in the current format"
    );
    assert_eq!(reopen(&raw, dir.path()).expect("reopen").len(), 2);
    // A format-1 record copied back in after the migration is refused.
    raw_put(
        &raw,
        RecordKind::Object,
        2,
        legacy
            .seal_legacy(RecordKind::Object, 2, b"old")
            .expect("seal"),
    );
    let e = reopen(&raw, dir.path()).expect_err("refused");
    assert!(e.msg.contains("in format 1"), "{}", e.msg);
}

#[test]
fn a_failed_commit_leaves_the_ledger_as_it_was() {
    struct Flaky(SqliteStore, Arc<std::sync::atomic::AtomicBool>);
    impl RawStore for Flaky {
        fn load(&mut self, i: &str) -> Result<Vec<Row>> {
            self.0.load(i)
        }
        fn apply(&mut self, c: &[Change]) -> Result<()> {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::general("disk full"));
            }
            self.0.apply(c)
        }
        fn max_id(&mut self) -> Result<u64> {
            self.0.max_id()
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaky: Raw = Arc::new(Mutex::new(Box::new(Flaky(
        SqliteStore::open(&dir.path().join("p11kms.db")).expect("open"),
        fail.clone(),
    ))));
    let s = open_instance(&flaky, &key_file(dir.path())).expect("open");
    s.load().expect("load");
    s.put(RecordKind::Object, 1, b"a").expect("put");
    fail.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(s.put(RecordKind::Object, 1, b"b").is_err());
    assert!(s.apply(&[(RecordKind::Object, 1, None)]).is_err());
    fail.store(false, std::sync::atomic::Ordering::Relaxed);
    s.put(RecordKind::Object, 2, b"c").expect("put");
    drop(s);
    let s = open_instance(&flaky, &key_file(dir.path())).expect("open");
    assert_eq!(s.load().expect("reload after failed commits").len(), 2);
}

#[test]
fn no_new_key_is_made_next_to_existing_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Token, 0, b"t").expect("put");
    drop(s);
    std::fs::remove_file(dir.path().join("default.key")).expect("rm key");
    let e = open_instance(&raw, &key_file(dir.path()))
        .err()
        .expect("refused");
    assert!(e.msg.contains("is missing"), "{}", e.msg);
    assert!(
        !dir.path().join("default.key").exists(),
        "no key file was created"
    );
    // Another instance without records gets its key.
    let other = KeyFile::new(dir.path(), "other", None).expect("kf");
    open_instance(&raw, &other).expect("fresh instance");
    assert_eq!(
        std::fs::metadata(dir.path().join("other.key"))
            .expect("created")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn reseal_moves_every_record_to_the_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, s) = fresh(dir.path());
    s.put(RecordKind::Token, 0, b"t").expect("put");
    s.put(RecordKind::Object, 4, b"o").expect("put");
    let old = key_file(dir.path())
        .read(&dir.path().join("default.key"))
        .expect("old");
    let new = MasterKey::generate().expect("new");
    let (s2, n) = s.reseal(new.clone()).expect("reseal");
    assert_eq!(n, 2);
    s2.put(RecordKind::Object, 5, b"after")
        .expect("writes go on under the new key");
    drop(s2);
    let under = |k: &MasterKey| SealedStore::new(raw.clone(), k.clone(), "default").load();
    assert_eq!(under(&new).expect("new key opens").len(), 3);
    assert!(under(&old).is_err(), "old key no longer opens the store");
}

/// The states a crash during `p11kms-recover rotate-master-key` can leave:
/// `.key.new` written but the re-sealing not committed, and committed but
/// not renamed. Either way the next open ends with one key that opens the
/// store and no `.key.new`.
#[test]
fn an_interrupted_rotation_is_resolved_either_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (raw, s) = fresh(d);
    s.put(RecordKind::Token, 0, b"t").expect("put");
    let kf = key_file(d);
    let old = kf.read(&kf.path).expect("old");

    // Crash before the commit: the new key file exists, the store is
    // still sealed under the old key.
    let new = MasterKey::generate().expect("new");
    kf.write(&kf.next_path(), &new, false).expect("write .new");
    let s = open_instance(&raw, &kf).expect("resolved");
    assert!(!kf.next_path().exists(), "uncommitted new key removed");
    assert_eq!(kf.read(&kf.path).expect("key").bytes(), old.bytes());
    assert_eq!(s.load().expect("opens under the old key").len(), 1);

    // Crash after the commit, before the rename.
    kf.write(&kf.next_path(), &new, false).expect("write .new");
    let (s2, _) = s.reseal(new.clone()).expect("reseal");
    drop(s2);
    let s = open_instance(&raw, &kf).expect("resolved");
    assert!(!kf.next_path().exists(), "rename finished");
    assert_eq!(kf.read(&kf.path).expect("key").bytes(), new.bytes());
    assert_eq!(s.load().expect("opens under the new key").len(), 1);

    // Neither key opens the store: refused, nothing removed.
    let stray = MasterKey::generate().expect("stray");
    kf.write(&kf.next_path(), &stray, false)
        .expect("write .new");
    std::fs::remove_file(&kf.path).expect("rm");
    kf.write(&kf.path, &stray, false).expect("write wrong key");
    let e = open_instance(&raw, &kf).err().expect("refused");
    assert!(e.msg.contains("opens under neither"), "{}", e.msg);
    assert!(kf.next_path().exists());
}

#[test]
fn a_raw_key_is_wrapped_when_a_passphrase_is_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (raw, s) = fresh(d);
    s.put(RecordKind::Token, 0, b"t").expect("put");
    drop(s);
    let pass = d.join("pass");
    std::fs::write(&pass, b"a long passphrase\n").expect("write");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let kf = KeyFile::new(d, "default", Some(&pass)).expect("kf");
    let s = open_instance(&raw, &kf).expect("wrapped at open");
    assert_eq!(s.load().expect("load").len(), 1);
    drop(s);
    assert_eq!(
        std::fs::metadata(&kf.path).expect("meta").len(),
        masterkey::WRAPPED_LEN as u64
    );
    let e = open_instance(&raw, &key_file(d))
        .err()
        .expect("needs the passphrase");
    assert!(e.msg.contains("master_key_passphrase_file"), "{}", e.msg);
    std::fs::write(&pass, b"another passphrase\n").expect("write");
    let kf = KeyFile::new(d, "default", Some(&pass)).expect("kf");
    let e = open_instance(&raw, &kf).err().expect("wrong passphrase");
    assert!(e.msg.contains("wrong passphrase"), "{}", e.msg);
}
