//! Key management and random numbers (PKCS#11 v3.0 §5.14, §5.15).

use p11kms_protocol::{
    Attribute, Mechanism, OutCap, Response, Template, CKA_DERIVE_TEMPLATE, CKA_UNWRAP_TEMPLATE,
    CKA_WRAP_TEMPLATE, MAX_DATA,
};
use pkcs11_sys as ck;
use zeroize::Zeroizing;

use super::object::store_object;
use super::{actor, check_enabled, usable_key, visible_object, with_session};
use crate::access::App;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::token::object::{self, Object, Origin, INTERNAL_DER};

pub fn generate_key(
    d: &Daemon,
    app: &App,
    session: u64,
    mech: &Mechanism,
    template: &[Attribute],
) -> Result<Response> {
    with_session(app, session, |s| {
        let m = s.token.registry.get(mech.mech)?.clone();
        let value_len = object::template_value_len(template)?;
        let gen = m.generate_key(&mech.param, value_len)?;
        let mut attrs = object::build(
            template,
            Some(ck::CKO_SECRET_KEY),
            Some(gen.key_type),
            Origin::Generate,
            actor(app, s),
        )?;
        object::check_secret_value(gen.key_type, gen.value.len())?;
        attrs.set(ck::CKA_VALUE, gen.value.to_vec());
        object::finish_key(
            &mut attrs,
            Origin::Generate,
            Some(mech.mech),
            &object::new_key_id(),
        );
        Ok(Response::Handle(store_object(d, app, s, attrs)?))
    })
}

pub fn generate_key_pair(
    d: &Daemon,
    app: &App,
    session: u64,
    mech: &Mechanism,
    public_template: &[Attribute],
    private_template: &[Attribute],
) -> Result<Response> {
    with_session(app, session, |s| {
        let m = s.token.registry.get(mech.mech)?.clone();
        let who = actor(app, s);
        let gen = m.generate_key_pair(&mech.param, public_template, private_template)?;
        let mut public = object::build(
            public_template,
            Some(ck::CKO_PUBLIC_KEY),
            Some(gen.key_type),
            Origin::Generate,
            who,
        )?;
        let mut private = object::build(
            private_template,
            Some(ck::CKO_PRIVATE_KEY),
            Some(gen.key_type),
            Origin::Generate,
            who,
        )?;
        for (t, v) in gen.public_attrs {
            public.set(t, v);
        }
        for (t, v) in gen.private_attrs {
            private.set(t, v);
        }
        public.set(INTERNAL_DER, gen.public_value);
        private.set(INTERNAL_DER, gen.private_value.to_vec());
        let key_id = object::new_key_id();
        object::finish_key(&mut public, Origin::Generate, Some(mech.mech), &key_id);
        object::finish_key(&mut private, Origin::Generate, Some(mech.mech), &key_id);
        object::pair_history(&private, &mut public);
        // Store the private key first: if the public one then fails, the
        // caller gets an error and no orphaned public key exists.
        let private_handle = store_object(d, app, s, private)?;
        let public_handle = store_object(d, app, s, public)?;
        Ok(Response::KeyPair {
            public: public_handle,
            private: private_handle,
        })
    })
}

