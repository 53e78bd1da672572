//! Sessions, login state and token management per the spec's state machine;
//! PIN lockout reflected in the token flags; indexed find.

use std::ptr::null_mut;
use std::time::Instant;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

fn open(raw: &Raw, slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE, CK_RV> {
    let mut h: CK_SESSION_HANDLE = 0;
    let rv = p11!(raw, C_OpenSession, slot, flags, null_mut(), None, &mut h);
    if rv == CKR_OK {
        Ok(h)
    } else {
        Err(rv)
    }
}

fn login(raw: &Raw, s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &str) -> CK_RV {
    p11!(
        raw,
        C_Login,
        s,
        user,
        pin.as_ptr() as *mut u8,
        pin.len() as CK_ULONG
    )
}

fn state(raw: &Raw, s: CK_SESSION_HANDLE) -> CK_STATE {
    let mut info = CK_SESSION_INFO::default();
    assert_rv(
        p11!(raw, C_GetSessionInfo, s, &mut info),
        CKR_OK,
        "C_GetSessionInfo",
    );
    info.state
}

fn init_token_rv(raw: &Raw, slot: CK_SLOT_ID, so_pin: &str, label: &str) -> CK_RV {
    let mut l = [b' '; 32];
    l[..label.len()].copy_from_slice(label.as_bytes());
    p11!(
        raw,
        C_InitToken,
        slot,
        so_pin.as_ptr() as *mut u8,
        so_pin.len() as CK_ULONG,
        l.as_mut_ptr()
    )
}

#[test]
fn session_state_machine_and_token_management() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();

    // Serial flag is mandatory.
    assert_eq!(
        open(&raw, slot, CKF_RW_SESSION),
        Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
        "C_OpenSession without CKF_SERIAL_SESSION"
    );
    // Login before the PIN exists.
    raw.init_token(slot);

    let ro = open(&raw, slot, CKF_SERIAL_SESSION).expect("R/O session");
    let rw = open(&raw, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION).expect("R/W session");
    assert_eq!(state(&raw, ro), CKS_RO_PUBLIC_SESSION);
    assert_eq!(state(&raw, rw), CKS_RW_PUBLIC_SESSION);
    let info = raw.token_info(slot);
    assert_eq!(
        (info.ulSessionCount, info.ulRwSessionCount),
        (2, 1),
        "session counts in C_GetTokenInfo"
    );

    // SO login with a R/O session open.
    assert_rv(
        login(&raw, rw, CKU_SO, SO_PIN),
        CKR_SESSION_READ_ONLY_EXISTS,
        "SO C_Login while a R/O session exists",
    );
    // C_InitToken with sessions open.
    assert_rv(
        init_token_rv(&raw, slot, SO_PIN, LABEL),
        CKR_SESSION_EXISTS,
        "C_InitToken with open sessions",
    );

    // User login: every session of the application changes state.
    assert_rv(login(&raw, ro, CKU_USER, USER_PIN), CKR_OK, "user C_Login");
    assert_eq!(state(&raw, ro), CKS_RO_USER_FUNCTIONS);
    assert_eq!(
        state(&raw, rw),
        CKS_RW_USER_FUNCTIONS,
        "login state is shared by the application's sessions"
    );
    assert_rv(
        login(&raw, rw, CKU_USER, USER_PIN),
        CKR_USER_ALREADY_LOGGED_IN,
        "second user C_Login",
    );
    assert_rv(
        login(&raw, rw, CKU_SO, SO_PIN),
        CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
        "SO C_Login while the user is logged in",
    );
    // Token object from a R/O session.
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bytes(CKA_LABEL, b"ro-token-object");
    assert_eq!(
        raw.create(ro, &mut t),
        Err(CKR_SESSION_READ_ONLY),
        "token object created in a R/O session"
    );
    // Session object from a R/O session is fine.
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, false)
        .bytes(CKA_LABEL, b"ro-session-object");
    raw.create(ro, &mut t)
        .unwrap_or_else(|rv| panic!("session object in a R/O session: {}", rv_name(rv)));
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bytes(CKA_LABEL, b"will-be-wiped")
        .bytes(CKA_VALUE, b"x");
    raw.create(rw, &mut t)
        .unwrap_or_else(|rv| panic!("token object: {}", rv_name(rv)));
    assert_rv(p11!(raw, C_Logout, ro), CKR_OK, "C_Logout");
    assert_eq!(
        state(&raw, rw),
        CKS_RW_PUBLIC_SESSION,
        "logout is shared too"
    );
    assert_rv(
        p11!(raw, C_Logout, ro),
        CKR_USER_NOT_LOGGED_IN,
        "second C_Logout",
    );

    // Closing sessions; handles go invalid.
    assert_rv(p11!(raw, C_CloseSession, ro), CKR_OK, "C_CloseSession");
    assert_rv(
        p11!(raw, C_CloseSession, ro),
        CKR_SESSION_HANDLE_INVALID,
        "C_CloseSession twice",
    );
    assert_rv(
        login(&raw, rw, CKU_SO, SO_PIN),
        CKR_OK,
        "SO C_Login once no R/O session exists",
    );
    assert_eq!(state(&raw, rw), CKS_RW_SO_FUNCTIONS);
    assert_eq!(
        open(&raw, slot, CKF_SERIAL_SESSION),
        Err(CKR_SESSION_READ_WRITE_SO_EXISTS),
        "R/O session while SO is logged in"
    );
    // SO changes its own PIN and back (C_SetPIN in SO state).
    let (old, new) = (SO_PIN, "so-secret-2");
    assert_rv(
        p11!(
            raw,
            C_SetPIN,
            rw,
            old.as_ptr() as *mut u8,
            old.len() as CK_ULONG,
            new.as_ptr() as *mut u8,
            new.len() as CK_ULONG
        ),
        CKR_OK,
        "C_SetPIN(SO)",
    );
    assert_rv(
        p11!(
            raw,
            C_SetPIN,
            rw,
            new.as_ptr() as *mut u8,
            new.len() as CK_ULONG,
            old.as_ptr() as *mut u8,
            old.len() as CK_ULONG
        ),
        CKR_OK,
        "C_SetPIN(SO) back",
    );
    assert_rv(
        p11!(raw, C_CloseAllSessions, slot),
        CKR_OK,
        "C_CloseAllSessions",
    );
    assert_rv(
        p11!(raw, C_GetSessionInfo, rw, &mut CK_SESSION_INFO::default()),
        CKR_SESSION_HANDLE_INVALID,
        "session after C_CloseAllSessions",
    );
    assert_eq!(
        raw.token_info(slot).ulSessionCount,
        0,
        "ulSessionCount after C_CloseAllSessions"
    );

    // Wrong SO PIN for C_InitToken; re-initialization wipes the token's objects.
    assert_rv(
        init_token_rv(&raw, slot, "not-the-so-pin", LABEL),
        CKR_PIN_INCORRECT,
        "C_InitToken with a wrong SO PIN",
    );
    assert_rv(
        init_token_rv(&raw, slot, SO_PIN, "relabelled"),
        CKR_OK,
        "C_InitToken again",
    );
    let info = raw.token_info(slot);
    assert_eq!(&info.label[..10], b"relabelled", "new label");
    assert_eq!(
        info.flags & CKF_USER_PIN_INITIALIZED,
        0,
        "user PIN is gone after re-initialization"
    );
    let s = open(&raw, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION).expect("session");
    assert_rv(
        login(&raw, s, CKU_USER, USER_PIN),
        CKR_USER_PIN_NOT_INITIALIZED,
        "user C_Login after re-init",
    );
    assert_rv(login(&raw, s, CKU_SO, SO_PIN), CKR_OK, "SO C_Login");
    let mut t = Template::new().bytes(CKA_LABEL, b"will-be-wiped");
    assert!(
        raw.find(s, &mut t).is_empty(),
        "objects survived C_InitToken"
    );
    assert_rv(
        p11!(
            raw,
            C_InitPIN,
            s,
            USER_PIN.as_ptr() as *mut u8,
            USER_PIN.len() as CK_ULONG
        ),
        CKR_OK,
        "C_InitPIN",
    );
    assert_rv(p11!(raw, C_Logout, s), CKR_OK, "C_Logout");
    assert_rv(p11!(raw, C_CloseSession, s), CKR_OK, "C_CloseSession");
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

