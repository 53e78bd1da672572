//! The KMS layer: customer master keys (CMK) on top of token objects — key
//! ids, aliases, origin, lifecycle, versions and rotation, default and
//! service keys, import of key material, envelope encryption.
//!
//! Every key object is a CMK. Its identity is `CKA_P11KMS_KEY_ID`; the
//! object that carries the KMS metadata (`INTERNAL_META`) is the *primary*:
//! the secret key, or the private half of a key pair. Older versions of a
//! rotated key are separate objects marked `INTERNAL_VERSION_OBJECT`, usable
//! for decrypt/verify/unwrap only. Lifecycle changes apply to every object of
//! the key at once, in one store transaction.

pub mod admin;
pub mod envelope;
pub mod sweep;

use std::sync::Arc;

use p11kms_protocol::{vendor, KeyMetadata, KeyVersionInfo};
use pkcs11_sys as ck;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::token::object::{Attrs, Object, INTERNAL_META, INTERNAL_VERSION_OBJECT};
use crate::token::Token;

/// KMS metadata kept (sealed, like every attribute) on the primary object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyMeta {
    pub created: u64,
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// Aliases besides the primary one (`CKA_LABEL`).
    pub aliases: Vec<String>,
    pub usage: String,
    pub rotation_interval_days: Option<u32>,
    pub next_rotation: Option<u64>,
    pub deletion: Option<u64>,
    pub material_expires: Option<u64>,
    pub service: Option<String>,
    /// (version, creation time), oldest first.
    pub versions: Vec<(u32, u64)>,
}

impl KeyMeta {
    pub fn of(a: &Attrs) -> KeyMeta {
        a.get(INTERNAL_META)
            .and_then(|b| postcard::from_bytes(b).ok())
            .unwrap_or_default()
    }

    pub fn store(&self, a: &mut Attrs) -> Result<()> {
        let b = postcard::to_stdvec(self)
            .map_err(|e| Error::general(format!("encode key metadata: {e}")))?;
        a.set(INTERNAL_META, b);
        Ok(())
    }
}

/// Import parameters handed out and not used yet. Kept in memory for the
/// lookups and, sealed, in the instance's store (`RecordKind::Import`), so
/// that a token stays good across a daemon restart for its 24 hours, and
/// stays used once it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportSession {
    pub instance: String,
    pub key_id: String,
    pub algorithm: String,
    pub spec: String,
    pub expires: u64,
    /// The id of its record in the instance's store.
    pub record: u64,
}

/// What an import record holds.
#[derive(Serialize, Deserialize)]
struct StoredImport {
    token: String,
    session: ImportSession,
}

/// The record that says an instance's default key was made, and which key
/// it is: kept (sealed) among the instance's KMS records so that a default
/// key that goes missing is reported instead of silently replaced. Told
/// apart from import records by this prefix (a postcard import record
/// starts with the length of its 48-character token).
const DEFAULT_KEY_MARK: &[u8] = b"\xffp11kms default key\x00";

/// What the KMS layer remembers of an instance's default key.
#[derive(Debug, Clone)]
struct DefaultMark {
    key_id: String,
    /// Whether its absence was reported already in this daemon's life.
    reported: bool,
}

/// The KMS layer's in-memory state.
#[derive(Default)]
pub struct KmsState {
    imports: std::sync::Mutex<std::collections::HashMap<String, ImportSession>>,
    defaults: std::sync::Mutex<std::collections::HashMap<String, DefaultMark>>,
}

