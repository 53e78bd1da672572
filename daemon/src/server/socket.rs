//! Creating the listening socket without ever deleting what is not ours and
//! without a moment in which it is reachable with the wrong permissions
//! (issue 10, finding 9).
//!
//! - Something at the path is removed only when it is a socket owned by
//!   this daemon's uid that nobody answers on (a stale socket of an earlier
//!   run). A live socket, a socket of another uid, a regular file, a
//!   directory or a symlink is refused with an error naming it.
//! - The socket is bound inside a fresh private directory (mode 0700) next
//!   to the final path, given its mode there, and only then moved into
//!   place with `renameat2(RENAME_NOREPLACE)`. Until the move nobody can
//!   reach it; after the move it already has its final mode. The move
//!   never replaces anything that appeared at the path meanwhile. (A umask
//!   around `bind` would also work, but the umask is per process and the
//!   runtime's other threads could create files under it; `fchmod` on a
//!   socket descriptor does not change the file's mode on Linux.)

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};

/// The bound listener and what the accept loop needs to know about it.
pub struct BoundSocket {
    pub listener: StdListener,
    /// Group of the socket file: the default `allowed_gids`.
    pub gid: u32,
    pub file: SocketFile,
}

/// The socket file this daemon put in place (device, inode and change
/// time, since an inode number is reused as soon as a file is deleted), so
/// that shutdown removes it only if it is still the same file.
pub struct SocketFile {
    pub path: PathBuf,
    id: (u64, u64, i64, i64),
}

fn identity(m: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

impl SocketFile {
    /// Remove the socket file if it is still the one this daemon created
    /// (a newer daemon may have replaced a stale one meanwhile).
    pub fn remove_if_ours(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if identity(&m) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
            _ => tracing::info!(
                "{} is no longer this daemon's socket; left in place",
                self.path.display()
            ),
        }
    }
}

fn refuse(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} {what}; refusing to replace it", path.display()),
    )
}

/// Make sure nothing but a stale socket of ours is at `path`, removing that.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let kind = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symbolic link"
        } else {
            "not a socket"
        };
        return Err(refuse(
            path,
            format_args!("exists and is {kind}, not a socket"),
        ));
    }
    let me = crate::access::rules::daemon_uid();
    if meta.uid() != me {
        return Err(refuse(
            path,
            format_args!(
                "is a socket owned by uid {}, not by this daemon (uid {me})",
                meta.uid()
            ),
        ));
    }
    match StdStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another daemon is serving {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing stale socket {}", path.display());
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "{}: cannot tell whether the socket is stale: {e}",
                path.display()
            ),
        )),
    }
}

/// Bind `path` with permission bits `mode` (see the module comment).
pub fn bind(path: &Path, mode: u32) -> io::Result<BoundSocket> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path has no file name",
        ));
    }
    std::fs::create_dir_all(&dir)?;
    clear_stale(path)?;

    let mut tag = [0u8; 6];
    getrandom::fill(&mut tag).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let private = dir.join(format!(".p11kmsd.{tag}"));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = bind_in(&private, path, mode);
    let _ = std::fs::remove_file(private.join("s"));
    let _ = std::fs::remove_dir(&private);
    let (listener, meta) = result?;
    Ok(BoundSocket {
        listener,
        gid: meta.gid(),
        file: SocketFile {
            path: path.to_path_buf(),
            id: identity(&meta),
        },
    })
}

fn bind_in(private: &Path, path: &Path, mode: u32) -> io::Result<(StdListener, std::fs::Metadata)> {
    let tmp = private.join("s");
    let listener = StdListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, &tmp, cwd, path, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            return Err(refuse(path, "appeared while the socket was being bound"));
        }
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            // A filesystem without RENAME_NOREPLACE: link(2) never replaces.
            std::fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    refuse(path, "appeared while the socket was being bound")
                } else {
                    e
                }
            })?;
        }
        Err(e) => return Err(e.into()),
    }
    // After the move (which changes the change time): what shutdown compares.
    let meta = std::fs::symlink_metadata(path)?;
    Ok((listener, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_regular_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p11kms.sock");
        std::fs::write(&path, b"precious").expect("write");
        let e = bind(&path, 0o660).err().expect("refused");
        assert!(e.to_string().contains("regular file"), "{e}");
        assert_eq!(std::fs::read(&path).expect("still there"), b"precious");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no private directory left: {leftovers:?}"
        );
    }

    #[test]
    fn refuses_a_symlink_and_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").expect("write");
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(bind(&link, 0o660).is_err());
        assert!(target.exists());
        let d = dir.path().join("d.sock");
        std::fs::create_dir(&d).expect("mkdir");
        assert!(bind(&d, 0o660).is_err());
        assert!(d.is_dir());
    }

    #[test]
    fn binds_with_mode_replaces_stale_refuses_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p11kms.sock");
        let b = bind(&path, 0o600).expect("bind");
        let meta = std::fs::symlink_metadata(&path).expect("socket");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o600);
        StdStream::connect(&path).expect("reachable after the move");
        let e = bind(&path, 0o600).err().expect("live socket refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(b.listener); // stale now (file still there)
                          // File times tick in jiffies: let the new socket's differ.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b2 = bind(&path, 0o640).expect("stale socket replaced");
        assert_eq!(
            std::fs::symlink_metadata(&path).expect("socket").mode() & 0o777,
            0o640
        );
        b.file.remove_if_ours();
        assert!(
            path.exists(),
            "the old daemon's shutdown leaves the new socket alone"
        );
        b2.file.remove_if_ours();
        assert!(!path.exists());
    }
}
