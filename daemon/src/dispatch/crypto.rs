//! Encryption, decryption, digesting, signing and verification
//! (PKCS#11 v3.0 §5.8–§5.12).

use p11kms_protocol::{vendor, Mechanism, OutCap, Response};
use pkcs11_sys as ck;

use super::session::{context_login_for, require_context_login};
use super::{check_enabled, usable_key, visible_object, with_session};
use crate::access::App;
use crate::error::{Error, Result};
use crate::kms::envelope;
use crate::session::{exact_output, Call, CryptOp, DigestState, SignState, VerifyState};

fn not_init() -> Error {
    Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED)
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
        s.encrypt = Some(CryptOp::new(op));
        Ok(Response::Ok)
    })
}

pub fn encrypt(app: &App, session: u64, call: Call, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        let op = s.encrypt.as_mut().ok_or_else(not_init)?;
        match op.step(call, data, out) {
            Ok(step) => {
                if step.done {
                    s.encrypt = None;
                }
                Ok(step.response)
            }
            Err(e) => {
                s.encrypt = None;
                Err(e)
            }
        }
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
        s.decrypt = Some(CryptOp::new(op));
        Ok(Response::Ok)
    })
}

pub fn decrypt(app: &App, session: u64, call: Call, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.decrypt, s.decrypt_login)?;
        let op = s.decrypt.as_mut().ok_or_else(not_init)?;
        match op.step(call, data, out) {
            Ok(step) => {
                if step.done {
                    s.decrypt = None;
                }
                Ok(step.response)
            }
            Err(e) => {
                s.decrypt = None;
                Err(e)
            }
        }
    })
}

pub fn digest_init(app: &App, session: u64, mech: &Mechanism) -> Result<Response> {
    with_session(app, session, |s| {
        if s.digest.is_some() {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        let op = s.token.registry.get(mech.mech)?.digest_init(&mech.param)?;
        s.digest = Some(DigestState {
            op,
            multipart: false,
        });
        Ok(Response::Ok)
    })
}

pub fn digest(app: &App, session: u64, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        let st = s.digest.as_mut().ok_or_else(not_init)?;
        if st.multipart {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        if let Some(r) = exact_output(st.op.len(), out) {
            return Ok(r);
        }
        st.op.update(data);
        let d = st.op.finalize();
        s.digest = None;
        Ok(Response::Output {
            len: d.len() as u64,
            data: Some(d),
        })
    })
}

pub fn digest_update(app: &App, session: u64, data: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        let st = s.digest.as_mut().ok_or_else(not_init)?;
        st.multipart = true;
        st.op.update(data);
        Ok(Response::Ok)
    })
}

/// `C_DigestKey`: only keys whose value could be read anyway, so a digest
/// never becomes an oracle on a sensitive key (`CKR_KEY_INDIGESTIBLE`).
pub fn digest_key(app: &App, session: u64, key: u64) -> Result<Response> {
    with_session(app, session, |s| {
        if s.digest.is_none() {
            return Err(not_init());
        }
        let o = visible_object(app, s, key).map_err(|_| Error::rv(ck::CKR_KEY_HANDLE_INVALID))?;
        check_enabled(s, &o)?;
        let value = {
            let a = o.attrs();
            if o.class != ck::CKO_SECRET_KEY
                || a.bool(ck::CKA_SENSITIVE)
                || !a.bool(ck::CKA_EXTRACTABLE)
            {
                return Err(Error::rv(ck::CKR_KEY_INDIGESTIBLE));
            }
            a.get(ck::CKA_VALUE).unwrap_or_default().to_vec()
        };
        let st = s.digest.as_mut().ok_or_else(not_init)?;
        st.multipart = true;
        st.op.update(&value);
        Ok(Response::Ok)
    })
}

pub fn digest_final(app: &App, session: u64, out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        let st = s.digest.as_mut().ok_or_else(not_init)?;
        if let Some(r) = exact_output(st.op.len(), out) {
            return Ok(r);
        }
        let d = st.op.finalize();
        s.digest = None;
        Ok(Response::Output {
            len: d.len() as u64,
            data: Some(d),
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
        s.sign = Some(SignState {
            op: m.sign_init(&k, &mech.param)?,
            multipart: false,
        });
        Ok(Response::Ok)
    })
}

pub fn sign(app: &App, session: u64, data: &[u8], out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.sign, s.sign_login)?;
        let st = s.sign.as_mut().ok_or_else(not_init)?;
        if st.multipart {
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        if let Some(r) = exact_output(st.op.sig_len(), out) {
            return Ok(r);
        }
        let r = st.op.oneshot(data);
        s.sign = None;
        let sig = r?;
        Ok(Response::Output {
            len: sig.len() as u64,
            data: Some(sig),
        })
    })
}

pub fn sign_update(app: &App, session: u64, data: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.sign, s.sign_login)?;
        let st = s.sign.as_mut().ok_or_else(not_init)?;
        if !st.op.multipart() {
            s.sign = None;
            return Err(Error::new(
                ck::CKR_FUNCTION_NOT_SUPPORTED,
                "mechanism is single-part only",
            ));
        }
        st.multipart = true;
        if let Err(e) = st.op.update(data) {
            s.sign = None;
            return Err(e);
        }
        Ok(Response::Ok)
    })
}

pub fn sign_final(app: &App, session: u64, out: OutCap) -> Result<Response> {
    with_session(app, session, |s| {
        require_context_login(&mut s.sign, s.sign_login)?;
        let st = s.sign.as_mut().ok_or_else(not_init)?;
        if let Some(r) = exact_output(st.op.sig_len(), out) {
            return Ok(r);
        }
        let r = st.op.finalize();
        s.sign = None;
        let sig = r?;
        Ok(Response::Output {
            len: sig.len() as u64,
            data: Some(sig),
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
        s.verify = Some(VerifyState {
            op: m.verify_init(&k, &mech.param)?,
            multipart: false,
        });
        Ok(Response::Ok)
    })
}

pub fn verify(app: &App, session: u64, data: &[u8], signature: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        let mut st = s.verify.take().ok_or_else(not_init)?;
        if st.multipart {
            s.verify = Some(st);
            return Err(Error::rv(ck::CKR_OPERATION_ACTIVE));
        }
        st.op.oneshot(data, signature)?;
        Ok(Response::Ok)
    })
}

pub fn verify_update(app: &App, session: u64, data: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        let st = s.verify.as_mut().ok_or_else(not_init)?;
        if !st.op.multipart() {
            s.verify = None;
            return Err(Error::new(
                ck::CKR_FUNCTION_NOT_SUPPORTED,
                "mechanism is single-part only",
            ));
        }
        st.multipart = true;
        if let Err(e) = st.op.update(data) {
            s.verify = None;
            return Err(e);
        }
        Ok(Response::Ok)
    })
}

pub fn verify_final(app: &App, session: u64, signature: &[u8]) -> Result<Response> {
    with_session(app, session, |s| {
        let mut st = s.verify.take().ok_or_else(not_init)?;
        st.op.finalize(signature)?;
        Ok(Response::Ok)
    })
}
