//! Every way a caller might get the value of a sensitive or non-extractable
//! key out of the token, tried through the real module: reading attributes,
//! wrapping under keys the caller made (with every wrapping mechanism),
//! wrap-then-decrypt (issue 10, finding 1, in its AES and RSA forms),
//! copies and attribute toggles that would widen a key, unwrapping with a
//! permissive template, and ECDH derivation tricks. None may yield the
//! value; each refusal has its PKCS#11 code. docs/security.md names the
//! test behind each guarantee.

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p11kms_e2e::*;

/// DER OID of P-256 (`CKA_EC_PARAMS`).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// RFC 6979 A.2.5 P-256 key: private scalar and public point (04||x||y).
const P256_SCALAR: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
const P256_POINT: &str = "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb67903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
/// The P-256 generator G (uncompressed).
const P256_G: &str = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";

/// One test's world: a daemon, an initialized token, a user session.
struct World {
    _daemon: Daemon,
    _ctx: cryptoki::context::Pkcs11,
    s: Session,
}

fn world() -> World {
    let daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let s = user_session(&ctx, slot);
    World {
        _daemon: daemon,
        _ctx: ctx,
        s,
    }
}

/// The `CKR_*` of a failed call (panics on success or non-PKCS#11 errors).
fn rv<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) -> RvError {
    match r {
        Err(e) => rv_error(&e).unwrap_or_else(|| panic!("{what}: not a PKCS#11 error: {e}")),
        Ok(v) => panic!("{what}: expected a refusal, got {v:?}"),
    }
}

fn aes_gen(s: &Session, extra: &[Attribute]) -> ObjectHandle {
    let mut t = vec![Attribute::ValueLen(32.into())];
    t.extend_from_slice(extra);
    s.generate_key(&Mechanism::AesKeyGen, &t)
        .expect("C_GenerateKey(AES-256)")
}

fn aes_import(s: &Session, value: &[u8], extra: &[Attribute]) -> ObjectHandle {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(value.to_vec()),
    ];
    t.extend_from_slice(extra);
    s.create_object(&t).expect("C_CreateObject(AES)")
}

fn rsa_pair(
    s: &Session,
    public: &[Attribute],
    private: &[Attribute],
) -> (ObjectHandle, ObjectHandle) {
    let mut p = vec![
        Attribute::ModulusBits(2048.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
    ];
    p.extend_from_slice(public);
    s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &p, private)
        .expect("C_GenerateKeyPair(RSA-2048)")
}

fn ec_pair(s: &Session, private: &[Attribute]) -> (ObjectHandle, ObjectHandle) {
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[Attribute::EcParams(P256.to_vec())],
        private,
    )
    .expect("C_GenerateKeyPair(P-256)")
}

/// `CKA_CHECK_VALUE`: readable for every secret key, sensitive or not.
fn kcv(s: &Session, k: ObjectHandle) -> Vec<u8> {
    match s
        .get_attributes(k, &[AttributeType::CheckValue])
        .expect("C_GetAttributeValue(CKA_CHECK_VALUE)")
        .pop()
    {
        Some(Attribute::CheckValue(v)) => v,
        other => panic!("CKA_CHECK_VALUE: {other:?}"),
    }
}

fn bool_attr(s: &Session, k: ObjectHandle, ty: AttributeType) -> bool {
    let v = raw_attr(s, k, ty).unwrap_or_else(|rv| panic!("{ty:?}: {}", rv_name(rv)));
    v == [1]
}

/// One attribute through the raw function list, with its exact `CK_RV`.
fn raw_attr(s: &Session, k: ObjectHandle, ty: AttributeType) -> Result<Vec<u8>, sys::CK_RV> {
    module().attr(s.handle(), k.handle(), ty.into())
}

