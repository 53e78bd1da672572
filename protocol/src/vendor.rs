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

// ---- SM algorithms (GB/T 32918 SM2, GB/T 32905 SM3, GB/T 32907 SM4) ----
//
// Codes 0x8000xxxx are Thales Luna's (the set xipki's jpkcs11wrapper
// vendor.conf lists, used by more than one vendor); mechanisms Luna has no
// code for are in p11kms's own range 0x8E11xxxx. Formats: include/p11kms.h.

/// Key type of SM4 secret keys (`CKA_VALUE` 16 bytes). Luna's code.
pub const CKK_SM4: u64 = 0x8000_0015;
/// Key type of SM2 key pairs: EC-style objects with `CKA_EC_PARAMS` = the
/// SM2 curve OID 1.2.156.10197.1.301 and `CKA_EC_POINT`. Luna's code.
pub const CKK_SM2: u64 = 0x8000_0016;

/// SM3 digest (32 bytes). No parameter.
pub const CKM_SM3: u64 = 0x8000_0B01;
/// HMAC-SM3, 32-byte MAC. Keys: `CKK_GENERIC_SECRET`. No parameter.
pub const CKM_SM3_HMAC: u64 = 0x8000_0B02;
/// HMAC-SM3 truncated to `CK_MAC_GENERAL_PARAMS` bytes (1..=32).
pub const CKM_SM3_HMAC_GENERAL: u64 = 0x8000_0B03;
/// SM4 key generation (16 bytes; `CKA_VALUE_LEN` optional, 16 if given).
pub const CKM_SM4_KEY_GEN: u64 = 0x8000_0B10;
/// SM4-ECB, input a whole number of 16-byte blocks. No parameter.
pub const CKM_SM4_ECB: u64 = 0x8000_0B11;
/// SM4-CBC, parameter the 16-byte IV; input whole blocks.
pub const CKM_SM4_CBC: u64 = 0x8000_0B12;
/// SM4-CBC with PKCS#7 padding, parameter the 16-byte IV; also wrap/unwrap.
pub const CKM_SM4_CBC_PAD: u64 = 0x8000_0B13;
/// SM2 key pair generation; public template needs no `CKA_EC_PARAMS`.
pub const CKM_SM2_KEY_PAIR_GEN: u64 = 0x8000_0B20;
/// SM2 signature of a caller-computed e (32 bytes); signature r‖s, 64 bytes.
pub const CKM_SM2DSA: u64 = 0x8000_0B21;
/// SM2 signature of a message: e = SM3(Z_A ‖ M), Z_A from the signer ID
/// (parameter: the ID bytes, default "1234567812345678") and the public
/// key; signature r‖s, 64 bytes. Multi-part.
pub const CKM_SM3_SM2DSA: u64 = 0x8000_0B22;
/// SM2 signature of SHA-256(M) (no Z_A); r‖s. Multi-part. Luna's code.
pub const CKM_SHA256_SM2DSA: u64 = 0x8000_0B25;

/// SM2 public-key encryption (GB/T 32918.4). Output C1‖C3‖C2 raw
/// (C1 = 04‖x‖y, C3 = SM3 tag, C2 = ciphertext); decryption also accepts
/// the DER SM2Cipher of GM/T 0009 (OpenSSL's output). Optional parameter
/// `CK_ULONG`: one of `CKV_P11KMS_SM2_CIPHER_*`. Also wraps/unwraps keys.
pub const CKM_SM2_ENCRYPT: u64 = 0x8E11_0010;
/// SM4-CTR, parameter `CK_AES_CTR_PARAMS`.
pub const CKM_SM4_CTR: u64 = 0x8E11_0011;
/// SM4-GCM (as RFC 8998 uses it), parameter `CK_GCM_PARAMS`; output
/// ciphertext‖tag.
pub const CKM_SM4_GCM: u64 = 0x8E11_0012;
/// SM4 CBC-MAC (zero IV, zero padding), 8-byte MAC like `CKM_AES_MAC`.
pub const CKM_SM4_MAC: u64 = 0x8E11_0013;
/// SM4 CBC-MAC truncated to `CK_MAC_GENERAL_PARAMS` bytes (1..=16).
pub const CKM_SM4_MAC_GENERAL: u64 = 0x8E11_0014;
/// SM4 key wrap: RFC 5649 (KWP) over SM4; any key length.
pub const CKM_SM4_KEY_WRAP: u64 = 0x8E11_0015;

