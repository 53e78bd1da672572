//! The wire between `libp11kms.so` (the PKCS#11 module) and `p11kmsd`.
//!
//! Frames are a little-endian `u32` length followed by a postcard payload
//! ([`frame`]). The first exchange on every connection is
//! [`Request::Hello`] / [`Response::Hello`], which carries the protocol
//! version and the application identity that lets several connections of one
//! process share one PKCS#11 application context (login state, sessions).
//!
//! Rules that keep the wire stable (postcard encodes an enum variant by its
//! position):
//! - enum variants are append-only; `Hello` stays the first variant of both
//!   `Request` and `Response` forever so a version mismatch is always
//!   detectable;
//! - one request gets exactly one response;
//! - calls that produce output carry the caller's capacity ([`OutCap`]) so the
//!   daemon answers a length query or a too-small buffer in the same round
//!   trip (PKCS#11 v3.0 §5.2).
//!
//! Attribute values travel as the bytes the C caller gave: `CK_ULONG` as 8
//! little-endian bytes, `CK_BBOOL` as one byte, `CKA_ALLOWED_MECHANISMS` as
//! its array of `CK_MECHANISM_TYPE`s. Module and daemon always run on the
//! same host, so the native layout is the common one. The attributes whose
//! value is itself a template (`CKA_WRAP_TEMPLATE`, `CKA_UNWRAP_TEMPLATE`,
//! `CKA_DERIVE_TEMPLATE`) hold pointers in C; on the wire their value is a
//! [`Template`], encoded by [`Template::encode`] (protocol version 2).

#![forbid(unsafe_code)]

pub mod frame;
pub mod poll;
pub mod secret;
pub mod vendor;

use serde::{Deserialize, Serialize};

pub use secret::SecretBytes;

/// Protocol version spoken by this build. Bumped when a change is not
/// append-only or gives existing bytes a new meaning; the handshake refuses
/// a mismatch. 2: template-valued attributes carry a [`Template`].
pub const PROTOCOL_VERSION: u32 = 2;

/// Hard upper bound of one frame's payload. A peer announcing more loses its
/// connection before anything is allocated.
pub const MAX_FRAME: usize = 80 * 1024 * 1024;

/// Largest data buffer a single call may carry (leaves room for framing).
pub const MAX_DATA: usize = 64 * 1024 * 1024 + 64 * 1024;

/// Raw `CK_ULONG` as it crosses the wire.
pub type Ulong = u64;
/// Session handle (`CK_SESSION_HANDLE`).
pub type SessionHandle = u64;
/// Object handle (`CK_OBJECT_HANDLE`).
pub type ObjectHandle = u64;

/// Output capacity of the caller: `None` means the caller passed a NULL
/// output pointer (length query), `Some(n)` that it has room for `n` bytes.
pub type OutCap = Option<u64>;

/// One attribute of a template (`CK_ATTRIBUTE`). `value` is `None` when the
/// caller passed a NULL `pValue` (only meaningful in queries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub ty: Ulong,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

impl Attribute {
    pub fn new(ty: Ulong, value: impl Into<Vec<u8>>) -> Self {
        Attribute {
            ty,
            value: Some(value.into()),
        }
    }
    pub fn ulong(ty: Ulong, v: Ulong) -> Self {
        Attribute {
            ty,
            value: Some(v.to_le_bytes().to_vec()),
        }
    }
    pub fn bool(ty: Ulong, v: bool) -> Self {
        Attribute {
            ty,
            value: Some(vec![u8::from(v)]),
        }
    }
}

/// `CKA_WRAP_TEMPLATE` (`CKF_ARRAY_ATTRIBUTE | 0x211`).
pub const CKA_WRAP_TEMPLATE: Ulong = 0x4000_0211;
/// `CKA_UNWRAP_TEMPLATE` (`CKF_ARRAY_ATTRIBUTE | 0x212`).
pub const CKA_UNWRAP_TEMPLATE: Ulong = 0x4000_0212;
/// `CKA_DERIVE_TEMPLATE` (`CKF_ARRAY_ATTRIBUTE | 0x213`).
pub const CKA_DERIVE_TEMPLATE: Ulong = 0x4000_0213;

/// Whether attribute type `ty` holds a template (an array of
/// `CK_ATTRIBUTE`; PKCS#11 v3.0 §4.7–§4.10). The other array attribute,
/// `CKA_ALLOWED_MECHANISMS`, holds plain `CK_ULONG`s and travels as bytes.
pub fn is_template_attribute(ty: Ulong) -> bool {
    matches!(
        ty,
        CKA_WRAP_TEMPLATE | CKA_UNWRAP_TEMPLATE | CKA_DERIVE_TEMPLATE
    )
}