/// Is some 32-byte window of `candidate` the value of the AES key
/// `victim`? Compared on the token through the key check value, so the
/// test needs no AES of its own and works for keys whose value it never
/// saw.
fn leaks_value_of(s: &Session, victim: ObjectHandle, candidate: &[u8]) -> bool {
    let want = kcv(s, victim);
    candidate.windows(32).any(|w| {
        let k = aes_import(
            s,
            w,
            &[
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        );
        let got = kcv(s, k);
        let _ = s.destroy_object(k);
        got == want
    })
}

/// A victim in the sense of finding 1: generated inside, sensitive, but
/// asked to be extractable (`pkcs11-tool --keygen --sensitive --extractable`).
fn victim(s: &Session) -> ObjectHandle {
    aes_gen(
        s,
        &[
            Attribute::Token(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Label(b"victim".to_vec()),
        ],
    )
}

/// What `pkcs11-tool --keygen --key-type AES:32` sends: ENCRYPT/DECRYPT
/// true, SENSITIVE and EXTRACTABLE false, PRIVATE false.
fn pkcs11_tool_key(s: &Session) -> ObjectHandle {
    aes_gen(
        s,
        &[
            Attribute::Token(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(false),
            Attribute::Private(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ],
    )
}

/// A key-encryption key the policy accepts for sensitive keys: generated
/// inside, never extractable, unable to decrypt or encrypt.
fn guarded_kek(s: &Session) -> ObjectHandle {
    aes_gen(
        s,
        &[
            Attribute::Token(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ],
    )
}

fn oaep() -> PkcsOaepParams<'static> {
    PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    )
}

/// A mechanism type cryptoki has no name for (`CKM_AES_KEY_WRAP_KWP`,
/// `CKM_RSA_AES_KEY_WRAP`).
fn mech_type(v: sys::CK_MECHANISM_TYPE) -> MechanismType {
    // SAFETY: MechanismType is #[repr(transparent)] over CK_MECHANISM_TYPE.
    unsafe { std::mem::transmute::<sys::CK_MECHANISM_TYPE, MechanismType>(v) }
}

/// `CKM_AES_KEY_WRAP_KWP` (RFC 5649).
fn kwp() -> Mechanism<'static> {
    Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
        mech_type(sys::CKM_AES_KEY_WRAP_KWP),
        None,
    ))
}

/// Wrap `key` under `w` with `m`; on success try to open the result with
/// `C_Decrypt` under `opener` and fail loudly if that gives the value.
fn wrap_must_fail(
    s: &Session,
    m: &Mechanism,
    w: ObjectHandle,
    key: ObjectHandle,
    opener: Option<(&Mechanism, ObjectHandle)>,
    want: RvError,
    what: &str,
) {
    match s.wrap_key(m, w, key) {
        Err(e) => assert_eq!(rv_error(&e), Some(want), "{what}: {e}"),
        Ok(blob) => {
            if let Some((dm, opener)) = opener {
                if let Ok(plain) = s.decrypt(dm, opener, &blob) {
                    assert!(
                        !leaks_value_of(s, key, &plain),
                        "{what}: LEAK — decrypting the wrapped blob gave the key's value"
                    );
                }
            }
            panic!("{what}: C_WrapKey succeeded ({} bytes)", blob.len());
        }
    }
}

#[test]
fn new_keys_are_sensitive_and_unextractable_by_default() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let aes = aes_gen(s, &[]);
    let (_, rsa) = rsa_pair(s, &[], &[]);
    let (_, ec) = ec_pair(s, &[]);
    for (k, name) in [(aes, "AES"), (rsa, "RSA private"), (ec, "EC private")] {
        assert!(
            bool_attr(s, k, AttributeType::Sensitive),
            "{name}: CKA_SENSITIVE"
        );
        assert!(
            !bool_attr(s, k, AttributeType::Extractable),
            "{name}: CKA_EXTRACTABLE"
        );
        assert!(
            bool_attr(s, k, AttributeType::NeverExtractable),
            "{name}: CKA_NEVER_EXTRACTABLE"
        );
    }
    let kek = guarded_kek(s);
    for (k, m, name) in [
        (aes, Mechanism::AesKeyWrap, "AES"),
        (rsa, kwp(), "RSA private"),
        (ec, kwp(), "EC private"),
    ] {
        wrap_must_fail(s, &m, kek, k, None, RvError::KeyUnextractable, name);
    }
}

