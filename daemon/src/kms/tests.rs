//! KMS layer tests: admin commands and PKCS#11 calls against one in-process
//! daemon.

use std::sync::Arc;

use p11kms_protocol::{
    vendor, AdminCommand as C, AdminReply, AttrResult, Attribute, KeyCreate, KeyMetadata,
    MechParam, Mechanism, Request as R, Response,
};
use pkcs11_sys as ck;

use crate::access::{App, AppKey, Peer};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::mech::Key;

const SO: &[u8] = b"12345678";

struct F {
    _dir: tempfile::TempDir,
    d: Daemon,
    app: Arc<App>,
    s: u64,
}

fn fixture() -> F {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::zero(dir.path().to_path_buf(), dir.path().join("sock"));
    cfg.instances[0].min_pending_days = 0;
    let d = Daemon::open(cfg).expect("daemon");
    let app = d.attach(
        AppKey {
            app_id: [9; 16],
            uid: 0,
            pid: 9,
        },
        Peer::default(),
    );
    let call = |r| crate::dispatch::handle(&d, &app, r);
    assert_eq!(
        call(R::InitToken {
            slot: 0,
            so_pin: SO.to_vec().into(),
            label: b"kms".to_vec()
        }),
        Response::Ok
    );
    let Response::Handle(s) = call(R::OpenSession {
        slot: 0,
        flags: ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
    }) else {
        panic!("open")
    };
    assert_eq!(
        call(R::Login {
            session: s,
            user_type: ck::CKU_SO,
            pin: SO.to_vec().into()
        }),
        Response::Ok
    );
    assert_eq!(
        call(R::InitPin {
            session: s,
            pin: b"1234".to_vec().into()
        }),
        Response::Ok
    );
    assert_eq!(call(R::Logout { session: s }), Response::Ok);
    assert_eq!(
        call(R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: b"1234".to_vec().into()
        }),
        Response::Ok
    );
    F {
        _dir: dir,
        d,
        app,
        s,
    }
}

