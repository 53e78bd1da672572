//! The instance master key: 32 random bytes in a key file created at first
//! start with mode 0600. The daemon refuses to start when the file is
//! readable or writable by group or others.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use pkcs11_sys as ck;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A 256-bit master key, zeroized on drop.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(Zeroizing::new(b))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Open the key file at `path`, creating it (0600, fresh random key) if
    /// it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let err = |m: String| Error::new(ck::CKR_DEVICE_ERROR, m);
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "master key file {} has mode {mode:o}; it must not be accessible by group or others (chmod 600)",
                        path.display()
                    )));
                }
                let data = Zeroizing::new(
                    fs::read(path).map_err(|e| err(format!("read {}: {e}", path.display())))?,
                );
                let key: [u8; 32] = data[..].try_into().map_err(|_| {
                    err(format!(
                        "master key file {} must hold exactly 32 bytes",
                        path.display()
                    ))
                })?;
                Ok(MasterKey::from_bytes(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                getrandom::fill(&mut key[..]).map_err(|e| err(format!("getrandom: {e}")))?;
                let tmp = path.with_extension("key.tmp");
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| err(format!("create {}: {e}", tmp.display())))?;
                f.write_all(&key[..])
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err(format!("write {}: {e}", tmp.display())))?;
                fs::rename(&tmp, path)
                    .map_err(|e| err(format!("rename {}: {e}", path.display())))?;
                if let Some(dir) = path.parent() {
                    if let Ok(d) = fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Ok(MasterKey::from_bytes(*key))
            }
            Err(e) => Err(err(format!("stat {}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_0600_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("default.key");
        let a = MasterKey::load_or_create(&p).expect("create");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let b = MasterKey::load_or_create(&p).expect("load");
        assert_eq!(a.bytes(), b.bytes());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(MasterKey::load_or_create(&p).is_err(), "loose mode refused");
    }
}