#[test]
fn get_attribute_value_never_returns_secret_components() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let extractable = [Attribute::Sensitive(true), Attribute::Extractable(true)];
    let aes = aes_gen(s, &extractable);
    let (_, rsa) = rsa_pair(s, &[], &extractable);
    let (_, ec) = ec_pair(s, &extractable);
    let unextractable = aes_gen(
        s,
        &[Attribute::Sensitive(false), Attribute::Extractable(false)],
    );
    for (k, types) in [
        (aes, vec![AttributeType::Value]),
        (unextractable, vec![AttributeType::Value]),
        (
            rsa,
            vec![
                AttributeType::PrivateExponent,
                AttributeType::Prime1,
                AttributeType::Prime2,
                AttributeType::Exponent1,
                AttributeType::Exponent2,
                AttributeType::Coefficient,
            ],
        ),
        (ec, vec![AttributeType::Value]),
    ] {
        for ty in types {
            assert_eq!(
                raw_attr(s, k, ty).map_err(rv_name),
                Err(rv_name(sys::CKR_ATTRIBUTE_SENSITIVE)),
                "C_GetAttributeValue({ty:?})"
            );
        }
    }
    // Public parts stay readable.
    assert!(raw_attr(s, rsa, AttributeType::Modulus).is_ok());
    assert_eq!(kcv(s, aes).len(), 3);
}

/// Finding 1, AES form: wrap the victim under a second key with
/// AES-CBC-PAD, then decrypt the blob with that same key.
#[test]
fn wrap_then_decrypt_with_aes_cbc_pad_is_refused() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let v = victim(s);
    let attacker = pkcs11_tool_key(s);
    let iv = [7u8; 16];
    wrap_must_fail(
        s,
        &Mechanism::AesCbcPad(iv),
        attacker,
        v,
        Some((&Mechanism::AesCbcPad(iv), attacker)),
        RvError::KeyNotWrappable,
        "wrap a sensitive key under a decrypting key (AES-CBC-PAD)",
    );
    // The same with the unauthenticated-free mechanisms.
    for m in [Mechanism::AesKeyWrap, kwp()] {
        wrap_must_fail(
            s,
            &m,
            attacker,
            v,
            Some((&m, attacker)),
            RvError::KeyNotWrappable,
            "wrap a sensitive key under a decrypting key (AES key wrap)",
        );
    }
}

/// Finding 1, RSA form: wrap the victim with CKM_RSA_PKCS (and OAEP) under
/// an RSA public key the caller generated, then decrypt with its private
/// half.
#[test]
fn wrap_then_decrypt_with_rsa_is_refused() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    // Only CKA_SENSITIVE in the template: not extractable by default.
    let only_sensitive = aes_gen(s, &[Attribute::Token(true), Attribute::Sensitive(true)]);
    let v = victim(s);
    let (public, private) = rsa_pair(s, &[], &[]);
    let oaep = Mechanism::RsaPkcsOaep(oaep());
    for m in [Mechanism::RsaPkcs, oaep] {
        wrap_must_fail(
            s,
            &m,
            public,
            only_sensitive,
            Some((&m, private)),
            RvError::KeyUnextractable,
            "wrap a default-sensitive key under the caller's RSA key",
        );
        wrap_must_fail(
            s,
            &m,
            public,
            v,
            Some((&m, private)),
            RvError::KeyNotWrappable,
            "wrap an extractable sensitive key under the caller's RSA key",
        );
    }
}

