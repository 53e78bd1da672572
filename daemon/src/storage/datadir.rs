//! The data directory and the files in it: who owns them, their modes, and
//! the lock that keeps a second daemon (or `p11kms-recover`) out while one
//! uses the store.
//!
//! - The directory is created with mode 0700; an existing one must belong to
//!   the daemon's user, and is tightened to 0700 (with a log line) when it
//!   is open to group or others.
//! - Database files (`p11kms.db`, `-wal`, `-shm`, `-journal`) and the lock
//!   file are created 0600; existing ones must be regular files of the
//!   daemon's user and are tightened to 0600. SQLite gives its WAL and SHM
//!   files the mode of the database file, so they follow.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pkcs11_sys as ck;
use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::error::{Error, Result};

fn err(m: String) -> Error {
    Error::new(ck::CKR_DEVICE_ERROR, m)
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Make sure `dir` exists as a directory of the daemon's user with mode
/// 0700. `create`: create it (0700) when missing; otherwise a missing
/// directory is an error (offline tools never invent a store).
pub fn prepare(dir: &Path, create: bool) -> Result<()> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(format!("create data dir {}: {e}", dir.display())))?;
        }
        Err(e) => return Err(err(format!("data dir {}: {e}", dir.display()))),
        Ok(_) => {}
    }
    let meta = fs::metadata(dir).map_err(|e| err(format!("data dir {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(err(format!(
            "data dir {} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != euid() {
        return Err(err(format!(
            "data dir {} is owned by uid {} but this process runs as uid {}: chown -R it to the user p11kmsd runs as",
            dir.display(),
            meta.uid(),
            euid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("chmod 700 {}: {e}", dir.display())))?;
        tracing::warn!(dir = %dir.display(), was = format!("{mode:04o}"), "data dir was open to group or others; set to 0700");
    }
    Ok(())
}

/// Check an existing store file: a regular file (not a symbolic link) of
/// the daemon's user; tightened to 0600 when looser. A missing file is fine.
pub fn check_file(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(format!("stat {}: {e}", path.display()))),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(err(format!(
            "{} is a symbolic link; store files must be the files themselves",
            path.display()
        )));
    }
    if !meta.file_type().is_file() {
        return Err(err(format!("{} is not a regular file", path.display())));
    }
    if meta.uid() != euid() {
        return Err(err(format!(
            "{} is owned by uid {} but this process runs as uid {}: chown it to the user p11kmsd runs as",
            path.display(),
            meta.uid(),
            euid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| err(format!("chmod 600 {}: {e}", path.display())))?;
        tracing::warn!(file = %path.display(), was = format!("{mode:04o}"), "store file was open to group or others; set to 0600");
    }
    Ok(())
}

/// The database file and SQLite's companions next to it.
pub fn db_files(db: &Path) -> Vec<PathBuf> {
    let mut v = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        v.push(super::masterkey::with_suffix(db, suffix));
    }
    v
}

/// Create the database file 0600 if it does not exist (SQLite then treats
/// the empty file as a new database and gives its WAL and SHM the same mode).
pub fn create_private(path: &Path) -> Result<()> {
    match rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(err(format!("create {}: {e}", path.display()))),
    }
}

/// An exclusive `flock` on `<data_dir>/p11kms.lock`, held for the life of
/// the daemon or of one `p11kms-recover` command. Released when dropped (or
/// when the process dies, however it dies).
pub struct StoreLock {
    _file: fs::File,
}

impl StoreLock {
    /// Take the lock without waiting. Held by someone else → an error
    /// naming the pid written in the lock file.
    pub fn acquire(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| err(format!("open lock file {}: {e}", path.display())))?;
        check_file(path)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = fs::read_to_string(path).unwrap_or_default();
                let holder = holder.trim();
                return Err(err(format!(
                    "the store in {} is in use by another process{} (p11kmsd or p11kms-recover holds {}): \
                     stop it first",
                    path.parent().unwrap_or(Path::new(".")).display(),
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                    path.display()
                )));
            }
            Err(e) => return Err(err(format!("lock {}: {e}", path.display()))),
        }
        let mut file = fs::File::from(fd);
        // Best effort: the pid only makes the message above more useful.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(StoreLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_created_0700_and_tightened() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/b");
        prepare(&d, true).expect("create");
        assert_eq!(fs::metadata(&d).expect("meta").mode() & 0o777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare(&d, true).expect("tighten");
        assert_eq!(fs::metadata(&d).expect("meta").mode() & 0o777, 0o700);
        assert!(prepare(&t.path().join("missing"), false).is_err());
    }

    #[test]
    fn store_files_tightened_and_symlinks_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("p11kms.db");
        create_private(&f).expect("create");
        assert_eq!(fs::metadata(&f).expect("meta").mode() & 0o777, 0o600);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("chmod");
        check_file(&f).expect("tighten");
        assert_eq!(fs::metadata(&f).expect("meta").mode() & 0o777, 0o600);
        let l = t.path().join("link.db");
        std::os::unix::fs::symlink(&f, &l).expect("symlink");
        assert!(check_file(&l).is_err());
    }

    #[test]
    fn lock_is_exclusive() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("p11kms.lock");
        let a = StoreLock::acquire(&p).expect("first");
        let e = StoreLock::acquire(&p).err().expect("second refused");
        assert!(e.msg.contains("in use"), "{}", e.msg);
        assert!(
            e.msg.contains(&format!("pid {}", std::process::id())),
            "{}",
            e.msg
        );
        drop(a);
        StoreLock::acquire(&p).expect("free again");
    }
}
