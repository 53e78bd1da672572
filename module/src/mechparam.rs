//! `CK_MECHANISM` → [`protocol::Mechanism`](p11kms_protocol::Mechanism).
//!
//! The parameter layout is chosen by a table keyed on the mechanism type
//! ([`kind_of`]); the parameter's declared length must match the layout
//! exactly and nothing past `ulParameterLen` is ever read. A known mechanism
//! whose parameter has the wrong size is `CKR_MECHANISM_PARAM_INVALID`; an
//! unknown mechanism's parameter travels as raw bytes and the daemon, which
//! knows every mechanism it supports, rejects it (CONVENTIONS "The wire":
//! every supported mechanism crosses the wire with its parameters).

use std::mem::size_of;

use p11kms_protocol::{vendor, MechParam, Mechanism, MAX_DATA};
use pkcs11_sys::*;

use crate::ffi::{len_in, ref_in, CkResult};

/// How a mechanism's `pParameter` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An IV or other byte string (CBC, CBC-PAD, AES key wrap).
    Bytes,
    Gcm,
    Ctr,
    MacLen,
    Oaep,
    Pss,
    Ecdh1,
    RsaAesKeyWrap,
    Eddsa,
    /// A single `CK_ULONG` (the ciphertext format of `CKM_SM2_ENCRYPT`).
    Ulong,
    /// Not in the table: raw bytes, for the daemon to judge.
    Unknown,
}

/// The parameter table (PKCS#11 v3.0 §6 parameter definitions).
fn kind_of(mech: CK_MECHANISM_TYPE) -> Kind {
    match mech {
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_KEY_WRAP | CKM_AES_KEY_WRAP_PAD
        | CKM_AES_KEY_WRAP_KWP => Kind::Bytes,
        CKM_AES_GCM => Kind::Gcm,
        CKM_AES_CTR => Kind::Ctr,
        CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL
        | CKM_SHA512_224_HMAC_GENERAL
        | CKM_SHA512_256_HMAC_GENERAL
        | CKM_SHA3_224_HMAC_GENERAL
        | CKM_SHA3_256_HMAC_GENERAL
        | CKM_SHA3_384_HMAC_GENERAL
        | CKM_SHA3_512_HMAC_GENERAL
        | CKM_AES_CMAC_GENERAL => Kind::MacLen,
        CKM_RSA_PKCS_OAEP => Kind::Oaep,
        CKM_RSA_PKCS_PSS
        | CKM_SHA1_RSA_PKCS_PSS
        | CKM_SHA224_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS
        | CKM_SHA3_224_RSA_PKCS_PSS
        | CKM_SHA3_256_RSA_PKCS_PSS
        | CKM_SHA3_384_RSA_PKCS_PSS
        | CKM_SHA3_512_RSA_PKCS_PSS => Kind::Pss,
        CKM_ECDH1_DERIVE | CKM_ECDH1_COFACTOR_DERIVE => Kind::Ecdh1,
        CKM_RSA_AES_KEY_WRAP => Kind::RsaAesKeyWrap,
        CKM_EDDSA => Kind::Eddsa,
        // SM algorithms (include/p11kms.h): IVs and the SM2 signer ID are
        // byte strings, the rest reuse the AES/HMAC structures.
        vendor::CKM_SM4_CBC | vendor::CKM_SM4_CBC_PAD | vendor::CKM_SM3_SM2DSA => Kind::Bytes,
        vendor::CKM_SM4_GCM => Kind::Gcm,
        vendor::CKM_SM4_CTR => Kind::Ctr,
        vendor::CKM_SM3_HMAC_GENERAL | vendor::CKM_SM4_MAC_GENERAL => Kind::MacLen,
        vendor::CKM_SM2_ENCRYPT => Kind::Ulong,
        _ => Kind::Unknown,
    }
}

/// `CK_GCM_PARAMS` as PKCS#11 2.40 defined it (no `ulIvBits`); Java and
/// older OpenSSL engines still send this one.
#[repr(C)]
#[derive(Clone, Copy)]
struct GcmParams240 {
    p_iv: CK_BYTE_PTR,
    ul_iv_len: CK_ULONG,
    p_aad: CK_BYTE_PTR,
    ul_aad_len: CK_ULONG,
    ul_tag_bits: CK_ULONG,
}

