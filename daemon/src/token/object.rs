//! Objects: attribute sets checked against the rule tables of
//! [`super::attrs`], with the key material exposed to mechanisms as a cached
//! [`Key`].

use std::sync::{Arc, RwLock};

use p11kms_protocol::{vendor, AttrResult, Attribute};
use pkcs11_sys as ck;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::attrs::{self, f, Kind, Rule};
use crate::error::{Error, Result};
use crate::mech::Key;

/// An attribute set, sorted by type, stored compactly: one index of
/// `(type, offset, length)` and one buffer holding every value. A key with
/// ~35 attributes costs two allocations instead of ~35, which is what keeps
/// 100,000 token keys in memory cheap. Values are zeroized when dropped or
/// replaced.
#[derive(Default, Clone)]
pub struct Attrs {
    index: Vec<(u64, u32, u32)>,
    data: Vec<u8>,
}

impl Drop for Attrs {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl Serialize for Attrs {
    /// Same form as a `Vec<(u64, Vec<u8>)>` (the stored record format).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.index.len()))?;
        for (ty, v) in self.iter() {
            seq.serialize_element(&(ty, serde_bytes::Bytes::new(v)))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut items: Vec<(u64, serde_bytes::ByteBuf)> = Vec::deserialize(d)?;
        // Stored records are sorted already; sort anyway (stable, so for a
        // repeated type the last value wins after dedup below).
        items.sort_by_key(|(t, _)| *t);
        let mut a = Attrs {
            index: Vec::with_capacity(items.len()),
            data: Vec::with_capacity(items.iter().map(|(_, v)| v.len()).sum()),
        };
        for (i, (ty, v)) in items.iter().enumerate() {
            if items.get(i + 1).is_some_and(|(next, _)| next == ty) {
                continue;
            }
            a.index.push((*ty, a.data.len() as u32, v.len() as u32));
            a.data.extend_from_slice(v);
        }
        for (_, v) in &mut items {
            v.zeroize();
        }
        Ok(a)
    }
}

impl Attrs {
    fn position(&self, ty: u64) -> std::result::Result<usize, usize> {
        self.index.binary_search_by_key(&ty, |(t, _, _)| *t)
    }
    pub fn get(&self, ty: u64) -> Option<&[u8]> {
        self.position(ty).ok().map(|i| {
            let (_, off, len) = self.index[i];
            &self.data[off as usize..(off + len) as usize]
        })
    }
    pub fn has(&self, ty: u64) -> bool {
        self.position(ty).is_ok()
    }
    pub fn bool(&self, ty: u64) -> bool {
        matches!(self.get(ty), Some([b]) if *b != 0)
    }
    pub fn ulong(&self, ty: u64) -> Option<u64> {
        self.get(ty)
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
    }
    /// Rebuild the value buffer with `ty` replaced (or removed when
    /// `value` is `None`); the old buffer is zeroized.
    fn rewrite(&mut self, ty: u64, value: Option<&[u8]>) {
        let mut index = Vec::with_capacity(self.index.len() + 1);
        let mut data = Vec::with_capacity(self.data.len() + value.map_or(0, <[u8]>::len));
        let mut placed = false;
        let push = |t: u64, v: &[u8], index: &mut Vec<(u64, u32, u32)>, data: &mut Vec<u8>| {
            index.push((t, data.len() as u32, v.len() as u32));
            data.extend_from_slice(v);
        };
        for &(t, off, len) in &self.index {
            if t == ty {
                continue;
            }
            if !placed && t > ty {
                if let Some(v) = value {
                    push(ty, v, &mut index, &mut data);
                }
                placed = true;
            }
            push(
                t,
                &self.data[off as usize..(off + len) as usize],
                &mut index,
                &mut data,
            );
        }
        if !placed {
            if let Some(v) = value {
                push(ty, v, &mut index, &mut data);
            }
        }
        self.data.zeroize();
        self.index = index;
        self.data = data;
    }
    pub fn set(&mut self, ty: u64, mut value: Vec<u8>) {
        // Same length: overwrite in place (no reallocation).
        if let Ok(i) = self.position(ty) {
            let (_, off, len) = self.index[i];
            if len as usize == value.len() {
                self.data[off as usize..(off + len) as usize].copy_from_slice(&value);
                value.zeroize();
                return;
            }
        }
        self.rewrite(ty, Some(&value));
        value.zeroize();
    }
    pub fn set_bool(&mut self, ty: u64, v: bool) {
        self.set(ty, vec![u8::from(v)]);
    }
    pub fn set_ulong(&mut self, ty: u64, v: u64) {
        self.set(ty, v.to_le_bytes().to_vec());
    }
    pub fn remove(&mut self, ty: u64) {
        if self.has(ty) {
            self.rewrite(ty, None);
        }
    }
    fn set_default(&mut self, ty: u64, value: Vec<u8>) {
        if !self.has(ty) {
            self.set(ty, value);
        }
    }
    /// `(type, value)` pairs in type order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.index
            .iter()
            .map(|&(t, off, len)| (t, &self.data[off as usize..(off + len) as usize]))
    }
    /// Shrink the buffers to fit (objects kept for the daemon's lifetime).
    pub fn compact(&mut self) {
        self.index.shrink_to_fit();
        self.data.shrink_to_fit();
    }
    pub fn class(&self) -> u64 {
        self.ulong(ck::CKA_CLASS).unwrap_or(u64::MAX)
    }
    pub fn key_type(&self) -> Option<u64> {
        self.ulong(ck::CKA_KEY_TYPE)
    }
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        postcard::to_stdvec(self)
            .map(Zeroizing::new)
            .map_err(|e| Error::general(format!("encode object: {e}")))
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        postcard::from_bytes(b)
            .map_err(|e| Error::new(ck::CKR_DEVICE_ERROR, format!("decode object: {e}")))
    }
    /// Approximate size in bytes (`C_GetObjectSize`).
    pub fn size(&self) -> u64 {
        self.iter().map(|(_, v)| 16 + v.len() as u64).sum()
    }
    fn tables(&self) -> Option<Vec<&'static [Rule]>> {
        attrs::tables(
            self.class(),
            self.key_type(),
            self.ulong(ck::CKA_CERTIFICATE_TYPE),
        )
    }
}

