//! Dispatcher tests: requests go straight into [`super::handle`] (the
//! loopback path, no socket), checking the PKCS#11 state machine, attribute
//! rules and output-length rules end to end inside the daemon.

use std::sync::Arc;

use p11kms_protocol::{
    vendor, AttrResult, Attribute, MechParam, Mechanism, Request as R, Response,
};
use pkcs11_sys as ck;

use crate::access::{App, AppKey, Peer};
use crate::config::Config;
use crate::daemon::Daemon;

struct Fixture {
    _dir: tempfile::TempDir,
    d: Daemon,
    app: Arc<App>,
}

fn daemon_at(dir: &std::path::Path) -> Daemon {
    Daemon::open(Config::zero(dir.to_path_buf(), dir.join("sock"))).expect("daemon")
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon_at(dir.path());
    let app = d.attach(
        AppKey {
            app_id: [1; 16],
            uid: 0,
            pid: 1,
        },
        Peer::default(),
    );
    Fixture { _dir: dir, d, app }
}

impl Fixture {
    fn call(&self, r: R) -> Response {
        super::handle(&self.d, &self.app, r)
    }
    fn ok(&self, r: R) {
        assert_eq!(self.call(r), Response::Ok);
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
    fn open(&self, rw: bool) -> u64 {
        let flags = ck::CKF_SERIAL_SESSION | if rw { ck::CKF_RW_SESSION } else { 0 };
        self.handle(R::OpenSession { slot: 0, flags })
    }
    /// Initialized token with user PIN "1234" and SO PIN "12345678"; returns
    /// a R/W session logged in as the user.
    fn ready(&self) -> u64 {
        self.ok(R::InitToken {
            slot: 0,
            so_pin: b"12345678".to_vec().into(),
            label: b"test".to_vec(),
        });
        let s = self.open(true);
        self.ok(R::Login {
            session: s,
            user_type: ck::CKU_SO,
            pin: b"12345678".to_vec().into(),
        });
        self.ok(R::InitPin {
            session: s,
            pin: b"1234".to_vec().into(),
        });
        self.ok(R::Logout { session: s });
        self.ok(R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: b"1234".to_vec().into(),
        });
        s
    }
    fn aes_key(&self, s: u64, extra: Vec<Attribute>) -> u64 {
        let mut t = vec![
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
        ];
        t.extend(extra);
        self.handle(R::GenerateKey {
            session: s,
            mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
            template: t,
        })
    }
}

#[test]
fn login_state_machine() {
    let f = fixture();
    f.ok(R::InitToken {
        slot: 0,
        so_pin: b"12345678".to_vec().into(),
        label: b"t".to_vec(),
    });
    let ro = f.open(false);
    // SO login with a R/O session open is refused.
    assert_eq!(
        f.err(R::Login {
            session: ro,
            user_type: ck::CKU_SO,
            pin: b"12345678".to_vec().into()
        }),
        ck::CKR_SESSION_READ_ONLY_EXISTS
    );
    f.ok(R::CloseSession { session: ro });
    let rw = f.open(true);
    // No user PIN yet.
    assert_eq!(
        f.err(R::Login {
            session: rw,
            user_type: ck::CKU_USER,
            pin: b"1234".to_vec().into()
        }),
        ck::CKR_USER_PIN_NOT_INITIALIZED
    );
    f.ok(R::Login {
        session: rw,
        user_type: ck::CKU_SO,
        pin: b"12345678".to_vec().into(),
    });
    assert_eq!(
        f.err(R::Login {
            session: rw,
            user_type: ck::CKU_SO,
            pin: b"12345678".to_vec().into()
        }),
        ck::CKR_USER_ALREADY_LOGGED_IN
    );
    assert_eq!(
        f.err(R::Login {
            session: rw,
            user_type: ck::CKU_USER,
            pin: b"1234".to_vec().into()
        }),
        ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    );
    // R/O session while SO is logged in.
    assert_eq!(
        f.err(R::OpenSession {
            slot: 0,
            flags: ck::CKF_SERIAL_SESSION
        }),
        ck::CKR_SESSION_READ_WRITE_SO_EXISTS
    );
    f.ok(R::InitPin {
        session: rw,
        pin: b"1234".to_vec().into(),
    });
    match f.call(R::GetSessionInfo { session: rw }) {
        Response::SessionInfo(i) => assert_eq!(i.state, ck::CKS_RW_SO_FUNCTIONS),
        other => panic!("{other:?}"),
    }
    f.ok(R::Logout { session: rw });
    assert_eq!(f.err(R::Logout { session: rw }), ck::CKR_USER_NOT_LOGGED_IN);
    // InitToken refused while sessions exist.
    assert_eq!(
        f.err(R::InitToken {
            slot: 0,
            so_pin: b"12345678".to_vec().into(),
            label: b"t".to_vec()
        }),
        ck::CKR_SESSION_EXISTS
    );
    assert_eq!(
        f.err(R::Login {
            session: rw,
            user_type: 7,
            pin: b"1234".to_vec().into()
        }),
        ck::CKR_USER_TYPE_INVALID
    );
    assert_eq!(
        f.err(R::OpenSession { slot: 0, flags: 0 }),
        ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED
    );
    assert_eq!(
        f.err(R::OpenSession {
            slot: 9,
            flags: ck::CKF_SERIAL_SESSION
        }),
        ck::CKR_SLOT_ID_INVALID
    );
}

