//! Token set-up, login and ordinary crypto through cryptoki, as an
//! application would use the module.

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use p11kms_e2e::sys::{CKF_CLOCK_ON_TOKEN, CKF_RESTORE_KEY_NOT_NEEDED, CKR_OK};
use p11kms_e2e::*;

fn gcm_key(
    s: &cryptoki::session::Session,
    label: &str,
    token: bool,
) -> cryptoki::object::ObjectHandle {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(token),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )
    .expect("C_GenerateKey(CKM_AES_KEY_GEN, 32 bytes)")
}

#[test]
fn init_token_pin_login_and_aes_gcm() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);

    // An uninitialized token first, like SoftHSM.
    let slot = *ctx
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .first()
        .expect("a slot");
    let info = ctx.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        !info.token_initialized(),
        "fresh token must not be CKF_TOKEN_INITIALIZED"
    );

    let slot = setup_token(&ctx);
    let info = ctx.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(info.label(), LABEL);
    assert!(
        info.token_initialized(),
        "CKF_TOKEN_INITIALIZED after C_InitToken"
    );
    assert!(
        info.user_pin_initialized(),
        "CKF_USER_PIN_INITIALIZED after C_InitPIN"
    );
    assert!(info.login_required(), "CKF_LOGIN_REQUIRED");
    assert!(info.rng(), "CKF_RNG");
    assert!(!info.write_protected(), "not CKF_WRITE_PROTECTED");

    // Wrong PIN, then the right one.
    let s = ctx.open_rw_session(slot).expect("C_OpenSession");
    match s.login(UserType::User, Some(&AuthPin::from("wrong-pin"))) {
        Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {}
        other => panic!("C_Login with a wrong PIN: expected CKR_PIN_INCORRECT, got {other:?}"),
    }
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))
        .expect("C_Login(USER)");
    assert_eq!(
        ctx.get_token_info(slot).expect("info").rw_session_count(),
        Some(1),
        "ulRwSessionCount"
    );

    // Random bytes differ from call to call.
    let r1 = s.generate_random_vec(32).expect("C_GenerateRandom");
    let r2 = s.generate_random_vec(32).expect("C_GenerateRandom");
    assert_eq!(r1.len(), 32);
    assert_ne!(r1, r2);

    // AES-256-GCM round trip with AAD, via a generated key.
    let key = gcm_key(&s, "gcm-key", false);
    let plain: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let aad = b"table=t1;chunk=0";
    let mut iv = [0x42u8; 12];
    let ct = s
        .encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into()).expect("gcm")),
            key,
            &plain,
        )
        .expect("C_Encrypt(AES-GCM)");
    assert_eq!(
        ct.len(),
        plain.len() + 16,
        "GCM ciphertext = plaintext + 16-byte tag"
    );
    let mut iv = [0x42u8; 12];
    let back = s
        .decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into()).expect("gcm")),
            key,
            &ct,
        )
        .expect("C_Decrypt(AES-GCM)");
    assert_eq!(back, plain);
    // Wrong AAD: CKR_ENCRYPTED_DATA_INVALID.
    let mut iv = [0x42u8; 12];
    match s.decrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"table=t1;chunk=1", 128.into()).expect("gcm")),
        key,
        &ct,
    ) {
        Err(Error::Pkcs11(RvError::EncryptedDataInvalid, _)) => {}
        other => panic!(
            "GCM decrypt with the wrong AAD: expected CKR_ENCRYPTED_DATA_INVALID, got {:?}",
            other.map(|v| v.len())
        ),
    }

    // Known answer: the GCM spec's test case 4 (AES-128, 60 bytes, AAD) on an imported key.
    let k = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Value(hex("feffe9928665731c6d6a8f9467308308")),
        ])
        .expect("C_CreateObject(AES key with CKA_VALUE)");
    let p = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    let a = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let mut iv = hex("cafebabefacedbaddecaf888");
    let c = s
        .encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, &a, 128.into()).expect("gcm")),
            k,
            &p,
        )
        .expect("C_Encrypt(GCM KAT)");
    assert_eq!(
        c,
        hex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091\
             5bc94fbc3221a5db94fae95ae7121a47"),
        "AES-GCM test case 4"
    );

    // AES-CBC known answer (SP 800-38A F.2.1, first block).
    let k = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Value(hex("2b7e151628aed2a6abf7158809cf4f3c")),
        ])
        .expect("C_CreateObject");
    let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let c = s
        .encrypt(
            &Mechanism::AesCbc(iv),
            k,
            &hex("6bc1bee22e409f96e93d7e117393172a"),
        )
        .expect("C_Encrypt(AES-CBC)");
    assert_eq!(
        c,
        hex("7649abac8119b246cee98e9b12e9197d"),
        "SP 800-38A CBC-AES128 block 1"
    );

    // SHA-256("abc").
    let d = s
        .digest(&Mechanism::Sha256, b"abc")
        .expect("C_Digest(SHA-256)");
    assert_eq!(
        d,
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );

    // Data object and certificate object (storage).
    let data = s
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(b"e2e-data".to_vec()),
            Attribute::Application(b"p11kms-e2e".to_vec()),
            Attribute::Value(b"hello data object".to_vec()),
        ])
        .expect("C_CreateObject(CKO_DATA)");
    let got = s
        .get_attributes(data, &[AttributeType::Value])
        .expect("C_GetAttributeValue");
    assert!(
        matches!(&got[..], [Attribute::Value(v)] if v == b"hello data object"),
        "data value: {got:?}"
    );
    let cert = s
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(b"e2e-cert".to_vec()),
            Attribute::Id(vec![0x10]),
            Attribute::Subject(hex("3015311330110603550403 0c0a7031316b6d732d653265")),
            Attribute::Value(CERT_DER.to_vec()),
        ])
        .expect("C_CreateObject(CKO_CERTIFICATE, X.509)");
    let got = s
        .get_attributes(cert, &[AttributeType::Value])
        .expect("C_GetAttributeValue(cert)");
    assert!(
        matches!(&got[..], [Attribute::Value(v)] if v == CERT_DER),
        "certificate value round trip"
    );

    // Private objects are invisible after logout.
    let _ = gcm_key(&s, "private-token-key", true);
    s.logout().expect("C_Logout");
    let found = s
        .find_objects(&[Attribute::Label(b"private-token-key".to_vec())])
        .expect("C_FindObjects");
    assert!(
        found.is_empty(),
        "a private object is visible without login"
    );
    let found = s
        .find_objects(&[Attribute::Label(b"e2e-data".to_vec())])
        .expect("C_FindObjects");
    assert_eq!(
        found.len(),
        1,
        "a public data object is visible without login"
    );

    drop(s);
    ctx.finalize().expect("C_Finalize");
}

