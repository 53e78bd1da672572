//! Request → response. One file per PKCS#11 chapter; this file routes and
//! holds the checks every chapter shares (session lookup, object
//! visibility, key usage).

mod crypto;
mod keys;
mod object;
mod session;
mod slot;

use std::sync::{Arc, Mutex, MutexGuard};

use p11kms_protocol::{Request, Response};
use pkcs11_sys as ck;

use crate::access::App;
use crate::daemon::{Daemon, SESSION_OBJECT_BASE};
use crate::error::{rv_name, Error, Result};
use crate::mech::Key;
use crate::session::Session;
use crate::token::object::{enabled, Actor, Attrs, Object};
use crate::token::User;

pub use session::close_session;

/// Handle one request for an application. Errors become
/// `Response::Error(rv)`; their message goes to the log.
pub fn handle(d: &Daemon, app: &Arc<App>, req: Request) -> Response {
    let result = route(d, app, req);
    match result {
        Ok(r) => r,
        Err(e) => {
            if e.rv == ck::CKR_GENERAL_ERROR || e.rv == ck::CKR_DEVICE_ERROR {
                tracing::warn!(pid = app.peer.pid, rv = rv_name(e.rv), "{}", e.msg);
            } else {
                tracing::debug!(pid = app.peer.pid, rv = rv_name(e.rv), "{}", e.msg);
            }
            Response::Error(e.rv)
        }
    }
}

fn route(d: &Daemon, app: &Arc<App>, req: Request) -> Result<Response> {
    use Request as R;
    match req {
        R::Hello { .. } => Err(Error::new(ck::CKR_GENERAL_ERROR, "handshake repeated")),
        R::GetSlotList { token_present } => slot::slot_list(d, token_present),
        R::GetSlotInfo { slot } => slot::slot_info(d, slot),
        R::GetTokenInfo { slot } => slot::token_info(d, slot),
        R::GetMechanismList { slot } => slot::mechanism_list(d, slot),
        R::GetMechanismInfo { slot, mech } => slot::mechanism_info(d, slot, mech),
        R::InitToken {
            slot,
            so_pin,
            label,
        } => slot::init_token(d, app, slot, &so_pin, &label),
        R::InitPin { session, pin } => slot::init_pin(d, app, session, &pin),
        R::SetPin {
            session,
            old_pin,
            new_pin,
        } => slot::set_pin(d, app, session, &old_pin, &new_pin),

        R::OpenSession { slot, flags } => session::open(d, app, slot, flags),
        R::CloseSession { session } => session::close(d, app, session),
        R::CloseAllSessions { slot } => session::close_all(d, app, slot),
        R::GetSessionInfo { session } => session::info(app, session),
        R::Login {
            session,
            user_type,
            pin,
        } => session::login(app, session, user_type, &pin),
        R::Logout { session } => session::logout(app, session),
        R::SessionCancel { session, flags } => session::cancel(app, session, flags),

        R::CreateObject { session, template } => object::create(d, app, session, &template),
        R::CopyObject {
            session,
            object: o,
            template,
        } => object::copy(d, app, session, o, &template),
        R::DestroyObject { session, object: o } => object::destroy(app, session, o),
        R::GetObjectSize { session, object: o } => object::size(app, session, o),
        R::GetAttributeValue {
            session,
            object: o,
            types,
        } => object::get_attributes(app, session, o, &types),
        R::SetAttributeValue {
            session,
            object: o,
            template,
        } => object::set_attributes(app, session, o, &template),
        R::FindObjectsInit { session, template } => object::find_init(app, session, &template),
        R::FindObjects { session, max } => object::find(app, session, max),
        R::FindObjectsFinal { session } => object::find_final(app, session),

        R::EncryptInit { session, mech, key } => crypto::encrypt_init(app, session, &mech, key),
        R::Encrypt { session, data, out } => {
            crypto::encrypt(app, session, crate::session::Call::Oneshot, &data, out)
        }
        R::EncryptUpdate { session, data, out } => {
            crypto::encrypt(app, session, crate::session::Call::Update, &data, out)
        }
        R::EncryptFinal { session, out } => {
            crypto::encrypt(app, session, crate::session::Call::Final, &[], out)
        }
        R::DecryptInit { session, mech, key } => crypto::decrypt_init(app, session, &mech, key),
        R::Decrypt { session, data, out } => {
            crypto::decrypt(app, session, crate::session::Call::Oneshot, &data, out)
        }
        R::DecryptUpdate { session, data, out } => {
            crypto::decrypt(app, session, crate::session::Call::Update, &data, out)
        }
        R::DecryptFinal { session, out } => {
            crypto::decrypt(app, session, crate::session::Call::Final, &[], out)
        }
        R::DigestInit { session, mech } => crypto::digest_init(app, session, &mech),
        R::Digest { session, data, out } => crypto::digest(app, session, &data, out),
        R::DigestUpdate { session, data } => crypto::digest_update(app, session, &data),
        R::DigestKey { session, key } => crypto::digest_key(app, session, key),
        R::DigestFinal { session, out } => crypto::digest_final(app, session, out),
        R::SignInit { session, mech, key } => crypto::sign_init(app, session, &mech, key),
        R::Sign { session, data, out } => crypto::sign(app, session, &data, out),
        R::SignUpdate { session, data } => crypto::sign_update(app, session, &data),
        R::SignFinal { session, out } => crypto::sign_final(app, session, out),
        R::VerifyInit { session, mech, key } => crypto::verify_init(app, session, &mech, key),
        R::Verify {
            session,
            data,
            signature,
        } => crypto::verify(app, session, &data, &signature),
        R::VerifyUpdate { session, data } => crypto::verify_update(app, session, &data),
        R::VerifyFinal { session, signature } => crypto::verify_final(app, session, &signature),

        R::GenerateKey {
            session,
            mech,
            template,
        } => keys::generate_key(d, app, session, &mech, &template),
        R::GenerateKeyPair {
            session,
            mech,
            public_template,
            private_template,
        } => keys::generate_key_pair(d, app, session, &mech, &public_template, &private_template),
        R::WrapKey {
            session,
            mech,
            wrapping_key,
            key,
            out,
        } => keys::wrap(app, session, &mech, wrapping_key, key, out),
        R::UnwrapKey {
            session,
            mech,
            unwrapping_key,
            wrapped,
            template,
        } => keys::unwrap(d, app, session, &mech, unwrapping_key, &wrapped, &template),
        R::DeriveKey {
            session,
            mech,
            base_key,
            template,
        } => keys::derive(d, app, session, &mech, base_key, &template),
        R::SeedRandom { session, .. } => {
            with_session(app, session, |_| Ok(()))?;
            // The daemon draws from the kernel CSPRNG; a caller's seed cannot
            // improve it, and we do not pretend to mix it in.
            Err(Error::rv(ck::CKR_RANDOM_SEED_NOT_SUPPORTED))
        }
        R::GenerateRandom { session, len } => keys::random(app, session, len),

        R::Status => d.status_for(app).map(Response::Status),
        R::Admin {
            instance,
            so_pin,
            cmd,
        } => Ok(Response::Admin(crate::kms::admin::handle_for(
            d, app, &instance, &so_pin, cmd,
        ))),
    }
}