#[test]
fn pin_lockout_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::zero(dir.path().to_path_buf(), dir.path().join("sock"));
    cfg.instances[0].max_pin_failures = 3;
    let d = Daemon::open(cfg).expect("daemon");
    let app = d.attach(
        AppKey {
            app_id: [2; 16],
            uid: 0,
            pid: 2,
        },
        Peer::default(),
    );
    let f = Fixture { _dir: dir, d, app };
    let s = f.ready();
    f.ok(R::Logout { session: s });
    let flags = |f: &Fixture| match f.call(R::GetTokenInfo { slot: 0 }) {
        Response::TokenInfo(t) => t.flags,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        f.err(R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: b"0000".to_vec().into()
        }),
        ck::CKR_PIN_INCORRECT
    );
    assert_ne!(flags(&f) & ck::CKF_USER_PIN_COUNT_LOW, 0);
    assert_eq!(
        f.err(R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: b"0000".to_vec().into()
        }),
        ck::CKR_PIN_INCORRECT
    );
    assert_ne!(flags(&f) & ck::CKF_USER_PIN_FINAL_TRY, 0);
    assert_eq!(
        f.err(R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: b"0000".to_vec().into()
        }),
        ck::CKR_PIN_LOCKED
    );
    assert_ne!(flags(&f) & ck::CKF_USER_PIN_LOCKED, 0);
    // Even the right PIN is refused now; the SO can reset it.
    assert_eq!(
        f.err(R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: b"1234".to_vec().into()
        }),
        ck::CKR_PIN_LOCKED
    );
    f.ok(R::Login {
        session: s,
        user_type: ck::CKU_SO,
        pin: b"12345678".to_vec().into(),
    });
    f.ok(R::InitPin {
        session: s,
        pin: b"5678".to_vec().into(),
    });
    f.ok(R::Logout { session: s });
    f.ok(R::Login {
        session: s,
        user_type: ck::CKU_USER,
        pin: b"5678".to_vec().into(),
    });
    assert_eq!(
        flags(&f) & (ck::CKF_USER_PIN_LOCKED | ck::CKF_USER_PIN_COUNT_LOW),
        0
    );
    // SetPIN as the user.
    f.ok(R::SetPin {
        session: s,
        old_pin: b"5678".to_vec().into(),
        new_pin: b"9999".to_vec().into(),
    });
    assert_eq!(
        f.err(R::SetPin {
            session: s,
            old_pin: b"5678".to_vec().into(),
            new_pin: b"1111".to_vec().into()
        }),
        ck::CKR_PIN_INCORRECT
    );
    assert_eq!(
        f.err(R::SetPin {
            session: s,
            old_pin: b"9999".to_vec().into(),
            new_pin: b"1".to_vec().into()
        }),
        ck::CKR_PIN_LEN_RANGE
    );
}

