//! What a login — or its absence — allows, through the real module: keys
//! with `CKA_ALWAYS_AUTHENTICATE` need `C_Login(CKU_CONTEXT_SPECIFIC)` per
//! operation (issue 11, point 1); a public session makes public session
//! objects, including private keys (issue 11, point 6), but never touches
//! token objects (issue 10, finding 8).

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use p11kms_e2e::*;

/// DER OID of P-256 (`CKA_EC_PARAMS`).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER OID of P-521.
const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// RFC 6979 A.2.5 P-256 private scalar.
const P256_SCALAR: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";

fn rv_of<T: std::fmt::Debug>(r: cryptoki::error::Result<T>, what: &str) -> RvError {
    match r {
        Err(e) => rv_error(&e).unwrap_or_else(|| panic!("{what}: {e}")),
        Ok(v) => panic!("{what}: expected a refusal, got {v:?}"),
    }
}

#[test]
fn always_authenticate_keys_sign_once_per_context_login() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let s = user_session(&ctx, slot);
    for (curve, mech) in [
        (P256, Mechanism::EcdsaSha256),
        (P521, Mechanism::EcdsaSha512),
    ] {
        // pkcs11-tool --keypairgen --key-type EC:secp521r1 --always-auth
        let (public, private) = s
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[Attribute::Token(true), Attribute::EcParams(curve.to_vec())],
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Sign(true),
                    Attribute::AlwaysAuthenticate(true),
                ],
            )
            .expect("C_GenerateKeyPair with CKA_ALWAYS_AUTHENTICATE");
        assert_eq!(
            module().attr(s.handle(), private.handle(), sys::CKA_ALWAYS_AUTHENTICATE),
            Ok(vec![1]),
            "CKA_ALWAYS_AUTHENTICATE is stored and reported"
        );
        // Without the context login: CKR_USER_NOT_LOGGED_IN.
        assert_eq!(
            rv_of(
                s.sign(&mech, private, b"doc"),
                "C_Sign without context login"
            ),
            RvError::UserNotLoggedIn
        );
        // With it, through the module's C_Login: the signature verifies.
        let raw = module();
        let mut m = sys::CK_MECHANISM {
            mechanism: match mech {
                Mechanism::EcdsaSha256 => sys::CKM_ECDSA_SHA256,
                _ => sys::CKM_ECDSA_SHA512,
            },
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        let h = s.handle();
        assert_rv(
            p11kms_e2e::p11!(raw, C_SignInit, h, &mut m, private.handle()),
            sys::CKR_OK,
            "C_SignInit",
        );
        let pin = USER_PIN.as_bytes();
        assert_rv(
            p11kms_e2e::p11!(
                raw,
                C_Login,
                h,
                sys::CKU_CONTEXT_SPECIFIC,
                pin.as_ptr() as *mut u8,
                pin.len() as sys::CK_ULONG
            ),
            sys::CKR_OK,
            "C_Login(CKU_CONTEXT_SPECIFIC)",
        );
        let mut data = *b"doc";
        let mut sig = vec![0u8; 200];
        let mut len = sig.len() as sys::CK_ULONG;
        assert_rv(
            p11kms_e2e::p11!(
                raw,
                C_Sign,
                h,
                data.as_mut_ptr(),
                data.len() as sys::CK_ULONG,
                sig.as_mut_ptr(),
                &mut len
            ),
            sys::CKR_OK,
            "C_Sign after the context login",
        );
        sig.truncate(len as usize);
        s.verify(&mech, public, b"doc", &sig)
            .expect("the signature verifies");
        // The login served that one operation only.
        assert_eq!(
            rv_of(s.sign(&mech, private, b"doc"), "second C_Sign"),
            RvError::UserNotLoggedIn
        );
        // No operation waiting: CKR_OPERATION_NOT_INITIALIZED.
        assert_eq!(
            rv_of(
                s.login(UserType::ContextSpecific, Some(&AuthPin::from(USER_PIN))),
                "context login without an operation"
            ),
            RvError::OperationNotInitialized
        );
    }
}

#[test]
fn public_sessions_make_session_objects_but_never_touch_token_objects() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = setup_token(&ctx);
    let user = user_session(&ctx, slot);
    let public_key = user
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![9; 16]),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(b"public-aes".to_vec()),
        ])
        .expect("public token key (user)");
    user.logout().expect("C_Logout");
    let s = ctx.open_rw_session(slot).expect("R/W public session");
    // Issue 11, point 6: an EC private key imported as a session object
    // (the OpenSSL 3 provider's way) works without a login...
    let ec = s
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(false),
            Attribute::EcParams(P256.to_vec()),
            Attribute::Value(hex(P256_SCALAR)),
            Attribute::Sign(true),
        ])
        .expect("session EC private key from a public session");
    assert_eq!(
        module().attr(s.handle(), ec.handle(), sys::CKA_PRIVATE),
        Ok(vec![0])
    );
    s.sign(&Mechanism::EcdsaSha256, ec, b"from a file")
        .expect("sign with the session key");
    // ...and the public token key is usable.
    s.encrypt(&Mechanism::AesEcb, public_key, &[0; 16])
        .expect("encrypt with a public token key");
    // Finding 8: no token object is created, changed or destroyed.
    assert_eq!(
        rv_of(
            s.create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Value(vec![0; 64 * 1024]),
            ]),
            "public token data object"
        ),
        RvError::UserNotLoggedIn
    );
    assert_eq!(
        rv_of(
            s.update_attributes(public_key, &[Attribute::Label(b"x".to_vec())]),
            "relabel a token key"
        ),
        RvError::UserNotLoggedIn
    );
    assert_eq!(
        rv_of(s.destroy_object(public_key), "destroy a token key"),
        RvError::UserNotLoggedIn
    );
    let label = s
        .get_attributes(public_key, &[AttributeType::Label])
        .expect("label");
    assert_eq!(label, vec![Attribute::Label(b"public-aes".to_vec())]);
}
