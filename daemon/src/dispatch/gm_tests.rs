//! Compliance mode `gm` end to end inside the daemon: a daemon with a
//! standard and a gm instance; SM objects through PKCS#11 requests; an
//! instance whose known-answer test fails does not serve.

use std::sync::Arc;

use p11kms_protocol::{
    vendor, AdminCommand, AdminReply, AttrResult, Attribute, KeyCreate, MechParam, Mechanism,
    Request as R, Response,
};
use pkcs11_sys as ck;

use crate::access::{App, AppKey, Peer};
use crate::config::{Config, InstanceConfig};
use crate::daemon::Daemon;
use crate::mech::Registry;

const SO: &[u8] = b"12345678";

struct F {
    _dir: tempfile::TempDir,
    d: Daemon,
    app: Arc<App>,
}

/// Slot 0 standard, slot 1 gm.
fn two_instances(base: impl Fn(&InstanceConfig) -> Registry) -> F {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::zero(dir.path().to_path_buf(), dir.path().join("sock"));
    let mut gm = InstanceConfig::default_soft();
    gm.name = "gm".into();
    gm.mode = "gm".into();
    cfg.instances.push(gm);
    cfg.validate().expect("config");
    let d = Daemon::open_with(cfg, base).expect("daemon");
    let app = d.attach(
        AppKey {
            app_id: [5; 16],
            uid: 0,
            pid: 5,
        },
        Peer::default(),
    );
    F { _dir: dir, d, app }
}

impl F {
    fn call(&self, r: R) -> Response {
        super::handle(&self.d, &self.app, r)
    }
    fn err(&self, r: R) -> u64 {
        match self.call(r) {
            Response::Error(rv) => rv,
            other => panic!("expected an error, got {other:?}"),
        }
    }
    fn handle(&self, r: R) -> u64 {
        match self.call(r) {
            Response::Handle(h) => h,
            other => panic!("expected a handle, got {other:?}"),
        }
    }
    fn data(&self, r: R) -> Vec<u8> {
        match self.call(r) {
            Response::Output { data: Some(d), .. } => d,
            other => panic!("expected output, got {other:?}"),
        }
    }
    fn mechs(&self, slot: u64) -> Vec<u64> {
        match self.call(R::GetMechanismList { slot }) {
            Response::MechanismList(l) => l,
            other => panic!("expected a list, got {other:?}"),
        }
    }
    /// Initialize the token of `slot`; a R/W user session.
    fn session(&self, slot: u64) -> u64 {
        assert_eq!(
            self.call(R::InitToken {
                slot,
                so_pin: SO.to_vec().into(),
                label: b"t".to_vec()
            }),
            Response::Ok
        );
        let s = self.handle(R::OpenSession {
            slot,
            flags: ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
        });
        assert_eq!(
            self.call(R::Login {
                session: s,
                user_type: ck::CKU_SO,
                pin: SO.to_vec().into()
            }),
            Response::Ok
        );
        assert_eq!(
            self.call(R::InitPin {
                session: s,
                pin: b"1234".to_vec().into()
            }),
            Response::Ok
        );
        assert_eq!(self.call(R::Logout { session: s }), Response::Ok);
        assert_eq!(
            self.call(R::Login {
                session: s,
                user_type: ck::CKU_USER,
                pin: b"1234".to_vec().into()
            }),
            Response::Ok
        );
        s
    }
}

fn mech(m: u64, param: MechParam) -> Mechanism {
    Mechanism { mech: m, param }
}