#[test]
fn attribute_rules() {
    let f = fixture();
    let s = f.ready();
    let k = f.aes_key(
        s,
        vec![
            Attribute::bool(ck::CKA_SENSITIVE, true),
            Attribute::new(ck::CKA_LABEL, b"k".to_vec()),
        ],
    );
    let got = f.call(R::GetAttributeValue {
        session: s,
        object: k,
        types: vec![
            ck::CKA_VALUE,
            ck::CKA_LABEL,
            ck::CKA_ALWAYS_AUTHENTICATE,
            ck::CKA_LOCAL,
            vendor::CKA_P11KMS_ORIGIN,
        ],
    });
    assert_eq!(
        got,
        Response::Attributes(vec![
            AttrResult::Sensitive,
            AttrResult::Value(b"k".to_vec()),
            AttrResult::Invalid,
            AttrResult::Value(vec![1]),
            AttrResult::Value(vendor::CKV_P11KMS_ORIGIN_KMS.to_le_bytes().to_vec()),
        ])
    );
    // Read-only attributes.
    assert_eq!(
        f.err(R::SetAttributeValue {
            session: s,
            object: k,
            template: vec![Attribute::bool(ck::CKA_LOCAL, false)]
        }),
        ck::CKR_ATTRIBUTE_READ_ONLY
    );
    assert_eq!(
        f.err(R::SetAttributeValue {
            session: s,
            object: k,
            template: vec![Attribute::ulong(vendor::CKA_P11KMS_ORIGIN, 2)]
        }),
        ck::CKR_ATTRIBUTE_READ_ONLY
    );
    assert_eq!(
        f.err(R::SetAttributeValue {
            session: s,
            object: k,
            template: vec![Attribute::bool(ck::CKA_SENSITIVE, false)]
        }),
        ck::CKR_ATTRIBUTE_READ_ONLY
    );
    // Forging origin at creation.
    let forged = f.err(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::new(ck::CKA_VALUE, vec![0; 16]),
            Attribute::bool(ck::CKA_LOCAL, true),
        ],
    });
    assert_eq!(forged, ck::CKR_ATTRIBUTE_READ_ONLY);
    // Imported key: LOCAL false, origin EXTERNAL, value readable when not
    // sensitive and extractable (both must be asked for).
    let imp = f.handle(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::new(ck::CKA_VALUE, vec![7; 16]),
            Attribute::bool(ck::CKA_SENSITIVE, false),
            Attribute::bool(ck::CKA_EXTRACTABLE, true),
        ],
    });
    assert_eq!(
        f.call(R::GetAttributeValue {
            session: s,
            object: imp,
            types: vec![
                ck::CKA_LOCAL,
                vendor::CKA_P11KMS_ORIGIN,
                ck::CKA_VALUE,
                ck::CKA_VALUE_LEN
            ]
        }),
        Response::Attributes(vec![
            AttrResult::Value(vec![0]),
            AttrResult::Value(vendor::CKV_P11KMS_ORIGIN_EXTERNAL.to_le_bytes().to_vec()),
            AttrResult::Value(vec![7; 16]),
            AttrResult::Value(16u64.to_le_bytes().to_vec()),
        ])
    );
    // Bad inputs.
    let bad_len = f.err(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::new(ck::CKA_VALUE, vec![7; 15]),
        ],
    });
    assert_eq!(bad_len, ck::CKR_ATTRIBUTE_VALUE_INVALID);
    assert_eq!(
        f.err(R::CreateObject {
            session: s,
            template: vec![]
        }),
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    let unknown = f.err(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
            Attribute::new(ck::CKA_MODULUS, vec![1]),
        ],
    });
    assert_eq!(unknown, ck::CKR_ATTRIBUTE_TYPE_INVALID);
    let bad_bool = f.err(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
            Attribute::new(ck::CKA_TOKEN, vec![1, 1]),
        ],
    });
    assert_eq!(bad_bool, ck::CKR_ATTRIBUTE_VALUE_INVALID);
    assert_eq!(
        f.err(R::GetAttributeValue {
            session: s,
            object: 999_999,
            types: vec![ck::CKA_LABEL]
        }),
        ck::CKR_OBJECT_HANDLE_INVALID
    );
}