/// `C_WrapKey` under the key protection policy (docs/security.md): the key
/// must be enabled and extractable; a `CKA_WRAP_WITH_TRUSTED` key goes only
/// under a trusted key; a sensitive key goes only under a key that can never
/// open the result for a caller ([`object::guards_sensitive`]) and only with
/// an authenticated key-wrap mechanism.
pub fn wrap(
    app: &App,
    session: u64,
    mech: &Mechanism,
    wrapping_key: u64,
    key: u64,
    out: OutCap,
) -> Result<Response> {
    with_session(app, session, |s| {
        let m = s.token.registry.get(mech.mech)?.clone();
        let (wo, wk) = usable_key(app, s, wrapping_key, ck::CKA_WRAP, mech.mech)?;
        let (trusted, guards) = {
            let w = wo.attrs();
            (w.bool(ck::CKA_TRUSTED), object::guards_sensitive(&w))
        };
        let o = visible_object(app, s, key).map_err(|_| Error::rv(ck::CKR_KEY_HANDLE_INVALID))?;
        if !o.is_key() || o.class == ck::CKO_PUBLIC_KEY {
            return Err(Error::rv(ck::CKR_KEY_NOT_WRAPPABLE));
        }
        check_enabled(s, &o)?;
        check_wrap_template(&wo, &o)?;
        let value = {
            let a = o.attrs();
            if !a.bool(ck::CKA_EXTRACTABLE) {
                return Err(Error::rv(ck::CKR_KEY_UNEXTRACTABLE));
            }
            if a.bool(ck::CKA_WRAP_WITH_TRUSTED) && !trusted {
                return Err(Error::new(
                    ck::CKR_KEY_NOT_WRAPPABLE,
                    "key may only be wrapped by a trusted key",
                ));
            }
            if a.bool(ck::CKA_SENSITIVE) {
                if !object::authenticated_wrap(mech.mech) {
                    return Err(Error::new(
                        ck::CKR_KEY_NOT_WRAPPABLE,
                        "a sensitive key is wrapped only with an authenticated key-wrap \
                         mechanism (AES key wrap, RSA-OAEP, RSA-AES key wrap)",
                    ));
                }
                if !guards {
                    return Err(Error::new(
                        ck::CKR_KEY_NOT_WRAPPABLE,
                        "a sensitive key is wrapped only under a trusted key, or one generated \
                         here that was never extractable and never able to decrypt",
                    ));
                }
            }
            let v = if o.class == ck::CKO_SECRET_KEY {
                a.get(ck::CKA_VALUE)
            } else {
                a.get(INTERNAL_DER)
            };
            Zeroizing::new(v.unwrap_or_default().to_vec())
        };
        let bound = m.wrap_len(&mech.param, &wk, value.len())?;
        let Some(cap) = out else {
            return Ok(Response::Output {
                len: bound as u64,
                data: None,
            });
        };
        let wrapped = m.wrap(&mech.param, &wk, &value)?;
        if wrapped.len() as u64 > cap {
            return Ok(Response::Output {
                len: wrapped.len() as u64,
                data: None,
            });
        }
        Ok(Response::Output {
            len: wrapped.len() as u64,
            data: Some(wrapped),
        })
    })
}

/// How recovered material may be shaped into a key.
#[derive(Clone, Copy)]
enum Recovered {
    /// Derived (ECDH): the template decides, as the spec says.
    Derived,
    /// Unwrapped under a key that may hold sensitive keys: `CKA_VALUE_LEN`
    /// must be the recovered length exactly (cutting a recovered key short
    /// makes a key small enough to brute force, byte after byte).
    UnwrappedSensitive,
    /// Any other unwrap: `CKA_VALUE_LEN` may cut the zero padding that
    /// RFC 3394 wrapping of other tokens leaves on odd-length keys.
    Unwrapped,
}