/// Why an object is being built; decides which template attributes are
/// allowed and which defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `C_CreateObject`: material comes from the caller.
    Create,
    /// `C_GenerateKey` / `C_GenerateKeyPair`: material made here.
    Generate,
    /// `C_UnwrapKey` / `C_DeriveKey`: material recovered from the caller's data.
    Unwrap,
}

/// Who is creating, for the SO-only rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Public,
    User,
    So,
}

fn normalize(rule: &Rule, v: &[u8]) -> Vec<u8> {
    match rule.kind {
        Kind::Bool => vec![u8::from(v.first().is_some_and(|b| *b != 0))],
        // Checked by `valid_encoding` first; the fallback is never taken.
        Kind::Template => attrs::canonical_template(v).unwrap_or_else(|| v.to_vec()),
        _ => v.to_vec(),
    }
}

/// Whether the `CK_ULONG` array `new` only drops elements of `cur` (an
/// absent or empty `CKA_ALLOWED_MECHANISMS` allows every mechanism, so any
/// non-empty list narrows it).
fn narrows(cur: Option<&[u8]>, new: &[u8]) -> bool {
    let cur = cur.unwrap_or_default();
    if cur.is_empty() {
        return true;
    }
    !new.is_empty() && new.chunks(8).all(|m| cur.chunks(8).any(|c| c == m))
}

fn read_ulong(t: &[Attribute], ty: u64) -> Result<Option<u64>> {
    match t.iter().rev().find(|a| a.ty == ty) {
        None => Ok(None),
        Some(a) => a
            .value
            .as_deref()
            .unwrap_or_default()
            .try_into()
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| {
                Error::attribute_value_invalid(format!("attribute 0x{ty:x} must be a CK_ULONG"))
            }),
    }
}

/// `CKA_VALUE_LEN` from a template, if present.
pub fn template_value_len(t: &[Attribute]) -> Result<Option<usize>> {
    Ok(read_ulong(t, ck::CKA_VALUE_LEN)?.map(|v| v as usize))
}

/// `CKA_CLASS` / `CKA_KEY_TYPE` of a template, if present.
pub fn template_ulong(t: &[Attribute], ty: u64) -> Result<Option<u64>> {
    read_ulong(t, ty)
}

