//! `CKM_P11KMS_AES_GCM_ENVELOPE`: GCM encryption whose ciphertext names the
//! key id and key version, so decryption finds the right version by itself
//! and rotation never strands stored ciphertext.
//!
//! ```text
//! "P11E" | 0x01 | len(key id) | key id | version (u32 BE) | IV (12) | ciphertext | tag (16)
//! ```
//! The header (everything before the IV) and the caller's AAD are both
//! authenticated. AES-256 keys use AES-256-GCM; SM4 keys (the default key
//! of a `gm` instance) use SM4-GCM as RFC 8998 defines it. The GCM itself is
//! the registered `CKM_AES_GCM` / `CKM_SM4_GCM` mechanism, so the envelope
//! adds framing and version lookup and no cryptography of its own.

use std::sync::Arc;

use p11kms_protocol::{vendor, MechParam, MechanismInfo};
use pkcs11_sys as ck;

use crate::error::{Error, Result};
use crate::mech::{CipherOp, Key, Mechanism, Registry};
use crate::token::object::Object;
use crate::token::Token;

const MAGIC: &[u8; 4] = b"P11E";
const FORMAT: u8 = 1;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Listed in `C_GetMechanismList`; the dispatcher builds the operations
/// itself because decryption must look up other objects of the key.
struct EnvelopeInfo;

impl Mechanism for EnvelopeInfo {
    fn mech(&self) -> u64 {
        vendor::CKM_P11KMS_AES_GCM_ENVELOPE
    }
    fn info(&self) -> MechanismInfo {
        MechanismInfo {
            min_key_size: 16,
            max_key_size: 32,
            flags: ck::CKF_ENCRYPT | ck::CKF_DECRYPT,
        }
    }
}

pub fn register(r: &mut Registry) {
    r.add(EnvelopeInfo);
}

fn aad_of(param: &MechParam) -> Result<Vec<u8>> {
    match param {
        MechParam::None => Ok(Vec::new()),
        MechParam::Bytes(b) => Ok(b.clone()),
        _ => Err(Error::param_invalid(
            "envelope parameter is the AAD bytes or nothing",
        )),
    }
}

/// The key's id, version and the GCM mechanism its type takes.
fn check_key(o: &Object) -> Result<(String, u32, u64)> {
    let a = o.attrs();
    let len = a.get(ck::CKA_VALUE).map(<[u8]>::len);
    let gcm = match (o.class, a.key_type(), len) {
        (ck::CKO_SECRET_KEY, Some(ck::CKK_AES), Some(32)) => ck::CKM_AES_GCM,
        (ck::CKO_SECRET_KEY, Some(vendor::CKK_SM4), Some(16)) => vendor::CKM_SM4_GCM,
        _ => {
            return Err(Error::new(
                ck::CKR_KEY_TYPE_INCONSISTENT,
                "the envelope mechanism needs an AES-256 or SM4 key",
            ))
        }
    };
    let id =
        String::from_utf8_lossy(a.get(vendor::CKA_P11KMS_KEY_ID).unwrap_or_default()).into_owned();
    let version = a.ulong(vendor::CKA_P11KMS_KEY_VERSION).unwrap_or(1) as u32;
    if id.is_empty() || id.len() > 255 {
        return Err(Error::key_type_inconsistent());
    }
    Ok((id, version, gcm))
}

fn gcm_param(iv: &[u8], aad: Vec<u8>) -> MechParam {
    MechParam::Gcm {
        iv: iv.to_vec(),
        iv_bits: None,
        aad,
        tag_bits: 128,
    }
}

fn header(key_id: &str, version: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(10 + key_id.len());
    h.extend_from_slice(MAGIC);
    h.push(FORMAT);
    h.push(key_id.len() as u8);
    h.extend_from_slice(key_id.as_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h
}

/// Encryption under the key's primary version. Buffers input; output at the
/// end (single-part or final).
pub struct Encrypt {
    key: Arc<Key>,
    gcm: Arc<dyn Mechanism>,
    header: Vec<u8>,
    aad: Vec<u8>,
    buf: Vec<u8>,
}

/// Start an envelope encryption with `o` (the key's primary object).
pub fn encrypt_init(
    registry: &Registry,
    o: &Object,
    param: &MechParam,
) -> Result<Box<dyn CipherOp>> {
    if crate::kms::is_version_object(&o.attrs()) {
        return Err(Error::new(
            ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
            "older key versions only decrypt",
        ));
    }
    let (id, version, gcm) = check_key(o)?;
    Ok(Box::new(Encrypt {
        key: o.key()?,
        gcm: registry.get(gcm)?.clone(),
        header: header(&id, version),
        aad: aad_of(param)?,
        buf: Vec::new(),
    }))
}

impl Encrypt {
    fn seal(&mut self) -> Result<Vec<u8>> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv)
            .map_err(|e| Error::new(ck::CKR_DEVICE_ERROR, format!("getrandom: {e}")))?;
        let mut aad = self.header.clone();
        aad.extend_from_slice(&self.aad);
        let ct = self
            .gcm
            .encrypt_init(&self.key, &gcm_param(&iv, aad))?
            .oneshot(&self.buf)?;
        let mut out = self.header.clone();
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        self.buf.clear();
        Ok(out)
    }
}