/// Most attributes one nested template may hold.
pub const MAX_TEMPLATE_ATTRIBUTES: usize = 256;

/// The value of a template attribute: its nested attributes, carried inside
/// [`Attribute::value`] and [`AttrResult::Value`] as the postcard encoding
/// of this type. Nested values are never templates themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template(pub Vec<Attribute>);

impl Template {
    /// The bytes that stand for this template on the wire and in storage.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding a Vec of plain structs into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Read a template back; `None` if `bytes` is not one (trailing bytes,
    /// more than [`MAX_TEMPLATE_ATTRIBUTES`] entries, or a nested template).
    pub fn decode(bytes: &[u8]) -> Option<Template> {
        let (t, rest): (Template, &[u8]) = postcard::take_from_bytes(bytes).ok()?;
        (rest.is_empty()
            && t.0.len() <= MAX_TEMPLATE_ATTRIBUTES
            && !t.0.iter().any(|a| is_template_attribute(a.ty)))
        .then_some(t)
    }
}

/// Answer for one attribute of `C_GetAttributeValue`. The module turns these
/// into `ulValueLen` values and the call's return code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrResult {
    /// The attribute's value.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The attribute exists but is sensitive or unextractable
    /// (`CKR_ATTRIBUTE_SENSITIVE`).
    Sensitive,
    /// The object has no such attribute (`CKR_ATTRIBUTE_TYPE_INVALID`).
    Invalid,
}

/// A mechanism with its typed parameter (`CK_MECHANISM`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mechanism {
    pub mech: Ulong,
    pub param: MechParam,
}

impl Mechanism {
    pub fn new(mech: Ulong) -> Self {
        Mechanism {
            mech,
            param: MechParam::None,
        }
    }
}

/// Mechanism parameters the module knows how to read. Unknown layouts are
/// rejected by the module (`CKR_MECHANISM_PARAM_INVALID`), never guessed.
/// Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MechParam {
    /// No parameter (`pParameter == NULL`, `ulParameterLen == 0`).
    None,
    /// An opaque byte string: IVs for CBC/CBC-PAD, the optional IV of AES key
    /// wrap, HMAC/CMAC general output lengths are NOT here (see `MacLen`).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `CK_GCM_PARAMS`. `iv_bits` is `None` for the 2.40 layout (no
    /// `ulIvBits` field), `Some` for the 3.0 layout.
    Gcm {
        #[serde(with = "serde_bytes")]
        iv: Vec<u8>,
        iv_bits: Option<Ulong>,
        #[serde(with = "serde_bytes")]
        aad: Vec<u8>,
        tag_bits: Ulong,
    },
    /// `CK_AES_CTR_PARAMS`.
    Ctr { counter_bits: Ulong, cb: [u8; 16] },
    /// `CK_MAC_GENERAL_PARAMS`: the requested MAC length in bytes.
    MacLen(Ulong),
    /// `CK_RSA_PKCS_OAEP_PARAMS`. `source_data` is empty for no label.
    Oaep {
        hash: Ulong,
        mgf: Ulong,
        source: Ulong,
        #[serde(with = "serde_bytes")]
        source_data: Vec<u8>,
    },
    /// `CK_RSA_PKCS_PSS_PARAMS`.
    Pss {
        hash: Ulong,
        mgf: Ulong,
        salt_len: Ulong,
    },
    /// `CK_ECDH1_DERIVE_PARAMS`.
    Ecdh1 {
        kdf: Ulong,
        #[serde(with = "serde_bytes")]
        shared_data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        public_data: Vec<u8>,
    },
    /// `CK_RSA_AES_KEY_WRAP_PARAMS`.
    RsaAesKeyWrap {
        aes_key_bits: Ulong,
        oaep: Option<Box<MechParam>>,
    },
    /// `CK_EDDSA_PARAMS`.
    Eddsa {
        ph_flag: bool,
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
    },
    /// A single `CK_ULONG` parameter (e.g. `CK_KEY_DERIVATION_STRING`-less
    /// mechanisms that take a length).
    Ulong(Ulong),
}

/// `CK_SLOT_INFO` minus the fixed-width padding (the module pads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub description: String,
    pub manufacturer: String,
    pub flags: Ulong,
    pub hardware_version: (u8, u8),
    pub firmware_version: (u8, u8),
}