/// `CKM_SM2_ENCRYPT` parameter: raw C1‖C3‖C2 (the default).
pub const CKV_P11KMS_SM2_CIPHER_C1C3C2: u64 = 1;
/// `CKM_SM2_ENCRYPT` parameter: raw C1‖C2‖C3 (GM/T 0003-2012's old order).
pub const CKV_P11KMS_SM2_CIPHER_C1C2C3: u64 = 2;
/// `CKM_SM2_ENCRYPT` parameter: DER SM2Cipher (GM/T 0009, OpenSSL).
pub const CKV_P11KMS_SM2_CIPHER_DER: u64 = 3;

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
/// The peer's uid/gid (`SO_PEERCRED`) may not do this: connect at all, or
/// administer (admin commands, `C_InitToken`, SO login, daemon status).
pub const CKR_P11KMS_ACCESS_DENIED: u64 = 0x8E11_0003;

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
    (
        "CKV_P11KMS_STATE_PENDING_DELETION",
        CKV_P11KMS_STATE_PENDING_DELETION,
    ),
    (
        "CKV_P11KMS_STATE_PENDING_IMPORT",
        CKV_P11KMS_STATE_PENDING_IMPORT,
    ),
    ("CKR_P11KMS_QUOTA_EXCEEDED", CKR_P11KMS_QUOTA_EXCEEDED),
    (
        "CKR_P11KMS_INSTANCE_UNAVAILABLE",
        CKR_P11KMS_INSTANCE_UNAVAILABLE,
    ),
    ("CKR_P11KMS_ACCESS_DENIED", CKR_P11KMS_ACCESS_DENIED),
    ("CKK_SM4", CKK_SM4),
    ("CKK_SM2", CKK_SM2),
    ("CKM_SM3", CKM_SM3),
    ("CKM_SM3_HMAC", CKM_SM3_HMAC),
    ("CKM_SM3_HMAC_GENERAL", CKM_SM3_HMAC_GENERAL),
    ("CKM_SM4_KEY_GEN", CKM_SM4_KEY_GEN),
    ("CKM_SM4_ECB", CKM_SM4_ECB),
    ("CKM_SM4_CBC", CKM_SM4_CBC),
    ("CKM_SM4_CBC_PAD", CKM_SM4_CBC_PAD),
    ("CKM_SM2_KEY_PAIR_GEN", CKM_SM2_KEY_PAIR_GEN),
    ("CKM_SM2DSA", CKM_SM2DSA),
    ("CKM_SM3_SM2DSA", CKM_SM3_SM2DSA),
    ("CKM_SHA256_SM2DSA", CKM_SHA256_SM2DSA),
    ("CKM_SM2_ENCRYPT", CKM_SM2_ENCRYPT),
    ("CKM_SM4_CTR", CKM_SM4_CTR),
    ("CKM_SM4_GCM", CKM_SM4_GCM),
    ("CKM_SM4_MAC", CKM_SM4_MAC),
    ("CKM_SM4_MAC_GENERAL", CKM_SM4_MAC_GENERAL),
    ("CKM_SM4_KEY_WRAP", CKM_SM4_KEY_WRAP),
    ("CKV_P11KMS_SM2_CIPHER_C1C3C2", CKV_P11KMS_SM2_CIPHER_C1C3C2),
    ("CKV_P11KMS_SM2_CIPHER_C1C2C3", CKV_P11KMS_SM2_CIPHER_C1C2C3),
    ("CKV_P11KMS_SM2_CIPHER_DER", CKV_P11KMS_SM2_CIPHER_DER),
];