/// Check a caller template against the tables and build the attribute set
/// with every default filled in. `class` and `key_type` are forced by the
/// caller for generation/unwrap (a template value that disagrees is
/// `CKR_TEMPLATE_INCONSISTENT`). Token-computed attributes (origin, local,
/// value length...) are added by [`finish_key`].
pub fn build(
    template: &[Attribute],
    class: Option<u64>,
    key_type: Option<u64>,
    origin: Origin,
    actor: Actor,
) -> Result<Attrs> {
    let t_class = read_ulong(template, ck::CKA_CLASS)?;
    let class = match (class, t_class) {
        (Some(c), Some(t)) if c != t => {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                "CKA_CLASS disagrees",
            ))
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => return Err(Error::new(ck::CKR_TEMPLATE_INCOMPLETE, "CKA_CLASS missing")),
    };
    let t_kt = read_ulong(template, ck::CKA_KEY_TYPE)?;
    let key_type = match (key_type, t_kt) {
        (Some(k), Some(t)) if k != t => {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                "CKA_KEY_TYPE disagrees with the mechanism",
            ))
        }
        (Some(k), _) | (None, Some(k)) => Some(k),
        (None, None) => None,
    };
    let cert_type = read_ulong(template, ck::CKA_CERTIFICATE_TYPE)?;
    let is_key = matches!(
        class,
        ck::CKO_SECRET_KEY | ck::CKO_PUBLIC_KEY | ck::CKO_PRIVATE_KEY
    );
    if is_key && key_type.is_none() {
        return Err(Error::new(
            ck::CKR_TEMPLATE_INCOMPLETE,
            "CKA_KEY_TYPE missing",
        ));
    }
    let tables = attrs::tables(class, key_type, cert_type).ok_or_else(|| {
        Error::new(
            ck::CKR_TEMPLATE_INCONSISTENT,
            format!(
                "objects of class 0x{class:x} (certificate type {cert_type:?}) are not supported"
            ),
        )
    })?;
    // Key classes this build cannot use yet are refused rather than stored
    // unusable.
    if class == ck::CKO_SECRET_KEY && !secret_key_type_supported(key_type.unwrap_or(u64::MAX)) {
        return Err(Error::attribute_value_invalid(format!(
            "secret key type 0x{:x} is not supported",
            key_type.unwrap_or(0)
        )));
    }
    let mut a = Attrs::default();
    for attr in template {
        let rule = attrs::rule(&tables, attr.ty).ok_or_else(|| {
            Error::new(
                ck::CKR_ATTRIBUTE_TYPE_INVALID,
                format!(
                    "attribute 0x{:x} is not valid for class 0x{class:x}",
                    attr.ty
                ),
            )
        })?;
        // A NULL pValue with length 0 is an empty value in a template.
        let v = attr.value.as_deref().unwrap_or_default();
        if !attrs::valid_encoding(rule.kind, v) {
            return Err(Error::attribute_value_invalid(format!(
                "attribute 0x{:x} is badly encoded",
                attr.ty
            )));
        }
        if rule.flags & f::TOKEN_ONLY != 0 {
            return Err(Error::new(
                ck::CKR_ATTRIBUTE_READ_ONLY,
                format!("attribute 0x{:x} is set by the token", attr.ty),
            ));
        }
        if rule.flags & f::NOT_ON_CREATE != 0 && origin == Origin::Create {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                format!("attribute 0x{:x} is not allowed here", attr.ty),
            ));
        }
        if attr.ty == ck::CKA_VALUE && is_key && origin != Origin::Create {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                "CKA_VALUE is made by the token here",
            ));
        }
        let v = normalize(&rule, v);
        if rule.flags & f::SO_ONLY_TRUE != 0 && v == [1] && actor != Actor::So {
            return Err(Error::new(
                ck::CKR_ATTRIBUTE_READ_ONLY,
                "only the SO may set CKA_TRUSTED",
            ));
        }
        a.set(attr.ty, v);
    }
    a.set_ulong(ck::CKA_CLASS, class);
    if let Some(k) = key_type {
        a.set_ulong(ck::CKA_KEY_TYPE, k);
    }
    if origin == Origin::Create {
        for t in &tables {
            for r in t.iter() {
                if r.flags & f::REQUIRED != 0 && !a.has(r.ty) {
                    return Err(Error::new(
                        ck::CKR_TEMPLATE_INCOMPLETE,
                        format!("attribute 0x{:x} is required", r.ty),
                    ));
                }
            }
        }
    }
    a.set_default(ck::CKA_TOKEN, vec![0]);
    // Token secret and private keys are private unless the template says
    // otherwise; session objects live only in this application's sessions
    // and default to public, so a public session can import a key to use
    // it (what the OpenSSL 3 provider does).
    let private_default =
        a.bool(ck::CKA_TOKEN) && matches!(class, ck::CKO_SECRET_KEY | ck::CKO_PRIVATE_KEY);
    a.set_default(ck::CKA_PRIVATE, vec![u8::from(private_default)]);
    a.set_default(ck::CKA_MODIFIABLE, vec![1]);
    a.set_default(ck::CKA_COPYABLE, vec![1]);
    a.set_default(ck::CKA_DESTROYABLE, vec![1]);
    a.set_default(ck::CKA_LABEL, vec![]);
    let uid = uuid::Uuid::new_v4();
    a.set(ck::CKA_UNIQUE_ID, uid.to_string().into_bytes());
    match class {
        ck::CKO_DATA => {
            a.set_default(ck::CKA_APPLICATION, vec![]);
            a.set_default(ck::CKA_OBJECT_ID, vec![]);
            a.set_default(ck::CKA_VALUE, vec![]);
        }
        ck::CKO_CERTIFICATE => {
            a.set_default(
                ck::CKA_CERTIFICATE_TYPE,
                ck::CKC_X_509.to_le_bytes().to_vec(),
            );
            a.set_default(ck::CKA_TRUSTED, vec![0]);
            a.set_default(ck::CKA_CERTIFICATE_CATEGORY, 0u64.to_le_bytes().to_vec());
            a.set_default(ck::CKA_CHECK_VALUE, vec![]);
            a.set_default(ck::CKA_START_DATE, vec![]);
            a.set_default(ck::CKA_END_DATE, vec![]);
            a.set_default(ck::CKA_PUBLIC_KEY_INFO, vec![]);
            a.set_default(ck::CKA_ID, vec![]);
            a.set_default(ck::CKA_ISSUER, vec![]);
            a.set_default(ck::CKA_SERIAL_NUMBER, vec![]);
            a.set_default(ck::CKA_URL, vec![]);
            a.set_default(ck::CKA_HASH_OF_SUBJECT_PUBLIC_KEY, vec![]);
            a.set_default(ck::CKA_HASH_OF_ISSUER_PUBLIC_KEY, vec![]);
            a.set_default(
                ck::CKA_JAVA_MIDP_SECURITY_DOMAIN,
                0u64.to_le_bytes().to_vec(),
            );
            a.set_default(
                ck::CKA_NAME_HASH_ALGORITHM,
                ck::CKM_SHA_1.to_le_bytes().to_vec(),
            );
        }
        _ => {
            a.set_default(ck::CKA_ID, vec![]);
            a.set_default(ck::CKA_START_DATE, vec![]);
            a.set_default(ck::CKA_END_DATE, vec![]);
            a.set_default(ck::CKA_DERIVE, vec![0]);
            a.set_default(ck::CKA_ALLOWED_MECHANISMS, vec![]);
            let usage_default = vec![1];
            let usage: &[u64] = match class {
                ck::CKO_SECRET_KEY => &[
                    ck::CKA_ENCRYPT,
                    ck::CKA_DECRYPT,
                    ck::CKA_SIGN,
                    ck::CKA_VERIFY,
                    ck::CKA_WRAP,
                    ck::CKA_UNWRAP,
                ],
                ck::CKO_PUBLIC_KEY => &[ck::CKA_ENCRYPT, ck::CKA_VERIFY, ck::CKA_WRAP],
                _ => &[ck::CKA_DECRYPT, ck::CKA_SIGN, ck::CKA_UNWRAP],
            };
            for u in usage {
                a.set_default(*u, usage_default.clone());
            }
            if class == ck::CKO_PUBLIC_KEY {
                a.set_default(ck::CKA_VERIFY_RECOVER, vec![0]);
                a.set_default(ck::CKA_TRUSTED, vec![0]);
                a.set_default(ck::CKA_SUBJECT, vec![]);
            } else {
                // Secure defaults (docs/security.md): the material of a
                // secret or private key never leaves unless the template
                // asks for it.
                a.set_default(ck::CKA_SENSITIVE, vec![1]);
                a.set_default(ck::CKA_EXTRACTABLE, vec![0]);
                a.set_default(ck::CKA_WRAP_WITH_TRUSTED, vec![0]);
                if class == ck::CKO_SECRET_KEY {
                    a.set_default(ck::CKA_TRUSTED, vec![0]);
                } else {
                    a.set_default(ck::CKA_SIGN_RECOVER, vec![0]);
                    a.set_default(ck::CKA_ALWAYS_AUTHENTICATE, vec![0]);
                    a.set_default(ck::CKA_SUBJECT, vec![]);
                }
            }
        }
    }
    Ok(a)
}