/// Build a secret key from recovered material (unwrap, derive).
fn secret_from_material(
    d: &Daemon,
    app: &App,
    s: &crate::session::Session,
    template: &[Attribute],
    mut value: Zeroizing<Vec<u8>>,
    how: Recovered,
) -> Result<u64> {
    let class = object::template_ulong(template, ck::CKA_CLASS)?
        .ok_or_else(|| Error::new(ck::CKR_TEMPLATE_INCOMPLETE, "CKA_CLASS missing"))?;
    if !s.token.allow_import {
        return Err(Error::new(
            ck::CKR_ACTION_PROHIBITED,
            "this instance only takes keys generated inside it",
        ));
    }
    let origin = Origin::Unwrap;
    if class == ck::CKO_PRIVATE_KEY {
        // PKCS#8 under AES-KWP / AES-CBC-PAD / ...
        let (kt, der, extra) = crate::mech::asym::private_from_pkcs8(&value)?;
        let mut attrs = object::build(
            template,
            Some(ck::CKO_PRIVATE_KEY),
            Some(kt),
            origin,
            actor(app, s),
        )?;
        for (t, v) in extra {
            attrs.set(t, v);
        }
        attrs.set(INTERNAL_DER, der.to_vec());
        object::finish_key(&mut attrs, origin, None, &object::new_key_id());
        return store_object(d, app, s, attrs);
    }
    if class != ck::CKO_SECRET_KEY {
        return Err(Error::new(
            ck::CKR_TEMPLATE_INCONSISTENT,
            "only secret and private keys can be unwrapped",
        ));
    }
    let kt = object::template_ulong(template, ck::CKA_KEY_TYPE)?
        .ok_or_else(|| Error::new(ck::CKR_TEMPLATE_INCOMPLETE, "CKA_KEY_TYPE missing"))?;
    if let Some(n) = object::template_value_len(template)? {
        let cut = value.len().checked_sub(n).filter(|_| n > 0);
        let allowed = match (how, cut) {
            (_, None) => false,
            (_, Some(0)) => true,
            (Recovered::Unwrapped, Some(c)) => c < 8 && value[n..].iter().all(|b| *b == 0),
            (_, Some(_)) => false,
        };
        if !allowed {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                "CKA_VALUE_LEN does not fit the recovered key (only RFC 3394's zero padding \
                 may be cut, and not under a key that may hold sensitive keys)",
            ));
        }
        value.truncate(n);
    }
    object::check_secret_value(kt, value.len()).map_err(|_| {
        Error::new(
            ck::CKR_WRAPPED_KEY_INVALID,
            "recovered key has the wrong length",
        )
    })?;
    let mut attrs = object::build(
        template,
        Some(ck::CKO_SECRET_KEY),
        Some(kt),
        origin,
        actor(app, s),
    )?;
    attrs.set(ck::CKA_VALUE, value.to_vec());
    object::finish_key(&mut attrs, origin, None, &object::new_key_id());
    store_object(d, app, s, attrs)
}

/// Will the key made from `template` be sensitive? `CKA_SENSITIVE` as given,
/// else the default (TRUE for secret and private keys).
fn template_sensitive(template: &[Attribute]) -> bool {
    template
        .iter()
        .rev()
        .find(|a| a.ty == ck::CKA_SENSITIVE)
        .and_then(|a| a.value.as_deref())
        .is_none_or(|v| v.iter().any(|b| *b != 0))
}

/// `C_UnwrapKey` under the key protection policy (docs/security.md),
/// decided before anything is unwrapped so that no refusal says anything
/// about the blob: a key that may hold sensitive keys unwraps only with an
/// authenticated mechanism and only into sensitive keys; a key that can
/// encrypt never unwraps into a sensitive key (its caller could plant a
/// value they know).
pub fn unwrap(
    d: &Daemon,
    app: &App,
    session: u64,
    mech: &Mechanism,
    unwrapping_key: u64,
    wrapped: &[u8],
    template: &[Attribute],
) -> Result<Response> {
    with_session(app, session, |s| {
        let m = s.token.registry.get(mech.mech)?.clone();
        let (uo, uk) =
            usable_key(app, s, unwrapping_key, ck::CKA_UNWRAP, mech.mech).map_err(|e| {
                if e.rv == ck::CKR_KEY_HANDLE_INVALID {
                    Error::rv(ck::CKR_UNWRAPPING_KEY_HANDLE_INVALID)
                } else {
                    e
                }
            })?;
        let template = with_key_template(template, &uo, CKA_UNWRAP_TEMPLATE)?;
        let (only_sensitive, encrypts) = {
            let a = uo.attrs();
            (object::unwraps_only_sensitive(&a), a.bool(ck::CKA_ENCRYPT))
        };
        let sensitive = template_sensitive(&template);
        if only_sensitive && !object::authenticated_wrap(mech.mech) {
            return Err(Error::new(
                ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
                "a key that may hold sensitive keys unwraps only with an authenticated \
                 key-wrap mechanism",
            ));
        }
        if only_sensitive && !sensitive {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                "a key that may hold sensitive keys unwraps only into sensitive keys",
            ));
        }
        if encrypts && sensitive {
            return Err(Error::new(
                ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
                "a key that can encrypt never unwraps into a sensitive key",
            ));
        }
        let value = m.unwrap(&mech.param, &uk, wrapped)?;
        let how = if only_sensitive {
            Recovered::UnwrappedSensitive
        } else {
            Recovered::Unwrapped
        };
        Ok(Response::Handle(secret_from_material(
            d, app, s, &template, value, how,
        )?))
    })
}

