//! p11kms's vendor-defined PKCS#11 constants, the Rust twin of
//! `include/p11kms.h` (a test checks that both agree).

/// `CK_ULONG`, read-only: origin of the key material (`ORIGIN_*`).
pub const CKA_P11KMS_ORIGIN: u64 = 0x8E11_0001;
/// `CK_ULONG`, read-only: key state (`STATE_*`).
pub const CKA_P11KMS_KEY_STATE: u64 = 0x8E11_0002;
/// `CK_ULONG`, read-only: key version used by this object.
pub const CKA_P11KMS_KEY_VERSION: u64 = 0x8E11_0003;
/// `CK_BBOOL`, read-only: the instance's default key.
pub const CKA_P11KMS_DEFAULT_KEY: u64 = 0x8E11_0004;
/// `CK_BBOOL`, read-only: a key owned by an integrated service.
pub const CKA_P11KMS_SERVICE_KEY: u64 = 0x8E11_0005;
/// UTF-8, read-only: the KMS key id.
pub const CKA_P11KMS_KEY_ID: u64 = 0x8E11_0006;

/// Envelope encryption under a CMK: AES-256-GCM whose ciphertext names the
/// key id and key version, so decryption picks the right version by itself.
/// Parameter: optional AAD (`CK_BYTE` array) or none.
pub const CKM_P11KMS_AES_GCM_ENVELOPE: u64 = 0x8E11_0001;

/// Material generated inside p11kms.
pub const CKV_P11KMS_ORIGIN_KMS: u64 = 1;
/// Material imported from outside.
pub const CKV_P11KMS_ORIGIN_EXTERNAL: u64 = 2;

pub const CKV_P11KMS_STATE_ENABLED: u64 = 1;
pub const CKV_P11KMS_STATE_DISABLED: u64 = 2;
pub const CKV_P11KMS_STATE_PENDING_DELETION: u64 = 3;
pub const CKV_P11KMS_STATE_PENDING_IMPORT: u64 = 4;

/// A performance quota was exceeded.
pub const CKR_P11KMS_QUOTA_EXCEEDED: u64 = 0x8E11_0001;
/// The instance is not serving.
pub const CKR_P11KMS_INSTANCE_UNAVAILABLE: u64 = 0x8E11_0002;

/// Every constant with its C name, for the header check and for tools.
pub const ALL: &[(&str, u64)] = &[
    ("CKA_P11KMS_ORIGIN", CKA_P11KMS_ORIGIN),
    ("CKA_P11KMS_KEY_STATE", CKA_P11KMS_KEY_STATE),
    ("CKA_P11KMS_KEY_VERSION", CKA_P11KMS_KEY_VERSION),
    ("CKA_P11KMS_DEFAULT_KEY", CKA_P11KMS_DEFAULT_KEY),
    ("CKA_P11KMS_SERVICE_KEY", CKA_P11KMS_SERVICE_KEY),
    ("CKA_P11KMS_KEY_ID", CKA_P11KMS_KEY_ID),
    ("CKM_P11KMS_AES_GCM_ENVELOPE", CKM_P11KMS_AES_GCM_ENVELOPE),
    ("CKV_P11KMS_ORIGIN_KMS", CKV_P11KMS_ORIGIN_KMS),
    ("CKV_P11KMS_ORIGIN_EXTERNAL", CKV_P11KMS_ORIGIN_EXTERNAL),
    ("CKV_P11KMS_STATE_ENABLED", CKV_P11KMS_STATE_ENABLED),
    ("CKV_P11KMS_STATE_DISABLED", CKV_P11KMS_STATE_DISABLED),
    ("CKV_P11KMS_STATE_PENDING_DELETION", CKV_P11KMS_STATE_PENDING_DELETION),
    ("CKV_P11KMS_STATE_PENDING_IMPORT", CKV_P11KMS_STATE_PENDING_IMPORT),
    ("CKR_P11KMS_QUOTA_EXCEEDED", CKR_P11KMS_QUOTA_EXCEEDED),
    ("CKR_P11KMS_INSTANCE_UNAVAILABLE", CKR_P11KMS_INSTANCE_UNAVAILABLE),
];
