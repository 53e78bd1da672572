//! Who may administer, the admin PIN back-off, and the per-application and
//! per-instance bounds, driven through the dispatcher (no socket).

use std::sync::Arc;

use p11kms_protocol::{vendor, AdminCommand, AdminReply, Attribute, Request as R, Response};
use pkcs11_sys as ck;

use super::{App, AppKey, Peer};
use crate::config::{Config, Limits};
use crate::daemon::Daemon;

const SO: &[u8] = b"12345678";
const USER: &[u8] = b"1234";

struct F {
    _dir: tempfile::TempDir,
    d: Daemon,
    root: Arc<App>,
}

fn fixture(tune: impl FnOnce(&mut Config)) -> F {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Config::zero(dir.path().to_path_buf(), dir.path().join("sock"));
    tune(&mut c);
    let d = Daemon::open(c).expect("daemon");
    let root = d.attach(
        AppKey {
            app_id: [1; 16],
            uid: 0,
            pid: 0,
        },
        Peer::default(),
    );
    let f = F { _dir: dir, d, root };
    f.ok(
        &f.root,
        R::InitToken {
            slot: 0,
            so_pin: SO.to_vec().into(),
            label: b"t".to_vec(),
        },
    );
    let s = f.open(&f.root);
    f.ok(
        &f.root,
        R::Login {
            session: s,
            user_type: ck::CKU_SO,
            pin: SO.to_vec().into(),
        },
    );
    f.ok(
        &f.root,
        R::InitPin {
            session: s,
            pin: USER.to_vec().into(),
        },
    );
    f.ok(&f.root, R::CloseSession { session: s });
    f
}

impl F {
    /// An application of a uid that is neither root nor the daemon's.
    fn foreign(&self) -> Arc<App> {
        assert_ne!(
            super::rules::daemon_uid(),
            65534,
            "tests run as another uid"
        );
        self.d.attach(
            AppKey {
                app_id: [2; 16],
                uid: 65534,
                pid: 0,
            },
            Peer {
                uid: 65534,
                gid: 65534,
                pid: 0,
            },
        )
    }
    fn call(&self, app: &Arc<App>, r: R) -> Response {
        crate::dispatch::handle(&self.d, app, r)
    }
    fn ok(&self, app: &Arc<App>, r: R) {
        assert_eq!(self.call(app, r), Response::Ok);
    }
    fn err(&self, app: &Arc<App>, r: R) -> u64 {
        match self.call(app, r) {
            Response::Error(rv) => rv,
            other => panic!("expected an error, got {other:?}"),
        }
    }
    fn open(&self, app: &Arc<App>) -> u64 {
        match self.call(
            app,
            R::OpenSession {
                slot: 0,
                flags: ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
            },
        ) {
            Response::Handle(h) => h,
            other => panic!("C_OpenSession: {other:?}"),
        }
    }
    fn admin(&self, app: &Arc<App>, pin: &[u8]) -> Result<(), u64> {
        match self.call(
            app,
            R::Admin {
                instance: "default".into(),
                so_pin: pin.to_vec().into(),
                cmd: AdminCommand::KeyList,
            },
        ) {
            Response::Admin(AdminReply::Failed { rv, .. }) => Err(rv),
            Response::Admin(_) => Ok(()),
            other => panic!("admin: {other:?}"),
        }
    }
    fn token_flags(&self) -> u64 {
        match self.call(&self.root, R::GetTokenInfo { slot: 0 }) {
            Response::TokenInfo(t) => t.flags,
            other => panic!("{other:?}"),
        }
    }
    fn data_object(&self, app: &Arc<App>, s: u64, token: bool, len: usize) -> Response {
        self.call(
            app,
            R::CreateObject {
                session: s,
                template: vec![
                    Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA),
                    Attribute::bool(ck::CKA_TOKEN, token),
                    Attribute::bool(ck::CKA_PRIVATE, false),
                    Attribute::new(ck::CKA_VALUE, vec![7; len]),
                ],
            },
        )
    }
}

const LOCK_FLAGS: u64 = ck::CKF_SO_PIN_LOCKED | ck::CKF_SO_PIN_FINAL_TRY | ck::CKF_SO_PIN_COUNT_LOW;

#[test]
fn a_foreign_uid_cannot_administer_or_touch_the_so_pin() {
    let f = fixture(|c| c.instances[0].max_pin_failures = 3);
    let app = f.foreign();
    assert!(!app.admin);
    let denied = vendor::CKR_P11KMS_ACCESS_DENIED;
    for _ in 0..5 {
        assert_eq!(f.admin(&app, b"00000000"), Err(denied));
    }
    assert_eq!(f.err(&app, R::Status), denied);
    assert_eq!(
        f.err(
            &app,
            R::InitToken {
                slot: 0,
                so_pin: b"99999999".to_vec().into(),
                label: b"mine".to_vec(),
            }
        ),
        denied
    );
    let s = f.open(&app);
    for pin in [&b"00000000"[..], SO] {
        assert_eq!(
            f.err(
                &app,
                R::Login {
                    session: s,
                    user_type: ck::CKU_SO,
                    pin: pin.to_vec().into(),
                }
            ),
            denied,
            "SO login is refused before the PIN is looked at"
        );
    }
    assert_eq!(f.token_flags() & LOCK_FLAGS, 0, "no SO PIN failure counted");
    // Everything else works for the foreign uid.
    f.ok(
        &app,
        R::Login {
            session: s,
            user_type: ck::CKU_USER,
            pin: USER.to_vec().into(),
        },
    );
    assert!(matches!(
        f.call(&app, R::GenerateRandom { session: s, len: 16 }),
        Response::Bytes(b) if b.len() == 16
    ));
    // The administrators still get in with the right PIN.
    assert_eq!(f.admin(&f.root, SO), Ok(()));
    assert!(matches!(f.call(&f.root, R::Status), Response::Status(_)));
}

