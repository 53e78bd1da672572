//! Sessions and the cryptographic operations running in them, including
//! the PKCS#11 §5.2 output rules: a length query or a too-small buffer
//! reports the needed length and keeps the operation alive, and no piece of
//! input is processed twice.

use std::sync::Arc;

use p11kms_protocol::{OutCap, Response};
use pkcs11_sys as ck;

use crate::error::{Error, Result};
use crate::mech::{CipherOp, DigestOp, SignOp, VerifyOp};
use crate::token::Token;

/// Which call produced a pending (computed but not yet delivered) output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Oneshot,
    Update,
    Final,
}

/// Output computed for a call whose buffer was too small, kept until the
/// caller comes back with a larger one.
struct Pending {
    call: Call,
    in_len: usize,
    out: Vec<u8>,
}

/// A running encryption or decryption.
pub struct CryptOp {
    op: Box<dyn CipherOp>,
    pending: Option<Pending>,
    multipart: bool,
}

/// Result of one step: the response and whether the operation is over.
pub struct Step {
    pub response: Response,
    pub done: bool,
}

impl CryptOp {
    pub fn new(op: Box<dyn CipherOp>) -> Self {
        CryptOp {
            op,
            pending: None,
            multipart: false,
        }
    }

    /// Run one call under the §5.2 rules.
    pub fn step(&mut self, call: Call, data: &[u8], cap: OutCap) -> Result<Step> {
        match call {
            Call::Oneshot if self.multipart => {
                return Err(Error::new(
                    ck::CKR_OPERATION_ACTIVE,
                    "single-part call after a multi-part update",
                ))
            }
            Call::Update => self.multipart = true,
            _ => {}
        }
        let bound = match call {
            Call::Oneshot => self.op.oneshot_len(data.len())?,
            Call::Update => self.op.update_len(data.len()),
            Call::Final => self.op.final_len(),
        };
        let pending_len = self
            .pending
            .as_ref()
            .filter(|p| p.call == call && p.in_len == data.len())
            .map(|p| p.out.len());
        let Some(cap) = cap else {
            // Length query: never runs the operation.
            let len = pending_len.unwrap_or(bound);
            return Ok(Step {
                response: Response::Output {
                    len: len as u64,
                    data: None,
                },
                done: false,
            });
        };
        let out = match self.pending.take() {
            Some(p) if p.call == call && p.in_len == data.len() => p.out,
            _ => match call {
                Call::Oneshot => self.op.oneshot(data)?,
                Call::Update => self.op.update(data)?,
                Call::Final => self.op.finalize()?,
            },
        };
        if out.len() as u64 > cap {
            let len = out.len() as u64;
            self.pending = Some(Pending {
                call,
                in_len: data.len(),
                out,
            });
            return Ok(Step {
                response: Response::Output { len, data: None },
                done: false,
            });
        }
        let done = call != Call::Update;
        Ok(Step {
            response: Response::Output {
                len: out.len() as u64,
                data: Some(out),
            },
            done,
        })
    }
}

/// A running signature; `multipart` records that `C_SignUpdate` was used.
pub struct SignState {
    pub op: Box<dyn SignOp>,
    pub multipart: bool,
}

/// A running verification.
pub struct VerifyState {
    pub op: Box<dyn VerifyOp>,
    pub multipart: bool,
}

/// A running `C_FindObjects` search: the matching handles, in order.
pub struct FindState {
    pub results: Vec<u64>,
    pub pos: usize,
}

/// A running digest.
pub struct DigestState {
    pub op: Box<dyn DigestOp>,
    pub multipart: bool,
}

/// Whether the running signature or decryption needs a
/// `C_Login(CKU_CONTEXT_SPECIFIC)` before its next call: the key has
/// `CKA_ALWAYS_AUTHENTICATE` TRUE (PKCS#11 v3.0 §4.9 and `C_Login`). Set by
/// each init, so one context login serves one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextLogin {
    /// The key does not ask for one.
    #[default]
    NotNeeded,
    /// Asked for, not given yet.
    Needed,
    /// Given for the running operation.
    Given,
}

/// One session.
pub struct Session {
    pub handle: u64,
    pub slot: u64,
    pub token: Arc<Token>,
    pub rw: bool,
    pub find: Option<FindState>,
    pub encrypt: Option<CryptOp>,
    pub decrypt: Option<CryptOp>,
    pub digest: Option<DigestState>,
    pub sign: Option<SignState>,
    pub verify: Option<VerifyState>,
    /// Context login state of the running signature.
    pub sign_login: ContextLogin,
    /// Context login state of the running decryption.
    pub decrypt_login: ContextLogin,
}

impl Session {
    pub fn new(handle: u64, slot: u64, token: Arc<Token>, rw: bool) -> Self {
        Session {
            handle,
            slot,
            token,
            rw,
            find: None,
            encrypt: None,
            decrypt: None,
            digest: None,
            sign: None,
            verify: None,
            sign_login: ContextLogin::NotNeeded,
            decrypt_login: ContextLogin::NotNeeded,
        }
    }

    /// End every active operation (`C_SessionCancel`, logout).
    pub fn cancel_all(&mut self) {
        self.find = None;
        self.encrypt = None;
        self.decrypt = None;
        self.digest = None;
        self.sign = None;
        self.verify = None;
    }
}

/// Answer an output call whose exact length is known before computing it
/// (digests, signatures, MACs): a query or a short buffer returns the length
/// without running anything.
pub fn exact_output(len: usize, cap: OutCap) -> Option<Response> {
    match cap {
        None => Some(Response::Output {
            len: len as u64,
            data: None,
        }),
        Some(c) if c < len as u64 => Some(Response::Output {
            len: len as u64,
            data: None,
        }),
        Some(_) => None,
    }
}
