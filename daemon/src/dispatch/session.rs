//! Session management and login (PKCS#11 v3.0 §5.6).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use p11kms_protocol::{Response, SessionInfo};
use pkcs11_sys as ck;

use super::{lock, with_session};
use crate::access::App;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::session::{ContextLogin, Session};
use crate::token::object::Object;
use crate::token::User;

pub fn open(d: &Daemon, app: &Arc<App>, slot: u64, flags: u64) -> Result<Response> {
    let inst = d.instance(slot)?;
    if !inst.serving {
        return Err(Error::new(
            p11kms_protocol::vendor::CKR_P11KMS_INSTANCE_UNAVAILABLE,
            format!("instance {} failed a start-up self-test", inst.name),
        ));
    }
    if flags & ck::CKF_SERIAL_SESSION == 0 {
        return Err(Error::rv(ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED));
    }
    let rw = flags & ck::CKF_RW_SESSION != 0;
    if !rw && app.login_state(slot) == Some(User::So) {
        return Err(Error::rv(ck::CKR_SESSION_READ_WRITE_SO_EXISTS));
    }
    let handle = d.new_session_handle();
    app.add_session(Session::new(handle, slot, inst.token.clone(), rw))?;
    inst.token.sessions.fetch_add(1, Ordering::SeqCst);
    if rw {
        inst.token.rw_sessions.fetch_add(1, Ordering::SeqCst);
    }
    Ok(Response::Handle(handle))
}

/// Close one session: its session objects go, and the last session of the
/// application on that token logs the application out.
pub fn close_session(_d: &Daemon, app: &App, handle: u64) -> bool {
    let Some(s) = app.remove_session(handle) else {
        return false;
    };
    let (slot, rw, token) = {
        let mut g = lock(&s);
        g.cancel_all();
        (g.slot, g.rw, g.token.clone())
    };
    token.sessions.fetch_sub(1, Ordering::SeqCst);
    if rw {
        token.rw_sessions.fetch_sub(1, Ordering::SeqCst);
    }
    app.drop_objects_of(handle);
    if app.sessions_on(Some(slot)).is_empty() {
        app.set_login(slot, None);
    }
    true
}

pub fn close(d: &Daemon, app: &App, handle: u64) -> Result<Response> {
    if close_session(d, app, handle) {
        Ok(Response::Ok)
    } else {
        Err(Error::rv(ck::CKR_SESSION_HANDLE_INVALID))
    }
}

pub fn close_all(d: &Daemon, app: &App, slot: u64) -> Result<Response> {
    d.instance(slot)?;
    for (h, _) in app.sessions_on(Some(slot)) {
        close_session(d, app, h);
    }
    Ok(Response::Ok)
}

fn state(login: Option<User>, rw: bool) -> u64 {
    match (login, rw) {
        (None, false) => ck::CKS_RO_PUBLIC_SESSION,
        (None, true) => ck::CKS_RW_PUBLIC_SESSION,
        (Some(User::User), false) => ck::CKS_RO_USER_FUNCTIONS,
        (Some(User::User), true) => ck::CKS_RW_USER_FUNCTIONS,
        (Some(User::So), _) => ck::CKS_RW_SO_FUNCTIONS,
    }
}

pub fn info(app: &App, handle: u64) -> Result<Response> {
    with_session(app, handle, |s| {
        let mut flags = ck::CKF_SERIAL_SESSION;
        if s.rw {
            flags |= ck::CKF_RW_SESSION;
        }
        Ok(Response::SessionInfo(SessionInfo {
            slot: s.slot,
            state: state(app.login_state(s.slot), s.rw),
            flags,
            device_error: 0,
        }))
    })
}

