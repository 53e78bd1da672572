//! The cases: what one operation is, what it needs prepared once per peer,
//! and how a peer that lacks it is recognized (shown as "n/a (reason)").

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass};

use cryptoki_sys::{CK_KEY_TYPE, CK_MECHANISM_TYPE};

use crate::raw::{Handle, Sess};
use crate::setup::{ck, Peer};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Id {
    Session,
    Random32,
    Find1k,
    Find100k,
    Gcm64,
    Gcm4k,
    Gcm1m,
    CbcPad4k,
    Ecb4k,
    Sm4Cbc4k,
    Envelope4k,
    StreamCbc,
    StreamEcb,
    RsaPkcsSign,
    RsaPssSign,
    RsaPkcsVerify,
    RsaPssVerify,
    RsaOaepDecrypt,
    EcdsaSign,
    EcdsaVerify,
    Sm2Sign,
    Sm2Verify,
    AesKeygen,
    EcKeygen,
    Wrap,
    Unwrap,
    /// Measured by `mixed.rs` (many threads in several processes), not by
    /// `op`.
    Mixed64,
}

pub struct CaseDef {
    pub id: Id,
    /// Name on the command line (`--cases`) and in the JSON.
    pub name: &'static str,
    /// What one operation is, for the table.
    pub title: &'static str,
    /// Payload bytes per operation (for MB/s), 0 where it does not apply.
    pub bytes: u64,
    /// Only with `--big`.
    pub big: bool,
}

pub const STREAM_TOTAL: usize = 64 << 20;
pub const STREAM_CHUNK: usize = 64 << 10;
pub const FIND_SMALL: usize = 1_000;
pub const FIND_BIG: usize = 100_000;
/// Label of the P-256 key pair (both halves); the mixed64 workers find the
/// private key by it.
pub const EC_LABEL: &[u8] = b"bench-ec";

pub fn all() -> Vec<CaseDef> {
    use Id::*;
    let c = |id, name, title, bytes, big| CaseDef {
        id,
        name,
        title,
        bytes,
        big,
    };
    vec![
        c(
            Session,
            "session",
            "C_OpenSession + C_CloseSession",
            0,
            false,
        ),
        c(Random32, "random32", "C_GenerateRandom 32 B", 0, false),
        c(
            Find1k,
            "find1k",
            "find by label among 1,000 private token keys (100 with --smoke)",
            0,
            false,
        ),
        c(
            Find100k,
            "find100k",
            "find by label among 100,000 private token keys",
            0,
            true,
        ),
        c(
            Gcm64,
            "gcm64",
            "AES-256-GCM encrypt 64 B (Init + C_Encrypt)",
            64,
            false,
        ),
        c(Gcm4k, "gcm4k", "AES-256-GCM encrypt 4 KiB", 4096, false),
        c(Gcm1m, "gcm1m", "AES-256-GCM encrypt 1 MiB", 1 << 20, false),
        c(
            CbcPad4k,
            "cbcpad4k",
            "AES-256-CBC-PAD encrypt 4 KiB",
            4096,
            false,
        ),
        c(Ecb4k, "ecb4k", "AES-256-ECB encrypt 4 KiB", 4096, false),
        c(
            Sm4Cbc4k,
            "sm4-cbc4k",
            "SM4-CBC encrypt 4 KiB (CKM_SM4_CBC, vendor 0x80000B12)",
            4096,
            false,
        ),
        c(
            Envelope4k,
            "envelope4k",
            "CKM_P11KMS_AES_GCM_ENVELOPE encrypt 4 KiB with the AES-256 token key, no AAD",
            4096,
            false,
        ),
        c(
            StreamCbc,
            "stream-cbc",
            "AES-256-CBC 64 MiB as 1,024 x 64 KiB C_EncryptUpdate",
            STREAM_TOTAL as u64,
            false,
        ),
        c(
            StreamEcb,
            "stream-ecb",
            "AES-256-ECB 64 MiB as 1,024 x 64 KiB C_EncryptUpdate",
            STREAM_TOTAL as u64,
            false,
        ),
        c(
            RsaPkcsSign,
            "rsa-pkcs-sign",
            "RSA-2048 CKM_SHA256_RSA_PKCS sign 32 B",
            0,
            false,
        ),
        c(
            RsaPssSign,
            "rsa-pss-sign",
            "RSA-2048 CKM_SHA256_RSA_PKCS_PSS sign 32 B",
            0,
            false,
        ),
        c(
            RsaPkcsVerify,
            "rsa-pkcs-verify",
            "RSA-2048 CKM_SHA256_RSA_PKCS verify",
            0,
            false,
        ),
        c(
            RsaPssVerify,
            "rsa-pss-verify",
            "RSA-2048 CKM_SHA256_RSA_PKCS_PSS verify",
            0,
            false,
        ),
        c(
            RsaOaepDecrypt,
            "rsa-oaep-decrypt",
            "RSA-2048 OAEP-SHA-256 decrypt",
            0,
            false,
        ),
        c(
            EcdsaSign,
            "ecdsa-sign",
            "ECDSA P-256 sign (CKM_ECDSA, 32-byte hash)",
            0,
            false,
        ),
        c(EcdsaVerify, "ecdsa-verify", "ECDSA P-256 verify", 0, false),
        c(
            Sm2Sign,
            "sm2-sign",
            "SM2 CKM_SM3_SM2DSA sign 32 B (default signer ID)",
            0,
            false,
        ),
        c(
            Sm2Verify,
            "sm2-verify",
            "SM2 CKM_SM3_SM2DSA verify",
            0,
            false,
        ),
        c(
            AesKeygen,
            "aes-keygen",
            "AES-256 C_GenerateKey (session key) + C_DestroyObject",
            0,
            false,
        ),
        c(
            EcKeygen,
            "ec-keygen",
            "P-256 C_GenerateKeyPair (session keys) + 2 C_DestroyObject",
            0,
            false,
        ),
        c(
            Wrap,
            "wrap",
            "CKM_AES_KEY_WRAP wrap of an AES-256 key",
            0,
            false,
        ),
        c(
            Unwrap,
            "unwrap",
            "CKM_AES_KEY_WRAP unwrap to a session key + C_DestroyObject",
            0,
            false,
        ),
        c(
            Mixed64,
            "mixed64",
            "mixed load (GCM 4 KiB, P-256 sign, random 32 B, find by label in rotation): \
             2 threads in-process vs 8 processes x 8 threads",
            0,
            false,
        ),
    ]
}