#[test]
fn private_objects_hidden_before_login_and_find_index() {
    let f = fixture();
    let s = f.ready();
    for i in 0..50u8 {
        f.handle(R::CreateObject {
            session: s,
            template: vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bool(ck::CKA_PRIVATE, i % 2 == 0),
                Attribute::new(ck::CKA_LABEL, format!("obj{i}").into_bytes()),
                Attribute::new(ck::CKA_VALUE, vec![i]),
            ],
        });
    }
    let find = |f: &Fixture, t: Vec<Attribute>| {
        f.ok(R::FindObjectsInit {
            session: s,
            template: t,
        });
        let r = match f.call(R::FindObjects {
            session: s,
            max: 1000,
        }) {
            Response::Handles(h) => h,
            other => panic!("{other:?}"),
        };
        f.ok(R::FindObjectsFinal { session: s });
        r
    };
    assert_eq!(
        find(&f, vec![Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA)]).len(),
        50
    );
    assert_eq!(
        find(&f, vec![Attribute::new(ck::CKA_LABEL, b"obj7".to_vec())]).len(),
        1
    );
    let private = find(&f, vec![Attribute::new(ck::CKA_LABEL, b"obj8".to_vec())]);
    assert_eq!(private.len(), 1);
    f.ok(R::Logout { session: s });
    assert_eq!(
        find(&f, vec![Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA)]).len(),
        25
    );
    assert!(find(&f, vec![Attribute::new(ck::CKA_LABEL, b"obj8".to_vec())]).is_empty());
    assert_eq!(
        f.err(R::GetAttributeValue {
            session: s,
            object: private[0],
            types: vec![ck::CKA_LABEL]
        }),
        ck::CKR_OBJECT_HANDLE_INVALID
    );
    // Creating a private object needs the user.
    let denied = f.err(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
            Attribute::bool(ck::CKA_PRIVATE, true),
        ],
    });
    assert_eq!(denied, ck::CKR_USER_NOT_LOGGED_IN);
    assert_eq!(
        f.err(R::FindObjects { session: s, max: 1 }),
        ck::CKR_OPERATION_NOT_INITIALIZED
    );
}