#[test]
fn wrong_admin_pins_back_off_and_never_lock() {
    let f = fixture(|c| {
        c.instances[0].max_pin_failures = 2;
        c.limits.admin_backoff_ms = 5;
        c.limits.admin_backoff_max_ms = 20;
    });
    for _ in 0..4 {
        assert_eq!(f.admin(&f.root, b"00000000"), Err(ck::CKR_PIN_INCORRECT));
    }
    assert_eq!(f.d.admin_backoff.failures(0), 4);
    assert_eq!(f.token_flags() & LOCK_FLAGS, 0, "the token counted nothing");
    assert_eq!(
        f.admin(&f.root, SO),
        Ok(()),
        "right PIN after more failures than the lockout"
    );
    assert_eq!(f.d.admin_backoff.failures(0), 0);
}

#[test]
fn admin_path_honours_a_pin_locked_through_pkcs11() {
    let f = fixture(|c| c.instances[0].max_pin_failures = 2);
    let s = f.open(&f.root);
    for _ in 0..2 {
        f.err(
            &f.root,
            R::Login {
                session: s,
                user_type: ck::CKU_SO,
                pin: b"00000000".to_vec().into(),
            },
        );
    }
    assert_ne!(f.token_flags() & ck::CKF_SO_PIN_LOCKED, 0);
    assert_eq!(f.admin(&f.root, SO), Err(ck::CKR_PIN_LOCKED));
}

#[test]
fn sessions_and_session_objects_are_bounded_per_application() {
    let f = fixture(|c| {
        c.limits = Limits {
            max_sessions_per_app: 2,
            max_session_objects_per_app: 2,
            max_session_object_bytes_per_app: 1000,
            ..Limits::default()
        }
    });
    let app = f.foreign();
    let s1 = f.open(&app);
    let _s2 = f.open(&app);
    assert_eq!(
        f.err(
            &app,
            R::OpenSession {
                slot: 0,
                flags: ck::CKF_SERIAL_SESSION,
            }
        ),
        ck::CKR_SESSION_COUNT
    );
    let big = f.data_object(&app, s1, false, 2000);
    assert_eq!(
        big,
        Response::Error(ck::CKR_DEVICE_MEMORY),
        "bytes per application"
    );
    let Response::Handle(a) = f.data_object(&app, s1, false, 10) else {
        panic!("first object")
    };
    assert!(matches!(
        f.data_object(&app, s1, false, 10),
        Response::Handle(_)
    ));
    assert_eq!(
        f.data_object(&app, s1, false, 10),
        Response::Error(ck::CKR_DEVICE_MEMORY),
        "objects per application"
    );
    assert_eq!(f.d.instances[0].token.session_object_usage().0, 2);
    f.ok(
        &app,
        R::DestroyObject {
            session: s1,
            object: a,
        },
    );
    let Response::Handle(b) = f.data_object(&app, s1, false, 10) else {
        panic!("room again after C_DestroyObject")
    };
    // A growing attribute counts too.
    assert_eq!(
        f.err(
            &app,
            R::SetAttributeValue {
                session: s1,
                object: b,
                template: vec![Attribute::new(ck::CKA_LABEL, vec![b'x'; 2000])],
            }
        ),
        ck::CKR_DEVICE_MEMORY
    );
    // Another application has its own allowance.
    let s = f.open(&f.root);
    assert!(matches!(
        f.data_object(&f.root, s, false, 10),
        Response::Handle(_)
    ));
    // Closing sessions gives the instance-wide count back.
    f.ok(&app, R::CloseAllSessions { slot: 0 });
    f.ok(&f.root, R::CloseAllSessions { slot: 0 });
    assert_eq!(f.d.instances[0].token.session_object_usage(), (0, 0));
}

#[test]
fn instance_bounds_cover_every_application_and_token_objects() {
    let f = fixture(|c| {
        c.limits = Limits {
            max_session_objects_per_instance: 3,
            max_token_objects: 2,
            ..Limits::default()
        }
    });
    let app = f.foreign();
    let s = f.open(&app);
    let r = f.open(&f.root);
    for _ in 0..2 {
        assert!(matches!(
            f.data_object(&app, s, false, 10),
            Response::Handle(_)
        ));
    }
    assert!(matches!(
        f.data_object(&f.root, r, false, 10),
        Response::Handle(_)
    ));
    assert_eq!(
        f.data_object(&f.root, r, false, 10),
        Response::Error(ck::CKR_DEVICE_MEMORY),
        "session objects per instance, across applications"
    );
    f.ok(
        &f.root,
        R::Login {
            session: r,
            user_type: ck::CKU_USER,
            pin: USER.to_vec().into(),
        },
    );
    assert!(matches!(
        f.data_object(&f.root, r, true, 10),
        Response::Handle(_)
    ));
    assert!(matches!(
        f.data_object(&f.root, r, true, 10),
        Response::Handle(_)
    ));
    assert_eq!(
        f.data_object(&f.root, r, true, 10),
        Response::Error(ck::CKR_DEVICE_MEMORY),
        "token objects per instance"
    );
}
