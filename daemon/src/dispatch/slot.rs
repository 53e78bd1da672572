//! Slot and token management (PKCS#11 v3.0 §5.5).

use std::sync::atomic::Ordering;

use p11kms_protocol::{Response, SlotInfo};
use pkcs11_sys as ck;

use super::{actor, with_session};
use crate::access::App;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::token::object::Actor;
use crate::token::User;

pub fn slot_list(d: &Daemon, _token_present: bool) -> Result<Response> {
    // Every instance always has its token present.
    Ok(Response::SlotList(
        d.instances.iter().map(|i| i.slot).collect(),
    ))
}

pub fn slot_info(d: &Daemon, slot: u64) -> Result<Response> {
    let i = d.instance(slot)?;
    Ok(Response::SlotInfo(SlotInfo {
        description: format!("p11kms instance {} ({})", i.name, i.kind),
        manufacturer: "p11kms".into(),
        flags: ck::CKF_TOKEN_PRESENT,
        hardware_version: (0, 1),
        firmware_version: (0, 1),
    }))
}

pub fn token_info(d: &Daemon, slot: u64) -> Result<Response> {
    Ok(Response::TokenInfo(d.instance(slot)?.token.info()))
}

pub fn mechanism_list(d: &Daemon, slot: u64) -> Result<Response> {
    Ok(Response::MechanismList(
        d.instance(slot)?.token.registry.list(),
    ))
}

pub fn mechanism_info(d: &Daemon, slot: u64, mech: u64) -> Result<Response> {
    let m = d.instance(slot)?.token.registry.get(mech)?;
    Ok(Response::MechanismInfo(m.info()))
}

/// `C_InitToken`: only for peers that may administer
/// (`CKR_P11KMS_ACCESS_DENIED`: on a fresh token the first caller would set
/// the SO PIN, on an initialized one it could guess it); refused while any
/// application has a session open on the token (`CKR_SESSION_EXISTS`).
pub fn init_token(
    d: &Daemon,
    app: &App,
    slot: u64,
    so_pin: &[u8],
    label: &[u8],
) -> Result<Response> {
    let i = d.instance(slot)?;
    if !app.admin {
        return Err(Error::new(
            p11kms_protocol::vendor::CKR_P11KMS_ACCESS_DENIED,
            format!(
                "uid {} may not initialize tokens (admin_uids/admin_gids)",
                app.peer.uid
            ),
        ));
    }
    if i.token.sessions.load(Ordering::SeqCst) > 0 {
        return Err(Error::new(
            ck::CKR_SESSION_EXISTS,
            "close every session before C_InitToken",
        ));
    }
    i.token.init(so_pin, label)?;
    d.kms.forget_instance(&i.name);
    tracing::info!(instance = %i.name, "token initialized");
    Ok(Response::Ok)
}

/// `C_InitPIN`: only in a R/W SO session.
pub fn init_pin(_d: &Daemon, app: &App, session: u64, pin: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        if actor(app, s) != Actor::So {
            return Err(Error::rv(ck::CKR_USER_NOT_LOGGED_IN));
        }
        if !s.rw {
            return Err(Error::rv(ck::CKR_SESSION_READ_ONLY));
        }
        s.token.set_pin(User::User, pin)?;
        Ok(Response::Ok)
    })
}

/// `C_SetPIN`: the SO's PIN in a SO session, else the user's; R/W only.
pub fn set_pin(_d: &Daemon, app: &App, session: u64, old: &[u8], new: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        if !s.rw {
            return Err(Error::rv(ck::CKR_SESSION_READ_ONLY));
        }
        let who = if actor(app, s) == Actor::So {
            User::So
        } else {
            User::User
        };
        crate::token::pin::check_len(new)?;
        s.token.verify_pin(who, old)?;
        s.token.set_pin(who, new)?;
        Ok(Response::Ok)
    })
}