/// Every wrapping mechanism under every kind of wrapping key a caller can
/// make for themselves: imported (value known), able to decrypt,
/// extractable, an RSA pair whose private half is readable or can
/// decrypt or sign raw, an imported RSA public key.
#[test]
fn wrap_under_caller_keys_is_refused_for_every_mechanism() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let known = [0x5a_u8; 32];
    let victims = [
        victim(s),
        aes_import(
            s,
            &known,
            &[Attribute::Sensitive(true), Attribute::Extractable(true)],
        ),
        ec_pair(
            s,
            &[Attribute::Sensitive(true), Attribute::Extractable(true)],
        )
        .1,
    ];
    let wrap_only = [
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
    ];
    let imported = aes_import(s, &[0x11; 32], &wrap_only);
    let decrypting = pkcs11_tool_key(s);
    let mut readable_t = wrap_only.to_vec();
    readable_t.extend([Attribute::Sensitive(false), Attribute::Extractable(true)]);
    let readable = aes_gen(s, &readable_t);
    let aes_keks = [
        (imported, "imported AES key"),
        (decrypting, "AES key with CKA_DECRYPT"),
        (readable, "extractable AES key"),
    ];
    let iv = [3u8; 16];
    for (kek, name) in aes_keks {
        for m in [Mechanism::AesKeyWrap, kwp(), Mechanism::AesCbcPad(iv)] {
            for v in victims {
                wrap_must_fail(
                    s,
                    &m,
                    kek,
                    v,
                    Some((&m, kek)),
                    RvError::KeyNotWrappable,
                    &format!("{:?} under {name}", m.mechanism_type()),
                );
            }
        }
    }
    let no_decrypt = [
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Unwrap(true),
    ];
    let mut readable_priv = no_decrypt.to_vec();
    readable_priv.extend([Attribute::Sensitive(false), Attribute::Extractable(true)]);
    let (pub_readable, priv_readable) = rsa_pair(s, &[Attribute::Wrap(true)], &readable_priv);
    let (pub_signing, priv_signing) = rsa_pair(
        s,
        &[Attribute::Wrap(true)],
        &[Attribute::Decrypt(false), Attribute::Sign(true)],
    );
    let modulus = raw_attr(s, pub_readable, AttributeType::Modulus).expect("modulus");
    let pub_imported = s
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(modulus),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Wrap(true),
        ])
        .expect("C_CreateObject(RSA public)");
    let rsa_aes_oaep = sys::CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: sys::CKM_SHA256,
        mgf: sys::CKG_MGF1_SHA256,
        source: sys::CKZ_DATA_SPECIFIED,
        pSourceData: std::ptr::null_mut(),
        ulSourceDataLen: 0,
    };
    let rsa_aes_params = sys::CK_RSA_AES_KEY_WRAP_PARAMS {
        ulAESKeyBits: 256,
        pOAEPParams: &rsa_aes_oaep as *const _ as *mut _,
    };
    let rsa_aes = || {
        Mechanism::VendorDefined(VendorDefinedMechanism::new(
            mech_type(sys::CKM_RSA_AES_KEY_WRAP),
            Some(&rsa_aes_params),
        ))
    };
    for (kek, opener, name) in [
        (
            pub_readable,
            Some(priv_readable),
            "RSA key whose private half is readable",
        ),
        (
            pub_signing,
            Some(priv_signing),
            "RSA key whose private half signs raw",
        ),
        (pub_imported, None, "imported RSA public key"),
    ] {
        for m in [
            Mechanism::RsaPkcs,
            Mechanism::RsaPkcsOaep(oaep()),
            rsa_aes(),
        ] {
            for v in victims {
                wrap_must_fail(
                    s,
                    &m,
                    kek,
                    v,
                    opener.map(|o| (&m, o)),
                    RvError::KeyNotWrappable,
                    &format!("{:?} under {name}", m.mechanism_type()),
                );
            }
        }
    }
    // Why a signing RSA key guards nothing: raw RSA signing is RSA
    // decryption, and opens what its public half sealed.
    let sealed = s
        .encrypt(&Mechanism::RsaPkcs, pub_signing, &known)
        .expect("C_Encrypt(RSA-PKCS)");
    let out = s
        .sign(&Mechanism::RsaX509, priv_signing, &sealed)
        .expect("C_Sign(CKM_RSA_X_509)");
    assert!(
        out.ends_with(&known),
        "raw RSA signing of a PKCS#1 ciphertext gives back the padded plaintext"
    );
}