/// `C_Login` with the spec's state rules (§5.6, `C_Login`).
pub fn login(app: &App, handle: u64, user_type: u64, pin: &[u8]) -> Result<Response> {
    let (slot, token) = with_session(app, handle, |s| Ok((s.slot, s.token.clone())))?;
    let who = match user_type {
        ck::CKU_SO => User::So,
        ck::CKU_USER => User::User,
        ck::CKU_CONTEXT_SPECIFIC => return context_login(app, handle, pin),
        _ => return Err(Error::rv(ck::CKR_USER_TYPE_INVALID)),
    };
    // Only peers that may administer may even try the SO PIN: a wrong one
    // counts toward the SO lockout, which no other uid may trigger.
    if who == User::So && !app.admin {
        return Err(Error::new(
            p11kms_protocol::vendor::CKR_P11KMS_ACCESS_DENIED,
            format!(
                "uid {} may not log in as SO (admin_uids/admin_gids)",
                app.peer.uid
            ),
        ));
    }
    match app.login_state(slot) {
        Some(cur) if cur == who => return Err(Error::rv(ck::CKR_USER_ALREADY_LOGGED_IN)),
        Some(_) => return Err(Error::rv(ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN)),
        None => {}
    }
    if who == User::So && app.sessions_on(Some(slot)).iter().any(|(_, rw)| !rw) {
        return Err(Error::rv(ck::CKR_SESSION_READ_ONLY_EXISTS));
    }
    if !token.initialized() {
        return Err(Error::new(
            ck::CKR_USER_PIN_NOT_INITIALIZED,
            "token is not initialized",
        ));
    }
    token.verify_pin(who, pin)?;
    app.set_login(slot, Some(who));
    Ok(Response::Ok)
}

/// `C_Login(CKU_CONTEXT_SPECIFIC)`: the user's PIN (counted like any
/// login) for the running signature or decryption whose key has
/// `CKA_ALWAYS_AUTHENTICATE`; the session's login state does not change.
fn context_login(app: &App, handle: u64, pin: &[u8]) -> Result<Response> {
    with_session(app, handle, |s| {
        let sign = s.sign.is_some() && s.sign_login == ContextLogin::Needed;
        let decrypt = s.decrypt.is_some() && s.decrypt_login == ContextLogin::Needed;
        if !sign && !decrypt {
            return Err(Error::new(
                ck::CKR_OPERATION_NOT_INITIALIZED,
                "no operation is waiting for a context-specific login",
            ));
        }
        s.token.verify_pin(User::User, pin)?;
        if sign {
            s.sign_login = ContextLogin::Given;
        }
        if decrypt {
            s.decrypt_login = ContextLogin::Given;
        }
        Ok(Response::Ok)
    })
}

/// What an operation started with `o` needs before its first call.
pub(super) fn context_login_for(o: &Object) -> ContextLogin {
    if o.attrs().bool(ck::CKA_ALWAYS_AUTHENTICATE) {
        ContextLogin::Needed
    } else {
        ContextLogin::NotNeeded
    }
}

/// Before each call of a running signature or decryption: a key with
/// `CKA_ALWAYS_AUTHENTICATE` needs its context login, else the call fails
/// with `CKR_USER_NOT_LOGGED_IN` and the operation ends.
pub(super) fn require_context_login<T>(op: &mut Option<T>, login: ContextLogin) -> Result<()> {
    if op.is_some() && login == ContextLogin::Needed {
        *op = None;
        return Err(Error::new(
            ck::CKR_USER_NOT_LOGGED_IN,
            "the key needs C_Login(CKU_CONTEXT_SPECIFIC) for this operation",
        ));
    }
    Ok(())
}

pub fn logout(app: &App, handle: u64) -> Result<Response> {
    let slot = with_session(app, handle, |s| Ok(s.slot))?;
    if app.login_state(slot).is_none() {
        return Err(Error::rv(ck::CKR_USER_NOT_LOGGED_IN));
    }
    app.set_login(slot, None);
    // Operations started with private keys must not outlive the login.
    for (h, _) in app.sessions_on(Some(slot)) {
        if let Some(s) = app.session(h) {
            lock(&s).cancel_all();
        }
    }
    Ok(Response::Ok)
}

/// `C_SessionCancel` (3.0): end the operations named by `flags`.
pub fn cancel(app: &App, handle: u64, flags: u64) -> Result<Response> {
    with_session(app, handle, |s| {
        if flags & ck::CKF_ENCRYPT != 0 {
            s.encrypt = None;
        }
        if flags & ck::CKF_DECRYPT != 0 {
            s.decrypt = None;
        }
        if flags & ck::CKF_DIGEST != 0 {
            s.digest = None;
        }
        if flags & ck::CKF_SIGN != 0 {
            s.sign = None;
        }
        if flags & ck::CKF_VERIFY != 0 {
            s.verify = None;
        }
        if flags & ck::CKF_FIND_OBJECTS != 0 {
            s.find = None;
        }
        Ok(Response::Ok)
    })
}