impl CipherOp for Encrypt {
    fn oneshot_len(&self, in_len: usize) -> Result<usize> {
        Ok(self.header.len() + IV_LEN + in_len + TAG_LEN)
    }
    fn update_len(&self, _in_len: usize) -> usize {
        0
    }
    fn final_len(&self) -> usize {
        self.header.len() + IV_LEN + self.buf.len() + TAG_LEN
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(data);
        self.seal()
    }
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(data);
        Ok(Vec::new())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        self.seal()
    }
}

/// Decryption with any object of the key: the version is read from the
/// ciphertext and the matching object looked up on the token.
pub struct Decrypt {
    token: Arc<Token>,
    gcm: Arc<dyn Mechanism>,
    key_id: String,
    aad: Vec<u8>,
    buf: Vec<u8>,
}

pub fn decrypt_init(token: Arc<Token>, o: &Object, param: &MechParam) -> Result<Box<dyn CipherOp>> {
    let (key_id, _, gcm) = check_key(o)?;
    let gcm = token.registry.get(gcm)?.clone();
    Ok(Box::new(Decrypt {
        token,
        gcm,
        key_id,
        aad: aad_of(param)?,
        buf: Vec::new(),
    }))
}

fn bad() -> Error {
    Error::rv(ck::CKR_ENCRYPTED_DATA_INVALID)
}

impl Decrypt {
    fn open(&mut self) -> Result<Vec<u8>> {
        let data = std::mem::take(&mut self.buf);
        if data.len() < 6 || &data[..4] != MAGIC || data[4] != FORMAT {
            return Err(Error::new(
                ck::CKR_ENCRYPTED_DATA_INVALID,
                "not an envelope ciphertext",
            ));
        }
        let id_len = data[5] as usize;
        let hdr_len = 6 + id_len + 4;
        if data.len() < hdr_len + IV_LEN + TAG_LEN {
            return Err(Error::rv(ck::CKR_ENCRYPTED_DATA_LEN_RANGE));
        }
        let key_id = std::str::from_utf8(&data[6..6 + id_len]).map_err(|_| bad())?;
        if key_id != self.key_id {
            return Err(Error::new(
                ck::CKR_ENCRYPTED_DATA_INVALID,
                format!("ciphertext belongs to key {key_id}"),
            ));
        }
        let version = u32::from_be_bytes(data[6 + id_len..hdr_len].try_into().map_err(|_| bad())?);
        let obj = self
            .token
            .objects_of_key(key_id)
            .into_iter()
            .filter(|o| o.class == ck::CKO_SECRET_KEY)
            .find(|o| o.attrs().ulong(vendor::CKA_P11KMS_KEY_VERSION) == Some(u64::from(version)))
            .ok_or_else(|| {
                Error::new(
                    ck::CKR_ENCRYPTED_DATA_INVALID,
                    format!("key {key_id} has no version {version}"),
                )
            })?;
        if obj.attrs().ulong(vendor::CKA_P11KMS_KEY_STATE) != Some(vendor::CKV_P11KMS_STATE_ENABLED)
        {
            return Err(Error::new(
                ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
                "key is not enabled",
            ));
        }
        let mut aad = data[..hdr_len].to_vec();
        aad.extend_from_slice(&self.aad);
        let iv = &data[hdr_len..hdr_len + IV_LEN];
        self.gcm
            .decrypt_init(&obj.key()?, &gcm_param(iv, aad))?
            .oneshot(&data[hdr_len + IV_LEN..])
            .map_err(|e| {
                if e.rv == ck::CKR_ENCRYPTED_DATA_LEN_RANGE {
                    e
                } else {
                    bad()
                }
            })
    }
}

impl CipherOp for Decrypt {
    fn oneshot_len(&self, in_len: usize) -> Result<usize> {
        Ok(in_len)
    }
    fn update_len(&self, _in_len: usize) -> usize {
        0
    }
    fn final_len(&self) -> usize {
        self.buf.len()
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(data);
        self.open()
    }
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(data);
        Ok(Vec::new())
    }
    fn finalize(&mut self) -> Result<Vec<u8>> {
        self.open()
    }
}