/// A key the policy accepts for wrapping sensitive keys (generated,
/// never extractable, unable to decrypt): the round trip works, and every
/// way of turning it into an oracle is refused.
#[test]
fn guarded_kek_round_trip_and_its_oracles() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let v = victim(s);
    let kek = guarded_kek(s);
    let blob = s
        .wrap_key(&Mechanism::AesKeyWrap, kek, v)
        .expect("wrap a sensitive key under a guarded KEK");
    assert_eq!(blob.len(), 40);
    s.wrap_key(&kwp(), kek, v).expect("RFC 5649 too");
    // Padding-oracle mechanisms are not used for sensitive keys.
    assert_eq!(
        rv(
            s.wrap_key(&Mechanism::AesCbcPad([0; 16]), kek, v),
            "CBC-PAD wrap"
        ),
        RvError::KeyNotWrappable
    );
    // The KEK does not decrypt its own blobs.
    assert_eq!(
        rv(
            s.decrypt(&Mechanism::AesKeyWrap, kek, &blob),
            "C_Decrypt of the blob"
        ),
        RvError::KeyFunctionNotPermitted
    );
    let secret = |extra: &[Attribute]| {
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
        ];
        t.extend_from_slice(extra);
        t
    };
    // Unwrap into a readable key: refused.
    for (t, what) in [
        (
            secret(&[Attribute::Sensitive(false), Attribute::Extractable(true)]),
            "unwrap as non-sensitive",
        ),
        (
            secret(&[Attribute::Sensitive(false)]),
            "unwrap as non-sensitive, not extractable",
        ),
    ] {
        assert_eq!(
            rv(s.unwrap_key(&Mechanism::AesKeyWrap, kek, &blob, &t), what),
            RvError::TemplateInconsistent,
            "{what}"
        );
    }
    // Cutting the recovered key short (a 1-byte HMAC key can be brute
    // forced, byte after byte): refused.
    let short = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(1.into()),
        Attribute::Sign(true),
    ];
    assert_eq!(
        rv(
            s.unwrap_key(&Mechanism::AesKeyWrap, kek, &blob, &short),
            "truncating unwrap"
        ),
        RvError::TemplateInconsistent
    );
    // A padding oracle on the guarded key: refused whatever the blob.
    assert_eq!(
        rv(
            s.unwrap_key(
                &Mechanism::AesCbcPad([0; 16]),
                kek,
                &blob[..32],
                &secret(&[])
            ),
            "CBC-PAD unwrap"
        ),
        RvError::KeyFunctionNotPermitted
    );
    // The honest unwrap gives the same key, sensitive.
    let back = s
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &blob,
            &secret(&[Attribute::Token(false)]),
        )
        .expect("unwrap with the default template");
    assert_eq!(kcv(s, back), kcv(s, v), "same key back");
    assert!(bool_attr(s, back, AttributeType::Sensitive));
    assert_eq!(
        raw_attr(s, back, AttributeType::Value).map_err(rv_name),
        Err(rv_name(sys::CKR_ATTRIBUTE_SENSITIVE))
    );

    // The same for an RSA key pair guarding keys with OAEP.
    let (public, private) = rsa_pair(
        s,
        &[Attribute::Wrap(true), Attribute::Encrypt(false)],
        &[
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Unwrap(true),
        ],
    );
    let oaep_m = Mechanism::RsaPkcsOaep(oaep());
    let rsa_blob = s
        .wrap_key(&oaep_m, public, v)
        .expect("OAEP wrap under a guarded pair");
    assert_eq!(
        rv(
            s.wrap_key(&Mechanism::RsaPkcs, public, v),
            "PKCS#1 v1.5 wrap"
        ),
        RvError::KeyNotWrappable
    );
    // Bleichenbacher's oracle: PKCS#1 v1.5 unwrap with the guarding key.
    assert_eq!(
        rv(
            s.unwrap_key(&Mechanism::RsaPkcs, private, &rsa_blob, &secret(&[])),
            "PKCS#1 v1.5 unwrap"
        ),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(
            s.sign(&Mechanism::RsaX509, private, &rsa_blob),
            "raw RSA sign"
        ),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(
            s.unwrap_key(
                &oaep_m,
                private,
                &rsa_blob,
                &secret(&[Attribute::Sensitive(false), Attribute::Extractable(true)])
            ),
            "OAEP unwrap as non-sensitive"
        ),
        RvError::TemplateInconsistent
    );
    let back = s
        .unwrap_key(
            &oaep_m,
            private,
            &rsa_blob,
            &secret(&[Attribute::Token(false)]),
        )
        .expect("OAEP unwrap");
    assert_eq!(kcv(s, back), kcv(s, v));
}