/// `CK_TOKEN_INFO` minus the fixed-width padding (the module pads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub flags: Ulong,
    pub max_session_count: Ulong,
    pub session_count: Ulong,
    pub max_rw_session_count: Ulong,
    pub rw_session_count: Ulong,
    pub max_pin_len: Ulong,
    pub min_pin_len: Ulong,
    pub total_public_memory: Ulong,
    pub free_public_memory: Ulong,
    pub total_private_memory: Ulong,
    pub free_private_memory: Ulong,
    pub hardware_version: (u8, u8),
    pub firmware_version: (u8, u8),
    /// 16 characters `YYYYMMDDhhmmss00` when the token has a clock.
    pub utc_time: String,
}

/// `CK_MECHANISM_INFO`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MechanismInfo {
    pub min_key_size: Ulong,
    pub max_key_size: Ulong,
    pub flags: Ulong,
}

/// `CK_SESSION_INFO`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub slot: Ulong,
    pub state: Ulong,
    pub flags: Ulong,
    pub device_error: Ulong,
}

/// What `p11kms status` shows about one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub kind: String,
    pub mode: String,
    pub slot: Ulong,
    pub token_label: String,
    pub token_initialized: bool,
    pub user_pin_initialized: bool,
    pub objects: u64,
    pub sessions: u64,
    pub serving: bool,
}

/// What `p11kms status` shows about the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub protocol: u32,
    pub socket: String,
    pub data_dir: String,
    pub uptime_secs: u64,
    pub applications: u64,
    pub connections: u64,
    pub instances: Vec<InstanceStatus>,
}