/// Why a case did not run on a peer.
#[derive(Clone, Debug)]
pub enum Skip {
    /// The peer lacks it (mechanism not listed or refused as unsupported).
    Na(String),
    /// Something failed that should have worked.
    Fail(String),
}

/// Return codes that mean "this peer does not do that" rather than a bug.
fn unsupported(rv: &RvError) -> bool {
    matches!(
        rv,
        RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::FunctionNotSupported
            | RvError::KeyTypeInconsistent
            | RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::TemplateInconsistent
            | RvError::AttributeValueInvalid
            | RvError::AttributeTypeInvalid
            | RvError::ArgumentsBad
    )
}

/// Classifies an error met while preparing or warming up a case.
pub fn classify(what: &str, e: &Error) -> Skip {
    match e {
        Error::Pkcs11(rv, _) if unsupported(rv) => Skip::Na(format!("{what}: {}", ck(e))),
        _ => Skip::Fail(format!("{what}: {}", ck(e))),
    }
}

fn need(peer: &Peer, m: MechanismType) -> Result<(), Skip> {
    if peer.mechs.contains(&m.into()) {
        Ok(())
    } else {
        Err(Skip::Na(format!("{m} not in C_GetMechanismList")))
    }
}

/// `need` for a vendor code, named in the reason (cryptoki would print
/// "unknown 80000b22").
fn need_vendor(peer: &Peer, code: CK_MECHANISM_TYPE, name: &str) -> Result<(), Skip> {
    if peer.mechs.contains(&code) {
        Ok(())
    } else {
        Err(Skip::Na(format!("{name} not in C_GetMechanismList")))
    }
}