/// Attributes only ever change towards safety: a sensitive key stays
/// sensitive, a non-extractable one stays so, usage only narrows — so a
/// key that wrapped a sensitive key cannot learn to decrypt afterwards.
#[test]
fn set_attribute_toggles_only_narrow() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let v = victim(s);
    let plain = aes_gen(s, &[]);
    let kek = guarded_kek(s);
    let session_kek = aes_gen(
        s,
        &[
            Attribute::Token(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
        ],
    );
    let blob = s
        .wrap_key(&Mechanism::AesKeyWrap, session_kek, v)
        .expect("a session KEK that cannot decrypt wraps the victim");
    s.update_attributes(v, &[Attribute::WrapWithTrusted(true)])
        .expect("CKA_WRAP_WITH_TRUSTED can become TRUE");
    for (k, a, what) in [
        (v, Attribute::Sensitive(false), "un-sensitive"),
        (plain, Attribute::Extractable(true), "make extractable"),
        (
            v,
            Attribute::WrapWithTrusted(false),
            "drop CKA_WRAP_WITH_TRUSTED",
        ),
        (kek, Attribute::Decrypt(true), "token KEK learns to decrypt"),
        (kek, Attribute::Encrypt(true), "token KEK learns to encrypt"),
        (
            session_kek,
            Attribute::Decrypt(true),
            "session KEK learns to decrypt",
        ),
        (kek, Attribute::Trusted(true), "the user trusts a key"),
    ] {
        assert_eq!(
            rv(s.update_attributes(k, &[a]), what),
            RvError::AttributeReadOnly,
            "{what}"
        );
    }
    // So the blob stays closed.
    assert_eq!(
        rv(
            s.decrypt(&Mechanism::AesKeyWrap, session_kek, &blob),
            "decrypt"
        ),
        RvError::KeyFunctionNotPermitted
    );
    // Narrowing is fine.
    s.update_attributes(plain, &[Attribute::Decrypt(false), Attribute::Sign(false)])
        .expect("usage narrows");
    assert!(!bool_attr(s, plain, AttributeType::Decrypt));
}