#[test]
fn length_queries_keep_the_operation_alive() {
    let f = fixture();
    let s = f.ready();
    let k = f.aes_key(s, vec![]);
    let gcm = Mechanism {
        mech: ck::CKM_AES_GCM,
        param: MechParam::Gcm {
            iv: vec![1; 12],
            iv_bits: Some(96),
            aad: b"aad".to_vec(),
            tag_bits: 128,
        },
    };
    f.ok(R::EncryptInit {
        session: s,
        mech: gcm.clone(),
        key: k,
    });
    let data = vec![0x55; 100];
    assert_eq!(
        f.call(R::Encrypt {
            session: s,
            data: data.clone(),
            out: None
        }),
        Response::Output {
            len: 116,
            data: None
        }
    );
    assert_eq!(
        f.call(R::Encrypt {
            session: s,
            data: data.clone(),
            out: Some(10)
        }),
        Response::Output {
            len: 116,
            data: None
        }
    );
    let ct = match f.call(R::Encrypt {
        session: s,
        data: data.clone(),
        out: Some(116),
    }) {
        Response::Output {
            len: 116,
            data: Some(d),
        } => d,
        other => panic!("{other:?}"),
    };
    // The operation ended with the successful call.
    assert_eq!(
        f.err(R::Encrypt {
            session: s,
            data: data.clone(),
            out: Some(200)
        }),
        ck::CKR_OPERATION_NOT_INITIALIZED
    );
    f.ok(R::DecryptInit {
        session: s,
        mech: gcm.clone(),
        key: k,
    });
    match f.call(R::Decrypt {
        session: s,
        data: ct.clone(),
        out: Some(200),
    }) {
        Response::Output { data: Some(d), .. } => assert_eq!(d, data),
        other => panic!("{other:?}"),
    }
    // A tampered tag.
    let mut bad = ct.clone();
    bad[110] ^= 1;
    f.ok(R::DecryptInit {
        session: s,
        mech: gcm,
        key: k,
    });
    assert_eq!(
        f.err(R::Decrypt {
            session: s,
            data: bad,
            out: Some(200)
        }),
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
    // Digest: query, short buffer, then the real call.
    f.ok(R::DigestInit {
        session: s,
        mech: Mechanism::new(ck::CKM_SHA256),
    });
    assert_eq!(
        f.call(R::Digest {
            session: s,
            data: b"abc".to_vec(),
            out: None
        }),
        Response::Output {
            len: 32,
            data: None
        }
    );
    assert_eq!(
        f.call(R::Digest {
            session: s,
            data: b"abc".to_vec(),
            out: Some(31)
        }),
        Response::Output {
            len: 32,
            data: None
        }
    );
    match f.call(R::Digest {
        session: s,
        data: b"abc".to_vec(),
        out: Some(32),
    }) {
        Response::Output { data: Some(d), .. } => assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn key_usage_wrap_and_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kek, label) = {
        let d = daemon_at(dir.path());
        let app = d.attach(
            AppKey {
                app_id: [3; 16],
                uid: 0,
                pid: 3,
            },
            Peer::default(),
        );
        let f = Fixture {
            _dir: tempfile::tempdir().expect("t"),
            d,
            app,
        };
        let s = f.ready();
        let kek = f.aes_key(
            s,
            vec![
                Attribute::bool(ck::CKA_ENCRYPT, false),
                Attribute::bool(ck::CKA_EXTRACTABLE, false),
            ],
        );
        // Usage flags enforced.
        assert_eq!(
            f.err(R::EncryptInit {
                session: s,
                mech: Mechanism::new(ck::CKM_AES_ECB),
                key: kek
            }),
            ck::CKR_KEY_FUNCTION_NOT_PERMITTED
        );
        let dk = f.aes_key(
            s,
            vec![
                Attribute::bool(ck::CKA_TOKEN, false),
                Attribute::bool(ck::CKA_SENSITIVE, false),
                Attribute::bool(ck::CKA_EXTRACTABLE, true),
            ],
        );
        let wrapped = match f.call(R::WrapKey {
            session: s,
            mech: Mechanism::new(ck::CKM_AES_KEY_WRAP),
            wrapping_key: kek,
            key: dk,
            out: Some(100),
        }) {
            Response::Output { data: Some(w), .. } => w,
            other => panic!("{other:?}"),
        };
        assert_eq!(wrapped.len(), 40);
        // The non-extractable KEK cannot be wrapped.
        assert_eq!(
            f.err(R::WrapKey {
                session: s,
                mech: Mechanism::new(ck::CKM_AES_KEY_WRAP),
                wrapping_key: kek,
                key: kek,
                out: Some(100)
            }),
            ck::CKR_KEY_UNEXTRACTABLE
        );
        let t = vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::new(ck::CKA_LABEL, b"unwrapped".to_vec()),
        ];
        let uk = f.handle(R::UnwrapKey {
            session: s,
            mech: Mechanism::new(ck::CKM_AES_KEY_WRAP),
            unwrapping_key: kek,
            wrapped: wrapped.clone(),
            template: t.clone(),
        });
        let mut tampered = wrapped;
        tampered[3] ^= 1;
        assert_eq!(
            f.err(R::UnwrapKey {
                session: s,
                mech: Mechanism::new(ck::CKM_AES_KEY_WRAP),
                unwrapping_key: kek,
                wrapped: tampered,
                template: t
            }),
            ck::CKR_WRAPPED_KEY_INVALID
        );
        (kek, uk)
    };
    // Restart: token objects, PINs and state survive; session objects do not.
    let d = daemon_at(dir.path());
    let app = d.attach(
        AppKey {
            app_id: [4; 16],
            uid: 0,
            pid: 4,
        },
        Peer::default(),
    );
    let f = Fixture {
        _dir: tempfile::tempdir().expect("t"),
        d,
        app,
    };
    let s = f.open(true);
    f.ok(R::Login {
        session: s,
        user_type: ck::CKU_USER,
        pin: b"1234".to_vec().into(),
    });
    match f.call(R::GetAttributeValue {
        session: s,
        object: label,
        types: vec![ck::CKA_LABEL, ck::CKA_LOCAL],
    }) {
        Response::Attributes(a) => assert_eq!(
            a,
            vec![
                AttrResult::Value(b"unwrapped".to_vec()),
                AttrResult::Value(vec![0])
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.call(R::GetObjectSize {
            session: s,
            object: kek
        }),
        Response::Ulong(_)
    ));
}

#[test]
fn app_teardown_closes_sessions_and_logs_out() {
    let f = fixture();
    let s = f.ready();
    let obj = f.handle(R::CreateObject {
        session: s,
        template: vec![Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA)],
    });
    assert!(obj >= crate::daemon::SESSION_OBJECT_BASE);
    // A second connection of the same application shares the login.
    let app2 = f.d.attach(f.app.key, Peer::default());
    assert!(Arc::ptr_eq(&app2, &f.app));
    f.d.detach(&app2);
    assert_eq!(
        f.call(R::GetAttributeValue {
            session: s,
            object: obj,
            types: vec![ck::CKA_CLASS]
        })
        .clone(),
        Response::Attributes(vec![AttrResult::Value(ck::CKO_DATA.to_le_bytes().to_vec())])
    );
    f.d.detach(&f.app);
    // A new context of the same process starts logged out with no sessions.
    let app3 = f.d.attach(f.app.key, Peer::default());
    assert!(app3.session(s).is_none());
    assert_eq!(app3.login_state(0), None);
    match super::handle(&f.d, &app3, R::GetTokenInfo { slot: 0 }) {
        Response::TokenInfo(t) => assert_eq!(t.session_count, 0),
        other => panic!("{other:?}"),
    }
}