#[test]
fn pin_lockout_shows_in_token_flags() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    raw.init_token(slot);
    let s = raw.open_rw(slot);

    // One wrong PIN: COUNT_LOW.
    assert_rv(
        login(&raw, s, CKU_USER, "wrong-1"),
        CKR_PIN_INCORRECT,
        "wrong PIN",
    );
    assert!(
        raw.token_info(slot).flags & CKF_USER_PIN_COUNT_LOW != 0,
        "CKF_USER_PIN_COUNT_LOW after a wrong PIN"
    );
    // The right PIN resets the counter.
    assert_rv(login(&raw, s, CKU_USER, USER_PIN), CKR_OK, "right PIN");
    assert_rv(p11!(raw, C_Logout, s), CKR_OK, "C_Logout");
    let f = raw.token_info(slot).flags;
    assert_eq!(
        f & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED),
        0,
        "flags after a good login: {f:#x}"
    );

    // Wrong until locked (default: 10 tries). FINAL_TRY must show before LOCKED.
    let mut saw_final = false;
    let mut locked_after = None;
    for i in 1..=20 {
        let rv = login(&raw, s, CKU_USER, "wrong-again");
        let f = raw.token_info(slot).flags;
        if f & CKF_USER_PIN_FINAL_TRY != 0 {
            saw_final = true;
        }
        if rv == CKR_PIN_LOCKED || f & CKF_USER_PIN_LOCKED != 0 {
            locked_after = Some(i);
            break;
        }
        assert_rv(rv, CKR_PIN_INCORRECT, &format!("wrong PIN #{i}"));
    }
    let n = locked_after.expect("the user PIN never locked after 20 wrong tries");
    eprintln!("user PIN locked after {n} wrong tries");
    assert!(
        saw_final,
        "CKF_USER_PIN_FINAL_TRY never shown before the lock"
    );
    assert_rv(
        login(&raw, s, CKU_USER, USER_PIN),
        CKR_PIN_LOCKED,
        "right PIN on a locked token",
    );
    // The SO unlocks by setting a new user PIN.
    assert_rv(login(&raw, s, CKU_SO, SO_PIN), CKR_OK, "SO C_Login");
    let newpin = "user-secret-2";
    assert_rv(
        p11!(
            raw,
            C_InitPIN,
            s,
            newpin.as_ptr() as *mut u8,
            newpin.len() as CK_ULONG
        ),
        CKR_OK,
        "C_InitPIN unlocks",
    );
    assert_rv(p11!(raw, C_Logout, s), CKR_OK, "C_Logout");
    assert_eq!(
        raw.token_info(slot).flags & CKF_USER_PIN_LOCKED,
        0,
        "LOCKED cleared by C_InitPIN"
    );
    assert_rv(login(&raw, s, CKU_USER, newpin), CKR_OK, "new user PIN");
    // User changes own PIN: wrong old PIN refused.
    let bad = "nope-nope";
    assert_rv(
        p11!(
            raw,
            C_SetPIN,
            s,
            bad.as_ptr() as *mut u8,
            bad.len() as CK_ULONG,
            bad.as_ptr() as *mut u8,
            bad.len() as CK_ULONG
        ),
        CKR_PIN_INCORRECT,
        "C_SetPIN with a wrong old PIN",
    );
    // Too short a new PIN.
    let short = "1";
    assert_rv(
        p11!(
            raw,
            C_SetPIN,
            s,
            newpin.as_ptr() as *mut u8,
            newpin.len() as CK_ULONG,
            short.as_ptr() as *mut u8,
            1
        ),
        CKR_PIN_LEN_RANGE,
        "C_SetPIN to a 1-character PIN",
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

#[test]
fn find_among_ten_thousand_session_objects_finds_exactly_one() {
    find_among_ten_thousand(false);
}

#[test]
fn find_among_ten_thousand_token_objects_finds_exactly_one() {
    find_among_ten_thousand(true);
}

fn find_among_ten_thousand(token: bool) {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    raw.init_token(slot);
    let s = raw.open_rw(slot);
    raw.login_user(s);
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        let label = format!("obj-{i:05}");
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_DATA)
            .bool(CKA_TOKEN, token)
            .bytes(CKA_LABEL, label.as_bytes())
            .bytes(CKA_VALUE, &i.to_le_bytes());
        raw.create(s, &mut t)
            .unwrap_or_else(|rv| panic!("C_CreateObject #{i}: {}", rv_name(rv)));
    }
    let kind = if token { "token" } else { "session" };
    eprintln!("10,000 {kind} objects created in {:.2?}", t0.elapsed());
    let t0 = Instant::now();
    let lookups = 500u32;
    for i in 0..lookups {
        let n = (i * 7919) % 10_000;
        let mut t = Template::new().bytes(CKA_LABEL, format!("obj-{n:05}").as_bytes());
        let found = raw.find(s, &mut t);
        assert_eq!(found.len(), 1, "find obj-{n:05}");
    }
    let per = t0.elapsed() / lookups;
    // Informational only: speed claims live in p11kms-bench (find1k,
    // find100k), never in timed assertions here.
    eprintln!("find by label among 10,000 {kind} objects: {per:.2?} per C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal");
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}
