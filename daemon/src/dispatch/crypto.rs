//! Encryption, decryption, digesting, signing and verification
//! (PKCS#11 v3.0 §5.8–§5.12). Every call after an init goes through
//! [`step`], which applies the operation-state rules all families share.

use p11kms_protocol::{vendor, Mechanism, OutCap, Response};
use pkcs11_sys as ck;

use zeroize::Zeroizing;

use super::session::{context_login_for, require_context_login};
use super::{check_enabled, mechanism_allowed, usable_key, visible_object, with_session};
use crate::access::App;
use crate::error::{Error, Result};
use crate::kms::envelope;
use crate::session::{exact_output, step, Active, Call, CryptOp, DigestState, Step};

/// The result of a call that delivered its output.
fn output(out: Vec<u8>) -> Response {
    Response::Output {
        len: out.len() as u64,
        data: Some(out),
    }
}

pub fn encrypt_init(app: &App, session: u64, mech: &Mechanism, key: u64) -> Result<Response> {
    with_session(app, session, |s| {
        if s.encrypt.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let m = s.token.registry.get(mech.mech)?.clone();
        let (o, k) = usable_key(app, s, key, ck::CKA_ENCRYPT, mech.mech)?;
        let op = if mech.mech == vendor::CKM_P11KMS_AES_GCM_ENVELOPE {
            envelope::encrypt_init(&s.token.registry, &o, &mech.param)?
        } else {
            m.encrypt_init(&k, &mech.param)?
        };
        s.encrypt = Some(Active::new(CryptOp::new(op)));
        Ok(Response::Ok)
    })
}

pub fn encrypt(app: &App, session: u64, call: Call, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.encrypt, call, |op| op.step(call, data, out))
    })
}

pub fn decrypt_init(app: &App, session: u64, mech: &Mechanism, key: u64) -> Result<Response> {
    with_session(app, session, |s| {
        if s.decrypt.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let m = s.token.registry.get(mech.mech)?.clone();
        let (o, k) = usable_key(app, s, key, ck::CKA_DECRYPT, mech.mech)?;
        s.decrypt_login = context_login_for(&o);
        let op = if mech.mech == vendor::CKM_P11KMS_AES_GCM_ENVELOPE {
            envelope::decrypt_init(s.token.clone(), &o, &mech.param)?
        } else {
            m.decrypt_init(&k, &mech.param)?
        };
        s.decrypt = Some(Active::new(CryptOp::new(op)));
        Ok(Response::Ok)
    })
}

pub fn decrypt(app: &App, session: u64, call: Call, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.decrypt, s.decrypt_login)?;
        step(&mut s.decrypt, call, |op| op.step(call, data, out))
    })
}

pub fn digest_init(app: &App, session: u64, mech: &Mechanism) -> Result<Response> {
    with_session(app, session, |s| {
        if s.digest.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let op = s.token.registry.get(mech.mech)?.digest_init(&mech.param)?;
        s.digest = Some(Active::new(DigestState {
            op,
            mech: mech.mech,
        }));
        Ok(Response::Ok)
    })
}

pub fn digest(app: &App, session: u64, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.digest, Call::Oneshot, |st| {
            if let Some(r) = exact_output(st.op.len(), out) {
                return Ok(Step::live(r));
            }
            st.op.update(data);
            Ok(Step::done(output(st.op.finalize())))
        })
    })
}

pub fn digest_update(app: &App, session: u64, data: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.digest, Call::Update, |st| {
            st.op.update(data);
            Ok(Step::live(Response::Ok))
        })
    })
}