#[test]
fn gm_instance_serves_only_sm() {
    let f = two_instances(|_| Registry::with_defaults());
    let standard = f.mechs(0);
    let gm = f.mechs(1);
    for m in [
        ck::CKM_AES_GCM,
        ck::CKM_RSA_PKCS,
        vendor::CKM_SM4_CBC,
        vendor::CKM_SHA256_SM2DSA,
    ] {
        assert!(standard.contains(&m), "standard serves 0x{m:x}");
    }
    assert!(gm.iter().all(|m| crate::mech::gm_allowed(*m)), "{gm:x?}");
    for m in [
        vendor::CKM_SM2_KEY_PAIR_GEN,
        vendor::CKM_SM3,
        vendor::CKM_SM4_GCM,
        vendor::CKM_SM2_ENCRYPT,
        // Envelope encryption under the gm default key (SM4-GCM).
        vendor::CKM_P11KMS_AES_GCM_ENVELOPE,
    ] {
        assert!(gm.contains(&m));
    }
    for m in [
        ck::CKM_AES_CBC,
        ck::CKM_RSA_PKCS,
        ck::CKM_SHA256,
        vendor::CKM_SHA256_SM2DSA,
    ] {
        assert!(!gm.contains(&m));
        assert_eq!(
            f.err(R::GetMechanismInfo { slot: 1, mech: m }),
            ck::CKR_MECHANISM_INVALID
        );
    }
    let model = |slot| match f.call(R::GetTokenInfo { slot }) {
        Response::TokenInfo(t) => t.model,
        other => panic!("{other:?}"),
    };
    assert_eq!(model(0), "p11kms soft");
    assert_eq!(model(1), "p11kms soft gm");
    let status = f.d.status();
    assert_eq!(status.instances[1].mode, "gm");
    assert!(status.instances.iter().all(|i| i.serving));

    let s = f.session(1);
    // AES and RSA are refused.
    let aes = R::GenerateKey {
        session: s,
        mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
        template: vec![Attribute::ulong(ck::CKA_VALUE_LEN, 32)],
    };
    assert_eq!(f.err(aes), ck::CKR_MECHANISM_INVALID);
    let rsa = R::GenerateKeyPair {
        session: s,
        mech: Mechanism::new(ck::CKM_RSA_PKCS_KEY_PAIR_GEN),
        public_template: vec![Attribute::ulong(ck::CKA_MODULUS_BITS, 2048)],
        private_template: vec![],
    };
    assert_eq!(f.err(rsa), ck::CKR_MECHANISM_INVALID);
    // SM4 round trip.
    let k = f.handle(R::GenerateKey {
        session: s,
        mech: Mechanism::new(vendor::CKM_SM4_KEY_GEN),
        template: vec![
            Attribute::bool(ck::CKA_ENCRYPT, true),
            Attribute::bool(ck::CKA_DECRYPT, true),
        ],
    });
    let iv = MechParam::Bytes(vec![3; 16]);
    assert_eq!(
        f.call(R::EncryptInit {
            session: s,
            mech: mech(vendor::CKM_SM4_CBC_PAD, iv.clone()),
            key: k
        }),
        Response::Ok
    );
    let ct = f.data(R::Encrypt {
        session: s,
        data: b"hello gm".to_vec(),
        out: Some(64),
    });
    assert_eq!(ct.len(), 16);
    assert_eq!(
        f.call(R::DecryptInit {
            session: s,
            mech: mech(vendor::CKM_SM4_CBC_PAD, iv),
            key: k
        }),
        Response::Ok
    );
    assert_eq!(
        f.data(R::Decrypt {
            session: s,
            data: ct,
            out: Some(64)
        }),
        b"hello gm"
    );
    match f.call(R::GetAttributeValue {
        session: s,
        object: k,
        types: vec![ck::CKA_KEY_TYPE, ck::CKA_VALUE_LEN, ck::CKA_CHECK_VALUE],
    }) {
        Response::Attributes(a) => {
            assert_eq!(
                a[0],
                AttrResult::Value(vendor::CKK_SM4.to_le_bytes().to_vec())
            );
            assert_eq!(a[1], AttrResult::Value(16u64.to_le_bytes().to_vec()));
            assert!(matches!(&a[2], AttrResult::Value(v) if v.len() == 3));
        }
        other => panic!("{other:?}"),
    }
    // SM2 key pair, sign with the default ID, verify.
    let Response::KeyPair { public, private } = f.call(R::GenerateKeyPair {
        session: s,
        mech: Mechanism::new(vendor::CKM_SM2_KEY_PAIR_GEN),
        public_template: vec![
            Attribute::bool(ck::CKA_VERIFY, true),
            Attribute::new(ck::CKA_EC_PARAMS, crate::mech::sm2::params()),
        ],
        private_template: vec![Attribute::bool(ck::CKA_SIGN, true)],
    }) else {
        panic!("SM2 key pair")
    };
    assert_eq!(
        f.call(R::SignInit {
            session: s,
            mech: Mechanism::new(vendor::CKM_SM3_SM2DSA),
            key: private
        }),
        Response::Ok
    );
    let sig = f.data(R::Sign {
        session: s,
        data: b"msg".to_vec(),
        out: Some(64),
    });
    assert_eq!(sig.len(), 64);
    assert_eq!(
        f.call(R::VerifyInit {
            session: s,
            mech: Mechanism::new(vendor::CKM_SM3_SM2DSA),
            key: public
        }),
        Response::Ok
    );
    assert_eq!(
        f.call(R::Verify {
            session: s,
            data: b"msg".to_vec(),
            signature: sig
        }),
        Response::Ok
    );
    match f.call(R::GetAttributeValue {
        session: s,
        object: public,
        types: vec![ck::CKA_KEY_TYPE, ck::CKA_EC_POINT],
    }) {
        Response::Attributes(a) => {
            assert_eq!(
                a[0],
                AttrResult::Value(vendor::CKK_SM2.to_le_bytes().to_vec())
            );
            assert!(
                matches!(&a[1], AttrResult::Value(v) if v.len() == 67 && v[..3] == [0x04, 0x41, 0x04])
            );
        }
        other => panic!("{other:?}"),
    }
    // EC_SM2 keys come from the CLI; the gm instance's default key (made
    // by that first command) is SM4.
    let admin = |cmd| crate::kms::admin::handle(&f.d, "gm", SO, cmd);
    let AdminReply::Key(k) = admin(AdminCommand::KeyCreate(KeyCreate {
        spec: Some("EC_SM2".into()),
        ..Default::default()
    })) else {
        panic!("EC_SM2")
    };
    assert_eq!(k.spec, "EC_SM2");
    let AdminReply::Keys(keys) = admin(AdminCommand::KeyList) else {
        panic!("list")
    };
    let default = keys.iter().find(|k| k.default_key).expect("default key");
    assert_eq!(default.spec, "SM4");
    assert!(matches!(
        admin(AdminCommand::KeyCreate(KeyCreate {
            spec: Some("AES_256".into()),
            ..Default::default()
        })),
        AdminReply::Failed {
            rv: ck::CKR_MECHANISM_INVALID,
            ..
        }
    ));
}

#[test]
fn failed_self_test_keeps_the_instance_from_serving() {
    fn broken() -> crate::error::Result<()> {
        Err(crate::error::Error::general("injected failure"))
    }
    let f = two_instances(|ic| {
        let mut r = Registry::with_defaults();
        if ic.mode == "gm" {
            r.add_self_test("broken SM4", broken);
        }
        r
    });
    let status = f.d.status();
    assert!(status.instances[0].serving);
    assert!(!status.instances[1].serving);
    f.session(0);
    assert_eq!(
        f.err(R::OpenSession {
            slot: 1,
            flags: ck::CKF_SERIAL_SESSION
        }),
        vendor::CKR_P11KMS_INSTANCE_UNAVAILABLE
    );
    assert!(matches!(
        crate::kms::admin::handle(&f.d, "gm", SO, AdminCommand::KeyList),
        AdminReply::Failed {
            rv: vendor::CKR_P11KMS_INSTANCE_UNAVAILABLE,
            ..
        }
    ));
}