impl F {
    fn call(&self, r: R) -> Response {
        crate::dispatch::handle(&self.d, &self.app, r)
    }
    fn admin(&self, cmd: C) -> AdminReply {
        super::admin::handle(&self.d, "default", SO, cmd)
    }
    fn key(&self, cmd: C) -> KeyMetadata {
        match self.admin(cmd) {
            AdminReply::Key(k) => k,
            other => panic!("expected key metadata, got {other:?}"),
        }
    }
    fn fails(&self, cmd: C) -> u64 {
        match self.admin(cmd) {
            AdminReply::Failed { rv, .. } => rv,
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    fn find_label(&self, label: &str) -> Vec<u64> {
        assert_eq!(
            self.call(R::FindObjectsInit {
                session: self.s,
                template: vec![Attribute::new(ck::CKA_LABEL, label.as_bytes().to_vec())]
            }),
            Response::Ok
        );
        let Response::Handles(h) = self.call(R::FindObjects {
            session: self.s,
            max: 100,
        }) else {
            panic!("find")
        };
        assert_eq!(
            self.call(R::FindObjectsFinal { session: self.s }),
            Response::Ok
        );
        h
    }
    fn encrypt(&self, key: u64, mech: Mechanism, data: &[u8]) -> Result<Vec<u8>, u64> {
        match self.call(R::EncryptInit {
            session: self.s,
            mech,
            key,
        }) {
            Response::Ok => {}
            Response::Error(rv) => return Err(rv),
            other => panic!("{other:?}"),
        }
        match self.call(R::Encrypt {
            session: self.s,
            data: data.to_vec(),
            out: Some(1 << 20),
        }) {
            Response::Output { data: Some(d), .. } => Ok(d),
            Response::Error(rv) => Err(rv),
            other => panic!("{other:?}"),
        }
    }
    fn decrypt(&self, key: u64, mech: Mechanism, data: &[u8]) -> Result<Vec<u8>, u64> {
        match self.call(R::DecryptInit {
            session: self.s,
            mech,
            key,
        }) {
            Response::Ok => {}
            Response::Error(rv) => return Err(rv),
            other => panic!("{other:?}"),
        }
        match self.call(R::Decrypt {
            session: self.s,
            data: data.to_vec(),
            out: Some(1 << 20),
        }) {
            Response::Output { data: Some(d), .. } => Ok(d),
            Response::Error(rv) => Err(rv),
            other => panic!("{other:?}"),
        }
    }
    fn handle_of(&self, r: R) -> u64 {
        match self.call(r) {
            Response::Handle(h) => h,
            other => panic!("expected a handle, got {other:?}"),
        }
    }
    fn attr(&self, o: u64, ty: u64) -> AttrResult {
        match self.call(R::GetAttributeValue {
            session: self.s,
            object: o,
            types: vec![ty],
        }) {
            Response::Attributes(mut a) => a.remove(0),
            other => panic!("{other:?}"),
        }
    }
}

/// `material` RSA-OAEP(SHA-256)-wrapped under the instance's RSA_2048
/// import public key, as `openssl pkeyutl` would wrap it.
fn wrap_for_import(d: &Daemon, material: &[u8]) -> Vec<u8> {
    let token = &d.instances[0].token;
    let ik_pub = token
        .all_objects()
        .into_iter()
        .find(|o| {
            o.class == ck::CKO_PUBLIC_KEY
                && o.attrs().get(ck::CKA_LABEL) == Some(b"p11kms-import-key-RSA_2048".as_slice())
        })
        .expect("import public key");
    let pubkey: Arc<Key> = ik_pub.key().expect("key");
    let oaep = MechParam::Oaep {
        hash: ck::CKM_SHA256,
        mgf: ck::CKG_MGF1_SHA256,
        source: ck::CKZ_DATA_SPECIFIED,
        source_data: vec![],
    };
    token
        .registry
        .get(ck::CKM_RSA_PKCS_OAEP)
        .expect("oaep")
        .encrypt_init(&pubkey, &oaep)
        .expect("init")
        .oneshot(material)
        .expect("enc")
}

fn envelope() -> Mechanism {
    Mechanism {
        mech: vendor::CKM_P11KMS_AES_GCM_ENVELOPE,
        param: MechParam::Bytes(b"table=t1".to_vec()),
    }
}

fn ecb() -> Mechanism {
    Mechanism::new(ck::CKM_AES_ECB)
}

#[test]
fn lifecycle_through_pkcs11() {
    let f = fixture();
    let k = f.key(C::KeyCreate(KeyCreate {
        alias: Some("k1".into()),
        ..Default::default()
    }));
    assert!(k.key_id.starts_with("key-"));
    assert_eq!(
        (k.state.as_str(), k.origin.as_str(), k.spec.as_str()),
        ("Enabled", "KMS", "AES_256")
    );
    let h = f.find_label("k1");
    assert_eq!(h.len(), 1);
    let h = h[0];
    assert_eq!(
        f.attr(h, ck::CKA_ID),
        AttrResult::Value(k.key_id.as_bytes().to_vec())
    );
    assert_eq!(f.attr(h, ck::CKA_LOCAL), AttrResult::Value(vec![1]));
    assert!(f.encrypt(h, ecb(), &[0; 16]).is_ok());
    f.key(C::KeyDisable { key: "k1".into() });
    assert_eq!(
        f.encrypt(h, ecb(), &[0; 16]),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        f.attr(h, vendor::CKA_P11KMS_KEY_STATE),
        AttrResult::Value(vendor::CKV_P11KMS_STATE_DISABLED.to_le_bytes().to_vec())
    );
    f.key(C::KeyEnable {
        key: k.key_id.clone(),
    });
    assert!(f.encrypt(h, ecb(), &[0; 16]).is_ok());
    let pending = f.key(C::KeyScheduleDeletion {
        key: "k1".into(),
        pending_days: 7,
    });
    assert_eq!(pending.state, "PendingDeletion");
    assert_eq!(
        f.encrypt(h, ecb(), &[0; 16]),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        f.fails(C::KeyEnable { key: "k1".into() }),
        ck::CKR_ACTION_PROHIBITED
    );
    f.key(C::KeyCancelDeletion { key: "k1".into() });
    assert!(f.encrypt(h, ecb(), &[0; 16]).is_ok());
    assert_eq!(
        f.fails(C::KeyScheduleDeletion {
            key: "k1".into(),
            pending_days: 400
        }),
        ck::CKR_ARGUMENTS_BAD
    );
    // The window ends: the sweeper destroys the material and the record.
    f.key(C::KeyScheduleDeletion {
        key: "k1".into(),
        pending_days: 1,
    });
    super::sweep::sweep_instance(&f.d.instances[0], super::now() + 2 * 86_400).expect("sweep");
    assert!(f.find_label("k1").is_empty());
    assert_eq!(
        f.fails(C::KeyDescribe { key: k.key_id }),
        ck::CKR_KEY_HANDLE_INVALID
    );
    // Wrong SO PIN.
    match super::admin::handle(&f.d, "default", b"00000000", C::KeyList) {
        AdminReply::Failed { rv, .. } => assert_eq!(rv, ck::CKR_PIN_INCORRECT),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotation_keeps_old_ciphertext_decryptable() {
    let f = fixture();
    let k = f.key(C::KeyCreate(KeyCreate {
        alias: Some("tde".into()),
        ..Default::default()
    }));
    let h = f.find_label("tde")[0];
    let old_ct = f
        .encrypt(h, envelope(), b"row 1")
        .expect("envelope encrypt");
    assert_eq!(&old_ct[..4], b"P11E");
    let rotated = f.key(C::KeyRotate { key: "tde".into() });
    assert_eq!(rotated.primary_version, 2);
    assert_eq!(rotated.versions.len(), 2);
    let new_ct = f
        .encrypt(h, envelope(), b"row 2")
        .expect("envelope encrypt");
    let version_at = |ct: &[u8]| {
        let n = ct[5] as usize;
        u32::from_be_bytes(ct[6 + n..10 + n].try_into().expect("version"))
    };
    assert_eq!((version_at(&old_ct), version_at(&new_ct)), (1, 2));
    assert_eq!(f.decrypt(h, envelope(), &old_ct).expect("old"), b"row 1");
    assert_eq!(f.decrypt(h, envelope(), &new_ct).expect("new"), b"row 2");
    // Wrong AAD or a flipped byte fail as invalid ciphertext.
    let other_aad = Mechanism {
        mech: vendor::CKM_P11KMS_AES_GCM_ENVELOPE,
        param: MechParam::Bytes(b"table=t2".to_vec()),
    };
    assert_eq!(
        f.decrypt(h, other_aad, &old_ct),
        Err(ck::CKR_ENCRYPTED_DATA_INVALID)
    );
    // The old version is its own object: decrypt only.
    let v1 = f.find_label("tde#v1");
    assert_eq!(v1.len(), 1);
    assert_eq!(
        f.attr(v1[0], vendor::CKA_P11KMS_KEY_VERSION),
        AttrResult::Value(1u64.to_le_bytes().to_vec())
    );
    assert_eq!(
        f.encrypt(v1[0], ecb(), &[0; 16]),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // Disabling the key disables every version.
    f.key(C::KeyDisable {
        key: k.key_id.clone(),
    });
    assert_eq!(
        f.decrypt(h, envelope(), &old_ct),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    f.key(C::KeyEnable {
        key: k.key_id.clone(),
    });
    // Automatic rotation runs from the sweeper when due.
    f.key(C::KeySetRotation {
        key: "tde".into(),
        interval_days: Some(7),
    });
    super::sweep::sweep_instance(&f.d.instances[0], super::now() + 8 * 86_400).expect("sweep");
    assert_eq!(
        f.key(C::KeyDescribe { key: "tde".into() }).primary_version,
        3
    );
    assert_eq!(
        f.decrypt(h, envelope(), &old_ct)
            .expect("v1 still decrypts"),
        b"row 1"
    );
    assert_eq!(
        f.fails(C::KeySetRotation {
            key: "tde".into(),
            interval_days: Some(3)
        }),
        ck::CKR_ARGUMENTS_BAD
    );
}

#[test]
fn service_and_default_keys() {
    let f = fixture();
    let s = f.key(C::KeyCreate(KeyCreate {
        alias: Some("svc".into()),
        service: Some("rds".into()),
        ..Default::default()
    }));
    assert_eq!(s.service.as_deref(), Some("rds"));
    for cmd in [
        C::KeyDisable { key: "svc".into() },
        C::KeyRotate { key: "svc".into() },
        C::KeyScheduleDeletion {
            key: "svc".into(),
            pending_days: 7,
        },
        C::KeyTag {
            key: "svc".into(),
            set: vec![("a".into(), "b".into())],
            remove: vec![],
        },
    ] {
        assert_eq!(f.fails(cmd), ck::CKR_ACTION_PROHIBITED);
    }
    let h = f.find_label("svc")[0];
    assert!(f.encrypt(h, ecb(), &[0; 16]).is_ok(), "usable");
    assert_eq!(
        f.call(R::DestroyObject {
            session: f.s,
            object: h
        }),
        Response::Error(ck::CKR_ACTION_PROHIBITED)
    );
    assert_eq!(
        f.call(R::SetAttributeValue {
            session: f.s,
            object: h,
            template: vec![Attribute::new(ck::CKA_LABEL, b"x".to_vec())]
        }),
        Response::Error(ck::CKR_ACTION_PROHIBITED)
    );
    // The default key exists after the first command, once.
    let AdminReply::Keys(keys) = f.admin(C::KeyList) else {
        panic!("list")
    };
    let defaults: Vec<_> = keys.iter().filter(|k| k.default_key).collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0].spec, "AES_256");
    // Asymmetric keys do not rotate.
    let rsa = f.key(C::KeyCreate(KeyCreate {
        spec: Some("RSA_2048".into()),
        usage: Some("SIGN/VERIFY".into()),
        ..Default::default()
    }));
    assert_eq!(
        f.fails(C::KeyRotate {
            key: rsa.key_id.clone()
        }),
        ck::CKR_ACTION_PROHIBITED
    );
    assert_eq!(rsa.spec, "RSA_2048");
    // Aliases and tags.
    f.key(C::AliasAdd {
        key: rsa.key_id.clone(),
        alias: "signer".into(),
    });
    f.key(C::AliasAdd {
        key: "signer".into(),
        alias: "signer2".into(),
    });
    let t = f.key(C::KeyTag {
        key: "signer2".into(),
        set: vec![("env".into(), "prod".into())],
        remove: vec![],
    });
    assert_eq!(t.aliases, vec!["signer".to_string(), "signer2".to_string()]);
    assert_eq!(t.tags, vec![("env".to_string(), "prod".to_string())]);
    assert_eq!(
        f.fails(C::AliasAdd {
            key: "svc".into(),
            alias: "signer".into()
        }),
        ck::CKR_ARGUMENTS_BAD
    );
    f.key(C::AliasRemove {
        alias: "signer".into(),
    });
    assert_eq!(
        f.key(C::KeyDescribe {
            key: "signer2".into()
        })
        .aliases,
        vec!["signer2".to_string()]
    );
}

#[test]
fn import_of_key_material() {
    let f = fixture();
    let k = f.key(C::KeyCreate(KeyCreate {
        alias: Some("byok".into()),
        origin: Some("EXTERNAL".into()),
        ..Default::default()
    }));
    assert_eq!(
        (k.state.as_str(), k.origin.as_str()),
        ("PendingImport", "EXTERNAL")
    );
    let h = f.find_label("byok")[0];
    assert_eq!(
        f.encrypt(h, ecb(), &[0; 16]),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    let params = |f: &F| match f.admin(C::ImportParams {
        key: "byok".into(),
        wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
        wrapping_key_spec: "RSA_2048".into(),
    }) {
        AdminReply::ImportParams(p) => p,
        other => panic!("{other:?}"),
    };
    let p = params(&f);
    assert!(p.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    // Wrap material with the import public key (as openssl would).
    let wrap = |m: &[u8]| wrap_for_import(&f.d, m);
    let material = [0x42u8; 32];
    // Wrong length, then the right material; a token works once.
    let short = f.admin(C::Import {
        key: "byok".into(),
        import_token: p.import_token.clone(),
        material: wrap(&[1; 16]).into(),
        expires_unix: None,
    });
    assert!(
        matches!(
            short,
            AdminReply::Failed {
                rv: ck::CKR_WRAPPED_KEY_LEN_RANGE,
                ..
            }
        ),
        "{short:?}"
    );
    let reused = f.admin(C::Import {
        key: "byok".into(),
        import_token: p.import_token.clone(),
        material: wrap(&material).into(),
        expires_unix: None,
    });
    assert!(
        matches!(
            reused,
            AdminReply::Failed {
                rv: ck::CKR_ARGUMENTS_BAD,
                ..
            }
        ),
        "{reused:?}"
    );
    let p = params(&f);
    let garbage = f.admin(C::Import {
        key: "byok".into(),
        import_token: p.import_token.clone(),
        material: vec![7; 256].into(),
        expires_unix: None,
    });
    assert!(
        matches!(
            garbage,
            AdminReply::Failed {
                rv: ck::CKR_WRAPPED_KEY_INVALID,
                ..
            }
        ),
        "{garbage:?}"
    );
    let p = params(&f);
    let done = f.key(C::Import {
        key: "byok".into(),
        import_token: p.import_token,
        material: wrap(&material).into(),
        expires_unix: Some(super::now() + 3600),
    });
    assert_eq!(done.state, "Enabled");
    assert_eq!(f.attr(h, ck::CKA_LOCAL), AttrResult::Value(vec![0]));
    assert_eq!(
        f.attr(h, vendor::CKA_P11KMS_ORIGIN),
        AttrResult::Value(vendor::CKV_P11KMS_ORIGIN_EXTERNAL.to_le_bytes().to_vec())
    );
    // The imported material is what encrypts: compare with a known AES-256 result.
    let ct = f.encrypt(h, ecb(), &[0; 16]).expect("encrypt");
    let created = f.call(R::CreateObject {
        session: f.s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::new(ck::CKA_VALUE, material.to_vec()),
        ],
    });
    let Response::Handle(same) = created else {
        panic!("{created:?}")
    };
    assert_eq!(f.encrypt(same, ecb(), &[0; 16]).expect("encrypt"), ct);
    assert_eq!(
        f.fails(C::KeyRotate { key: "byok".into() }),
        ck::CKR_ACTION_PROHIBITED
    );
    // Expiry: the material goes, the key waits for a new import.
    super::sweep::sweep_instance(&f.d.instances[0], super::now() + 7200).expect("sweep");
    assert_eq!(
        f.key(C::KeyDescribe { key: "byok".into() }).state,
        "PendingImport"
    );
    assert_eq!(
        f.encrypt(h, ecb(), &[0; 16]),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // Re-import must bring the same material back.
    let p = params(&f);
    let other = f.admin(C::Import {
        key: "byok".into(),
        import_token: p.import_token,
        material: wrap(&[0x43; 32]).into(),
        expires_unix: None,
    });
    assert!(
        matches!(
            other,
            AdminReply::Failed {
                rv: ck::CKR_ARGUMENTS_BAD,
                ..
            }
        ),
        "{other:?}"
    );
    let p = params(&f);
    f.key(C::Import {
        key: "byok".into(),
        import_token: p.import_token,
        material: wrap(&material).into(),
        expires_unix: None,
    });
    assert_eq!(f.encrypt(h, ecb(), &[0; 16]).expect("encrypt"), ct);
    // Origin cannot be forged through PKCS#11: the key is KMS-managed, so
    // no attribute of it changes (plain keys answer CKR_ATTRIBUTE_READ_ONLY,
    // see dispatch::tests::attribute_rules).
    assert_eq!(
        f.call(R::SetAttributeValue {
            session: f.s,
            object: h,
            template: vec![Attribute::bool(ck::CKA_LOCAL, true)]
        }),
        Response::Error(ck::CKR_ACTION_PROHIBITED)
    );
}

#[test]
fn sm2pke_import_and_sm4_envelope() {
    let f = fixture();
    // SM2PKE goes with EC_SM2 only.
    f.key(C::KeyCreate(KeyCreate {
        alias: Some("sm-byok".into()),
        origin: Some("EXTERNAL".into()),
        ..Default::default()
    }));
    let mismatch = f.admin(C::ImportParams {
        key: "sm-byok".into(),
        wrapping_algorithm: "SM2PKE".into(),
        wrapping_key_spec: "RSA_2048".into(),
    });
    assert!(
        matches!(
            mismatch,
            AdminReply::Failed {
                rv: ck::CKR_ARGUMENTS_BAD,
                ..
            }
        ),
        "{mismatch:?}"
    );
    let AdminReply::ImportParams(p) = f.admin(C::ImportParams {
        key: "sm-byok".into(),
        wrapping_algorithm: "SM2PKE".into(),
        wrapping_key_spec: "EC_SM2".into(),
    }) else {
        panic!("import params")
    };
    assert!(p.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let token = &f.d.instances[0].token;
    let ik_pub = token
        .all_objects()
        .into_iter()
        .find(|o| {
            o.class == ck::CKO_PUBLIC_KEY
                && o.attrs().get(ck::CKA_LABEL) == Some(b"p11kms-import-key-EC_SM2".as_slice())
        })
        .expect("SM2 import public key");
    let pubkey: Arc<Key> = ik_pub.key().expect("key");
    let material = [0x5au8; 32];
    let wrapped = token
        .registry
        .get(vendor::CKM_SM2_ENCRYPT)
        .expect("sm2 encrypt")
        .encrypt_init(&pubkey, &MechParam::None)
        .expect("init")
        .oneshot(&material)
        .expect("encrypt");
    let k = f.key(C::Import {
        key: "sm-byok".into(),
        import_token: p.import_token,
        material: wrapped.into(),
        expires_unix: None,
    });
    assert_eq!(
        (k.state.as_str(), k.origin.as_str()),
        ("Enabled", "EXTERNAL")
    );

    // An SM4 CMK: the envelope uses SM4-GCM and survives rotation.
    f.key(C::KeyCreate(KeyCreate {
        spec: Some("SM4".into()),
        alias: Some("sm4k".into()),
        ..Default::default()
    }));
    let h = f.find_label("sm4k")[0];
    let old = f.encrypt(h, envelope(), b"gm row").expect("SM4 envelope");
    f.key(C::KeyRotate { key: "sm4k".into() });
    let new = f
        .encrypt(h, envelope(), b"gm row 2")
        .expect("SM4 envelope after rotation");
    assert_eq!(f.decrypt(h, envelope(), &old).expect("old"), b"gm row");
    assert_eq!(f.decrypt(h, envelope(), &new).expect("new"), b"gm row 2");
}

/// The instance's import key also serves PKCS#11 consumers: `C_UnwrapKey`
/// with `CKM_RSA_PKCS_OAEP` makes a key whose origin is EXTERNAL.
#[test]
fn pkcs11_unwrap_with_the_import_key() {
    let f = fixture();
    f.key(C::KeyCreate(KeyCreate {
        alias: Some("ext".into()),
        origin: Some("EXTERNAL".into()),
        ..Default::default()
    }));
    let AdminReply::ImportParams(_) = f.admin(C::ImportParams {
        key: "ext".into(),
        wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
        wrapping_key_spec: "RSA_2048".into(),
    }) else {
        panic!("import params")
    };
    let ik = f.find_label("p11kms-import-key-RSA_2048");
    let private = ik
        .iter()
        .copied()
        .find(|h| {
            f.attr(*h, ck::CKA_CLASS)
                == AttrResult::Value(ck::CKO_PRIVATE_KEY.to_le_bytes().to_vec())
        })
        .expect("import private key visible to the user");
    let public = ik
        .iter()
        .copied()
        .find(|h| *h != private)
        .expect("import public key");
    assert_eq!(f.attr(private, ck::CKA_VALUE), AttrResult::Invalid);
    assert_eq!(
        f.attr(private, ck::CKA_PRIVATE_EXPONENT),
        AttrResult::Sensitive
    );
    let oaep = Mechanism {
        mech: ck::CKM_RSA_PKCS_OAEP,
        param: MechParam::Oaep {
            hash: ck::CKM_SHA256,
            mgf: ck::CKG_MGF1_SHA256,
            source: ck::CKZ_DATA_SPECIFIED,
            source_data: vec![],
        },
    };
    let material = [0x17u8; 32];
    let wrapped = f
        .encrypt(public, oaep.clone(), &material)
        .expect("OAEP encrypt with the import public key");
    let created = f.call(R::UnwrapKey {
        session: f.s,
        mech: oaep,
        unwrapping_key: private,
        wrapped,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::new(ck::CKA_LABEL, b"byok-via-pkcs11".to_vec()),
        ],
    });
    let Response::Handle(k) = created else {
        panic!("{created:?}")
    };
    assert_eq!(
        f.attr(k, vendor::CKA_P11KMS_ORIGIN),
        AttrResult::Value(vendor::CKV_P11KMS_ORIGIN_EXTERNAL.to_le_bytes().to_vec())
    );
    assert_eq!(f.attr(k, ck::CKA_LOCAL), AttrResult::Value(vec![0]));
    assert_eq!(
        f.attr(k, ck::CKA_VALUE_LEN),
        AttrResult::Value(32u64.to_le_bytes().to_vec())
    );
    // The import key can only unwrap: it cannot sign or decrypt data.
    assert_eq!(
        f.call(R::SignInit {
            session: f.s,
            mech: Mechanism::new(ck::CKM_SHA256_RSA_PKCS),
            key: private
        }),
        Response::Error(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
}

/// Import tokens live in the store: one issued before a restart still
/// imports after it, and one used (even by a failed attempt) before a
/// restart stays used after it.
#[test]
fn import_tokens_survive_a_restart_and_stay_single_use() {
    let f = fixture();
    f.key(C::KeyCreate(KeyCreate {
        alias: Some("byok".into()),
        origin: Some("EXTERNAL".into()),
        ..Default::default()
    }));
    let params = |d: &Daemon| match super::admin::handle(
        d,
        "default",
        SO,
        C::ImportParams {
            key: "byok".into(),
            wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
            wrapping_key_spec: "RSA_2048".into(),
        },
    ) {
        AdminReply::ImportParams(p) => p,
        other => panic!("{other:?}"),
    };
    let kept = params(&f.d);
    let spent = params(&f.d);
    let failed = f.admin(C::Import {
        key: "byok".into(),
        import_token: spent.import_token.clone(),
        material: vec![7; 256].into(),
        expires_unix: None,
    });
    assert!(matches!(failed, AdminReply::Failed { .. }), "{failed:?}");

    // Restart: a new daemon over the same data directory.
    // The application's sessions hold the token and so the store (and its
    // lock): end them too, as the old process's exit would.
    let F {
        _dir: dir, d, app, ..
    } = f;
    drop(app);
    drop(d);
    let reopen = || {
        let mut cfg = Config::zero(dir.path().to_path_buf(), dir.path().join("sock"));
        cfg.instances[0].min_pending_days = 0;
        Daemon::open(cfg).expect("daemon after restart")
    };
    let d = reopen();
    let wrapped = wrap_for_import(&d, &[0x42; 32]);
    let import = |d: &Daemon, t: &str| {
        super::admin::handle(
            d,
            "default",
            SO,
            C::Import {
                key: "byok".into(),
                import_token: t.to_string(),
                material: wrapped.clone().into(),
                expires_unix: None,
            },
        )
    };
    let again = import(&d, &spent.import_token);
    assert!(
        matches!(
            again,
            AdminReply::Failed {
                rv: ck::CKR_ARGUMENTS_BAD,
                ..
            }
        ),
        "a token used before the restart: {again:?}"
    );
    match import(&d, &kept.import_token) {
        AdminReply::Key(k) => assert_eq!(k.state, "Enabled"),
        other => panic!("a token issued before the restart: {other:?}"),
    }
    // And once more across another restart: the used token stays used.
    drop(d);
    let d = reopen();
    let third = import(&d, &kept.import_token);
    assert!(
        matches!(
            third,
            AdminReply::Failed {
                rv: ck::CKR_ARGUMENTS_BAD,
                ..
            }
        ),
        "{third:?}"
    );
}

/// Issue 10, finding 5: a user-PIN holder cannot bypass the lifecycle of
/// a KMS-managed key through plain PKCS#11 — no `C_DestroyObject` of the
/// key or its version objects, no `C_CopyObject` (a second object with the
/// same key id), no `C_SetAttributeValue` (aliases, usage of old versions).
#[test]
fn kms_managed_keys_resist_pkcs11_destroy_copy_and_set() {
    let f = fixture();
    f.key(C::KeyCreate(KeyCreate {
        alias: Some("cmk".into()),
        ..Default::default()
    }));
    f.key(C::KeyRotate { key: "cmk".into() });
    let primary = f.find_label("cmk")[0];
    let version = f.find_label("cmk#v1")[0];
    let default = f.find_label("default")[0];
    for h in [primary, version, default] {
        assert_eq!(
            f.call(R::DestroyObject {
                session: f.s,
                object: h
            }),
            Response::Error(ck::CKR_ACTION_PROHIBITED),
            "destroy of managed object {h}"
        );
        assert_eq!(
            f.call(R::CopyObject {
                session: f.s,
                object: h,
                template: vec![Attribute::new(ck::CKA_LABEL, b"dup".to_vec())]
            }),
            Response::Error(ck::CKR_ACTION_PROHIBITED),
            "copy of managed object {h}"
        );
        for t in [
            Attribute::new(ck::CKA_LABEL, b"hijacked".to_vec()),
            Attribute::bool(ck::CKA_DECRYPT, false),
        ] {
            assert_eq!(
                f.call(R::SetAttributeValue {
                    session: f.s,
                    object: h,
                    template: vec![t]
                }),
                Response::Error(ck::CKR_ACTION_PROHIBITED),
                "set attribute on managed object {h}"
            );
        }
        // PKCS#11 reports what the KMS allows.
        for ty in [ck::CKA_DESTROYABLE, ck::CKA_COPYABLE, ck::CKA_MODIFIABLE] {
            assert_eq!(f.attr(h, ty), AttrResult::Value(vec![0]), "0x{ty:x} of {h}");
        }
    }
    // Still intact for the KMS.
    let k = f.key(C::KeyDescribe { key: "cmk".into() });
    assert_eq!(k.versions.len(), 2);
    assert!(f.find_label("dup").is_empty());
    // A PKCS#11 key touched by a lifecycle command is managed from then on.
    let plain = f.handle_of(R::GenerateKey {
        session: f.s,
        mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
        template: vec![
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::new(ck::CKA_LABEL, b"app-key".to_vec()),
        ],
    });
    let AttrResult::Value(kid) = f.attr(plain, vendor::CKA_P11KMS_KEY_ID) else {
        panic!("key id")
    };
    f.key(C::KeyTag {
        key: String::from_utf8(kid).expect("utf8"),
        set: vec![("owner".into(), "app".into())],
        remove: vec![],
    });
    assert_eq!(
        f.call(R::DestroyObject {
            session: f.s,
            object: plain
        }),
        Response::Error(ck::CKR_ACTION_PROHIBITED)
    );
    // So does a first alias given to a key that had no label.
    let unlabelled = f.handle_of(R::GenerateKey {
        session: f.s,
        mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
        template: vec![
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
        ],
    });
    let AttrResult::Value(kid) = f.attr(unlabelled, vendor::CKA_P11KMS_KEY_ID) else {
        panic!("key id")
    };
    f.key(C::AliasAdd {
        key: String::from_utf8(kid).expect("utf8"),
        alias: "given".into(),
    });
    assert_eq!(
        f.call(R::SetAttributeValue {
            session: f.s,
            object: unlabelled,
            template: vec![Attribute::new(ck::CKA_LABEL, b"renamed".to_vec())]
        }),
        Response::Error(ck::CKR_ACTION_PROHIBITED)
    );
}

/// Keys made through PKCS#11 and never put under lifecycle management stay
/// plain PKCS#11 keys: pkcs11-tool --delete-object, keytool -delete and the
/// like keep working.
#[test]
fn plain_pkcs11_keys_stay_destroyable_and_copyable() {
    let f = fixture();
    let k = f.handle_of(R::GenerateKey {
        session: f.s,
        mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
        template: vec![
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::new(ck::CKA_LABEL, b"plain".to_vec()),
        ],
    });
    assert_eq!(f.attr(k, ck::CKA_DESTROYABLE), AttrResult::Value(vec![1]));
    assert_eq!(
        f.call(R::SetAttributeValue {
            session: f.s,
            object: k,
            template: vec![Attribute::new(ck::CKA_LABEL, b"renamed".to_vec())]
        }),
        Response::Ok
    );
    let copy = f.handle_of(R::CopyObject {
        session: f.s,
        object: k,
        template: vec![Attribute::bool(ck::CKA_TOKEN, false)],
    });
    for h in [copy, k] {
        assert_eq!(
            f.call(R::DestroyObject {
                session: f.s,
                object: h
            }),
            Response::Ok
        );
    }
    assert!(f.find_label("renamed").is_empty());
}

/// Issue 10, finding 5: the default key is made on the first command that
/// changes something, not by a read-only `key list`; once made, a missing
/// default key is reported and never silently replaced by another one.
#[test]
fn default_key_is_made_once_and_never_replaced() {
    let f = fixture();
    let AdminReply::Keys(keys) = f.admin(C::KeyList) else {
        panic!("list")
    };
    assert!(keys.is_empty(), "key list made keys: {keys:?}");
    f.key(C::KeyCreate(KeyCreate {
        alias: Some("first".into()),
        ..Default::default()
    }));
    let list = |f: &F| match f.admin(C::KeyList) {
        AdminReply::Keys(k) => k,
        other => panic!("{other:?}"),
    };
    let defaults: Vec<_> = list(&f).into_iter().filter(|k| k.default_key).collect();
    assert_eq!(defaults.len(), 1);
    let default_id = defaults[0].key_id.clone();
    // The default key cannot be scheduled for deletion either.
    assert_eq!(
        f.fails(C::KeyScheduleDeletion {
            key: "default".into(),
            pending_days: 7
        }),
        ck::CKR_ACTION_PROHIBITED
    );
    // Lose it below the KMS (a damaged store; PKCS#11 cannot do this).
    let token = &f.d.instances[0].token;
    for o in token.objects_of_key(&default_id) {
        token.destroy_object(o.id).expect("destroy below the KMS");
    }
    // Reported once...
    assert_eq!(f.fails(C::KeyList), ck::CKR_DEVICE_ERROR);
    // ...and never replaced by a key with another id.
    f.key(C::KeyCreate(KeyCreate {
        alias: Some("second".into()),
        ..Default::default()
    }));
    assert!(
        list(&f).iter().all(|k| !k.default_key),
        "a new default key replaced the lost one"
    );
}

/// Issue 10, finding 6: a disabled or pending-deletion key cannot be
/// wrapped out, nor its value read, even when it is extractable.
#[test]
fn disabled_keys_cannot_be_wrapped_or_read() {
    let f = fixture();
    let victim = f.handle_of(R::GenerateKey {
        session: f.s,
        mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
        template: vec![
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bool(ck::CKA_SENSITIVE, false),
            Attribute::bool(ck::CKA_EXTRACTABLE, true),
        ],
    });
    let kek = f.handle_of(R::GenerateKey {
        session: f.s,
        mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
        template: vec![Attribute::ulong(ck::CKA_VALUE_LEN, 32)],
    });
    let AttrResult::Value(kid) = f.attr(victim, vendor::CKA_P11KMS_KEY_ID) else {
        panic!("key id")
    };
    let kid = String::from_utf8(kid).expect("utf8");
    let wrap = |f: &F| {
        f.call(R::WrapKey {
            session: f.s,
            mech: Mechanism::new(ck::CKM_AES_KEY_WRAP),
            wrapping_key: kek,
            key: victim,
            out: Some(100),
        })
    };
    assert!(matches!(wrap(&f), Response::Output { data: Some(_), .. }));
    assert!(matches!(
        f.attr(victim, ck::CKA_VALUE),
        AttrResult::Value(_)
    ));
    // A session copy made while the key was a plain PKCS#11 key.
    let copy = f.handle_of(R::CopyObject {
        session: f.s,
        object: victim,
        template: vec![Attribute::bool(ck::CKA_TOKEN, false)],
    });
    assert!(f.encrypt(copy, ecb(), &[0; 16]).is_ok());
    f.key(C::KeyDisable { key: kid.clone() });
    assert_eq!(
        wrap(&f),
        Response::Error(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(f.attr(victim, ck::CKA_VALUE), AttrResult::Sensitive);
    // Nor is it digested.
    assert_eq!(
        f.call(R::DigestInit {
            session: f.s,
            mech: Mechanism::new(ck::CKM_SHA256)
        }),
        Response::Ok
    );
    assert_eq!(
        f.call(R::DigestKey {
            session: f.s,
            key: victim
        }),
        Response::Error(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // Disabling reaches the copy too: no use, no value.
    assert_eq!(
        f.encrypt(copy, ecb(), &[0; 16]),
        Err(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(f.attr(copy, ck::CKA_VALUE), AttrResult::Sensitive);
    f.key(C::KeyEnable { key: kid.clone() });
    f.key(C::KeyScheduleDeletion {
        key: kid,
        pending_days: 7,
    });
    assert_eq!(
        wrap(&f),
        Response::Error(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(f.attr(victim, ck::CKA_VALUE), AttrResult::Sensitive);
}
