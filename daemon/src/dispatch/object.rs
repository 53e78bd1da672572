//! Object management (PKCS#11 v3.0 §5.7).

use std::sync::Arc;

use p11kms_protocol::{AttrResult, Attribute, Response};
use pkcs11_sys as ck;

use super::{actor, key_enabled, visible_object, with_session};
use crate::access::App;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::kms;
use crate::session::{FindState, Session};
use crate::token::object::{self, Actor, Attrs, Object, Origin};

/// Store a finished attribute set as a token or session object, checking
/// the session's right to do so: token objects need a R/W session and a
/// login (without one a session makes session objects only), private
/// objects the user.
pub(crate) fn store_object(d: &Daemon, app: &App, s: &Session, attrs: Attrs) -> Result<u64> {
    let token = attrs.bool(ck::CKA_TOKEN);
    let private = attrs.bool(ck::CKA_PRIVATE);
    if token && !s.rw {
        return Err(Error::rv(ck::CKR_SESSION_READ_ONLY));
    }
    if token && actor(app, s) == Actor::Public {
        return Err(Error::new(
            ck::CKR_USER_NOT_LOGGED_IN,
            "token objects are made only after a login",
        ));
    }
    if private && actor(app, s) != Actor::User {
        return Err(Error::new(
            ck::CKR_USER_NOT_LOGGED_IN,
            "private objects need a user login",
        ));
    }
    if token {
        Ok(s.token.add_object(attrs)?.id)
    } else {
        let id = d.new_session_object_id();
        app.add_session_object(s.handle, &s.token, Arc::new(Object::new(id, attrs)))?;
        Ok(id)
    }
}

/// Check that this session may change or destroy `o`: token objects only
/// from a R/W session after a login, private objects by the user, and
/// KMS-managed keys by nobody ([`kms::managed`]: only the lifecycle commands
/// change them).
fn check_writable(app: &App, s: &Session, o: &Object) -> Result<()> {
    if kms::managed(&s.token, o) {
        return Err(Error::new(
            ck::CKR_ACTION_PROHIBITED,
            "a KMS-managed key changes only through the lifecycle commands",
        ));
    }
    if o.token && !s.rw {
        return Err(Error::rv(ck::CKR_SESSION_READ_ONLY));
    }
    if o.token && actor(app, s) == Actor::Public {
        return Err(Error::new(
            ck::CKR_USER_NOT_LOGGED_IN,
            "token objects change only after a login",
        ));
    }
    if o.private && actor(app, s) != Actor::User {
        return Err(Error::rv(ck::CKR_USER_NOT_LOGGED_IN));
    }
    Ok(())
}

pub fn create(d: &Daemon, app: &App, session: u64, template: &[Attribute]) -> Result<Response> {
    with_session(app, session, |s| {
        let mut attrs = object::build(template, None, None, Origin::Create, actor(app, s))?;
        let class = attrs.class();
        if matches!(class, ck::CKO_SECRET_KEY | ck::CKO_PRIVATE_KEY) && !s.token.allow_import {
            return Err(Error::new(
                ck::CKR_ACTION_PROHIBITED,
                "this instance only takes keys generated inside it",
            ));
        }
        let kt = attrs.key_type().unwrap_or(u64::MAX);
        match class {
            ck::CKO_SECRET_KEY => {
                let len = attrs.get(ck::CKA_VALUE).map_or(0, <[u8]>::len);
                object::check_secret_value(kt, len)?;
            }
            ck::CKO_PRIVATE_KEY => {
                let (der, extra) = {
                    let get = |t: u64| attrs.get(t).map(<[u8]>::to_vec);
                    crate::mech::asym::private_from_attrs(kt, &get)?
                };
                for (t, v) in extra {
                    attrs.set(t, v);
                }
                attrs.set(object::INTERNAL_DER, der.to_vec());
            }
            ck::CKO_PUBLIC_KEY => {
                let (der, extra) = {
                    let get = |t: u64| attrs.get(t).map(<[u8]>::to_vec);
                    crate::mech::asym::public_from_attrs(kt, &get)?
                };
                for (t, v) in extra {
                    attrs.set(t, v);
                }
                attrs.set(object::INTERNAL_DER, der);
            }
            _ => {}
        }
        if attrs.key_type().is_some() {
            object::finish_key(&mut attrs, Origin::Create, None, &object::new_key_id());
        }
        Ok(Response::Handle(store_object(d, app, s, attrs)?))
    })
}

