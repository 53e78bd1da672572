//! The instance master key and its key file `<data_dir>/<instance>.key`.
//!
//! The file holds either the 32 key bytes (the default) or, when the
//! instance names a `master_key_passphrase_file`, the key wrapped under a
//! key-encryption key derived from that passphrase with Argon2id
//! ([`WRAPPED_LEN`] bytes, see [`wrap`]).
//!
//! Key files (and passphrase files) are opened with `O_NOFOLLOW` and checked
//! on the open descriptor (`fstat`): a regular file, owned by the daemon's
//! user, no permission bits for group or others. Anything else refuses the
//! start with a message naming the file and the fix. New key files are
//! written to `<path>.tmp`, synced, then renamed into place, so a crash never
//! leaves a half-written key under the real name.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use pkcs11_sys as ck;
use rustix::fs::{Mode, OFlags};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of an unwrapped key file.
pub const KEY_LEN: usize = 32;
/// Magic of a passphrase-wrapped key file.
const WRAP_MAGIC: &[u8; 8] = b"P11KMSW1";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// `magic(8) || m_cost KiB(4) || t_cost(4) || lanes(4) || salt(16)`.
const HEADER_LEN: usize = 8 + 12 + SALT_LEN;
/// Length of a wrapped key file: header, nonce, key, GCM tag.
pub const WRAPPED_LEN: usize = HEADER_LEN + NONCE_LEN + KEY_LEN + 16;

/// Argon2id cost of a new wrapped key file: 64 MiB, 3 passes, 1 lane
/// (RFC 9106's second recommended option, single-threaded). Stored in the
/// file, so it can change without breaking existing files.
const KEK_M_KIB: u32 = 64 * 1024;
const KEK_T: u32 = 3;
const KEK_P: u32 = 1;
/// Costs accepted when reading (a tampered header must not make start-up
/// allocate or spin without bound).
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE_LEN: usize = 8;

fn err(m: String) -> Error {
    Error::new(ck::CKR_DEVICE_ERROR, m)
}

/// A 256-bit master key, zeroized on drop.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        MasterKey(Zeroizing::new(b))
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|e| err(format!("getrandom: {e}")))?;
        Ok(MasterKey(key))
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Where an instance's key lives and how it is protected.
#[derive(Clone)]
pub struct KeyFile {
    /// `<data_dir>/<instance>.key`.
    pub path: PathBuf,
    pub instance: String,
    /// The passphrase whose Argon2id-derived key wraps the master key, if
    /// the instance is configured with one.
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
}

impl KeyFile {
    /// The key file of `instance` in `data_dir`, with the passphrase read
    /// from `passphrase_file` (checked like a key file) when given.
    pub fn new(data_dir: &Path, instance: &str, passphrase_file: Option<&Path>) -> Result<Self> {
        let passphrase = passphrase_file.map(read_passphrase).transpose()?;
        Ok(KeyFile {
            path: data_dir.join(format!("{instance}.key")),
            instance: instance.to_string(),
            passphrase,
        })
    }

    /// `<instance>.key.new`: the next key during a rotation (see
    /// `storage::open_instance` for how a crash mid-rotation is resolved).
    pub fn next_path(&self) -> PathBuf {
        with_suffix(&self.path, ".new")
    }

    /// Read and unwrap the key at `path` (the key file or its `.new`). A
    /// raw key is accepted even when a passphrase is configured; see
    /// [`KeyFile::needs_wrapping`].
    pub fn read(&self, path: &Path) -> Result<MasterKey> {
        let data = read_private_file(path, "master key file", WRAPPED_LEN)?;
        match (data.len(), &self.passphrase) {
            // A raw key, also when a passphrase is configured: the caller
            // then wraps it (see `needs_wrapping`).
            (KEY_LEN, _) => {
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(&data);
                let key = MasterKey::from_bytes(k);
                zeroize::Zeroize::zeroize(&mut k);
                Ok(key)
            }
            (WRAPPED_LEN, Some(p)) if data.starts_with(WRAP_MAGIC) => {
                unwrap(&data, p, &self.instance).map_err(|e| {
                    err(format!("master key file {}: {}", path.display(), e.msg))
                })
            }
            (WRAPPED_LEN, None) if data.starts_with(WRAP_MAGIC) => Err(err(format!(
                "master key file {} is wrapped under a passphrase: set master_key_passphrase_file for instance {}",
                path.display(),
                self.instance
            ))),
            (n, _) => Err(err(format!(
                "master key file {} holds {n} bytes: expected {KEY_LEN} (a raw key) or {WRAPPED_LEN} \
                 (a passphrase-wrapped key); restore it from your backup",
                path.display()
            ))),
        }
    }