impl KmsState {
    fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ImportSession>> {
        self.imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record an issued token: durably in `token`'s store first (a token
    /// the store did not take is never handed out), then in memory.
    pub fn add_import(&self, token: &str, s: ImportSession, store: &Token) -> Result<()> {
        let plain = postcard::to_stdvec(&StoredImport {
            token: token.to_string(),
            session: s.clone(),
        })
        .map_err(|e| Error::general(format!("import record: {e}")))?;
        store.put_import_record(s.record, &plain)?;
        let mut m = self.sessions();
        let t = now();
        m.retain(|_, v| v.expires >= t);
        m.insert(token.to_string(), s);
        Ok(())
    }

    /// Remove and return an import session: each token is good for one try.
    /// The caller deletes its record from the issuing instance's store
    /// (`Token::delete_import_record`) before importing, so that the token
    /// stays used across a restart.
    pub fn take_import(&self, token: &str) -> Option<ImportSession> {
        self.sessions().remove(token)
    }

    /// Take over the KMS records `token` found at load: the default-key
    /// mark; unexpired import records become live again, expired or
    /// unreadable ones are deleted.
    pub fn load_imports(&self, token: &Token) -> Result<()> {
        let t = now();
        let mut m = self.sessions();
        for (id, plain) in token.take_loaded_imports() {
            if let Some(key_id) = plain.strip_prefix(DEFAULT_KEY_MARK) {
                self.marks().insert(
                    token.instance.clone(),
                    DefaultMark {
                        key_id: String::from_utf8_lossy(key_id).into_owned(),
                        reported: false,
                    },
                );
                continue;
            }
            match postcard::from_bytes::<StoredImport>(&plain) {
                Ok(r) if r.session.expires >= t && r.session.record == id => {
                    m.insert(r.token, r.session);
                }
                _ => token.delete_import_record(id)?,
            }
        }
        Ok(())
    }
}

impl KmsState {
    fn marks(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, DefaultMark>> {
        self.defaults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key id of `instance`'s default key, once one was made.
    pub fn default_key_id(&self, instance: &str) -> Option<String> {
        self.marks().get(instance).map(|m| m.key_id.clone())
    }

    /// Record durably that `key_id` is `token`'s default key.
    pub fn mark_default_key(&self, token: &Token, key_id: &str) -> Result<()> {
        let record = [DEFAULT_KEY_MARK, key_id.as_bytes()].concat();
        token.put_import_record(token.allocate_id(), &record)?;
        self.marks().insert(
            token.instance.clone(),
            DefaultMark {
                key_id: key_id.to_string(),
                reported: false,
            },
        );
        Ok(())
    }

    /// True the first time it is asked in this daemon's life: the missing
    /// default key of `instance` is reported once.
    pub fn first_report_of_missing_default(&self, instance: &str) -> bool {
        match self.marks().get_mut(instance) {
            Some(m) if !m.reported => {
                m.reported = true;
                true
            }
            _ => false,
        }
    }

    /// `C_InitToken` wiped `instance`'s store: forget its default key and
    /// the import parameters handed out for its keys.
    pub fn forget_instance(&self, instance: &str) {
        self.marks().remove(instance);
        self.sessions().retain(|_, s| s.instance != instance);
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn state_name(s: u64) -> &'static str {
    match s {
        vendor::CKV_P11KMS_STATE_ENABLED => "Enabled",
        vendor::CKV_P11KMS_STATE_DISABLED => "Disabled",
        vendor::CKV_P11KMS_STATE_PENDING_DELETION => "PendingDeletion",
        vendor::CKV_P11KMS_STATE_PENDING_IMPORT => "PendingImport",
        _ => "Unknown",
    }
}

/// The key id of an object, if it is a key.
pub fn key_id_of(o: &Object) -> Option<String> {
    o.attrs()
        .get(vendor::CKA_P11KMS_KEY_ID)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

pub fn is_version_object(a: &Attrs) -> bool {
    a.bool(INTERNAL_VERSION_OBJECT)
}

/// Is `o` under KMS lifecycle management? Then only the lifecycle commands
/// change it: PKCS#11 may use it, but not destroy, copy or modify it
/// (docs/kms.md, "Which keys the KMS manages"). Managed are: the objects of
/// a key made by `p11kms key create` (default, service and import keys
/// included), of a key any lifecycle command has touched since (both leave
/// the key's metadata on its primary object), and every version object. A
/// key made through PKCS#11 and never touched by the KMS stays a plain
/// PKCS#11 key. Session objects are never managed.
pub fn managed(token: &Token, o: &Object) -> bool {
    if !o.token || !o.is_key() {
        return false;
    }
    {
        let a = o.attrs();
        if is_version_object(&a)
            || a.has(INTERNAL_META)
            || a.bool(vendor::CKA_P11KMS_DEFAULT_KEY)
            || a.bool(vendor::CKA_P11KMS_SERVICE_KEY)
        {
            return true;
        }
    }
    let Some(id) = key_id_of(o) else {
        return false;
    };
    token
        .objects_of_key(&id)
        .iter()
        .any(|x| x.attrs().has(INTERNAL_META))
}

/// Is `o` the primary object of its key? Among the key's objects that are
/// not version objects: the one carrying the KMS metadata, else the
/// secret or private key with the lowest handle (a plain PKCS#11 key may
/// have copies sharing its key id), else the public key.
pub fn is_primary(token: &Token, o: &Object) -> bool {
    if !o.is_key() || is_version_object(&o.attrs()) {
        return false;
    }
    let Some(id) = key_id_of(o) else { return false };
    token
        .objects_of_key(&id)
        .iter()
        .filter(|x| !is_version_object(&x.attrs()))
        .min_by_key(|x| {
            (
                !x.attrs().has(crate::token::object::INTERNAL_META),
                x.class == ck::CKO_PUBLIC_KEY,
                x.id,
            )
        })
        .is_some_and(|p| p.id == o.id)
}

/// The primary object of a key named by key id or alias.
pub fn resolve(token: &Token, key: &str) -> Result<Arc<Object>> {
    let not_found = || {
        Error::new(
            ck::CKR_KEY_HANDLE_INVALID,
            format!("no key with id or alias {key:?}"),
        )
    };
    if key.starts_with("key-") {
        return token
            .objects_of_key(key)
            .into_iter()
            .find(|o| is_primary(token, o))
            .ok_or_else(not_found);
    }
    // A KMS-managed key's alias wins over a plain PKCS#11 key that a
    // consumer labelled the same.
    let named: Vec<Arc<Object>> = token
        .all_objects()
        .into_iter()
        .filter(|o| is_primary(token, o))
        .filter(|o| {
            let a = o.attrs();
            a.get(ck::CKA_LABEL) == Some(key.as_bytes())
                || KeyMeta::of(&a).aliases.iter().any(|x| x == key)
        })
        .collect();
    named
        .iter()
        .find(|o| managed(token, o))
        .or_else(|| named.first())
        .cloned()
        .ok_or_else(not_found)
}

/// Every alias in use on the token.
pub fn alias_taken(token: &Token, alias: &str) -> bool {
    token
        .all_objects()
        .iter()
        .filter(|o| is_primary(token, o))
        .any(|o| {
            let a = o.attrs();
            a.get(ck::CKA_LABEL) == Some(alias.as_bytes())
                || KeyMeta::of(&a).aliases.iter().any(|x| x == alias)
        })
}

/// The key spec name of an object (`AES_256`, `RSA_2048`, `EC_P256`, ...).
pub fn spec_of(a: &Attrs) -> String {
    match a.key_type() {
        Some(ck::CKK_AES) => format!("AES_{}", a.ulong(ck::CKA_VALUE_LEN).unwrap_or(0) * 8),
        Some(ck::CKK_RSA) => {
            let bits = a
                .get(ck::CKA_MODULUS)
                .map_or(0, |m| m.iter().skip_while(|b| **b == 0).count() * 8);
            format!("RSA_{bits}")
        }
        Some(ck::CKK_EC) => match a.get(ck::CKA_EC_PARAMS) {
            Some(p) if p == P256_OID => "EC_P256".into(),
            Some(p) if p == P384_OID => "EC_P384".into(),
            Some(p) if p == P521_OID => "EC_P521".into(),
            _ => "EC".into(),
        },
        Some(ck::CKK_EC_EDWARDS) => "ED25519".into(),
        Some(vendor::CKK_SM2) => "EC_SM2".into(),
        Some(vendor::CKK_SM4) => "SM4".into(),
        Some(ck::CKK_GENERIC_SECRET) => "GENERIC_SECRET".into(),
        Some(other) => format!("0x{other:x}"),
        None => "UNKNOWN".into(),
    }
}

/// DER of the named-curve OIDs.
pub const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

/// Metadata of a key for the CLI.
pub fn describe(primary: &Object) -> KeyMetadata {
    let a = primary.attrs();
    let meta = KeyMeta::of(&a);
    let key_id =
        String::from_utf8_lossy(a.get(vendor::CKA_P11KMS_KEY_ID).unwrap_or_default()).into_owned();
    let primary_version = a.ulong(vendor::CKA_P11KMS_KEY_VERSION).unwrap_or(1) as u32;
    let mut aliases: Vec<String> = Vec::new();
    if let Some(l) = a.get(ck::CKA_LABEL).filter(|l| !l.is_empty()) {
        aliases.push(String::from_utf8_lossy(l).into_owned());
    }
    aliases.extend(meta.aliases.iter().cloned());
    let versions = if meta.versions.is_empty() {
        vec![KeyVersionInfo {
            version: primary_version,
            created_unix: meta.created,
            primary: true,
        }]
    } else {
        meta.versions
            .iter()
            .map(|(v, t)| KeyVersionInfo {
                version: *v,
                created_unix: *t,
                primary: *v == primary_version,
            })
            .collect()
    };
    let usage = if !meta.usage.is_empty() {
        meta.usage.clone()
    } else if a.bool(ck::CKA_SIGN) || a.bool(ck::CKA_VERIFY) && !a.bool(ck::CKA_ENCRYPT) {
        "SIGN/VERIFY".into()
    } else {
        "ENCRYPT/DECRYPT".into()
    };
    let origin = if a.ulong(vendor::CKA_P11KMS_ORIGIN) == Some(vendor::CKV_P11KMS_ORIGIN_EXTERNAL) {
        "EXTERNAL"
    } else {
        "KMS"
    };
    KeyMetadata {
        key_id,
        aliases,
        description: meta.description.clone(),
        tags: meta.tags.clone(),
        spec: spec_of(&a),
        usage,
        origin: origin.into(),
        protection_level: "SOFTWARE".into(),
        created_unix: meta.created,
        state: state_name(a.ulong(vendor::CKA_P11KMS_KEY_STATE).unwrap_or(0)).into(),
        primary_version,
        versions,
        rotation_interval_days: meta.rotation_interval_days,
        next_rotation_unix: meta.next_rotation,
        deletion_unix: meta.deletion,
        material_expires_unix: meta.material_expires,
        service: meta.service.clone(),
        default_key: a.bool(vendor::CKA_P11KMS_DEFAULT_KEY),
        cka_id_hex: a
            .get(ck::CKA_ID)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// A lifecycle event, the one place the audit trail will hook in.
pub fn event(instance: &str, key_id: &str, what: &str) {
    tracing::info!(target: "p11kms::kms", instance, key_id, event = what, "key lifecycle");
}

#[cfg(test)]
mod tests;