/// `C_DigestKey`: only keys whose value could be read anyway, so a digest
/// never becomes an oracle on a sensitive key (`CKR_KEY_INDIGESTIBLE`), and
/// only with a digest mechanism the key's `CKA_ALLOWED_MECHANISMS` lists.
/// It is an update of the digest: its errors end the operation.
pub fn digest_key(app: &App, session: u64, key: u64) -> Result<Response> {
    with_session(app, session, |s| {
        let mech = s.digest.as_ref().map(|st| st.op.mech);
        let value = mech.map(|mech| {
            let o =
                visible_object(app, s, key).map_err(|_| Error::rv(ck::CKR_KEY_HANDLE_INVALID))?;
            check_enabled(s, &o)?;
            let a = o.attrs();
            if o.class != ck::CKO_SECRET_KEY
                || a.bool(ck::CKA_SENSITIVE)
                || !a.bool(ck::CKA_EXTRACTABLE)
            {
                return Err(Error::rv(ck::CKR_KEY_INDIGESTIBLE));
            }
            if !mechanism_allowed(&a, mech) {
                return Err(Error::new(
                    ck::CKR_KEY_INDIGESTIBLE,
                    "digest mechanism not in the key's CKA_ALLOWED_MECHANISMS",
                ));
            }
            Ok(Zeroizing::new(
                a.get(ck::CKA_VALUE).unwrap_or_default().to_vec(),
            ))
        });
        step(&mut s.digest, Call::Update, |st| {
            let value = value.ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))??;
            st.op.update(&value);
            Ok(Step::live(Response::Ok))
        })
    })
}

pub fn digest_final(app: &App, session: u64, out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.digest, Call::Final, |st| {
            if let Some(r) = exact_output(st.op.len(), out) {
                return Ok(Step::live(r));
            }
            Ok(Step::done(output(st.op.finalize())))
        })
    })
}

pub fn sign_init(app: &App, session: u64, mech: &Mechanism, key: u64) -> Result<Response> {
    with_session(app, session, |s| {
        if s.sign.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let m = s.token.registry.get(mech.mech)?.clone();
        let (o, k) = usable_key(app, s, key, ck::CKA_SIGN, mech.mech)?;
        s.sign_login = context_login_for(&o);
        s.sign = Some(Active::new(m.sign_init(&k, &mech.param)?));
        Ok(Response::Ok)
    })
}

pub fn sign(app: &App, session: u64, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.sign, s.sign_login)?;
        step(&mut s.sign, Call::Oneshot, |op| {
            if let Some(r) = exact_output(op.sig_len(), out) {
                return Ok(Step::live(r));
            }
            Ok(Step::done(output(op.oneshot(data)?)))
        })
    })
}

/// Refuse `C_SignUpdate` / `C_VerifyUpdate` for a single-part-only
/// mechanism (raw ECDSA, EdDSA, ...).
fn multipart_supported(yes: bool) -> Result<()> {
    if yes {
        Ok(())
    } else {
        Err(Error::new(
            ck::CKR_FUNCTION_NOT_SUPPORTED,
            "mechanism is single-part only",
        ))
    }
}

pub fn sign_update(app: &App, session: u64, data: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.sign, s.sign_login)?;
        step(&mut s.sign, Call::Update, |op| {
            multipart_supported(op.multipart())?;
            op.update(data)?;
            Ok(Step::live(Response::Ok))
        })
    })
}

pub fn sign_final(app: &App, session: u64, out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.sign, s.sign_login)?;
        step(&mut s.sign, Call::Final, |op| {
            if let Some(r) = exact_output(op.sig_len(), out) {
                return Ok(Step::live(r));
            }
            Ok(Step::done(output(op.finalize()?)))
        })
    })
}

pub fn verify_init(app: &App, session: u64, mech: &Mechanism, key: u64) -> Result<Response> {
    with_session(app, session, |s| {
        if s.verify.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let m = s.token.registry.get(mech.mech)?.clone();
        let (_, k) = usable_key(app, s, key, ck::CKA_VERIFY, mech.mech)?;
        s.verify = Some(Active::new(m.verify_init(&k, &mech.param)?));
        Ok(Response::Ok)
    })
}

pub fn verify(app: &App, session: u64, data: &[u8], signature: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.verify, Call::Oneshot, |op| {
            op.oneshot(data, signature)?;
            Ok(Step::done(Response::Ok))
        })
    })
}

pub fn verify_update(app: &App, session: u64, data: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.verify, Call::Update, |op| {
            multipart_supported(op.multipart())?;
            op.update(data)?;
            Ok(Step::live(Response::Ok))
        })
    })
}

pub fn verify_final(app: &App, session: u64, signature: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        step(&mut s.verify, Call::Final, |op| {
            op.finalize(signature)?;
            Ok(Step::done(Response::Ok))
        })
    })
}
