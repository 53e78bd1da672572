//! The sealed record format: `version(1) || nonce(12) || AES-256-GCM(ciphertext || tag)`
//! with associated data binding the record to its format version, instance,
//! kind and id, so a blob copied onto another record (or another instance)
//! fails to open.
//!
//! Version 2 (written since the integrity manifest, `storage::manifest`)
//! puts the version itself into the associated data; version 1 records are
//! opened only to migrate a store written by an older daemon.
//!
//! Each blob also has a *ledger entry*: HMAC-SHA256 over kind, id and the
//! whole blob, under a key derived from the master key. The manifest holds
//! the XOR of the entries of all live records; nobody without the master
//! key can compute an entry, so a set of blobs other than the one last
//! written (a record restored from an old copy, deleted, or resurrected)
//! does not match it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::{MasterKey, RecordKind};
use crate::error::{Error, Result};

/// Format of the records this daemon writes.
pub const VERSION: u8 = 2;
/// Format of records written before the integrity manifest.
pub const LEGACY_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A ledger entry (see the module docs).
pub type Entry = [u8; 32];

/// Seals and opens records of one instance.
pub struct Sealer {
    aead: Aes256Gcm,
    ledger_key: Zeroizing<[u8; 32]>,
    instance: String,
}

/// The format version of a stored blob (its first byte).
pub fn blob_version(blob: &[u8]) -> Option<u8> {
    blob.first().copied()
}

impl Sealer {
    pub fn new(master: MasterKey, instance: &str) -> Self {
        let aead = Aes256Gcm::new(master.bytes().into());
        // A key of its own for the ledger: HMAC(master, label || instance).
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(master.bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"p11kms ledger key v1\0");
        mac.update(instance.as_bytes());
        let mut ledger_key = Zeroizing::new([0u8; 32]);
        ledger_key.copy_from_slice(&mac.finalize().into_bytes());
        Sealer {
            aead,
            ledger_key,
            instance: instance.to_string(),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn aad(&self, version: u8, kind: RecordKind, id: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.instance.len());
        match version {
            LEGACY_VERSION => aad.extend_from_slice(b"p11kms-record-v1\0"),
            _ => aad.extend_from_slice(b"p11kms-record-v2\0"),
        }
        aad.extend_from_slice(self.instance.as_bytes());
        aad.push(0);
        aad.push(kind as u8);
        aad.extend_from_slice(&id.to_le_bytes());
        aad
    }

    pub fn seal(&self, kind: RecordKind, id: u64, plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::new(ck::CKR_DEVICE_ERROR, format!("getrandom: {e}")))?;
        let aad = self.aad(VERSION, kind, id);
        let ct = self
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::general("record sealing failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open a current-format record.
    pub fn open(&self, kind: RecordKind, id: u64, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.open_version(VERSION, kind, id, blob)
    }

    /// Open a record written before the manifest existed (migration only).
    pub fn open_legacy(
        &self,
        kind: RecordKind,
        id: u64,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.open_version(LEGACY_VERSION, kind, id, blob)
    }

    fn open_version(
        &self,
        version: u8,
        kind: RecordKind,
        id: u64,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != version {
            return Err(Error::new(
                ck::CKR_DEVICE_ERROR,
                format!(
                    "record {kind:?}/{id} of instance {} is malformed or of format {} where {version} was expected",
                    self.instance,
                    blob.first().copied().unwrap_or(0)
                ),
            ));
        }
        let aad = self.aad(version, kind, id);
        let plain = self
            .aead
            .decrypt(&Nonce::try_from(&blob[1..1 + NONCE_LEN]).map_err(|_| Error::general("nonce"))?, Payload { msg: &blob[1 + NONCE_LEN..], aad: &aad })
            .map_err(|_| {
                Error::new(
                    ck::CKR_DEVICE_ERROR,
                    format!("record {kind:?}/{id} of instance {} failed authentication (wrong master key or tampered store)", self.instance),
                )
            })?;
        Ok(Zeroizing::new(plain))
    }

    /// Seal in the format of older daemons (tests of the migration).
    #[cfg(test)]
    pub fn seal_legacy(&self, kind: RecordKind, id: u64, plain: &[u8]) -> Result<Vec<u8>> {
        let nonce = [3u8; NONCE_LEN];
        let aad = self.aad(LEGACY_VERSION, kind, id);
        let ct = self
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::general("record sealing failed"))?;
        let mut out = vec![LEGACY_VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// The ledger entry of a stored blob.
    pub fn entry(&self, kind: RecordKind, id: u64, blob: &[u8]) -> Entry {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.ledger_key[..])
            .expect("HMAC takes keys of any length");
        mac.update(&[kind as u8]);
        mac.update(&id.to_le_bytes());
        mac.update(&(blob.len() as u64).to_le_bytes());
        mac.update(blob);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let s = Sealer::new(MasterKey::from_bytes([7; 32]), "default");
        let blob = s.seal(RecordKind::Object, 5, b"hello").expect("seal");
        assert_eq!(
            &s.open(RecordKind::Object, 5, &blob).expect("open")[..],
            b"hello"
        );
        assert!(s.open(RecordKind::Object, 6, &blob).is_err(), "id is bound");
        assert!(
            s.open(RecordKind::Token, 5, &blob).is_err(),
            "kind is bound"
        );
        let other = Sealer::new(MasterKey::from_bytes([7; 32]), "other");
        assert!(
            other.open(RecordKind::Object, 5, &blob).is_err(),
            "instance is bound"
        );
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            s.open(RecordKind::Object, 5, &bad).is_err(),
            "tampering detected"
        );
        assert!(
            !blob.windows(5).any(|w| w == b"hello"),
            "plaintext not visible"
        );
        assert!(
            s.open_legacy(RecordKind::Object, 5, &blob).is_err(),
            "a current record is not a legacy one"
        );
        let mut relabeled = blob.clone();
        relabeled[0] = LEGACY_VERSION;
        assert!(
            s.open_legacy(RecordKind::Object, 5, &relabeled).is_err(),
            "the version is authenticated"
        );
    }

    #[test]
    fn ledger_entries_depend_on_key_record_and_blob() {
        let s = Sealer::new(MasterKey::from_bytes([7; 32]), "default");
        let e = s.entry(RecordKind::Object, 5, b"blob");
        assert_eq!(e, s.entry(RecordKind::Object, 5, b"blob"));
        assert_ne!(e, s.entry(RecordKind::Object, 6, b"blob"));
        assert_ne!(e, s.entry(RecordKind::Token, 5, b"blob"));
        assert_ne!(e, s.entry(RecordKind::Object, 5, b"blob2"));
        let other = Sealer::new(MasterKey::from_bytes([8; 32]), "default");
        assert_ne!(e, other.entry(RecordKind::Object, 5, b"blob"));
    }
}