/// A request from the module (or the admin CLI) to the daemon. Grouped by
/// the chapters of PKCS#11 v3.0 §5. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First frame of every connection. `app_id` is chosen at random by the
    /// module at `C_Initialize`; connections with the same id (and the same
    /// peer uid and pid) share one application context.
    Hello {
        version: u32,
        app_id: [u8; 16],
        pid: u32,
    },

    // --- slot and token management (§5.5)
    GetSlotList {
        token_present: bool,
    },
    GetSlotInfo {
        slot: Ulong,
    },
    GetTokenInfo {
        slot: Ulong,
    },
    GetMechanismList {
        slot: Ulong,
    },
    GetMechanismInfo {
        slot: Ulong,
        mech: Ulong,
    },
    InitToken {
        slot: Ulong,
        so_pin: SecretBytes,
        #[serde(with = "serde_bytes")]
        label: Vec<u8>,
    },
    InitPin {
        session: SessionHandle,
        pin: SecretBytes,
    },
    SetPin {
        session: SessionHandle,
        old_pin: SecretBytes,
        new_pin: SecretBytes,
    },

    // --- session management (§5.6)
    OpenSession {
        slot: Ulong,
        flags: Ulong,
    },
    CloseSession {
        session: SessionHandle,
    },
    CloseAllSessions {
        slot: Ulong,
    },
    GetSessionInfo {
        session: SessionHandle,
    },
    Login {
        session: SessionHandle,
        user_type: Ulong,
        pin: SecretBytes,
    },
    Logout {
        session: SessionHandle,
    },

    // --- object management (§5.7)
    CreateObject {
        session: SessionHandle,
        template: Vec<Attribute>,
    },
    CopyObject {
        session: SessionHandle,
        object: ObjectHandle,
        template: Vec<Attribute>,
    },
    DestroyObject {
        session: SessionHandle,
        object: ObjectHandle,
    },
    GetObjectSize {
        session: SessionHandle,
        object: ObjectHandle,
    },
    GetAttributeValue {
        session: SessionHandle,
        object: ObjectHandle,
        types: Vec<Ulong>,
    },
    SetAttributeValue {
        session: SessionHandle,
        object: ObjectHandle,
        template: Vec<Attribute>,
    },
    FindObjectsInit {
        session: SessionHandle,
        template: Vec<Attribute>,
    },
    FindObjects {
        session: SessionHandle,
        max: Ulong,
    },
    FindObjectsFinal {
        session: SessionHandle,
    },

    // --- encryption / decryption (§5.8, §5.9)
    EncryptInit {
        session: SessionHandle,
        mech: Mechanism,
        key: ObjectHandle,
    },
    Encrypt {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutCap,
    },
    EncryptUpdate {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutCap,
    },
    EncryptFinal {
        session: SessionHandle,
        out: OutCap,
    },
    DecryptInit {
        session: SessionHandle,
        mech: Mechanism,
        key: ObjectHandle,
    },
    Decrypt {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutCap,
    },
    DecryptUpdate {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutCap,
    },
    DecryptFinal {
        session: SessionHandle,
        out: OutCap,
    },

    // --- message digesting (§5.10)
    DigestInit {
        session: SessionHandle,
        mech: Mechanism,
    },
    Digest {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutCap,
    },
    DigestUpdate {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    DigestKey {
        session: SessionHandle,
        key: ObjectHandle,
    },
    DigestFinal {
        session: SessionHandle,
        out: OutCap,
    },

    // --- signing and MACing (§5.11, §5.12)
    SignInit {
        session: SessionHandle,
        mech: Mechanism,
        key: ObjectHandle,
    },
    Sign {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutCap,
    },
    SignUpdate {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    SignFinal {
        session: SessionHandle,
        out: OutCap,
    },
    VerifyInit {
        session: SessionHandle,
        mech: Mechanism,
        key: ObjectHandle,
    },
    Verify {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    VerifyUpdate {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    VerifyFinal {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },

    // --- key management (§5.14)
    GenerateKey {
        session: SessionHandle,
        mech: Mechanism,
        template: Vec<Attribute>,
    },
    GenerateKeyPair {
        session: SessionHandle,
        mech: Mechanism,
        public_template: Vec<Attribute>,
        private_template: Vec<Attribute>,
    },
    WrapKey {
        session: SessionHandle,
        mech: Mechanism,
        wrapping_key: ObjectHandle,
        key: ObjectHandle,
        out: OutCap,
    },
    UnwrapKey {
        session: SessionHandle,
        mech: Mechanism,
        unwrapping_key: ObjectHandle,
        #[serde(with = "serde_bytes")]
        wrapped: Vec<u8>,
        template: Vec<Attribute>,
    },
    DeriveKey {
        session: SessionHandle,
        mech: Mechanism,
        base_key: ObjectHandle,
        template: Vec<Attribute>,
    },

    // --- random number generation (§5.15)
    SeedRandom {
        session: SessionHandle,
        #[serde(with = "serde_bytes")]
        seed: Vec<u8>,
    },
    GenerateRandom {
        session: SessionHandle,
        len: Ulong,
    },

    // --- session cancel (3.0 §5.6)
    SessionCancel {
        session: SessionHandle,
        flags: Ulong,
    },

    // --- administration (p11kms CLI)
    Status,
    /// A KMS administration command on one instance, authorized by the
    /// instance's SO PIN (until access points exist).
    Admin {
        instance: String,
        so_pin: SecretBytes,
        cmd: AdminCommand,
    },
}

impl Request {
    /// Whether the request carries a PIN or key material (its frame buffers
    /// are then wiped whatever their size, see [`secret::wipe`]).
    pub fn carries_secrets(&self) -> bool {
        matches!(
            self,
            Request::InitToken { .. }
                | Request::InitPin { .. }
                | Request::SetPin { .. }
                | Request::Login { .. }
                | Request::Admin { .. }
                | Request::CreateObject { .. }
                | Request::UnwrapKey { .. }
        )
    }
}

/// Key lifecycle commands of the admin CLI (`p11kms key ...`). `key` is a
/// key id (`key-<uuid>`) or an alias. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminCommand {
    KeyCreate(KeyCreate),
    KeyList,
    KeyDescribe {
        key: String,
    },
    KeyEnable {
        key: String,
    },
    KeyDisable {
        key: String,
    },
    KeyScheduleDeletion {
        key: String,
        pending_days: u32,
    },
    KeyCancelDeletion {
        key: String,
    },
    KeyRotate {
        key: String,
    },
    KeyVersions {
        key: String,
    },
    AliasAdd {
        key: String,
        alias: String,
    },
    AliasRemove {
        alias: String,
    },
    KeyTag {
        key: String,
        set: Vec<(String, String)>,
        remove: Vec<String>,
    },
    ImportParams {
        key: String,
        wrapping_algorithm: String,
        wrapping_key_spec: String,
    },
    Import {
        key: String,
        import_token: String,
        material: SecretBytes,
        expires_unix: Option<u64>,
    },
    KeySetRotation {
        key: String,
        interval_days: Option<u32>,
    },
}

/// Parameters of `p11kms key create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreate {
    /// `AES_256` (default), `AES_128`, `RSA_2048`, `RSA_3072`, `EC_P256`, `EC_P384`.
    pub spec: Option<String>,
    /// `ENCRYPT/DECRYPT` (default for AES) or `SIGN/VERIFY`.
    pub usage: Option<String>,
    /// `KMS` (default) or `EXTERNAL` (material imported later).
    pub origin: Option<String>,
    pub alias: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<(String, String)>,
    pub rotation_interval_days: Option<u32>,
    /// Owning integrated service: makes a service key.
    pub service: Option<String>,
}

/// One key version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersionInfo {
    pub version: u32,
    pub created_unix: u64,
    pub primary: bool,
}