/// Find by label among 100,000 token objects through the dispatcher
/// (informational timing for docs/performance.md; run with --ignored).
#[test]
#[ignore]
fn find_among_100k_token_objects() {
    use crate::token::object::{self, Actor, Origin};
    use crate::token::ObjectChange;
    let f = fixture();
    let s = f.ready();
    let token = f.d.instances[0].token.clone();
    let mut changes = Vec::new();
    for i in 0..100_000u32 {
        let t = vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bool(ck::CKA_PRIVATE, true),
            Attribute::new(ck::CKA_LABEL, format!("big-{i:06}").into_bytes()),
        ];
        changes.push(ObjectChange::Add(
            object::build(&t, None, None, Origin::Create, Actor::User).expect("build"),
        ));
    }
    token.apply(changes).expect("apply");
    let t0 = std::time::Instant::now();
    for i in 0..1000u32 {
        f.ok(R::FindObjectsInit {
            session: s,
            template: vec![Attribute::new(
                ck::CKA_LABEL,
                format!("big-{:06}", i * 97).into_bytes(),
            )],
        });
        match f.call(R::FindObjects { session: s, max: 4 }) {
            Response::Handles(h) => assert_eq!(h.len(), 1),
            other => panic!("{other:?}"),
        }
        f.ok(R::FindObjectsFinal { session: s });
    }
    eprintln!(
        "find by label among 100,000: {:?} per lookup",
        t0.elapsed() / 1000
    );
}

impl Fixture {
    fn find(&self, s: u64, template: Vec<Attribute>) -> Vec<u64> {
        self.ok(R::FindObjectsInit {
            session: s,
            template,
        });
        let r = match self.call(R::FindObjects {
            session: s,
            max: 1000,
        }) {
            Response::Handles(h) => h,
            other => panic!("{other:?}"),
        };
        self.ok(R::FindObjectsFinal { session: s });
        r
    }
    fn attr(&self, s: u64, o: u64, ty: u64) -> AttrResult {
        match self.call(R::GetAttributeValue {
            session: s,
            object: o,
            types: vec![ty],
        }) {
            Response::Attributes(mut a) => a.remove(0),
            other => panic!("{other:?}"),
        }
    }
}

/// Issue 10, finding 7: a 1-byte `CKA_ID` is a byte string, not a
/// boolean; and a find template never matches on a secret value.
#[test]
fn find_compares_values_by_attribute_kind() {
    let f = fixture();
    let s = f.ready();
    let mut keys = Vec::new();
    for id in [0x0a_u8, 0x0b] {
        keys.push(f.handle(R::CreateObject {
            session: s,
            template: vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_GENERIC_SECRET),
                Attribute::new(ck::CKA_VALUE, vec![id - 0x0a]),
                Attribute::new(ck::CKA_LABEL, b"dup".to_vec()),
                Attribute::new(ck::CKA_ID, vec![id]),
            ],
        }));
    }
    let found = f.find(
        s,
        vec![
            Attribute::new(ck::CKA_LABEL, b"dup".to_vec()),
            Attribute::new(ck::CKA_ID, vec![0x0b]),
        ],
    );
    assert_eq!(found, vec![keys[1]], "CKA_ID 0x0b matched {found:?}");
    // The 1-byte sensitive values (0x00 and 0x01) are never matched on.
    for v in [0u8, 1] {
        assert!(f
            .find(
                s,
                vec![
                    Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                    Attribute::new(ck::CKA_VALUE, vec![v]),
                ]
            )
            .is_empty());
    }
    // Booleans still compare as booleans.
    assert_eq!(
        f.find(
            s,
            vec![
                Attribute::new(ck::CKA_LABEL, b"dup".to_vec()),
                Attribute::bool(ck::CKA_SENSITIVE, true),
            ]
        ),
        keys
    );
}