/// Secret key types whose material this build can use.
pub fn secret_key_type_supported(kt: u64) -> bool {
    matches!(
        kt,
        ck::CKK_AES
            | ck::CKK_GENERIC_SECRET
            | ck::CKK_SHA_1_HMAC
            | ck::CKK_SHA224_HMAC
            | ck::CKK_SHA256_HMAC
            | ck::CKK_SHA384_HMAC
            | ck::CKK_SHA512_HMAC
            | ck::CKK_SHA3_224_HMAC
            | ck::CKK_SHA3_256_HMAC
            | ck::CKK_SHA3_384_HMAC
            | ck::CKK_SHA3_512_HMAC
            | vendor::CKK_SM4
    )
}

/// Check a secret key value's length for its type.
pub fn check_secret_value(key_type: u64, len: usize) -> Result<()> {
    let ok = match key_type {
        ck::CKK_AES => matches!(len, 16 | 24 | 32),
        vendor::CKK_SM4 => len == crate::mech::sm4::KEY_BYTES,
        _ => (1..=512).contains(&len),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::attribute_value_invalid(format!(
            "a key of type 0x{key_type:x} cannot be {len} bytes long"
        )))
    }
}

/// Add the attributes the token computes for a key: `CKA_LOCAL`, the
/// sensitivity history, `CKA_KEY_GEN_MECHANISM`, `CKA_VALUE_LEN`,
/// `CKA_CHECK_VALUE` and the KMS attributes.
pub fn finish_key(a: &mut Attrs, origin: Origin, gen_mech: Option<u64>, key_id: &str) {
    let local = origin == Origin::Generate;
    let class = a.class();
    a.set_bool(ck::CKA_LOCAL, local);
    a.set_ulong(
        ck::CKA_KEY_GEN_MECHANISM,
        gen_mech.unwrap_or(ck::CK_UNAVAILABLE_INFORMATION),
    );
    if class != ck::CKO_PUBLIC_KEY {
        let sensitive = a.bool(ck::CKA_SENSITIVE);
        let extractable = a.bool(ck::CKA_EXTRACTABLE);
        a.set_bool(ck::CKA_ALWAYS_SENSITIVE, local && sensitive);
        a.set_bool(ck::CKA_NEVER_EXTRACTABLE, local && !extractable);
    }
    if class == ck::CKO_SECRET_KEY {
        let len = a.get(ck::CKA_VALUE).map_or(0, <[u8]>::len) as u64;
        a.set_ulong(ck::CKA_VALUE_LEN, len);
        refresh_check_value(a);
    }
    a.set_ulong(
        vendor::CKA_P11KMS_ORIGIN,
        if local {
            vendor::CKV_P11KMS_ORIGIN_KMS
        } else {
            vendor::CKV_P11KMS_ORIGIN_EXTERNAL
        },
    );
    a.set_ulong(
        vendor::CKA_P11KMS_KEY_STATE,
        vendor::CKV_P11KMS_STATE_ENABLED,
    );
    a.set_ulong(vendor::CKA_P11KMS_KEY_VERSION, 1);
    a.set_bool(vendor::CKA_P11KMS_DEFAULT_KEY, false);
    a.set_bool(vendor::CKA_P11KMS_SERVICE_KEY, false);
    a.set(vendor::CKA_P11KMS_KEY_ID, key_id.as_bytes().to_vec());
    // What the key was at birth, for the wrapping rules. A public key
    // brought in from outside has no private half here that could decrypt,
    // and nothing is known of where its private half has been; a generated
    // public key takes its private half's history (`pair_history`).
    let history = match (class, origin) {
        (ck::CKO_PUBLIC_KEY, Origin::Create) => history::NEVER_DECRYPTS,
        (ck::CKO_PUBLIC_KEY, _) => 0,
        _ => birth_history(a),
    };
    a.set(INTERNAL_HISTORY, vec![history]);
    // CKA_ID defaults to the key id's bytes; a consumer's own CKA_ID wins.
    if a.get(ck::CKA_ID).is_none_or(<[u8]>::is_empty) {
        a.set(ck::CKA_ID, key_id.as_bytes().to_vec());
    }
}

