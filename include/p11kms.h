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
 * type CKK_AES, 256-bit: AES-256-GCM; or CKK_SM4: SM4-GCM). Parameter: optional AAD as a byte array
 * (pParameter/ulParameterLen), or none.
 * Ciphertext = "P11E" | version(1)=1 | key-id length(1) | key id (ASCII)
 *              | key version (4, big endian) | IV (12) | GCM ciphertext
 *              | tag (16); the header is authenticated as AAD together with
 *              the caller's AAD. Decrypting with any object of the same key
 *              picks the version named in the ciphertext, so rotation never
 *              makes stored ciphertext undecryptable. */
#define CKM_P11KMS_AES_GCM_ENVELOPE  0x8E110001UL

/* ---- SM algorithms ------------------------------------------------------
 * GB/T 32918 (SM2), GB/T 32905 (SM3), GB/T 32907 (SM4). Codes 0x8000xxxx are
 * Thales Luna's, with Luna's names (also in xipki jpkcs11wrapper's
 * vendor.conf); mechanisms Luna has no code for use p11kms's 0x8E11xxxx range.
 * See docs/sm.md for the mapping from other vendors' codes.
 */

/* Key types (CK_KEY_TYPE). */
/* SM4 secret key: CKA_VALUE is 16 bytes. */
#define CKK_SM4                      0x80000015UL
/* SM2 key pair, an EC-style object: CKA_EC_PARAMS = DER OID
 * 1.2.156.10197.1.301 (06 08 2A 81 1C CF 55 01 82 2D), CKA_EC_POINT = DER
 * OCTET STRING of the uncompressed point 04|x|y (raw 65 bytes accepted on
 * input), private CKA_VALUE = the 32-byte scalar d. PKCS#8 (C_WrapKey/
 * C_UnwrapKey) and SubjectPublicKeyInfo use id-ecPublicKey with the SM2 OID
 * as parameters, like OpenSSL. */
#define CKK_SM2                      0x80000016UL

/* SM3 digest. No parameter. Output: 32 bytes. */
#define CKM_SM3                      0x80000B01UL
/* HMAC-SM3 (RFC 2104 over SM3). Key: CKK_GENERIC_SECRET, 1..512 bytes.
 * No parameter. Output: 32-byte MAC. Multi-part. */
#define CKM_SM3_HMAC                 0x80000B02UL
/* HMAC-SM3 truncated. Parameter: CK_MAC_GENERAL_PARAMS (1..32).
 * Output: that many leading bytes of the MAC. */
#define CKM_SM3_HMAC_GENERAL         0x80000B03UL
/* SM4 key generation. No parameter; CKA_VALUE_LEN optional (16 if given).
 * Creates a CKK_SM4 key. */
#define CKM_SM4_KEY_GEN              0x80000B10UL
/* SM4-ECB. No parameter. Input: whole 16-byte blocks. Output: same length. */
#define CKM_SM4_ECB                  0x80000B11UL
/* SM4-CBC. Parameter: the 16-byte IV. Input: whole 16-byte blocks; output
 * the same length. Equals `openssl enc -sm4-cbc -nopad`. */
#define CKM_SM4_CBC                  0x80000B12UL
/* SM4-CBC with PKCS#7 padding. Parameter: the 16-byte IV. Output: the
 * input padded to the next whole block (1..16 bytes added). Equals
 * `openssl enc -sm4-cbc`. Also C_WrapKey/C_UnwrapKey. */
#define CKM_SM4_CBC_PAD              0x80000B13UL
/* SM2 key pair generation. No parameter; CKA_EC_PARAMS in the public
 * template is optional and must name the SM2 curve if given. */
#define CKM_SM2_KEY_PAIR_GEN         0x80000B20UL
/* SM2 signature of a caller-computed e = SM3(Z_A|M). No parameter.
 * Input: exactly 32 bytes. Output: r|s, 64 bytes (not DER). Single-part. */