/// `C_CopyObject` follows the same rules: a copy is never more
/// permissive than its original.
#[test]
fn copies_are_never_more_permissive() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let v = victim(s);
    let plain = aes_gen(s, &[]);
    let kek = guarded_kek(s);
    let blob = s
        .wrap_key(&Mechanism::AesKeyWrap, kek, v)
        .expect("guarded wrap");
    for (k, a, what) in [
        (v, Attribute::Sensitive(false), "copy as non-sensitive"),
        (plain, Attribute::Extractable(true), "copy as extractable"),
        (
            kek,
            Attribute::Decrypt(true),
            "copy the KEK with CKA_DECRYPT",
        ),
        (
            kek,
            Attribute::Unwrap(false),
            "(narrowing) — then widen below",
        ),
    ] {
        let r = s.copy_object(k, &[Attribute::Token(false), a]);
        if what.starts_with("(narrowing)") {
            let c = r.expect("a narrowing copy");
            assert_eq!(
                rv(
                    s.update_attributes(c, &[Attribute::Unwrap(true)]),
                    "widen a copy"
                ),
                RvError::AttributeReadOnly
            );
            continue;
        }
        assert_eq!(rv(r, what), RvError::AttributeReadOnly, "{what}");
    }
    // A plain copy keeps every protection.
    let c = s
        .copy_object(kek, &[Attribute::Token(false)])
        .expect("copy the KEK");
    assert!(!bool_attr(s, c, AttributeType::Decrypt));
    assert_eq!(
        rv(s.decrypt(&Mechanism::AesKeyWrap, c, &blob), "copy decrypts"),
        RvError::KeyFunctionNotPermitted
    );
    let cv = s
        .copy_object(v, &[Attribute::Token(false)])
        .expect("copy victim");
    assert_eq!(
        raw_attr(s, cv, AttributeType::Value).map_err(rv_name),
        Err(rv_name(sys::CKR_ATTRIBUTE_SENSITIVE))
    );
}

/// The Clulow "encrypt then unwrap" trick: a key that can encrypt would
/// let a caller plant a value they know inside a key flagged sensitive.
#[test]
fn encrypt_then_unwrap_cannot_plant_a_known_sensitive_key() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let k = aes_gen(
        s,
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Unwrap(true),
        ],
    );
    let known = [0x42u8; 32];
    let blob = s
        .encrypt(&Mechanism::AesKeyWrap, k, &known)
        .expect("C_Encrypt(AES key wrap)");
    let t = |sensitive: Option<bool>| {
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
        ];
        t.extend(sensitive.map(Attribute::Sensitive));
        t
    };
    for sensitive in [Some(true), None] {
        assert_eq!(
            rv(
                s.unwrap_key(&Mechanism::AesKeyWrap, k, &blob, &t(sensitive)),
                "unwrap into a sensitive key"
            ),
            RvError::KeyFunctionNotPermitted,
            "CKA_SENSITIVE {sensitive:?}"
        );
    }
    // Honest: a non-sensitive key with the value the caller knows anyway.
    let open = s
        .unwrap_key(&Mechanism::AesKeyWrap, k, &blob, &t(Some(false)))
        .expect("unwrap as non-sensitive");
    assert!(!bool_attr(s, open, AttributeType::Sensitive));
}