/// Bits of [`INTERNAL_HISTORY`]: facts about a key fixed when it is made
/// and carried into every copy. Usage attributes only ever narrow, so a key
/// born unable to decrypt never learns to, and neither does any copy of it.
pub mod history {
    /// The key (for a public key: its private half) has never been able to
    /// turn a ciphertext back into plaintext for a caller.
    pub const NEVER_DECRYPTS: u8 = 1 << 0;
    /// The key (for a public key: its private half) was generated inside
    /// and has never been extractable.
    pub const NEVER_LEFT: u8 = 1 << 1;
}

/// Whether a secret or private key lets a caller decrypt: `CKA_DECRYPT`,
/// and for RSA private keys signing too — `CKM_RSA_X_509` signing is RSA
/// decryption of whatever the caller hands in.
pub fn can_decrypt(a: &Attrs) -> bool {
    a.bool(ck::CKA_DECRYPT)
        || (a.class() == ck::CKO_PRIVATE_KEY
            && a.key_type() == Some(ck::CKK_RSA)
            && (a.bool(ck::CKA_SIGN) || a.bool(ck::CKA_SIGN_RECOVER)))
}

/// The [`history`] bits of a secret or private key being made now.
fn birth_history(a: &Attrs) -> u8 {
    let mut h = 0;
    if !can_decrypt(a) {
        h |= history::NEVER_DECRYPTS;
    }
    if a.bool(ck::CKA_LOCAL) && !a.bool(ck::CKA_EXTRACTABLE) {
        h |= history::NEVER_LEFT;
    }
    h
}

/// A generated public key inherits its private half's history: whoever
/// holds blobs wrapped under the public key needs the private half.
pub fn pair_history(private: &Attrs, public: &mut Attrs) {
    let h = private.get(INTERNAL_HISTORY).unwrap_or(&[0]).to_vec();
    public.set(INTERNAL_HISTORY, h);
}

fn history_of(a: &Attrs) -> u8 {
    // Keys stored before the history existed count as having decrypted
    // and left: they guard nothing.
    a.get(INTERNAL_HISTORY)
        .and_then(|v| v.first().copied())
        .unwrap_or(0)
}

/// May this key wrap a sensitive key (docs/security.md)? Only a key that
/// has never been able to decrypt (nor its private half), and that is
/// `CKA_TRUSTED` or was generated inside and never extractable: then no
/// caller can open what it wraps except by unwrapping it again, and
/// unwrapping under it only makes sensitive keys ([`unwraps_only_sensitive`]).
pub fn guards_sensitive(w: &Attrs) -> bool {
    let h = history_of(w);
    h & history::NEVER_DECRYPTS != 0 && (w.bool(ck::CKA_TRUSTED) || h & history::NEVER_LEFT != 0)
}

/// Might a blob this key unwraps hold a sensitive key? Then whatever it
/// unwraps must come out sensitive, or wrap-then-unwrap would read any
/// sensitive key. A secret key: if it guards sensitive keys. A private key:
/// if it never decrypted — its public half may be trusted, or become so,
/// which the private half cannot see.
pub fn unwraps_only_sensitive(u: &Attrs) -> bool {
    if u.class() == ck::CKO_PRIVATE_KEY {
        history_of(u) & history::NEVER_DECRYPTS != 0
    } else {
        guards_sensitive(u)
    }
}