pub fn derive(
    d: &Daemon,
    app: &App,
    session: u64,
    mech: &Mechanism,
    base: u64,
    template: &[Attribute],
) -> Result<Response> {
    with_session(app, session, |s| {
        let m = s.token.registry.get(mech.mech)?.clone();
        let (bo, bk) = usable_key(app, s, base, ck::CKA_DERIVE, mech.mech)?;
        let template = with_key_template(template, &bo, CKA_DERIVE_TEMPLATE)?;
        let value = m.derive(&mech.param, &bk, object::template_value_len(&template)?)?;
        Ok(Response::Handle(secret_from_material(
            d,
            app,
            s,
            &template,
            value,
            Recovered::Derived,
        )?))
    })
}

// --- CKA_WRAP_TEMPLATE / CKA_UNWRAP_TEMPLATE / CKA_DERIVE_TEMPLATE
// (PKCS#11 v3.0 §4.7, §4.8, §4.9, §4.10). Kept apart from the key policy
// above: these only read a key's stored template.

/// The nested template a key holds under `ty`, if any (absent and empty are
/// the same: no constraint).
fn key_template(key: &Object, ty: u64) -> Result<Vec<Attribute>> {
    match key.attrs().get(ty) {
        None | Some([]) => Ok(Vec::new()),
        Some(v) => Template::decode(v)
            .map(|t| t.0)
            .ok_or_else(|| Error::general(format!("stored attribute 0x{ty:x} is not a template"))),
    }
}

/// Equal attribute values, CK_BBOOLs by truth.
fn same_value(a: &[u8], b: &[u8]) -> bool {
    match (a, b) {
        ([x], [y]) => (*x != 0) == (*y != 0),
        _ => a == b,
    }
}

/// "Keys that do not match [the wrapping key's `CKA_WRAP_TEMPLATE`] cannot
/// be wrapped": every attribute of the template must be present on `key`
/// with the same value, else `CKR_KEY_NOT_WRAPPABLE`.
fn check_wrap_template(wrapping: &Object, key: &Object) -> Result<()> {
    let wanted = key_template(wrapping, CKA_WRAP_TEMPLATE)?;
    let a = key.attrs();
    for w in &wanted {
        let ok = !object::is_internal(w.ty)
            && a.get(w.ty)
                .is_some_and(|have| same_value(have, w.value.as_deref().unwrap_or_default()));
        if !ok {
            return Err(Error::new(
                ck::CKR_KEY_NOT_WRAPPABLE,
                format!(
                    "key does not match the wrapping key's CKA_WRAP_TEMPLATE (0x{:x})",
                    w.ty
                ),
            ));
        }
    }
    Ok(())
}

/// The caller's template with the unwrapping (or base) key's
/// `CKA_UNWRAP_TEMPLATE` (`CKA_DERIVE_TEMPLATE`) applied: its attributes
/// are added, and one the caller gives with another value is
/// `CKR_TEMPLATE_INCONSISTENT`.
fn with_key_template(template: &[Attribute], key: &Object, ty: u64) -> Result<Vec<Attribute>> {
    let imposed = key_template(key, ty)?;
    for i in &imposed {
        let want = i.value.as_deref().unwrap_or_default();
        if let Some(c) = template
            .iter()
            .find(|c| c.ty == i.ty && !same_value(c.value.as_deref().unwrap_or_default(), want))
        {
            return Err(Error::new(
                ck::CKR_TEMPLATE_INCONSISTENT,
                format!(
                    "attribute 0x{:x} conflicts with the key's template 0x{ty:x}",
                    c.ty
                ),
            ));
        }
    }
    Ok(template.iter().cloned().chain(imposed).collect())
}

pub fn random(app: &App, session: u64, len: u64) -> Result<Response> {
    with_session(app, session, |_| Ok(()))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_DATA)
        .ok_or_else(|| Error::rv(ck::CKR_ARGUMENTS_BAD))?;
    let mut buf = vec![0u8; len];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::new(ck::CKR_DEVICE_ERROR, format!("getrandom: {e}")))?;
    Ok(Response::Bytes(buf))
}