#define CKM_SM2DSA                   0x80000B21UL
/* SM2 signature of a message (GB/T 32918.2): e = SM3(Z_A|M), Z_A computed
 * from the signer ID and the key's public point. Parameter: the signer ID
 * as a byte array (pParameter/ulParameterLen, up to 8191 bytes), or none
 * for the default ID "1234567812345678" (GM/T 0009). Output: r|s, 64 bytes
 * (OpenSSL wants DER: SEQUENCE { INTEGER r, INTEGER s }). Multi-part. */
#define CKM_SM3_SM2DSA               0x80000B22UL
/* SM2 signature of SHA-256(M), no Z_A (Luna compatibility). No parameter.
 * Output: r|s, 64 bytes. Multi-part. */
#define CKM_SHA256_SM2DSA            0x80000B25UL

/* SM2 public-key encryption (GB/T 32918.4). Public key encrypts, private
 * key decrypts; also C_WrapKey/C_UnwrapKey (the key value is the plaintext).
 * Parameter: none, or a CK_ULONG format CKV_P11KMS_SM2_CIPHER_*.
 * Encryption output: C1|C3|C2 raw (C1 = 04|x|y 65 bytes, C3 = 32-byte SM3
 * tag, C2 = ciphertext as long as the plaintext) unless the parameter asks
 * for another format. Decryption without parameter accepts raw C1|C3|C2 and
 * the DER SM2Cipher of GM/T 0009 (SEQUENCE { INTEGER x, INTEGER y,
 * OCTET STRING C3, OCTET STRING C2 }, what OpenSSL 3 `pkeyutl -encrypt`
 * writes); the old order C1|C2|C3 only with CKV_P11KMS_SM2_CIPHER_C1C2C3. */
#define CKM_SM2_ENCRYPT              0x8E110010UL
/* SM4-CTR. Parameter: CK_AES_CTR_PARAMS (ulCounterBits 1..128, cb the
 * initial 16-byte counter block). Output: same length as the input. */
#define CKM_SM4_CTR                  0x8E110011UL
/* SM4-GCM as RFC 8998 uses it (GCM of NIST SP 800-38D over SM4).
 * Parameter: CK_GCM_PARAMS (2.40 or 3.0 layout), IV 8, 12 (recommended) or
 * 16 bytes, tag 32..128 bits. Output: ciphertext|tag. */
#define CKM_SM4_GCM                  0x8E110012UL
/* SM4 CBC-MAC: zero IV, last partial block padded with zero bytes (empty
 * input = one zero block). No parameter. Output: the first 8 bytes of the
 * last cipher block (half a block, like CKM_AES_MAC). Multi-part. */
#define CKM_SM4_MAC                  0x8E110013UL
/* SM4 CBC-MAC truncated to CK_MAC_GENERAL_PARAMS bytes (1..16); 16 gives
 * the full last block (GM/T 0018's SDF_CalculateMAC with a zero IV). */
#define CKM_SM4_MAC_GENERAL          0x8E110014UL
/* SM4 key wrap: RFC 5649 (AES key wrap with padding) over SM4. Wrapping
 * key CKK_SM4. No parameter. Wraps any key value (SM4 keys, PKCS#8 SM2
 * keys); output 8 bytes longer than the value rounded up to 8. */
#define CKM_SM4_KEY_WRAP             0x8E110015UL

/* CK_ULONG parameter values of CKM_SM2_ENCRYPT (ciphertext format). */
#define CKV_P11KMS_SM2_CIPHER_C1C3C2 1UL
#define CKV_P11KMS_SM2_CIPHER_C1C2C3 2UL
#define CKV_P11KMS_SM2_CIPHER_DER    3UL

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
/* The caller's uid/gid (read by the daemon with SO_PEERCRED) may not do this:
 * connect at all (allowed_uids/allowed_gids), or administer (admin_uids/
 * admin_gids: admin commands, C_InitToken, C_Login(CKU_SO), daemon status). */
#define CKR_P11KMS_ACCESS_DENIED     0x8E110003UL

#endif /* P11KMS_H */