/// Wrapping mechanisms whose unwrap authenticates what it recovers: AES
/// key wrap (RFC 3394 / 5649, and SM4's), RSA-OAEP, RSA-AES key wrap, SM2
/// encryption (its C3 hash). Sensitive keys are wrapped, and keys that may
/// hold them unwrapped, only with these: a CBC-PAD or PKCS#1 v1.5 unwrap
/// answers "was the padding right?", which is enough to decrypt any blob
/// (Vaudenay 2002; Bleichenbacher 1998; Bardou et al., "Efficient padding
/// oracle attacks on cryptographic hardware", CRYPTO 2012).
pub fn authenticated_wrap(mech: u64) -> bool {
    matches!(
        mech,
        ck::CKM_AES_KEY_WRAP
            | ck::CKM_AES_KEY_WRAP_PAD
            | ck::CKM_AES_KEY_WRAP_KWP
            | ck::CKM_RSA_PKCS_OAEP
            | ck::CKM_RSA_AES_KEY_WRAP
            | vendor::CKM_SM4_KEY_WRAP
            | vendor::CKM_SM2_ENCRYPT
    )
}

/// Is the key in a lifecycle state that allows use and export?
pub fn enabled(a: &Attrs) -> bool {
    a.ulong(vendor::CKA_P11KMS_KEY_STATE)
        .is_none_or(|st| st == vendor::CKV_P11KMS_STATE_ENABLED)
}

/// A fresh KMS key id: `key-` + UUID.
pub fn new_key_id() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

/// Recompute `CKA_CHECK_VALUE` (and `CKA_VALUE_LEN`) after a secret key's
/// material changed (rotation, import).
pub fn refresh_check_value(a: &mut Attrs) {
    let kcv = match (a.key_type(), a.get(ck::CKA_VALUE)) {
        (Some(ck::CKK_AES), Some(v)) if !v.is_empty() => aes_kcv(v),
        (Some(vendor::CKK_SM4), Some(v)) if !v.is_empty() => crate::mech::sm4::check_value(v),
        _ => Vec::new(),
    };
    a.set(ck::CKA_CHECK_VALUE, kcv);
    if let Some(len) = a.get(ck::CKA_VALUE).map(<[u8]>::len).filter(|l| *l > 0) {
        a.set_ulong(ck::CKA_VALUE_LEN, len as u64);
    }
}

/// AES key check value: the first 3 bytes of the encryption of a zero block
/// (PKCS#11 v3.0 §4.10, `CKA_CHECK_VALUE`).
fn aes_kcv(key: &[u8]) -> Vec<u8> {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    let mut block = aes::Block::default();
    match key.len() {
        16 => aes::Aes128::new_from_slice(key)
            .map(|c| c.encrypt_block(&mut block))
            .ok(),
        24 => aes::Aes192::new_from_slice(key)
            .map(|c| c.encrypt_block(&mut block))
            .ok(),
        32 => aes::Aes256::new_from_slice(key)
            .map(|c| c.encrypt_block(&mut block))
            .ok(),
        _ => None,
    };
    block[..3].to_vec()
}

/// A stored or session object.
pub struct Object {
    /// Object handle; equal to the store id for token objects.
    pub id: u64,
    pub token: bool,
    pub private: bool,
    pub class: u64,
    attrs: RwLock<Attrs>,
    /// Expanded key material, dropped whenever the attributes change.
    key: RwLock<Option<Arc<Key>>>,
}

impl Object {
    pub fn new(id: u64, mut attrs: Attrs) -> Self {
        attrs.compact();
        Object {
            id,
            token: attrs.bool(ck::CKA_TOKEN),
            private: attrs.bool(ck::CKA_PRIVATE),
            class: attrs.class(),
            attrs: RwLock::new(attrs),
            key: RwLock::new(None),
        }
    }

    /// Read access to the attributes.
    pub fn attrs(&self) -> std::sync::RwLockReadGuard<'_, Attrs> {
        self.attrs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn attrs_mut(&self) -> std::sync::RwLockWriteGuard<'_, Attrs> {
        self.attrs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_key(&self) -> bool {
        matches!(
            self.class,
            ck::CKO_SECRET_KEY | ck::CKO_PUBLIC_KEY | ck::CKO_PRIVATE_KEY
        )
    }