// Vendor codes (p11kms: include/p11kms.h, protocol/src/vendor.rs; the SM
// ones are Thales Luna's).
const CKK_SM2: CK_KEY_TYPE = 0x8000_0016;
const CKK_SM4: CK_KEY_TYPE = 0x8000_0015;
const CKM_SM4_KEY_GEN: CK_MECHANISM_TYPE = 0x8000_0B10;
const CKM_SM4_CBC: CK_MECHANISM_TYPE = 0x8000_0B12;
const CKM_SM2_KEY_PAIR_GEN: CK_MECHANISM_TYPE = 0x8000_0B20;
const CKM_SM3_SM2DSA: CK_MECHANISM_TYPE = 0x8000_0B22;
const CKM_P11KMS_AES_GCM_ENVELOPE: CK_MECHANISM_TYPE = 0x8E11_0001;
/// DER of the SM2 curve OID 1.2.156.10197.1.301.
const SM2_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
/// The SM4-CBC IV of every operation.
const SM4_IV: [u8; 16] = [7u8; 16];

/// A vendor mechanism with no parameter.
fn vendor_mech(code: CK_MECHANISM_TYPE) -> cryptoki::error::Result<Mechanism<'static>> {
    Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
        MechanismType::new_vendor_defined(code)?,
        None,
    )))
}

/// `CKM_SM4_CBC` with `SM4_IV` as its 16-byte parameter.
fn sm4_cbc() -> cryptoki::error::Result<Mechanism<'static>> {
    Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new(
        MechanismType::new_vendor_defined(CKM_SM4_CBC)?,
        Some(&SM4_IV),
    )))
}

fn vendor_key_type(code: CK_KEY_TYPE) -> KeyType {
    KeyType::new_vendor_defined(code).expect("vendor key type code")
}

/// What a case needs, prepared once per peer on its main session.
#[derive(Default)]
pub struct Prep {
    /// The peer's AES-256 token key (encrypt, decrypt, wrap, unwrap).
    pub aes: Handle,
    pub key: Option<Handle>,
    pub key2: Option<Handle>,
    /// Input of one operation.
    pub data: Vec<u8>,
    /// Signature (verify) or ciphertext (decrypt) or wrapped key (unwrap).
    pub aux: Vec<u8>,
    /// Labels to find, cycled through.
    pub labels: Vec<Vec<u8>>,
    /// Output buffer size.
    pub out_len: usize,
}

/// Keys shared by several cases of one peer, made on first use.
#[derive(Default)]
pub struct Shared {
    /// The AES-256 token key, made at set-up.
    pub aes: Handle,
    /// How many keys find1k searches among (1,000; 100 in smoke mode).
    pub find_n: usize,
    rsa: Option<Result<(Handle, Handle), Skip>>,
    ec: Option<Result<(Handle, Handle), Skip>>,
    sm2: Option<Result<(Handle, Handle), Skip>>,
    find_small: Option<Result<(), Skip>>,
    find_big: Option<Result<(), Skip>>,
    /// Seconds it took to make the find100k keys.
    pub find_big_secs: f64,
    wrap_target: Option<Result<Handle, Skip>>,
}

impl Shared {
    pub fn new(aes: Handle, find_n: usize) -> Shared {
        Shared {
            aes,
            find_n,
            ..Shared::default()
        }
    }
}

const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn pss() -> PkcsPssParams {
    PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    }
}

fn oaep() -> PkcsOaepParams<'static> {
    PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    )
}

fn rsa_keys(peer: &Peer, main: &Sess, sh: &mut Shared) -> Result<(Handle, Handle), Skip> {
    sh.rsa
        .get_or_insert_with(|| {
            need(peer, MechanismType::RSA_PKCS_KEY_PAIR_GEN)?;
            let (pubk, privk) = main
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::ModulusBits(2048.into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                        Attribute::Verify(true),
                        Attribute::Encrypt(true),
                        Attribute::Label(b"bench-rsa".to_vec()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Sign(true),
                        Attribute::Decrypt(true),
                        Attribute::Label(b"bench-rsa".to_vec()),
                    ],
                )
                .map_err(|e| classify("RSA-2048 key pair", &e))?;
            Ok((privk, pubk))
        })
        .clone()
}

fn ec_keys(peer: &Peer, main: &Sess, sh: &mut Shared) -> Result<(Handle, Handle), Skip> {
    sh.ec
        .get_or_insert_with(|| {
            need(peer, MechanismType::ECC_KEY_PAIR_GEN)?;
            let (pubk, privk) = main
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::EcParams(P256_OID.to_vec()),
                        Attribute::Verify(true),
                        Attribute::Label(EC_LABEL.to_vec()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Sign(true),
                        Attribute::Label(EC_LABEL.to_vec()),
                    ],
                )
                .map_err(|e| classify("P-256 key pair", &e))?;
            Ok((privk, pubk))
        })
        .clone()
}