    /// Whether the file at `path` holds an unwrapped key although a
    /// passphrase is configured (the daemon then wraps it at start).
    pub fn needs_wrapping(&self, path: &Path) -> Result<bool> {
        if self.passphrase.is_none() {
            return Ok(false);
        }
        Ok(read_private_file(path, "master key file", WRAPPED_LEN)?.len() == KEY_LEN)
    }

    /// Write `key` (wrapped when a passphrase is configured) to `path`,
    /// atomically: `<path>.tmp` is written, synced and renamed, then the
    /// directory is synced. `replace` allows an existing `path` to be
    /// replaced (re-wrapping the same key); otherwise it must not exist.
    pub fn write(&self, path: &Path, key: &MasterKey, replace: bool) -> Result<()> {
        let bytes = match &self.passphrase {
            None => Zeroizing::new(key.bytes().to_vec()),
            Some(p) => Zeroizing::new(wrap(key, p, &self.instance, KEK_M_KIB, KEK_T, KEK_P)?),
        };
        if !replace && path.symlink_metadata().is_ok() {
            return Err(err(format!(
                "{} already exists; refusing to overwrite a key file",
                path.display()
            )));
        }
        let tmp = with_suffix(path, ".tmp");
        remove_if_exists(&tmp)?;
        let fd = rustix::fs::open(
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| err(format!("create {}: {e}", tmp.display())))?;
        let mut f = fs::File::from(fd);
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| err(format!("write {}: {e}", tmp.display())))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| {
            err(format!(
                "rename {} to {}: {e}",
                tmp.display(),
                path.display()
            ))
        })?;
        sync_dir_of(path)
    }
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Remove a file if it is there (a leftover of an interrupted write).
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(format!("remove {}: {e}", path.display()))),
    }
}

/// fsync the directory holding `path`, so a rename or create in it is
/// durable.
pub fn sync_dir_of(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(format!("sync directory {}: {e}", dir.display())))
}