pub fn copy(
    d: &Daemon,
    app: &App,
    session: u64,
    handle: u64,
    template: &[Attribute],
) -> Result<Response> {
    with_session(app, session, |s| {
        let o = visible_object(app, s, handle)?;
        // A copy of a KMS key would be a second object with its key id
        // that no lifecycle command knows about.
        if !o.attrs().bool(ck::CKA_COPYABLE) || kms::managed(&s.token, &o) {
            return Err(Error::new(
                ck::CKR_ACTION_PROHIBITED,
                "object is not copyable",
            ));
        }
        let attrs = o.updated(template, actor(app, s), true)?;
        Ok(Response::Handle(store_object(d, app, s, attrs)?))
    })
}

pub fn destroy(app: &App, session: u64, handle: u64) -> Result<Response> {
    with_session(app, session, |s| {
        let o = visible_object(app, s, handle)?;
        check_writable(app, s, &o)?;
        if !o.attrs().bool(ck::CKA_DESTROYABLE) {
            return Err(Error::new(
                ck::CKR_ACTION_PROHIBITED,
                "object is not destroyable",
            ));
        }
        if o.token {
            s.token.destroy_object(o.id)?;
        } else {
            app.remove_session_object(o.id, s.slot);
        }
        Ok(Response::Ok)
    })
}

pub fn size(app: &App, session: u64, handle: u64) -> Result<Response> {
    with_session(app, session, |s| {
        Ok(Response::Ulong(
            visible_object(app, s, handle)?.attrs().size(),
        ))
    })
}

pub fn get_attributes(app: &App, session: u64, handle: u64, types: &[u64]) -> Result<Response> {
    with_session(app, session, |s| {
        let o = visible_object(app, s, handle)?;
        let enabled = !o.is_key() || key_enabled(s, &o);
        let managed = kms::managed(&s.token, &o);
        Ok(Response::Attributes(
            types
                .iter()
                .map(|t| match *t {
                    // What PKCS#11 may do to a KMS-managed key: nothing.
                    ck::CKA_MODIFIABLE | ck::CKA_COPYABLE | ck::CKA_DESTROYABLE if managed => {
                        AttrResult::Value(vec![0])
                    }
                    t => o.get_attribute(t, enabled),
                })
                .collect(),
        ))
    })
}

pub fn set_attributes(
    app: &App,
    session: u64,
    handle: u64,
    template: &[Attribute],
) -> Result<Response> {
    with_session(app, session, |s| {
        let o = visible_object(app, s, handle)?;
        check_writable(app, s, &o)?;
        let attrs = o.updated(template, actor(app, s), false)?;
        if o.token {
            s.token.update_object(&o, attrs)?;
        } else {
            app.update_session_object(s.slot, &o, attrs)?;
        }
        Ok(Response::Ok)
    })
}

pub fn find_init(app: &App, session: u64, template: &[Attribute]) -> Result<Response> {
    with_session(app, session, |s| {
        if s.find.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let user = actor(app, s) == Actor::User;
        let mut results = s.token.find(template, user);
        results.extend(app.find_session_objects(s.slot, template, user));
        s.find = Some(FindState { results, pos: 0 });
        Ok(Response::Ok)
    })
}

pub fn find(app: &App, session: u64, max: u64) -> Result<Response> {
    with_session(app, session, |s| {
        let f = s
            .find
            .as_mut()
            .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))?;
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(f.results.len() - f.pos);
        let out = f.results[f.pos..f.pos + n].to_vec();
        f.pos += n;
        Ok(Response::Handles(out))
    })
}

pub fn find_final(app: &App, session: u64) -> Result<Response> {
    with_session(app, session, |s| {
        s.find
            .take()
            .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))?;
        Ok(Response::Ok)
    })
}
