//! The sealed record format: `version(1) || nonce(12) || AES-256-GCM(ciphertext || tag)`
//! with associated data binding the record to its instance, kind and id, so
//! a blob copied onto another record (or another instance) fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::{MasterKey, RecordKind};
use crate::error::{Error, Result};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Seals and opens records of one instance.
pub struct Sealer {
    aead: Aes256Gcm,
    instance: String,
}

impl Sealer {
    pub fn new(master: MasterKey, instance: &str) -> Self {
        let aead = Aes256Gcm::new(master.bytes().into());
        Sealer {
            aead,
            instance: instance.to_string(),
        }
    }

    fn aad(&self, kind: RecordKind, id: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.instance.len());
        aad.extend_from_slice(b"p11kms-record-v1\0");
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
        let aad = self.aad(kind, id);
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

    pub fn open(&self, kind: RecordKind, id: u64, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != VERSION {
            return Err(Error::new(
                ck::CKR_DEVICE_ERROR,
                format!("record {kind:?}/{id} is malformed"),
            ));
        }
        let aad = self.aad(kind, id);
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
    }
}
