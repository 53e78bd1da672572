/*
 * p11kms.h - vendor-defined PKCS#11 constants of libp11kms.so.
 *
 * Include after the standard pkcs11.h. Every value lives in the vendor range
 * (0x80000000 and up). p11kms's own codes use the prefix 0x8E11xxxx so they
 * never collide with the SM codes it shares with other vendors.
 *
 * The Rust side keeps the same values in protocol/src/vendor.rs; a test
 * (protocol/tests/header.rs) fails if the two disagree.
 */
#ifndef P11KMS_H
#define P11KMS_H

/* ---- attributes (CK_ATTRIBUTE_TYPE) ---------------------------------- */

/* CK_ULONG, read-only: where the key material came from.
 * CKV_P11KMS_ORIGIN_KMS = generated inside p11kms (or its HSM),
 * CKV_P11KMS_ORIGIN_EXTERNAL = imported (C_CreateObject with material,
 * C_UnwrapKey, or the import flow). Mirrors CKA_LOCAL. */
#define CKA_P11KMS_ORIGIN            0x8E110001UL
/* CK_ULONG, read-only: key state, one of CKV_P11KMS_STATE_*. A key that is
 * not enabled fails every cryptographic use with CKR_KEY_FUNCTION_NOT_PERMITTED. */
#define CKA_P11KMS_KEY_STATE         0x8E110002UL
/* CK_ULONG, read-only: the key version this object uses (1 = first). */
#define CKA_P11KMS_KEY_VERSION       0x8E110003UL
/* CK_BBOOL, read-only: TRUE on the instance's default key. */
#define CKA_P11KMS_DEFAULT_KEY       0x8E110004UL
/* CK_BBOOL, read-only: TRUE on a key owned by an integrated service. */
#define CKA_P11KMS_SERVICE_KEY       0x8E110005UL
/* UTF-8 string, read-only: the KMS key id ("key-" + UUID). */
#define CKA_P11KMS_KEY_ID            0x8E110006UL

/* ---- mechanisms (CK_MECHANISM_TYPE) --------------------------------- */

/* Envelope encryption under a customer master key (secret key objects of
 * type CKK_AES, 256-bit). Parameter: optional AAD as a byte array
 * (pParameter/ulParameterLen), or none.
 * Ciphertext = "P11E" | version(1)=1 | key-id length(1) | key id (ASCII)
 *              | key version (4, big endian) | IV (12) | AES-GCM ciphertext
 *              | tag (16); the header is authenticated as AAD together with
 *              the caller's AAD. Decrypting with any object of the same key
 *              picks the version named in the ciphertext, so rotation never
 *              makes stored ciphertext undecryptable. */
#define CKM_P11KMS_AES_GCM_ENVELOPE  0x8E110001UL

/* ---- attribute values --------------------------------------------------- */
#define CKV_P11KMS_ORIGIN_KMS        1UL
#define CKV_P11KMS_ORIGIN_EXTERNAL   2UL

#define CKV_P11KMS_STATE_ENABLED           1UL
#define CKV_P11KMS_STATE_DISABLED          2UL
#define CKV_P11KMS_STATE_PENDING_DELETION  3UL
#define CKV_P11KMS_STATE_PENDING_IMPORT    4UL

/* ---- return values (CK_RV) ---------------------------------------------- */

/* The instance's or access point's performance quota was exceeded and the
 * call waited as long as allowed. Retry later. */
#define CKR_P11KMS_QUOTA_EXCEEDED    0x8E110001UL
/* The instance is not serving (failed self-test or sealed master key). */
#define CKR_P11KMS_INSTANCE_UNAVAILABLE 0x8E110002UL

#endif /* P11KMS_H */
