//! Sessions and the cryptographic operations running in them: the rules
//! every operation family shares, written once ([`step`]) — which call may
//! follow which, and which outcome ends the operation (PKCS#11 v3.0
//! §5.8–§5.12) — and the §5.2 output rules: a length query or a too-small
//! buffer reports the needed length and keeps the operation alive, and no
//! piece of input is processed twice.

use std::sync::Arc;

use p11kms_protocol::{OutCap, Response};
use pkcs11_sys as ck;

use crate::error::{Error, Result};
use crate::mech::{CipherOp, DigestOp, SignOp, VerifyOp};
use crate::token::Token;

/// The three shapes of call every operation family has: the single-part
/// call (`C_Encrypt`, `C_Digest`, `C_Sign`, `C_Verify`, ...), `C_*Update`
/// (and `C_DigestKey`) and `C_*Final`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Oneshot,
    Update,
    Final,
}

/// How far an operation has gone since its `C_*Init`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing called yet: either shape may follow.
    #[default]
    Fresh,
    /// A single-part call answered a length only (`pOut` NULL or too
    /// small): the operation stays active, as a single-part one.
    Single,
    /// `C_*Update` ran: only more updates and `C_*Final` may follow.
    Multi,
}

impl Phase {
    /// Admit `call` or refuse it with `CKR_OPERATION_ACTIVE`. PKCS#11 v3.0
    /// §5.8–§5.12: the single-part call "MUST be called after `C_*Init`
    /// without intervening `C_*Update` calls", and a single-part operation
    /// kept alive by a length answer is still the operation that call
    /// started, so neither shape may take over the other's.
    fn admit(&mut self, call: Call) -> Result<()> {
        match (call, *self) {
            (Call::Oneshot, Phase::Multi) => Err(Error::new(
                ck::CKR_OPERATION_ACTIVE,
                "single-part call during a multi-part operation",
            )),
            (Call::Update | Call::Final, Phase::Single) => Err(Error::new(
                ck::CKR_OPERATION_ACTIVE,
                "multi-part call during a single-part operation",
            )),
            (Call::Oneshot, _) => {
                *self = Phase::Single;
                Ok(())
            }
            (Call::Update, _) => {
                *self = Phase::Multi;
                Ok(())
            }
            (Call::Final, _) => Ok(()),
        }
    }
}

/// An active operation of one family: its mechanism state and how far it
/// has gone.
pub struct Active<T> {
    pub op: T,
    phase: Phase,
}

impl<T> Active<T> {
    pub fn new(op: T) -> Self {
        Active {
            op,
            phase: Phase::Fresh,
        }
    }
}

/// Result of one call: the response and whether the operation is over.
pub struct Step<R = Response> {
    pub response: R,
    pub done: bool,
}

impl<R> Step<R> {
    /// The operation goes on (an update, or a length answer).
    pub fn live(response: R) -> Self {
        Step {
            response,
            done: false,
        }
    }
    /// The operation delivered its result and is over.
    pub fn done(response: R) -> Self {
        Step {
            response,
            done: true,
        }
    }
}

/// Run one call of the operation in `slot` under the rules every family
/// shares (PKCS#11 v3.0 §5.2, §5.8–§5.12):
/// - no operation: `CKR_OPERATION_NOT_INITIALIZED`;
/// - a call of the wrong shape ([`Phase::admit`]): `CKR_OPERATION_ACTIVE`;
/// - any error — those included — ends the operation. `CKR_BUFFER_TOO_SMALL`
///   is not an error here: `f` answers it as a live [`Step`] carrying the
///   needed length;
/// - a step that delivered the result ends it.
pub fn step<T, R>(
    slot: &mut Option<Active<T>>,
    call: Call,
    f: impl FnOnce(&mut T) -> Result<Step<R>>,
) -> Result<R> {
    let active = slot
        .as_mut()
        .ok_or_else(|| Error::rv(ck::CKR_OPERATION_NOT_INITIALIZED))?;
    match active.phase.admit(call).and_then(|()| f(&mut active.op)) {
        Ok(s) => {
            if s.done {
                *slot = None;
            }
            Ok(s.response)
        }
        Err(e) => {
            *slot = None;
            Err(e)
        }
    }
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
}