const _: () = assert!(size_of::<GcmParams240>() == 40 && size_of::<CK_GCM_PARAMS>() == 48);

const BAD: CK_RV = CKR_MECHANISM_PARAM_INVALID;

/// Read a `T` out of the parameter bytes, which must be exactly its size.
fn read_struct<T: Copy>(bytes: &[u8]) -> CkResult<T> {
    if bytes.len() != size_of::<T>() {
        return Err(BAD);
    }
    // SAFETY: `bytes` holds exactly size_of::<T>() readable bytes and every
    // `T` used here is plain integers and pointers, valid for any bit
    // pattern; read_unaligned copes with a caller's unaligned buffer.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Copy a buffer a parameter structure points to. NULL with a non-zero
/// length, or an absurd length, is `CKR_MECHANISM_PARAM_INVALID`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes.
unsafe fn inner_bytes(ptr: *const u8, len: CK_ULONG) -> CkResult<Vec<u8>> {
    let len = len_in(len).map_err(|_| BAD)?;
    if len > MAX_DATA {
        return Err(BAD);
    }
    if ptr.is_null() {
        return if len == 0 { Ok(Vec::new()) } else { Err(BAD) };
    }
    // SAFETY: non-NULL with `len` readable bytes (caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

/// # Safety
/// The pointer inside `p` must satisfy [`inner_bytes`].
unsafe fn oaep(p: &CK_RSA_PKCS_OAEP_PARAMS) -> CkResult<MechParam> {
    Ok(MechParam::Oaep {
        hash: p.hashAlg,
        mgf: p.mgf,
        source: p.source,
        // SAFETY: forwarded contract.
        source_data: unsafe { inner_bytes(p.pSourceData.cast::<u8>(), p.ulSourceDataLen) }?,
    })
}

/// Convert the caller's mechanism. NULL is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-NULL `ptr` must point to a valid `CK_MECHANISM` whose non-NULL
/// `pParameter` points to `ulParameterLen` readable bytes, and whose
/// parameter structure's own pointers point to buffers of their stated
/// lengths (the PKCS#11 contract for every `C_*Init`).
pub unsafe fn mechanism_in(ptr: *const CK_MECHANISM) -> CkResult<Mechanism> {
    // SAFETY: forwarded contract.
    let m = unsafe { ref_in(ptr) }?;
    let len = len_in(m.ulParameterLen).map_err(|_| BAD)?;
    if len == 0 {
        return Ok(Mechanism {
            mech: m.mechanism,
            param: MechParam::None,
        });
    }
    if m.pParameter.is_null() || len > MAX_DATA {
        return Err(BAD);
    }
    // SAFETY: non-NULL with `len` readable bytes (contract).
    let bytes = unsafe { std::slice::from_raw_parts(m.pParameter.cast::<u8>(), len) };
    // SAFETY: nested pointers are covered by the contract.
    let param = unsafe { param_from(m.mechanism, bytes) }?;
    Ok(Mechanism {
        mech: m.mechanism,
        param,
    })
}

/// # Safety
/// Pointers inside `bytes` (for structured parameters) must point to
/// buffers of their stated lengths.
unsafe fn param_from(mech: CK_MECHANISM_TYPE, bytes: &[u8]) -> CkResult<MechParam> {
    // SAFETY (all `inner_bytes` and `oaep` calls below): the nested pointers
    // come from the caller's parameter structure (function contract).
    Ok(match kind_of(mech) {
        Kind::Bytes | Kind::Unknown => MechParam::Bytes(bytes.to_vec()),
        Kind::Gcm => match bytes.len() {
            40 => {
                let p: GcmParams240 = read_struct(bytes)?;
                MechParam::Gcm {
                    iv: unsafe { inner_bytes(p.p_iv, p.ul_iv_len) }?,
                    iv_bits: None,
                    aad: unsafe { inner_bytes(p.p_aad, p.ul_aad_len) }?,
                    tag_bits: p.ul_tag_bits,
                }
            }
            48 => {
                let p: CK_GCM_PARAMS = read_struct(bytes)?;
                MechParam::Gcm {
                    iv: unsafe { inner_bytes(p.pIv, p.ulIvLen) }?,
                    iv_bits: Some(p.ulIvBits),
                    aad: unsafe { inner_bytes(p.pAAD, p.ulAADLen) }?,
                    tag_bits: p.ulTagBits,
                }
            }
            _ => return Err(BAD),
        },
        Kind::Ctr => {
            let p: CK_AES_CTR_PARAMS = read_struct(bytes)?;
            MechParam::Ctr {
                counter_bits: p.ulCounterBits,
                cb: p.cb,
            }
        }
        Kind::MacLen => MechParam::MacLen(read_struct::<CK_MAC_GENERAL_PARAMS>(bytes)?),
        Kind::Ulong => MechParam::Ulong(read_struct::<CK_ULONG>(bytes)?),
        Kind::Oaep => unsafe { oaep(&read_struct::<CK_RSA_PKCS_OAEP_PARAMS>(bytes)?) }?,
        Kind::Pss => {
            let p: CK_RSA_PKCS_PSS_PARAMS = read_struct(bytes)?;
            MechParam::Pss {
                hash: p.hashAlg,
                mgf: p.mgf,
                salt_len: p.sLen,
            }
        }
        Kind::Ecdh1 => {
            let p: CK_ECDH1_DERIVE_PARAMS = read_struct(bytes)?;
            MechParam::Ecdh1 {
                kdf: p.kdf,
                shared_data: unsafe { inner_bytes(p.pSharedData, p.ulSharedDataLen) }?,
                public_data: unsafe { inner_bytes(p.pPublicData, p.ulPublicDataLen) }?,
            }
        }
        Kind::RsaAesKeyWrap => {
            let p: CK_RSA_AES_KEY_WRAP_PARAMS = read_struct(bytes)?;
            let oaep_param = if p.pOAEPParams.is_null() {
                None
            } else {
                // SAFETY: non-NULL; the caller's structure points to a
                // CK_RSA_PKCS_OAEP_PARAMS (contract). Read unaligned to be safe.
                let o = unsafe { std::ptr::read_unaligned(p.pOAEPParams) };
                Some(Box::new(unsafe { oaep(&o) }?))
            };
            MechParam::RsaAesKeyWrap {
                aes_key_bits: p.ulAESKeyBits,
                oaep: oaep_param,
            }
        }
        Kind::Eddsa => {
            let p: CK_EDDSA_PARAMS = read_struct(bytes)?;
            MechParam::Eddsa {
                ph_flag: p.phFlag != 0,
                context: unsafe { inner_bytes(p.pContextData, p.ulContextDataLen) }?,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    fn mech<T>(ty: CK_MECHANISM_TYPE, p: &T, len: usize) -> CK_MECHANISM {
        CK_MECHANISM {
            mechanism: ty,
            pParameter: (p as *const T).cast_mut().cast(),
            ulParameterLen: len as CK_ULONG,
        }
    }

    fn parse(m: &CK_MECHANISM) -> CkResult<Mechanism> {
        unsafe { mechanism_in(m) }
    }

    #[test]
    fn no_param_is_none() {
        let m = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(parse(&m), Ok(Mechanism::new(CKM_AES_GCM)));
        let m = CK_MECHANISM {
            mechanism: CKM_AES_KEY_WRAP,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(parse(&m).map(|m| m.param), Ok(MechParam::None));
        let m = CK_MECHANISM {
            mechanism: CKM_AES_CBC,
            pParameter: ptr::null_mut(),
            ulParameterLen: 16,
        };
        assert_eq!(parse(&m), Err(BAD));
        assert_eq!(unsafe { mechanism_in(ptr::null()) }, Err(CKR_ARGUMENTS_BAD));
    }

    #[test]
    fn gcm_3_0_layout() {
        let iv = [1u8; 12];
        let aad = *b"header";
        let p = CK_GCM_PARAMS {
            pIv: iv.as_ptr().cast_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: aad.as_ptr().cast_mut(),
            ulAADLen: 6,
            ulTagBits: 128,
        };
        let m = mech(CKM_AES_GCM, &p, 48);
        assert_eq!(
            parse(&m).map(|m| m.param),
            Ok(MechParam::Gcm {
                iv: iv.to_vec(),
                iv_bits: Some(96),
                aad: aad.to_vec(),
                tag_bits: 128
            })
        );
    }

    #[test]
    fn gcm_2_40_layout_never_reads_past_length() {
        let iv = [2u8; 12];
        // A 40-byte buffer followed by nothing we own: reading 48 would be
        // out of bounds (Miri/ASan would flag it).
        let p = GcmParams240 {
            p_iv: iv.as_ptr().cast_mut(),
            ul_iv_len: 12,
            p_aad: ptr::null_mut(),
            ul_aad_len: 0,
            ul_tag_bits: 96,
        };
        let m = mech(CKM_AES_GCM, &p, 40);
        assert_eq!(
            parse(&m).map(|m| m.param),
            Ok(MechParam::Gcm {
                iv: iv.to_vec(),
                iv_bits: None,
                aad: vec![],
                tag_bits: 96
            })
        );
    }

    #[test]
    fn gcm_bad_lengths_and_pointers() {
        let iv = [0u8; 12];
        let p = CK_GCM_PARAMS {
            pIv: iv.as_ptr().cast_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: ptr::null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        for len in [8, 32, 39, 41, 47, 49, 56] {
            assert_eq!(parse(&mech(CKM_AES_GCM, &p, len)), Err(BAD), "len {len}");
        }
        let p = CK_GCM_PARAMS {
            pIv: ptr::null_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: ptr::null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        assert_eq!(parse(&mech(CKM_AES_GCM, &p, 48)), Err(BAD));
        let p = CK_GCM_PARAMS {
            pIv: iv.as_ptr().cast_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: ptr::null_mut(),
            ulAADLen: 5,
            ulTagBits: 128,
        };
        assert_eq!(parse(&mech(CKM_AES_GCM, &p, 48)), Err(BAD));
    }

    #[test]
    fn cbc_iv_and_unknown_are_bytes() {
        let iv = [7u8; 16];
        assert_eq!(
            parse(&mech(CKM_AES_CBC_PAD, &iv, 16)).map(|m| m.param),
            Ok(MechParam::Bytes(iv.to_vec()))
        );
        // The daemon checks the IV length, not the module.
        assert_eq!(
            parse(&mech(CKM_AES_CBC, &iv, 8)).map(|m| m.param),
            Ok(MechParam::Bytes(vec![7; 8]))
        );
        assert_eq!(
            parse(&mech(0x8000_1234, &iv, 4)).map(|m| m.param),
            Ok(MechParam::Bytes(vec![7; 4]))
        );
        assert_eq!(
            parse(&mech(CKM_AES_KEY_WRAP, &iv, 8)).map(|m| m.param),
            Ok(MechParam::Bytes(vec![7; 8]))
        );
    }

    #[test]
    fn structured_params() {
        let ctr = CK_AES_CTR_PARAMS {
            ulCounterBits: 32,
            cb: [3; 16],
        };
        assert_eq!(
            parse(&mech(CKM_AES_CTR, &ctr, 24)).map(|m| m.param),
            Ok(MechParam::Ctr {
                counter_bits: 32,
                cb: [3; 16]
            })
        );
        assert_eq!(parse(&mech(CKM_AES_CTR, &ctr, 16)), Err(BAD));

        let maclen: CK_ULONG = 16;
        assert_eq!(
            parse(&mech(CKM_SHA256_HMAC_GENERAL, &maclen, 8)).map(|m| m.param),
            Ok(MechParam::MacLen(16))
        );
        assert_eq!(parse(&mech(CKM_AES_CMAC_GENERAL, &maclen, 4)), Err(BAD));

        let label = *b"lbl";
        let oaep = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: label.as_ptr().cast_mut().cast(),
            ulSourceDataLen: 3,
        };
        let want = MechParam::Oaep {
            hash: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            source_data: label.to_vec(),
        };
        assert_eq!(
            parse(&mech(CKM_RSA_PKCS_OAEP, &oaep, 40)).map(|m| m.param),
            Ok(want.clone())
        );

        let pss = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        assert_eq!(
            parse(&mech(CKM_SHA256_RSA_PKCS_PSS, &pss, 24)).map(|m| m.param),
            Ok(MechParam::Pss {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                salt_len: 32
            })
        );

        let public = [4u8; 65];
        let ecdh = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_NULL,
            ulSharedDataLen: 0,
            pSharedData: ptr::null_mut(),
            ulPublicDataLen: 65,
            pPublicData: public.as_ptr().cast_mut(),
        };
        assert_eq!(
            parse(&mech(CKM_ECDH1_DERIVE, &ecdh, 40)).map(|m| m.param),
            Ok(MechParam::Ecdh1 {
                kdf: CKD_NULL,
                shared_data: vec![],
                public_data: public.to_vec()
            })
        );

        let rsa_aes = CK_RSA_AES_KEY_WRAP_PARAMS {
            ulAESKeyBits: 256,
            pOAEPParams: (&oaep as *const CK_RSA_PKCS_OAEP_PARAMS).cast_mut(),
        };
        assert_eq!(
            parse(&mech(CKM_RSA_AES_KEY_WRAP, &rsa_aes, 16)).map(|m| m.param),
            Ok(MechParam::RsaAesKeyWrap {
                aes_key_bits: 256,
                oaep: Some(Box::new(want))
            })
        );

        let ctx = *b"ctx";
        let ed = CK_EDDSA_PARAMS {
            phFlag: 1,
            ulContextDataLen: 3,
            pContextData: ctx.as_ptr().cast_mut(),
        };
        assert_eq!(
            parse(&mech(CKM_EDDSA, &ed, 24)).map(|m| m.param),
            Ok(MechParam::Eddsa {
                ph_flag: true,
                context: ctx.to_vec()
            })
        );
        let m = CK_MECHANISM {
            mechanism: CKM_EDDSA,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(parse(&m).map(|m| m.param), Ok(MechParam::None));
    }
    /// SM mechanisms cross the wire typed (CONVENTIONS "The wire").
    #[test]
    fn sm_parameters() {
        let iv = [7u8; 16];
        assert_eq!(
            parse(&mech(vendor::CKM_SM4_CBC_PAD, &iv, 16)).map(|m| m.param),
            Ok(MechParam::Bytes(iv.to_vec()))
        );
        let id = *b"ALICE123@YAHOO.COM";
        assert_eq!(
            parse(&mech(vendor::CKM_SM3_SM2DSA, &id, id.len())).map(|m| m.param),
            Ok(MechParam::Bytes(id.to_vec()))
        );
        let ctr = CK_AES_CTR_PARAMS {
            ulCounterBits: 128,
            cb: [1; 16],
        };
        assert_eq!(
            parse(&mech(vendor::CKM_SM4_CTR, &ctr, 24)).map(|m| m.param),
            Ok(MechParam::Ctr {
                counter_bits: 128,
                cb: [1; 16]
            })
        );
        let nonce = [2u8; 12];
        let gcm = CK_GCM_PARAMS {
            pIv: nonce.as_ptr().cast_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: ptr::null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        assert_eq!(
            parse(&mech(vendor::CKM_SM4_GCM, &gcm, 48)).map(|m| m.param),
            Ok(MechParam::Gcm {
                iv: nonce.to_vec(),
                iv_bits: Some(96),
                aad: Vec::new(),
                tag_bits: 128
            })
        );
        let n: CK_ULONG = 8;
        for m in [vendor::CKM_SM3_HMAC_GENERAL, vendor::CKM_SM4_MAC_GENERAL] {
            assert_eq!(
                parse(&mech(m, &n, 8)).map(|m| m.param),
                Ok(MechParam::MacLen(8))
            );
        }
        let fmt: CK_ULONG = vendor::CKV_P11KMS_SM2_CIPHER_DER as CK_ULONG;
        assert_eq!(
            parse(&mech(vendor::CKM_SM2_ENCRYPT, &fmt, 8)).map(|m| m.param),
            Ok(MechParam::Ulong(vendor::CKV_P11KMS_SM2_CIPHER_DER))
        );
        assert_eq!(parse(&mech(vendor::CKM_SM2_ENCRYPT, &fmt, 4)), Err(BAD));
    }
}