#[test]
fn sensitive_and_unknown_attributes_per_the_spec() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), sys::CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    raw.init_token(slot);
    let s = raw.open_rw(slot);
    raw.login_user(s);
    let key = raw
        .create(s, &mut aes_key_template("attr-key", &[7u8; 32], false))
        .unwrap_or_else(|rv| panic!("C_CreateObject: {}", rv_name(rv)));

    // CKA_CLASS fine, CKA_VALUE sensitive, an unknown type invalid: each answered on its own.
    let mut class = [0u8; 8];
    let mut value = [0u8; 32];
    let mut unknown = [0u8; 8];
    let mut t = [
        sys::CK_ATTRIBUTE {
            type_: sys::CKA_CLASS,
            pValue: class.as_mut_ptr().cast(),
            ulValueLen: 8,
        },
        sys::CK_ATTRIBUTE {
            type_: sys::CKA_VALUE,
            pValue: value.as_mut_ptr().cast(),
            ulValueLen: 32,
        },
        sys::CK_ATTRIBUTE {
            type_: 0x7fff_0001,
            pValue: unknown.as_mut_ptr().cast(),
            ulValueLen: 8,
        },
    ];
    let rv = p11!(raw, C_GetAttributeValue, s, key, t.as_mut_ptr(), 3);
    assert!(
        rv == sys::CKR_ATTRIBUTE_SENSITIVE || rv == sys::CKR_ATTRIBUTE_TYPE_INVALID,
        "C_GetAttributeValue(CLASS, VALUE(sensitive), unknown): expected ATTRIBUTE_SENSITIVE or TYPE_INVALID, got {}",
        rv_name(rv)
    );
    assert_eq!(t[0].ulValueLen, 8, "CKA_CLASS still answered");
    assert_eq!(
        u64::from_ne_bytes(class),
        sys::CKO_SECRET_KEY,
        "CKA_CLASS value"
    );
    assert_eq!(
        t[1].ulValueLen,
        sys::CK_UNAVAILABLE_INFORMATION,
        "sensitive CKA_VALUE length"
    );
    assert_eq!(
        t[2].ulValueLen,
        sys::CK_UNAVAILABLE_INFORMATION,
        "unknown attribute length"
    );
    assert_eq!(
        value, [0u8; 32],
        "no key bytes written for a sensitive value"
    );

    // Only the sensitive one: CKR_ATTRIBUTE_SENSITIVE exactly.
    let rv = raw
        .attr(s, key, sys::CKA_VALUE)
        .err()
        .unwrap_or(sys::CKR_OK);
    assert_rv(
        rv,
        sys::CKR_ATTRIBUTE_SENSITIVE,
        "C_GetAttributeValue(CKA_VALUE) of a sensitive key",
    );
    // pkcs11-tool asks CKA_ALWAYS_AUTHENTICATE of secret keys and expects TYPE_INVALID.
    let rv = raw
        .attr(s, key, sys::CKA_ALWAYS_AUTHENTICATE)
        .err()
        .unwrap_or(sys::CKR_OK);
    assert_rv(
        rv,
        sys::CKR_ATTRIBUTE_TYPE_INVALID,
        "C_GetAttributeValue(CKA_ALWAYS_AUTHENTICATE) of a secret key",
    );

    // Label buffer too small: CKR_BUFFER_TOO_SMALL, ulValueLen = CK_UNAVAILABLE_INFORMATION.
    let mut small = [0u8; 2];
    let mut t = [sys::CK_ATTRIBUTE {
        type_: sys::CKA_LABEL,
        pValue: small.as_mut_ptr().cast(),
        ulValueLen: 2,
    }];
    let rv = p11!(raw, C_GetAttributeValue, s, key, t.as_mut_ptr(), 1);
    assert_rv(
        rv,
        sys::CKR_BUFFER_TOO_SMALL,
        "C_GetAttributeValue(CKA_LABEL, 2-byte buffer)",
    );
    assert_eq!(
        t[0].ulValueLen,
        sys::CK_UNAVAILABLE_INFORMATION,
        "ulValueLen after a too-small attribute buffer"
    );

    // CKA_LOCAL false on an imported key; CKA_ALWAYS_SENSITIVE false (value came from outside).
    assert_eq!(
        raw.attr(s, key, sys::CKA_LOCAL).map(|v| v[0]),
        Ok(sys::CK_FALSE),
        "CKA_LOCAL of an imported key"
    );
    assert_eq!(
        raw.attr(s, key, sys::CKA_ALWAYS_SENSITIVE).map(|v| v[0]),
        Ok(sys::CK_FALSE),
        "CKA_ALWAYS_SENSITIVE of an imported key"
    );
    // CKA_CLASS is read-only after creation.
    let mut t = Template::new().ulong(sys::CKA_CLASS, sys::CKO_DATA);
    let rv = p11!(raw, C_SetAttributeValue, s, key, t.as_mut_ptr(), t.len());
    assert!(
        rv == sys::CKR_ATTRIBUTE_READ_ONLY || rv == sys::CKR_ACTION_PROHIBITED,
        "C_SetAttributeValue(CKA_CLASS): expected CKR_ATTRIBUTE_READ_ONLY, got {}",
        rv_name(rv)
    );

    assert_rv(raw.finalize(), sys::CKR_OK, "C_Finalize");
}