/// What `p11kms key describe` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub key_id: String,
    pub aliases: Vec<String>,
    pub description: String,
    pub tags: Vec<(String, String)>,
    pub spec: String,
    pub usage: String,
    pub origin: String,
    pub protection_level: String,
    pub created_unix: u64,
    pub state: String,
    pub primary_version: u32,
    pub versions: Vec<KeyVersionInfo>,
    pub rotation_interval_days: Option<u32>,
    pub next_rotation_unix: Option<u64>,
    pub deletion_unix: Option<u64>,
    pub material_expires_unix: Option<u64>,
    pub service: Option<String>,
    pub default_key: bool,
    /// The PKCS#11 `CKA_ID` of the key's object (hex).
    pub cka_id_hex: String,
}

/// Import parameters: the wrapping public key and the import token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportParams {
    pub key_id: String,
    pub public_key_pem: String,
    pub import_token: String,
    pub expires_unix: u64,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
}

/// Answer to an [`AdminCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // rare admin replies; boxing would change nothing on the wire but the code
pub enum AdminReply {
    Key(KeyMetadata),
    Keys(Vec<KeyMetadata>),
    Versions(Vec<KeyVersionInfo>),
    ImportParams(ImportParams),
    Done,
    /// The command failed; the text says why (shown to the operator).
    Failed {
        rv: Ulong,
        message: String,
    },
}