impl CryptOp {
    pub fn new(op: Box<dyn CipherOp>) -> Self {
        CryptOp { op, pending: None }
    }

    /// Run one call under the §5.2 output rules (the call's shape was
    /// admitted by [`step`]).
    pub fn step(&mut self, call: Call, data: &[u8], cap: OutCap) -> Result<Step> {
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
            return Ok(Step::live(Response::Output {
                len: len as u64,
                data: None,
            }));
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
            return Ok(Step::live(Response::Output { len, data: None }));
        }
        let response = Response::Output {
            len: out.len() as u64,
            data: Some(out),
        };
        Ok(if call == Call::Update {
            Step::live(response)
        } else {
            Step::done(response)
        })
    }
}

/// A running `C_FindObjects` search: the matching handles, in order.
pub struct FindState {
    pub results: Vec<u64>,
    pub pos: usize,
}

/// A running digest and its mechanism (checked against the
/// `CKA_ALLOWED_MECHANISMS` of a key `C_DigestKey` feeds in).
pub struct DigestState {
    pub op: Box<dyn DigestOp>,
    pub mech: u64,
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
    pub encrypt: Option<Active<CryptOp>>,
    pub decrypt: Option<Active<CryptOp>>,
    pub digest: Option<Active<DigestState>>,
    pub sign: Option<Active<Box<dyn SignOp>>>,
    pub verify: Option<Active<Box<dyn VerifyOp>>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(slot: &mut Option<Active<u32>>, call: Call, done: bool) -> Result<u32> {
        step(slot, call, |n| {
            *n += 1;
            Ok(Step { response: *n, done })
        })
    }

    fn rv(r: Result<u32>) -> u64 {
        r.err().map_or(ck::CKR_OK, |e| e.rv)
    }

    #[test]
    fn shapes_do_not_mix_and_every_error_ends_the_operation() {
        // Length answer of a single-part call, then an update: refused, ended.
        let mut slot = Some(Active::new(0));
        assert_eq!(ok(&mut slot, Call::Oneshot, false).ok(), Some(1));
        assert_eq!(
            rv(ok(&mut slot, Call::Update, false)),
            ck::CKR_OPERATION_ACTIVE
        );
        assert!(slot.is_none());
        assert_eq!(
            rv(ok(&mut slot, Call::Final, true)),
            ck::CKR_OPERATION_NOT_INITIALIZED
        );

        // Single-part length answer, then final: refused, ended.
        let mut slot = Some(Active::new(0));
        assert!(ok(&mut slot, Call::Oneshot, false).is_ok());
        assert_eq!(
            rv(ok(&mut slot, Call::Final, true)),
            ck::CKR_OPERATION_ACTIVE
        );
        assert!(slot.is_none());

        // Update, then a single-part call: refused, ended.
        let mut slot = Some(Active::new(0));
        assert!(ok(&mut slot, Call::Update, false).is_ok());
        assert_eq!(
            rv(ok(&mut slot, Call::Oneshot, true)),
            ck::CKR_OPERATION_ACTIVE
        );
        assert!(slot.is_none());

        // Legal: update, update, final (length answer), final.
        let mut slot = Some(Active::new(0));
        assert!(ok(&mut slot, Call::Update, false).is_ok());
        assert!(ok(&mut slot, Call::Update, false).is_ok());
        assert!(ok(&mut slot, Call::Final, false).is_ok());
        assert_eq!(ok(&mut slot, Call::Final, true).ok(), Some(4));
        assert!(slot.is_none());

        // Final straight after init is an empty multi-part operation.
        let mut slot = Some(Active::new(0));
        assert!(ok(&mut slot, Call::Final, true).is_ok());

        // A mechanism error ends the operation.
        let mut slot = Some(Active::new(0));
        let r = step(&mut slot, Call::Update, |_| -> Result<Step<u32>> {
            Err(Error::rv(ck::CKR_DATA_LEN_RANGE))
        });
        assert_eq!(rv(r), ck::CKR_DATA_LEN_RANGE);
        assert!(slot.is_none());
    }
}