/// Issue 10, finding 8: without a login a R/W session may use public
/// objects and make session objects, but never create, change or destroy
/// token objects.
#[test]
fn public_session_cannot_change_token_objects() {
    let f = fixture();
    let s = f.ready();
    let public_key = f.handle(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::new(ck::CKA_VALUE, vec![3; 16]),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bool(ck::CKA_PRIVATE, false),
        ],
    });
    f.ok(R::Logout { session: s });
    let data = |token: bool| R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
            Attribute::bool(ck::CKA_TOKEN, token),
            Attribute::new(ck::CKA_VALUE, vec![0; 1024]),
        ],
    };
    assert_eq!(f.err(data(true)), ck::CKR_USER_NOT_LOGGED_IN);
    assert_eq!(
        f.err(R::DestroyObject {
            session: s,
            object: public_key
        }),
        ck::CKR_USER_NOT_LOGGED_IN
    );
    assert_eq!(
        f.err(R::SetAttributeValue {
            session: s,
            object: public_key,
            template: vec![Attribute::new(ck::CKA_LABEL, b"x".to_vec())]
        }),
        ck::CKR_USER_NOT_LOGGED_IN
    );
    assert_eq!(
        f.err(R::GenerateKey {
            session: s,
            mech: Mechanism::new(ck::CKM_AES_KEY_GEN),
            template: vec![
                Attribute::ulong(ck::CKA_VALUE_LEN, 16),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::bool(ck::CKA_PRIVATE, false),
            ]
        }),
        ck::CKR_USER_NOT_LOGGED_IN
    );
    assert_eq!(
        f.err(R::CopyObject {
            session: s,
            object: public_key,
            template: vec![]
        }),
        ck::CKR_USER_NOT_LOGGED_IN
    );
    // Session objects and the public token key in use are fine.
    let obj = f.handle(data(false));
    assert!(obj >= crate::daemon::SESSION_OBJECT_BASE);
    let copy = f.handle(R::CopyObject {
        session: s,
        object: public_key,
        template: vec![Attribute::bool(ck::CKA_TOKEN, false)],
    });
    assert!(copy >= crate::daemon::SESSION_OBJECT_BASE);
    f.ok(R::EncryptInit {
        session: s,
        mech: Mechanism::new(ck::CKM_AES_ECB),
        key: public_key,
    });
    assert!(matches!(
        f.call(R::Encrypt {
            session: s,
            data: vec![0; 16],
            out: Some(16)
        }),
        Response::Output { data: Some(_), .. }
    ));
    f.ok(R::DestroyObject {
        session: s,
        object: obj,
    });
}

/// Issue 10, finding 12: a secret key without `CKA_VALUE` is an incomplete
/// template (PKCS#11 v3.0 §4.10, table of required attributes).
#[test]
fn create_secret_key_without_value_is_template_incomplete() {
    let f = fixture();
    let s = f.ready();
    assert_eq!(
        f.err(R::CreateObject {
            session: s,
            template: vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            ],
        }),
        ck::CKR_TEMPLATE_INCOMPLETE
    );
}

/// Key protection defaults (docs/security.md): secret and private keys are
/// sensitive and not extractable unless the template says otherwise; token
/// keys are private; session objects without `CKA_PRIVATE` are public
/// (issue 11, point 6).
#[test]
fn secure_defaults_for_new_keys() {
    let f = fixture();
    let s = f.ready();
    let token_key = f.aes_key(s, vec![]);
    let session_key = f.aes_key(s, vec![Attribute::bool(ck::CKA_TOKEN, false)]);
    for (k, private) in [(token_key, 1u8), (session_key, 0)] {
        assert_eq!(f.attr(s, k, ck::CKA_SENSITIVE), AttrResult::Value(vec![1]));
        assert_eq!(
            f.attr(s, k, ck::CKA_EXTRACTABLE),
            AttrResult::Value(vec![0])
        );
        assert_eq!(
            f.attr(s, k, ck::CKA_ALWAYS_SENSITIVE),
            AttrResult::Value(vec![1])
        );
        assert_eq!(
            f.attr(s, k, ck::CKA_NEVER_EXTRACTABLE),
            AttrResult::Value(vec![1])
        );
        assert_eq!(
            f.attr(s, k, ck::CKA_PRIVATE),
            AttrResult::Value(vec![private])
        );
        assert_eq!(f.attr(s, k, ck::CKA_VALUE), AttrResult::Sensitive);
    }
    // An EC private key imported as a session object from a public session
    // (what the OpenSSL 3 provider does) is public unless it says otherwise.
    f.ok(R::Logout { session: s });
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let ec = f.handle(R::CreateObject {
        session: s,
        template: vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_PRIVATE_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_EC),
            Attribute::new(ck::CKA_EC_PARAMS, p256.clone()),
            Attribute::new(
                ck::CKA_VALUE,
                crate::mech::rsa::kat::hex(crate::mech::ec::kat::P256_SCALAR),
            ),
        ],
    });
    assert_eq!(f.attr(s, ec, ck::CKA_PRIVATE), AttrResult::Value(vec![0]));
    assert_eq!(f.attr(s, ec, ck::CKA_SENSITIVE), AttrResult::Value(vec![1]));
    assert_eq!(f.attr(s, ec, ck::CKA_VALUE), AttrResult::Sensitive);
    // As a token object it would be private, and needs the user.
    assert_eq!(
        f.err(R::CreateObject {
            session: s,
            template: vec![
                Attribute::ulong(ck::CKA_CLASS, ck::CKO_PRIVATE_KEY),
                Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_EC),
                Attribute::bool(ck::CKA_TOKEN, true),
                Attribute::new(ck::CKA_EC_PARAMS, p256),
                Attribute::new(
                    ck::CKA_VALUE,
                    crate::mech::rsa::kat::hex(crate::mech::ec::kat::P256_SCALAR),
                ),
            ],
        }),
        ck::CKR_USER_NOT_LOGGED_IN
    );
}