    /// Key material for mechanisms, built once.
    pub fn key(&self) -> Result<Arc<Key>> {
        if let Some(k) = self
            .key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(k.clone());
        }
        if !self.is_key() {
            return Err(Error::rv(ck::CKR_KEY_HANDLE_INVALID));
        }
        let a = self.attrs();
        let kt = a
            .key_type()
            .ok_or_else(|| Error::general("key without CKA_KEY_TYPE"))?;
        let value = match self.class {
            ck::CKO_SECRET_KEY => a.get(ck::CKA_VALUE).unwrap_or_default().to_vec(),
            _ => a.get(INTERNAL_DER).unwrap_or_default().to_vec(),
        };
        let k = Arc::new(Key::new(self.class, kt, Zeroizing::new(value)));
        // Still holding the attribute lock: a concurrent replace() cannot
        // slip in between reading the value and caching its expansion.
        *self
            .key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(k.clone());
        Ok(k)
    }

    /// `C_GetAttributeValue` for one attribute. `enabled` is the key's
    /// lifecycle state as the KMS sees it: the value of a disabled or
    /// pending-deletion key is not handed out even when it is extractable.
    pub fn get_attribute(&self, ty: u64, enabled: bool) -> AttrResult {
        let a = self.attrs();
        if is_internal(ty) {
            return AttrResult::Invalid;
        }
        let Some(tables) = a.tables() else {
            return AttrResult::Invalid;
        };
        let Some(rule) = attrs::rule(&tables, ty) else {
            return AttrResult::Invalid;
        };
        if rule.flags & f::SECRET != 0
            && (a.bool(ck::CKA_SENSITIVE) || !a.bool(ck::CKA_EXTRACTABLE) || !enabled)
        {
            return AttrResult::Sensitive;
        }
        match (a.get(ty), rule.kind) {
            (Some(v), _) => AttrResult::Value(v.to_vec()),
            // Arrays a key was made without read as empty (every
            // mechanism allowed, no template), as PKCS#11 defines them.
            (None, Kind::UlongArray) => AttrResult::Value(Vec::new()),
            (None, Kind::Template) => {
                AttrResult::Value(p11kms_protocol::Template::default().encode())
            }
            (None, _) => AttrResult::Invalid,
        }
    }

    /// Apply `C_SetAttributeValue` (or a `C_CopyObject` template when
    /// `copy`) to a copy of the attributes and return it; the caller stores
    /// it and swaps it in.
    pub fn updated(&self, template: &[Attribute], actor: Actor, copy: bool) -> Result<Attrs> {
        let mut a = self.attrs().clone();
        let tables = a
            .tables()
            .ok_or_else(|| Error::general("object of unknown class"))?;
        if !copy && !a.bool(ck::CKA_MODIFIABLE) {
            return Err(Error::new(
                ck::CKR_ACTION_PROHIBITED,
                "object is not modifiable",
            ));
        }
        for attr in template {
            let rule = attrs::rule(&tables, attr.ty).ok_or_else(|| {
                Error::new(
                    ck::CKR_ATTRIBUTE_TYPE_INVALID,
                    format!("attribute 0x{:x} is not valid here", attr.ty),
                )
            })?;
            let v = attr.value.as_deref().unwrap_or_default();
            if !attrs::valid_encoding(rule.kind, v) {
                return Err(Error::attribute_value_invalid(format!(
                    "attribute 0x{:x} is badly encoded",
                    attr.ty
                )));
            }
            let v = normalize(&rule, v);
            let cur = a.get(attr.ty).map(<[u8]>::to_vec);
            let copy_settable = copy
                && matches!(
                    attr.ty,
                    ck::CKA_TOKEN | ck::CKA_PRIVATE | ck::CKA_MODIFIABLE
                );
            if rule.flags & f::TOKEN_ONLY != 0 {
                // Computed by the token (CKA_LOCAL, origin, ...): never
                // settable, not even to the value it already has.
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    format!("attribute 0x{:x} is set by the token", attr.ty),
                ));
            }
            if rule.flags & f::FIXED != 0 && !copy_settable {
                if cur.as_deref() == Some(v.as_slice()) {
                    continue;
                }
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    format!("attribute 0x{:x} cannot be changed", attr.ty),
                ));
            }
            if attr.ty == ck::CKA_MODIFIABLE && v == [1] && !a.bool(ck::CKA_MODIFIABLE) {
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    "CKA_MODIFIABLE cannot become TRUE",
                ));
            }
            if rule.flags & f::ONLY_TO_TRUE != 0 && v == [0] && cur.as_deref() == Some(&[1]) {
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    format!("attribute 0x{:x} can only become TRUE", attr.ty),
                ));
            }
            if rule.flags & f::ONLY_TO_FALSE != 0 && v == [1] && cur.as_deref() == Some(&[0]) {
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    format!("attribute 0x{:x} can only become FALSE", attr.ty),
                ));
            }
            if rule.flags & f::SO_ONLY_TRUE != 0 && v == [1] && actor != Actor::So {
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    "only the SO may set this attribute to TRUE",
                ));
            }
            if rule.flags & f::ONLY_NARROWS != 0 && !narrows(cur.as_deref(), &v) {
                return Err(Error::new(
                    ck::CKR_ATTRIBUTE_READ_ONLY,
                    format!("attribute 0x{:x} can only lose mechanisms", attr.ty),
                ));
            }
            a.set(attr.ty, v);
        }
        if copy {
            a.set(
                ck::CKA_UNIQUE_ID,
                uuid::Uuid::new_v4().to_string().into_bytes(),
            );
        }
        Ok(a)
    }

    /// Replace the attributes (after a successful store write).
    pub fn replace(&self, attrs: Attrs) {
        let mut a = self.attrs_mut();
        *self
            .key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *a = attrs;
    }

    /// Does the object match every attribute of a find template? Values
    /// compare by the attribute's kind: booleans as booleans, everything
    /// else byte for byte. Secret values never match (a find would be an
    /// oracle on them), nor do attributes the object's class lacks.
    pub fn matches(&self, template: &[Attribute]) -> bool {
        let a = self.attrs();
        let Some(tables) = a.tables() else {
            return false;
        };
        template.iter().all(|t| {
            if is_internal(t.ty) {
                return false;
            }
            let Some(rule) = attrs::rule(&tables, t.ty) else {
                return false;
            };
            if rule.flags & f::SECRET != 0 {
                return false;
            }
            let want = t.value.as_deref().unwrap_or_default();
            match (a.get(t.ty), rule.kind) {
                (Some([have]), Kind::Bool) => match want {
                    [w] => (*have != 0) == (*w != 0),
                    _ => false,
                },
                (Some(have), _) => have == want,
                (None, _) => false,
            }
        })
    }
}