/// Unix seconds of a proleptic-Gregorian UTC date (days-from-civil).
fn unix_seconds(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

/// PKCS#11 v3.0 §3.2 `CK_TOKEN_INFO`: a token without operation state to
/// restore says `CKF_RESTORE_KEY_NOT_NEEDED`; a token that sets
/// `CKF_CLOCK_ON_TOKEN` reports in `utcTime` its current UTC time as
/// `YYYYMMDDhhmmss00` — checked well-formed and within a minute of this
/// host's clock.
#[test]
fn token_flags_and_a_current_utc_time() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let info = raw.token_info(raw.first_slot());
    assert_ne!(
        info.flags & CKF_RESTORE_KEY_NOT_NEEDED,
        0,
        "CKF_RESTORE_KEY_NOT_NEEDED"
    );
    assert_ne!(info.flags & CKF_CLOCK_ON_TOKEN, 0, "CKF_CLOCK_ON_TOKEN");
    let t = std::str::from_utf8(&info.utcTime).expect("utcTime is ASCII");
    assert!(
        t.len() == 16 && t.bytes().all(|b| b.is_ascii_digit()) && t.ends_with("00"),
        "utcTime {t:?} is not YYYYMMDDhhmmss00"
    );
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().expect("digits");
    let (y, mo, d, h, mi, s) = (n(0..4), n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
    assert!(
        (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61,
        "utcTime {t:?} is not a valid date and time"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let token = unix_seconds(y, mo, d, h, mi, s);
    assert!(
        (token - now).abs() <= 60,
        "utcTime {t:?} is {} s away from the system clock",
        token - now
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}