/// Read a file that only the daemon's user may read: opened with
/// `O_NOFOLLOW`, then checked on the descriptor (`fstat`) — a regular file,
/// owned by the effective uid, no group or other permission bits, at most
/// `max_len` bytes. `what` names the file in messages. A missing file is an
/// error of kind `NotFound` in the message ("does not exist").
pub fn read_private_file(path: &Path, what: &str, max_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => err(format!(
            "{what} {} is a symbolic link; it is opened only directly (O_NOFOLLOW): \
             put the file itself there",
            path.display()
        )),
        rustix::io::Errno::NOENT => err(format!("{what} {} does not exist", path.display())),
        e => err(format!("open {what} {}: {e}", path.display())),
    })?;
    let mut f = fs::File::from(fd);
    let meta = f
        .metadata()
        .map_err(|e| err(format!("fstat {what} {}: {e}", path.display())))?;
    if !meta.file_type().is_file() {
        return Err(err(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(err(format!(
            "{what} {} is owned by uid {} but this process runs as uid {euid}: \
             chown it to the daemon's user (or run the daemon as its owner)",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "{what} {} has mode {mode:04o}; it must not be accessible by group or others: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    if meta.len() > max_len as u64 {
        return Err(err(format!(
            "{what} {} is {} bytes, more than the {max_len} expected",
            path.display(),
            meta.len()
        )));
    }
    let mut data = Zeroizing::new(Vec::with_capacity(max_len + 1));
    (&mut f)
        .take(max_len as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| err(format!("read {what} {}: {e}", path.display())))?;
    if data.len() > max_len {
        return Err(err(format!(
            "{what} {} grew past {max_len} bytes while being read",
            path.display()
        )));
    }
    Ok(data)
}

/// Read a passphrase file (checked like a key file); one trailing newline
/// is not part of the passphrase.
pub fn read_passphrase(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut p = read_private_file(path, "passphrase file", 4096)?;
    if p.last() == Some(&b'\n') {
        p.pop();
        if p.last() == Some(&b'\r') {
            p.pop();
        }
    }
    if p.len() < MIN_PASSPHRASE_LEN {
        return Err(err(format!(
            "passphrase file {} holds a passphrase of {} bytes; at least {MIN_PASSPHRASE_LEN} are needed",
            path.display(),
            p.len()
        )));
    }
    Ok(p)
}

fn kek(passphrase: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| err(format!("argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, &mut out[..])
        .map_err(|e| err(format!("argon2: {e}")))?;
    Ok(out)
}

fn wrap_aad(header: &[u8], instance: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(b"instance\0");
    aad.extend_from_slice(instance.as_bytes());
    aad
}

/// `header || nonce || AES-256-GCM_kek(master)`, the header (with the
/// Argon2id costs and salt) and the instance name as associated data.
fn wrap(
    key: &MasterKey,
    passphrase: &[u8],
    instance: &str,
    m: u32,
    t: u32,
    p: u32,
) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt).map_err(|e| err(format!("getrandom: {e}")))?;
    getrandom::fill(&mut nonce).map_err(|e| err(format!("getrandom: {e}")))?;
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(WRAP_MAGIC);
    out.extend_from_slice(&m.to_le_bytes());
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&p.to_le_bytes());
    out.extend_from_slice(&salt);
    let kek = kek(passphrase, &salt, m, t, p)?;
    let aad = wrap_aad(&out, instance);
    let ct = Aes256Gcm::new((&*kek).into())
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: key.bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| err("wrapping the master key failed".into()))?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn unwrap(data: &[u8], passphrase: &[u8], instance: &str) -> Result<MasterKey> {
    let word = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&data[8 + 4 * i..12 + 4 * i]);
        u32::from_le_bytes(b)
    };
    let (m, t, p) = (word(0), word(1), word(2));
    if m > MAX_M_KIB || t > MAX_T || p > MAX_P {
        return Err(err(format!(
            "Argon2id costs m={m} KiB, t={t}, p={p} are beyond the accepted maximum"
        )));
    }
    let header = &data[..HEADER_LEN];
    let salt = &data[20..HEADER_LEN];
    let nonce = &data[HEADER_LEN..HEADER_LEN + NONCE_LEN];
    let kek = kek(passphrase, salt, m, t, p)?;
    let aad = wrap_aad(header, instance);
    let plain = Zeroizing::new(
        Aes256Gcm::new((&*kek).into())
            .decrypt(
                &Nonce::try_from(nonce).map_err(|_| err("nonce".into()))?,
                Payload {
                    msg: &data[HEADER_LEN + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| {
                err(format!(
                    "cannot unwrap the master key of instance {instance}: wrong passphrase, or the file was altered"
                ))
            })?,
    );
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&plain);
    let key = MasterKey::from_bytes(k);
    zeroize::Zeroize::zeroize(&mut k);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn kf(dir: &Path, pass: Option<&[u8]>) -> KeyFile {
        KeyFile {
            path: dir.join("default.key"),
            instance: "default".into(),
            passphrase: pass.map(|p| Zeroizing::new(p.to_vec())),
        }
    }

    #[test]
    fn written_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = kf(dir.path(), None);
        let k = MasterKey::generate().expect("key");
        f.write(&f.path, &k, false).expect("write");
        let meta = fs::metadata(&f.path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(f.read(&f.path).expect("read").bytes(), k.bytes());
        assert!(!with_suffix(&f.path, ".tmp").exists(), "no temp file left");
        assert!(
            f.write(&f.path, &k, false).is_err(),
            "an existing key file is never overwritten"
        );
    }

    #[test]
    fn loose_mode_symlink_and_wrong_size_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = kf(dir.path(), None);
        let k = MasterKey::generate().expect("key");
        f.write(&f.path, &k, false).expect("write");
        fs::set_permissions(&f.path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = f.read(&f.path).err().expect("0644 refused");
        assert!(e.msg.contains("mode 0644"), "{}", e.msg);
        fs::set_permissions(&f.path, fs::Permissions::from_mode(0o600)).expect("chmod");

        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&f.path, &link).expect("symlink");
        let e = f.read(&link).err().expect("symlink refused");
        assert!(e.msg.contains("symbolic link"), "{}", e.msg);

        let short = dir.path().join("short.key");
        fs::write(&short, [1u8; 31]).expect("write");
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = f.read(&short).err().expect("31 bytes refused");
        assert!(e.msg.contains("31 bytes"), "{}", e.msg);

        let e = f.read(dir.path()).err().expect("a directory refused");
        assert!(e.msg.contains("not a regular file"), "{}", e.msg);
    }

    #[test]
    fn wrapped_key_roundtrip_and_wrong_passphrase() {
        let k = MasterKey::generate().expect("key");
        // Small Argon2 costs: the format, not the cost, is under test.
        let w = wrap(&k, b"correct horse", "default", 64, 1, 1).expect("wrap");
        assert_eq!(w.len(), WRAPPED_LEN);
        assert!(
            !w.windows(8).any(|x| x == &k.bytes()[..8]),
            "key not in clear"
        );
        let back = unwrap(&w, b"correct horse", "default").expect("unwrap");
        assert_eq!(back.bytes(), k.bytes());
        assert!(unwrap(&w, b"wrong horse!", "default").is_err());
        assert!(
            unwrap(&w, b"correct horse", "other").is_err(),
            "bound to the instance"
        );
        let mut t = w.clone();
        t[9] ^= 1; // the cost parameters are authenticated
        assert!(unwrap(&t, b"correct horse", "default").is_err());
    }

    #[test]
    fn passphrase_file_checked_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pass");
        fs::write(&p, b"long enough phrase\n").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            &read_passphrase(&p).expect("read")[..],
            b"long enough phrase"
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(read_passphrase(&p).is_err(), "group-readable refused");
        fs::write(&p, b"short\n").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(read_passphrase(&p).is_err(), "short passphrase refused");
    }
}