/// Issue 11, point 1: a key with `CKA_ALWAYS_AUTHENTICATE` TRUE signs (and
/// decrypts) only after `C_Login(CKU_CONTEXT_SPECIFIC)` following the
/// operation's init; one context login serves one operation.
#[test]
fn always_authenticate_needs_a_context_login_per_operation() {
    let f = fixture();
    let s = f.ready();
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let pair = f.call(R::GenerateKeyPair {
        session: s,
        mech: Mechanism::new(ck::CKM_EC_KEY_PAIR_GEN),
        public_template: vec![Attribute::new(ck::CKA_EC_PARAMS, p256)],
        private_template: vec![Attribute::bool(ck::CKA_ALWAYS_AUTHENTICATE, true)],
    });
    let Response::KeyPair { private, .. } = pair else {
        panic!("C_GenerateKeyPair with CKA_ALWAYS_AUTHENTICATE: {pair:?}")
    };
    assert_eq!(
        f.attr(s, private, ck::CKA_ALWAYS_AUTHENTICATE),
        AttrResult::Value(vec![1])
    );
    let sign_init = || R::SignInit {
        session: s,
        mech: Mechanism::new(ck::CKM_ECDSA_SHA256),
        key: private,
    };
    let sign = || R::Sign {
        session: s,
        data: b"qualified".to_vec(),
        out: Some(200),
    };
    let context_login = |pin: &[u8]| R::Login {
        session: s,
        user_type: ck::CKU_CONTEXT_SPECIFIC,
        pin: pin.to_vec().into(),
    };
    // No operation waiting for a context login.
    assert_eq!(
        f.err(context_login(b"1234")),
        ck::CKR_OPERATION_NOT_INITIALIZED
    );
    // Without the context login the operation fails and ends.
    f.ok(sign_init());
    assert_eq!(f.err(sign()), ck::CKR_USER_NOT_LOGGED_IN);
    assert_eq!(f.err(sign()), ck::CKR_OPERATION_NOT_INITIALIZED);
    // A wrong PIN is counted and does not authorize.
    f.ok(sign_init());
    assert_eq!(f.err(context_login(b"0000")), ck::CKR_PIN_INCORRECT);
    assert_eq!(f.err(sign()), ck::CKR_USER_NOT_LOGGED_IN);
    // With it: one signature (a length query first keeps it).
    f.ok(sign_init());
    f.ok(context_login(b"1234"));
    assert!(matches!(
        f.call(R::Sign {
            session: s,
            data: b"qualified".to_vec(),
            out: None
        }),
        Response::Output { data: None, .. }
    ));
    assert!(matches!(
        f.call(sign()),
        Response::Output { data: Some(_), .. }
    ));
    // The next operation needs its own.
    f.ok(sign_init());
    assert_eq!(f.err(sign()), ck::CKR_USER_NOT_LOGGED_IN);
    // The user's login state is not changed by context logins.
    match f.call(R::GetSessionInfo { session: s }) {
        Response::SessionInfo(i) => assert_eq!(i.state, ck::CKS_RW_USER_FUNCTIONS),
        other => panic!("{other:?}"),
    }
}