/// ECDH with a sensitive EC key only ever gives shared secrets, never the
/// private scalar: not with the key's own point, not with the generator,
/// and points off the curve are refused (no invalid-curve oracle).
#[test]
fn ecdh_derive_tricks_do_not_reveal_the_private_key() {
    let _g = serial();
    let w = world();
    let s = &w.s;
    let scalar = hex(P256_SCALAR);
    let ec = s
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(false),
            Attribute::EcParams(P256.to_vec()),
            Attribute::Value(scalar.clone()),
            Attribute::Sensitive(true),
            Attribute::Derive(true),
        ])
        .expect("C_CreateObject(P-256 private)");
    assert_eq!(
        raw_attr(s, ec, AttributeType::Value).map_err(rv_name),
        Err(rv_name(sys::CKR_ATTRIBUTE_SENSITIVE))
    );
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32.into()),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let own = hex(P256_POINT);
    let g = hex(P256_G);
    for (point, what) in [(&own, "its own public point"), (&g, "the generator")] {
        let d = s
            .derive_key(
                &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), point)),
                ec,
                &template,
            )
            .unwrap_or_else(|e| panic!("ECDH with {what}: {e}"));
        let value = match s
            .get_attributes(d, &[AttributeType::Value])
            .expect("value")
            .pop()
        {
            Some(Attribute::Value(v)) => v,
            other => panic!("{other:?}"),
        };
        assert_ne!(value, scalar, "ECDH with {what} gave the private scalar");
    }
    // With the generator the "shared secret" is x(d·G), the public x.
    // Off-curve and degenerate points are refused.
    let mut off = own.clone();
    off[64] ^= 1;
    for (point, what) in [
        (off, "a point off the curve"),
        (vec![0x04; 65], "garbage"),
        (vec![0x00], "the point at infinity"),
    ] {
        assert_eq!(
            rv(
                s.derive_key(
                    &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &point)),
                    ec,
                    &template,
                ),
                what
            ),
            RvError::MechanismParamInvalid,
            "ECDH with {what}"
        );
    }
    // A secret key is no ECDH base, even with CKA_DERIVE.
    let aes = aes_gen(s, &[Attribute::Derive(true)]);
    assert_eq!(
        rv(
            s.derive_key(
                &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &own)),
                aes,
                &template,
            ),
            "ECDH on an AES key"
        ),
        RvError::KeyTypeInconsistent
    );
    // Nor can the EC key be digested into an oracle.
    s.digest_init(&Mechanism::Sha256).expect("C_DigestInit");
    assert_eq!(
        rv(s.digest_key(ec), "C_DigestKey"),
        RvError::KeyIndigestible
    );
}

/// `CKA_WRAP_WITH_TRUSTED` keys go only under `CKA_TRUSTED` keys, and only
/// the SO makes a key trusted. A trusted key that never decrypts may wrap
/// sensitive keys even when it came from outside (a transport key).
#[test]
fn trusted_wrapping_keys_are_the_sos_call() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let s = user_session(&ctx, slot);
    let v = aes_gen(
        &s,
        &[
            Attribute::Token(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
        ],
    );
    // A transport key brought in from outside, public so the SO can see it.
    let transport = aes_import(
        &s,
        &[0x77; 32],
        &[
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(true),
        ],
    );
    let kek = guarded_kek(&s);
    assert_eq!(
        rv(
            s.wrap_key(&Mechanism::AesKeyWrap, kek, v),
            "wrap under an untrusted KEK"
        ),
        RvError::KeyNotWrappable
    );
    assert_eq!(
        rv(
            s.wrap_key(&Mechanism::AesKeyWrap, transport, v),
            "wrap under the untrusted transport key"
        ),
        RvError::KeyNotWrappable
    );
    assert_eq!(
        rv(
            s.update_attributes(transport, &[Attribute::Trusted(true)]),
            "the user trusts a key"
        ),
        RvError::AttributeReadOnly
    );
    s.logout().expect("C_Logout");
    let so = ctx.open_rw_session(slot).expect("C_OpenSession");
    so.login(
        cryptoki::session::UserType::So,
        Some(&cryptoki::types::AuthPin::from(SO_PIN)),
    )
    .expect("C_Login(SO)");
    so.update_attributes(transport, &[Attribute::Trusted(true)])
        .expect("the SO trusts the transport key");
    // Trust, once given, stays: taking it back would let a key that
    // wrapped sensitive keys become something that opens them.
    assert_eq!(
        rv(
            so.update_attributes(transport, &[Attribute::Trusted(false)]),
            "the SO withdraws trust"
        ),
        RvError::AttributeReadOnly
    );
    so.logout().expect("C_Logout(SO)");
    drop(so);
    let s = user_session(&ctx, slot);
    let blob = s
        .wrap_key(&Mechanism::AesKeyWrap, transport, v)
        .expect("wrap under the trusted transport key");
    assert_eq!(blob.len(), 40);
    assert!(bool_attr(&s, transport, AttributeType::Trusted));
}