/// Internal attribute holding an asymmetric key's DER (PKCS#8 or SPKI).
/// Never readable, never settable, never matched.
pub const INTERNAL_DER: u64 = 0x8E11_FF01;
/// Internal attribute: the KMS metadata of a key (postcard `KeyMeta`).
pub const INTERNAL_META: u64 = 0x8E11_FF02;
/// Internal attribute: present (value 1) on the objects that hold an older
/// version of a rotated key.
pub const INTERNAL_VERSION_OBJECT: u64 = 0x8E11_FF03;

/// Internal attribute: the key's [`history`] bits (one byte).
pub const INTERNAL_HISTORY: u64 = 0x8E11_FF04;

/// Internal attributes live in `0x8E11FF00..=0x8E11FFFF`: the daemon's own
/// bookkeeping, never visible through PKCS#11.
pub fn is_internal(ty: u64) -> bool {
    (0x8E11_FF00..=0x8E11_FFFF).contains(&ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_templates_are_stored_canonical() {
        use p11kms_protocol::Template;
        let given = Template(vec![
            Attribute::new(ck::CKA_LABEL, b"b".to_vec()),
            Attribute::new(ck::CKA_SENSITIVE, vec![0xff]),
            Attribute::new(ck::CKA_LABEL, b"last".to_vec()),
            Attribute {
                ty: ck::CKA_ID,
                value: None,
            },
        ]);
        let want = Template(vec![
            Attribute::new(ck::CKA_LABEL, b"last".to_vec()),
            Attribute::new(ck::CKA_ID, Vec::new()),
            Attribute::bool(ck::CKA_SENSITIVE, true),
        ]);
        assert_eq!(
            attrs::canonical_template(&given.encode()),
            Some(want.encode())
        );
        assert_eq!(
            attrs::canonical_template(&[]),
            Some(Template::default().encode())
        );
        for bad in [
            Template(vec![Attribute::new(0x8123_4567, vec![1])]), // unknown type
            Template(vec![Attribute::new(ck::CKA_SENSITIVE, vec![1, 1])]), // not a CK_BBOOL
        ] {
            assert_eq!(attrs::canonical_template(&bad.encode()), None, "{bad:?}");
        }
        assert_eq!(attrs::canonical_template(b"junk"), None);
    }

    #[test]
    fn allowed_mechanisms_only_narrow() {
        let l = |v: &[u64]| v.iter().flat_map(|m| m.to_le_bytes()).collect::<Vec<u8>>();
        assert!(narrows(None, &l(&[1])));
        assert!(narrows(Some(&[]), &l(&[1, 2])));
        assert!(narrows(Some(&l(&[1, 2])), &l(&[2])));
        assert!(narrows(Some(&l(&[1, 2])), &l(&[2, 1])));
        assert!(!narrows(Some(&l(&[1, 2])), &l(&[3])));
        assert!(!narrows(Some(&l(&[1, 2])), &[]));
    }

    #[test]
    fn attrs_set_get_remove_and_record_format() {
        let mut a = Attrs::default();
        a.set(5, b"five".to_vec());
        a.set(1, b"one".to_vec());
        a.set(3, vec![]);
        a.set_ulong(9, 42);
        assert_eq!(a.get(1), Some(&b"one"[..]));
        assert_eq!(a.get(3), Some(&b""[..]));
        assert_eq!(a.ulong(9), Some(42));
        a.set(5, b"FIVE".to_vec()); // same length: in place
        a.set(1, b"uno!!".to_vec()); // other length: rebuilt
        assert_eq!(a.get(5), Some(&b"FIVE"[..]));
        assert_eq!(a.get(1), Some(&b"uno!!"[..]));
        a.remove(3);
        assert!(!a.has(3));
        let types: Vec<u64> = a.iter().map(|(t, _)| t).collect();
        assert_eq!(types, vec![1, 5, 9]);
        // The stored record is a plain Vec<(u64, Vec<u8>)> in postcard.
        let bytes = a.to_bytes().expect("encode");
        let plain: Vec<(u64, Vec<u8>)> = postcard::from_bytes(&bytes).expect("decode as pairs");
        assert_eq!(plain[0], (1, b"uno!!".to_vec()));
        let back =
            Attrs::from_bytes(&postcard::to_stdvec(&plain).expect("encode")).expect("decode");
        assert_eq!(back.get(9), a.get(9));
        assert_eq!(back.iter().count(), 3);
    }
}