fn sm2_keys(peer: &Peer, main: &Sess, sh: &mut Shared) -> Result<(Handle, Handle), Skip> {
    sh.sm2
        .get_or_insert_with(|| {
            need_vendor(peer, CKM_SM2_KEY_PAIR_GEN, "CKM_SM2_KEY_PAIR_GEN")?;
            let mech = vendor_mech(CKM_SM2_KEY_PAIR_GEN)
                .map_err(|e| classify("CKM_SM2_KEY_PAIR_GEN", &e))?;
            let (pubk, privk) = main
                .generate_key_pair(
                    &mech,
                    &[
                        Attribute::Token(true),
                        Attribute::KeyType(vendor_key_type(CKK_SM2)),
                        Attribute::EcParams(SM2_OID.to_vec()),
                        Attribute::Verify(true),
                        Attribute::Label(b"bench-sm2".to_vec()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::KeyType(vendor_key_type(CKK_SM2)),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Sign(true),
                        Attribute::Label(b"bench-sm2".to_vec()),
                    ],
                )
                .map_err(|e| classify("SM2 key pair", &e))?;
            Ok((privk, pubk))
        })
        .clone()
}

fn find_label(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}-{i:06}").into_bytes()
}

/// A private AES-256 token key; `exportable` makes it extractable and not
/// sensitive — the only kind p11kms (docs/security.md) wraps under a key
/// that can also encrypt and decrypt, like the benchmark's shared key.
fn aes_token_key(label: &[u8], exportable: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(!exportable),
        Attribute::Extractable(exportable),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label.to_vec()),
    ]
}