/// Run `f` on a locked session of this application.
pub(crate) fn with_session<T>(
    app: &App,
    handle: u64,
    f: impl FnOnce(&mut Session) -> Result<T>,
) -> Result<T> {
    let s = app
        .session(handle)
        .ok_or_else(|| Error::rv(ck::CKR_SESSION_HANDLE_INVALID))?;
    let mut guard = lock(&s);
    f(&mut guard)
}

pub(crate) fn lock(s: &Arc<Mutex<Session>>) -> MutexGuard<'_, Session> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The actor (public / user / SO) of a session.
pub(crate) fn actor(app: &App, s: &Session) -> Actor {
    match app.login_state(s.slot) {
        Some(User::So) => Actor::So,
        Some(User::User) => Actor::User,
        None => Actor::Public,
    }
}

/// An object visible to this session: its token's objects (private ones
/// only after user login) and the application's session objects.
pub(crate) fn visible_object(app: &App, s: &Session, handle: u64) -> Result<Arc<Object>> {
    let o = if handle >= SESSION_OBJECT_BASE {
        app.session_object(handle, s.slot)
    } else {
        s.token.get(handle)
    };
    let o = o.ok_or_else(|| Error::rv(ck::CKR_OBJECT_HANDLE_INVALID))?;
    if o.private && actor(app, s) != Actor::User {
        return Err(Error::rv(ck::CKR_OBJECT_HANDLE_INVALID));
    }
    Ok(o)
}

/// A key usable for `usage` (`CKA_ENCRYPT`, `CKA_SIGN`, ...) with `mech`.
pub(crate) fn usable_key(
    app: &App,
    s: &Session,
    handle: u64,
    usage: u64,
    mech: u64,
) -> Result<(Arc<Object>, Arc<Key>)> {
    let o = visible_object(app, s, handle).map_err(|_| Error::rv(ck::CKR_KEY_HANDLE_INVALID))?;
    if !o.is_key() {
        return Err(Error::rv(ck::CKR_KEY_HANDLE_INVALID));
    }
    check_enabled(s, &o)?;
    {
        let a = o.attrs();
        if !a.bool(usage) {
            return Err(Error::new(
                ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
                format!("key lacks usage attribute 0x{usage:x}"),
            ));
        }
        if !mechanism_allowed(&a, mech) {
            return Err(Error::new(
                ck::CKR_MECHANISM_INVALID,
                "mechanism not in CKA_ALLOWED_MECHANISMS",
            ));
        }
    }
    let k = o.key()?;
    Ok((o, k))
}

/// Is the key enabled as the KMS sees it? Its own state, and for a session
/// copy of a token key the state of the token's objects of the same key id:
/// disabling a key reaches the copies an application made of it.
pub(crate) fn key_enabled(s: &Session, o: &Object) -> bool {
    if !enabled(&o.attrs()) {
        return false;
    }
    if o.token {
        return true;
    }
    let Some(key_id) = crate::kms::key_id_of(o) else {
        return true;
    };
    s.token
        .objects_of_key(&key_id)
        .iter()
        .all(|t| enabled(&t.attrs()))
}

/// Every use and export of a key checks its lifecycle state first
/// (`CKR_KEY_FUNCTION_NOT_PERMITTED` for a disabled, pending-deletion or
/// pending-import key).
pub(crate) fn check_enabled(s: &Session, o: &Object) -> Result<()> {
    if key_enabled(s, o) {
        Ok(())
    } else {
        Err(Error::new(
            ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
            "key is not enabled",
        ))
    }
}

/// Whether a key's `CKA_ALLOWED_MECHANISMS` admits `mech`: an absent or
/// empty list admits every mechanism (PKCS#11 v3.0 §4.7).
pub(crate) fn mechanism_allowed(a: &Attrs, mech: u64) -> bool {
    match a.get(ck::CKA_ALLOWED_MECHANISMS) {
        None | Some([]) => true,
        Some(list) => list
            .chunks_exact(8)
            .any(|c| c.try_into().map(u64::from_le_bytes).ok() == Some(mech)),
    }
}

#[cfg(test)]
mod gm_tests;
#[cfg(test)]
mod tests;