/// The daemon's answer. Append-only; `Hello` stays first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`]. On a version mismatch the daemon sends
    /// its own version and closes the connection.
    Hello {
        version: u32,
        server: String,
    },
    /// The call failed with this `CK_RV`. Nothing else happened.
    Error(Ulong),
    /// The call succeeded and has nothing to return.
    Ok,
    /// A new session or object handle.
    Handle(Ulong),
    /// `C_FindObjects` results.
    Handles(Vec<Ulong>),
    /// `C_GenerateKeyPair` results.
    KeyPair {
        public: ObjectHandle,
        private: ObjectHandle,
    },
    /// Output of a call that took an [`OutCap`]. `data` is `None` when the
    /// caller asked only for the length or its buffer is smaller than `len`;
    /// the operation then stays active (PKCS#11 §5.2). With `data`, `len`
    /// equals `data.len()`.
    Output {
        len: Ulong,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
    },
    /// Plain bytes (random data).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A single number (object size).
    Ulong(Ulong),
    SlotList(Vec<Ulong>),
    SlotInfo(SlotInfo),
    TokenInfo(TokenInfo),
    MechanismList(Vec<Ulong>),
    MechanismInfo(MechanismInfo),
    SessionInfo(SessionInfo),
    /// One result per requested attribute type, in order.
    Attributes(Vec<AttrResult>),
    Status(DaemonStatus),
    Admin(AdminReply),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Serialize + for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = postcard::to_stdvec(&v).expect("encode");
        let back: T = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(v, back);
    }

    #[test]
    fn requests_roundtrip() {
        roundtrip(Request::Hello {
            version: PROTOCOL_VERSION,
            app_id: [7; 16],
            pid: 42,
        });
        roundtrip(Request::EncryptInit {
            session: 1,
            mech: Mechanism {
                mech: 0x1087,
                param: MechParam::Gcm {
                    iv: vec![1; 12],
                    iv_bits: None,
                    aad: b"aad".to_vec(),
                    tag_bits: 128,
                },
            },
            key: 9,
        });
        roundtrip(Request::Encrypt {
            session: 1,
            data: vec![0; 100],
            out: None,
        });
        roundtrip(Request::CreateObject {
            session: 3,
            template: vec![
                Attribute::ulong(0, 4),
                Attribute::bool(1, true),
                Attribute { ty: 3, value: None },
            ],
        });
        roundtrip(Request::UnwrapKey {
            session: 1,
            mech: Mechanism {
                mech: 0x1049,
                param: MechParam::RsaAesKeyWrap {
                    aes_key_bits: 256,
                    oaep: Some(Box::new(MechParam::Oaep {
                        hash: 0x250,
                        mgf: 2,
                        source: 1,
                        source_data: vec![],
                    })),
                },
            },
            unwrapping_key: 2,
            wrapped: vec![1, 2, 3],
            template: vec![],
        });
        roundtrip(Request::Status);
        roundtrip(Request::Login {
            session: 1,
            user_type: 1,
            pin: b"1234".to_vec().into(),
        });
    }

    /// PINs changed type (plain bytes → `SecretBytes`), not wire form: a
    /// `Login` encodes exactly as it did with `serde_bytes` `Vec<u8>`.
    #[test]
    fn secret_fields_keep_their_wire_form() {
        let new = postcard::to_stdvec(&Request::Login {
            session: 7,
            user_type: 0,
            pin: b"1234".to_vec().into(),
        })
        .expect("encode");
        let login_variant = new[0];
        let plain =
            postcard::to_stdvec(&(7u64, 0u64, serde_bytes::Bytes::new(b"1234"))).expect("encode");
        assert_eq!(&new[1..], &plain[..]);
        assert!(login_variant > 0);
    }

    #[test]
    fn responses_roundtrip() {
        roundtrip(Response::Hello {
            version: PROTOCOL_VERSION,
            server: "p11kmsd".into(),
        });
        roundtrip(Response::Output {
            len: 32,
            data: None,
        });
        roundtrip(Response::Output {
            len: 3,
            data: Some(vec![1, 2, 3]),
        });
        roundtrip(Response::Attributes(vec![
            AttrResult::Value(vec![1]),
            AttrResult::Sensitive,
            AttrResult::Invalid,
        ]));
        roundtrip(Response::TokenInfo(TokenInfo {
            label: "x".into(),
            flags: 0x400,
            ..Default::default()
        }));
        roundtrip(Response::Status(DaemonStatus {
            instances: vec![InstanceStatus::default()],
            ..Default::default()
        }));
    }

    /// Byte strings travel as postcard byte strings (length + raw bytes,
    /// copied in one go): the same wire form a sequence of `u8` has, so
    /// the `serde_bytes` annotations changed speed, not the protocol.
    #[test]
    fn bytes_are_length_prefixed_raw() {
        let r = postcard::to_stdvec(&Response::Bytes(vec![1, 2, 3])).expect("encode");
        let plain = postcard::to_stdvec(&(vec![1u8, 2, 3],)).expect("encode");
        assert_eq!(&r[1..], &plain[..]);
        let a = postcard::to_stdvec(&Attribute::new(3, vec![9u8; 200])).expect("encode");
        let plain = postcard::to_stdvec(&(3u64, Some(vec![9u8; 200]))).expect("encode");
        assert_eq!(a, plain);
    }

    #[test]
    fn templates_roundtrip_and_refuse_nesting() {
        let t = Template(vec![
            Attribute::ulong(0, 4),
            Attribute::bool(1, true),
            Attribute { ty: 3, value: None },
        ]);
        assert_eq!(Template::decode(&t.encode()), Some(t.clone()));
        assert_eq!(
            Template::decode(&Template::default().encode()),
            Some(Template::default())
        );
        let mut trailing = t.encode();
        trailing.push(0);
        assert_eq!(Template::decode(&trailing), None);
        assert_eq!(Template::decode(&[]), None);
        let nested = Template(vec![Attribute::new(CKA_WRAP_TEMPLATE, t.encode())]);
        assert_eq!(Template::decode(&nested.encode()), None);
        let big = Template(vec![Attribute::bool(1, true); MAX_TEMPLATE_ATTRIBUTES + 1]);
        assert_eq!(Template::decode(&big.encode()), None);
        assert!(is_template_attribute(CKA_DERIVE_TEMPLATE));
        assert!(!is_template_attribute(0x4000_0600)); // CKA_ALLOWED_MECHANISMS
    }

    /// `Hello` must stay variant 0 of both enums: the handshake of any future
    /// version must still be readable by this one.
    #[test]
    fn hello_is_variant_zero() {
        let req = postcard::to_stdvec(&Request::Hello {
            version: 99,
            app_id: [0; 16],
            pid: 1,
        })
        .expect("encode");
        assert_eq!(req[0], 0);
        let resp = postcard::to_stdvec(&Response::Hello {
            version: 99,
            server: String::new(),
        })
        .expect("encode");
        assert_eq!(resp[0], 0);
    }
}