/// Makes `count` private AES-256 token keys labelled `<prefix>-NNNNNN`, with
/// up to `threads` sessions at once (creating 100,000 takes a while).
pub fn make_find_objects(
    peer: &Peer,
    prefix: &str,
    count: usize,
    threads: usize,
    progress: bool,
) -> Result<(), Skip> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t0 = std::time::Instant::now();
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads.max(1))
            .map(|_| {
                sc.spawn(|| -> Result<(), Skip> {
                    let s = peer
                        .raw
                        .open(peer.slot)
                        .map_err(|e| Skip::Fail(format!("C_OpenSession: {}", ck(&e))))?;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        s.generate_key(
                            &Mechanism::AesKeyGen,
                            &aes_token_key(&find_label(prefix, i), false),
                        )
                        .map_err(|e| classify(&format!("token key {i} of {count}"), &e))?;
                        if progress && i > 0 && i.is_multiple_of(10_000) {
                            eprintln!(
                                "  {}: {i} of {count} token keys ({:.0}/s)",
                                peer.name,
                                i as f64 / t0.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        let mut res = Ok(());
        for h in hs {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Skip::Fail("object-making thread panicked".into())));
            if res.is_ok() {
                res = r;
            }
        }
        res
    })
}

/// Prepares `id` on `peer` and runs one operation on its main session (the
/// warm-up, which also tells an unsupported case from a broken one).
pub fn prepare(
    id: Id,
    peer: &Peer,
    main: &Sess,
    sh: &mut Shared,
    big_peer_ok: bool,
) -> Result<Prep, Skip> {
    let mut p = Prep {
        aes: sh.aes,
        ..Prep::default()
    };
    let msg32: Vec<u8> = (0..32u8).collect();
    match id {
        Id::Session => {}
        Id::Random32 => p.out_len = 32,
        Id::Find1k => {
            let n = sh.find_n;
            sh.find_small
                .get_or_insert_with(|| make_find_objects(peer, "bench-find", n, 1, false))
                .clone()?;
            p.labels = (0..n).map(|i| find_label("bench-find", i)).collect();
        }
        Id::Find100k => {
            if !big_peer_ok {
                return Err(Skip::Na(
                    "100,000 objects are made in p11kms only (the target compares p11kms with itself)".into(),
                ));
            }
            let n = sh.find_n;
            sh.find_small
                .get_or_insert_with(|| make_find_objects(peer, "bench-find", n, 1, false))
                .clone()?;
            if sh.find_big.is_none() {
                eprintln!(
                    "  {}: making {} more token keys for find100k ...",
                    peer.name,
                    FIND_BIG - n
                );
                let t0 = std::time::Instant::now();
                sh.find_big = Some(make_find_objects(peer, "bench-big", FIND_BIG - n, 4, true));
                sh.find_big_secs = t0.elapsed().as_secs_f64();
            }
            sh.find_big.clone().unwrap_or(Ok(()))?;
            // look up keys spread over the whole set
            p.labels = (0..FIND_SMALL)
                .map(|i| find_label("bench-big", (i * 97) % (FIND_BIG - n)))
                .collect();
        }
        Id::Gcm64 | Id::Gcm4k | Id::Gcm1m => {
            need(peer, MechanismType::AES_GCM)?;
            let n = match id {
                Id::Gcm64 => 64,
                Id::Gcm4k => 4096,
                _ => 1 << 20,
            };
            p.data = vec![0x5a; n];
            p.out_len = n + 16;
        }
        Id::CbcPad4k => {
            need(peer, MechanismType::AES_CBC_PAD)?;
            p.data = vec![0x5a; 4096];
            p.out_len = 4096 + 16;
        }
        Id::Ecb4k => {
            need(peer, MechanismType::AES_ECB)?;
            p.data = vec![0x5a; 4096];
            p.out_len = 4096;
        }
        Id::Sm4Cbc4k => {
            need_vendor(peer, CKM_SM4_CBC, "CKM_SM4_CBC")?;
            need_vendor(peer, CKM_SM4_KEY_GEN, "CKM_SM4_KEY_GEN")?;
            let mech = vendor_mech(CKM_SM4_KEY_GEN).map_err(|e| classify("CKM_SM4_KEY_GEN", &e))?;
            let k = main
                .generate_key(
                    &mech,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(vendor_key_type(CKK_SM4)),
                        Attribute::ValueLen(16.into()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Label(b"bench-sm4".to_vec()),
                    ],
                )
                .map_err(|e| classify("SM4 key", &e))?;
            p.key = Some(k);
            p.data = vec![0x5a; 4096];
            p.out_len = 4096;
        }
        Id::Envelope4k => {
            need_vendor(
                peer,
                CKM_P11KMS_AES_GCM_ENVELOPE,
                "CKM_P11KMS_AES_GCM_ENVELOPE",
            )?;
            p.data = vec![0x5a; 4096];
            // 4096 + header (10 + key id, ≤ 255) + IV 12 + tag 16
            p.out_len = 4096 + 10 + 255 + 12 + 16;
        }
        Id::StreamCbc | Id::StreamEcb => {
            need(
                peer,
                if id == Id::StreamCbc {
                    MechanismType::AES_CBC
                } else {
                    MechanismType::AES_ECB
                },
            )?;
            p.data = vec![0x5a; STREAM_CHUNK];
            p.out_len = STREAM_CHUNK;
        }
        Id::RsaPkcsSign | Id::RsaPssSign | Id::RsaPkcsVerify | Id::RsaPssVerify => {
            let pss_case = matches!(id, Id::RsaPssSign | Id::RsaPssVerify);
            need(
                peer,
                if pss_case {
                    MechanismType::SHA256_RSA_PKCS_PSS
                } else {
                    MechanismType::SHA256_RSA_PKCS
                },
            )?;
            let (privk, pubk) = rsa_keys(peer, main, sh)?;
            p.key = Some(privk);
            p.key2 = Some(pubk);
            p.data = msg32.clone();
            p.out_len = 256;
            if matches!(id, Id::RsaPkcsVerify | Id::RsaPssVerify) {
                let mech = if pss_case {
                    Mechanism::Sha256RsaPkcsPss(pss())
                } else {
                    Mechanism::Sha256RsaPkcs
                };
                p.aux = sign_once(main, &mech, privk, &msg32)
                    .map_err(|e| classify("signature to verify", &e))?;
            }
        }
        Id::RsaOaepDecrypt => {
            need(peer, MechanismType::RSA_PKCS_OAEP)?;
            let (privk, pubk) = rsa_keys(peer, main, sh)?;
            p.key = Some(privk);
            p.out_len = 256;
            p.aux = main
                .encrypt_init(&Mechanism::RsaPkcsOaep(oaep()), pubk)
                .and_then(|()| {
                    let mut ct = vec![0u8; 256];
                    let n = main.encrypt(&msg32, &mut ct)?;
                    ct.truncate(n);
                    Ok(ct)
                })
                .map_err(|e| classify("OAEP-SHA-256 ciphertext", &e))?;
        }
        Id::EcdsaSign | Id::EcdsaVerify => {
            need(peer, MechanismType::ECDSA)?;
            let (privk, pubk) = ec_keys(peer, main, sh)?;
            p.key = Some(privk);
            p.key2 = Some(pubk);
            p.data = msg32.clone();
            p.out_len = 64;
            if id == Id::EcdsaVerify {
                p.aux = sign_once(main, &Mechanism::Ecdsa, privk, &msg32)
                    .map_err(|e| classify("signature to verify", &e))?;
            }
        }
        Id::Sm2Sign | Id::Sm2Verify => {
            need_vendor(peer, CKM_SM3_SM2DSA, "CKM_SM3_SM2DSA")?;
            let (privk, pubk) = sm2_keys(peer, main, sh)?;
            p.key = Some(privk);
            p.key2 = Some(pubk);
            p.data = msg32.clone();
            p.out_len = 64;
            if id == Id::Sm2Verify {
                let mech =
                    vendor_mech(CKM_SM3_SM2DSA).map_err(|e| classify("CKM_SM3_SM2DSA", &e))?;
                p.aux = sign_once(main, &mech, privk, &msg32)
                    .map_err(|e| classify("signature to verify", &e))?;
            }
        }
        Id::Mixed64 => {
            return Err(Skip::Fail(
                "mixed64 is prepared by mixed::prepare, not cases::prepare".into(),
            ))
        }
        Id::AesKeygen => need(peer, MechanismType::AES_KEY_GEN)?,
        Id::EcKeygen => need(peer, MechanismType::ECC_KEY_PAIR_GEN)?,
        Id::Wrap | Id::Unwrap => {
            need(peer, MechanismType::AES_KEY_WRAP)?;
            let target = sh
                .wrap_target
                .get_or_insert_with(|| {
                    main.generate_key(
                        &Mechanism::AesKeyGen,
                        &aes_token_key(b"bench-wrap-target", true),
                    )
                    .map_err(|e| classify("extractable, non-sensitive AES-256 key", &e))
                })
                .clone()?;
            p.key = Some(target);
            p.out_len = 40;
            if id == Id::Unwrap {
                let mut w = vec![0u8; 40];
                let n = main
                    .wrap_key(&Mechanism::AesKeyWrap, sh.aes, target, &mut w)
                    .map_err(|e| classify("C_WrapKey for the unwrap case", &e))?;
                w.truncate(n);
                p.aux = w;
            }
        }
    }
    let mut buf = vec![0u8; p.out_len.max(64)];
    op(id, peer, main, &p, 0, u32::MAX, &mut buf).map_err(|e| classify("warm-up", &e))?;
    Ok(p)
}

fn sign_once(
    s: &Sess,
    mech: &Mechanism,
    key: Handle,
    data: &[u8],
) -> cryptoki::error::Result<Vec<u8>> {
    s.sign_init(mech, key)?;
    let mut sig = vec![0u8; 512];
    let n = s.sign(data, &mut sig)?;
    sig.truncate(n);
    Ok(sig)
}

fn invalid() -> Error {
    Error::InvalidValue
}

fn key(k: Option<Handle>) -> cryptoki::error::Result<Handle> {
    k.ok_or(Error::InvalidValue)
}

/// One operation of case `id` on session `s` (`i`: iteration, `t`: thread).
pub fn op(
    id: Id,
    peer: &Peer,
    s: &Sess,
    p: &Prep,
    i: u64,
    t: u32,
    buf: &mut [u8],
) -> cryptoki::error::Result<()> {
    match id {
        Id::Mixed64 => Err(invalid()),
        Id::Session => peer.raw.open(peer.slot)?.close(),
        Id::Random32 => s.random(&mut buf[..32]),
        Id::Find1k | Id::Find100k => {
            let label = &p.labels[(i as usize) % p.labels.len()];
            let mut found = [0 as Handle; 4];
            if s.find(&[Attribute::Label(label.clone())], &mut found)? == 1 {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::Gcm64 | Id::Gcm4k | Id::Gcm1m => {
            let mut iv = [0u8; 12];
            iv[..8].copy_from_slice(&i.to_le_bytes());
            iv[8..].copy_from_slice(&t.to_le_bytes());
            let mech = Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into())?);
            s.encrypt_init(&mech, p.aes)?;
            let n = s.encrypt(&p.data, buf)?;
            if n == p.data.len() + 16 {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::CbcPad4k => {
            s.encrypt_init(&Mechanism::AesCbcPad([7u8; 16]), p.aes)?;
            s.encrypt(&p.data, buf).map(|_| ())
        }
        Id::Ecb4k => {
            s.encrypt_init(&Mechanism::AesEcb, p.aes)?;
            s.encrypt(&p.data, buf).map(|_| ())
        }
        Id::Sm4Cbc4k => {
            s.encrypt_init(&sm4_cbc()?, key(p.key)?)?;
            if s.encrypt(&p.data, buf)? == p.data.len() {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::Envelope4k => {
            s.encrypt_init(&vendor_mech(CKM_P11KMS_AES_GCM_ENVELOPE)?, p.aes)?;
            // at least header with a 1-byte key id + IV + tag
            if s.encrypt(&p.data, buf)? >= p.data.len() + 11 + 12 + 16 {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::Sm2Sign => {
            s.sign_init(&vendor_mech(CKM_SM3_SM2DSA)?, key(p.key)?)?;
            if s.sign(&p.data, buf)? == 64 {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::Sm2Verify => {
            s.verify_init(&vendor_mech(CKM_SM3_SM2DSA)?, key(p.key2)?)?;
            s.verify(&p.data, &p.aux)
        }
        Id::StreamCbc | Id::StreamEcb => {
            let mech = if id == Id::StreamCbc {
                Mechanism::AesCbc([7u8; 16])
            } else {
                Mechanism::AesEcb
            };
            s.encrypt_init(&mech, p.aes)?;
            for _ in 0..STREAM_TOTAL / STREAM_CHUNK {
                let n = s.encrypt_update(&p.data, buf)?;
                if n != STREAM_CHUNK {
                    return Err(invalid());
                }
            }
            s.encrypt_final(buf).map(|_| ())
        }
        Id::RsaPkcsSign | Id::RsaPssSign | Id::EcdsaSign => {
            let mech = match id {
                Id::RsaPkcsSign => Mechanism::Sha256RsaPkcs,
                Id::RsaPssSign => Mechanism::Sha256RsaPkcsPss(pss()),
                _ => Mechanism::Ecdsa,
            };
            s.sign_init(&mech, key(p.key)?)?;
            s.sign(&p.data, buf).map(|_| ())
        }
        Id::RsaPkcsVerify | Id::RsaPssVerify | Id::EcdsaVerify => {
            let mech = match id {
                Id::RsaPkcsVerify => Mechanism::Sha256RsaPkcs,
                Id::RsaPssVerify => Mechanism::Sha256RsaPkcsPss(pss()),
                _ => Mechanism::Ecdsa,
            };
            s.verify_init(&mech, key(p.key2)?)?;
            s.verify(&p.data, &p.aux)
        }
        Id::RsaOaepDecrypt => {
            s.decrypt_init(&Mechanism::RsaPkcsOaep(oaep()), key(p.key)?)?;
            let n = s.decrypt(&p.aux, buf)?;
            if n == 32 {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::AesKeygen => {
            let k = s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Sensitive(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )?;
            s.destroy(k)
        }
        Id::EcKeygen => {
            let (pubk, privk) = s.generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::EcParams(P256_OID.to_vec()),
                    Attribute::Verify(true),
                ],
                &[
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Sign(true),
                ],
            )?;
            s.destroy(privk)?;
            s.destroy(pubk)
        }
        Id::Wrap => {
            let n = s.wrap_key(&Mechanism::AesKeyWrap, p.aes, key(p.key)?, buf)?;
            if n == 40 {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        Id::Unwrap => {
            let k = s.unwrap_key(
                &Mechanism::AesKeyWrap,
                p.aes,
                &p.aux,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(false),
                    // The shared key can encrypt: p11kms never lets such a
                    // key unwrap into a sensitive key (docs/security.md).
                    Attribute::Sensitive(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )?;
            s.destroy(k)
        }
    }
}
