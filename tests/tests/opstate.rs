//! Operation-state rules of PKCS#11 v3.0 §5.8–§5.12 for every operation
//! family (encrypt, decrypt, digest, sign, verify), through the raw
//! function list:
//! - a single-part call that answered only a length (`pOut` NULL, or a
//!   too-small buffer) keeps the operation active *as a single-part one*:
//!   `C_*Update` / `C_*Final` then answer `CKR_OPERATION_ACTIVE`;
//! - once `C_*Update` ran, the single-part call answers
//!   `CKR_OPERATION_ACTIVE`;
//! - every error other than `CKR_BUFFER_TOO_SMALL` (including those two
//!   `CKR_OPERATION_ACTIVE`s) ends the operation, so the next call answers
//!   `CKR_OPERATION_NOT_INITIALIZED` and a new `C_*Init` succeeds.

use std::ptr::null_mut;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Encrypt,
    Decrypt,
    Digest,
    Sign,
    Verify,
}

const ALL: [Family; 5] = [
    Family::Encrypt,
    Family::Decrypt,
    Family::Digest,
    Family::Sign,
    Family::Verify,
];

/// Where a single-part call writes: nowhere (length query), a 1-byte
/// buffer (too small for every family here) or a roomy one.
#[derive(Clone, Copy, Debug)]
enum Out {
    Query,
    Small,
    Room,
}

struct Fixture {
    raw: Raw,
    s: CK_SESSION_HANDLE,
    aes: CK_OBJECT_HANDLE,
    hmac: CK_OBJECT_HANDLE,
    iv: [u8; 16],
}

impl Fixture {
    fn new() -> Fixture {
        let raw = Raw::load();
        assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
        let slot = raw.first_slot();
        raw.init_token(slot);
        let s = raw.open_rw(slot);
        raw.login_user(s);
        let aes = raw
            .create(s, &mut aes_key_template("aes", &[7u8; 16], false))
            .unwrap_or_else(|rv| panic!("C_CreateObject(AES): {}", rv_name(rv)));
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
            .bool(CKA_TOKEN, false)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true)
            .bytes(CKA_VALUE, &[9u8; 32]);
        let hmac = raw
            .create(s, &mut t)
            .unwrap_or_else(|rv| panic!("C_CreateObject(HMAC key): {}", rv_name(rv)));
        Fixture {
            raw,
            s,
            aes,
            hmac,
            iv: [1u8; 16],
        }
    }

    fn init(&mut self, f: Family) -> CK_RV {
        let (raw, s) = (&self.raw, self.s);
        let mut cbc = CK_MECHANISM {
            mechanism: CKM_AES_CBC,
            pParameter: self.iv.as_mut_ptr().cast(),
            ulParameterLen: 16,
        };
        let plain = |m| CK_MECHANISM {
            mechanism: m,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        match f {
            Family::Encrypt => p11!(raw, C_EncryptInit, s, &mut cbc, self.aes),
            Family::Decrypt => p11!(raw, C_DecryptInit, s, &mut cbc, self.aes),
            Family::Digest => p11!(raw, C_DigestInit, s, &mut plain(CKM_SHA256)),
            Family::Sign => p11!(raw, C_SignInit, s, &mut plain(CKM_SHA256_HMAC), self.hmac),
            Family::Verify => p11!(raw, C_VerifyInit, s, &mut plain(CKM_SHA256_HMAC), self.hmac),
        }
    }

    /// The single-part call (`C_Encrypt`, `C_Digest`, ...). For verify,
    /// `out` is ignored (no output; the signature is 32 zero bytes).
    fn oneshot(&mut self, f: Family, out: Out) -> CK_RV {
        let (raw, s) = (&self.raw, self.s);
        let mut data = [5u8; 32];
        let mut buf = [0u8; 128];
        let (ptr, mut len): (*mut u8, CK_ULONG) = match out {
            Out::Query => (null_mut(), 0),
            Out::Small => (buf.as_mut_ptr(), 1),
            Out::Room => (buf.as_mut_ptr(), 128),
        };
        let d = data.as_mut_ptr();
        match f {
            Family::Encrypt => p11!(raw, C_Encrypt, s, d, 32, ptr, &mut len),
            Family::Decrypt => p11!(raw, C_Decrypt, s, d, 32, ptr, &mut len),
            Family::Digest => p11!(raw, C_Digest, s, d, 32, ptr, &mut len),
            Family::Sign => p11!(raw, C_Sign, s, d, 32, ptr, &mut len),
            Family::Verify => {
                let mut sig = [0u8; 32];
                p11!(raw, C_Verify, s, d, 32, sig.as_mut_ptr(), 32)
            }
        }
    }

    fn update(&mut self, f: Family) -> CK_RV {
        let (raw, s) = (&self.raw, self.s);
        let mut data = [5u8; 16];
        let mut buf = [0u8; 64];
        let mut len: CK_ULONG = 64;
        let d = data.as_mut_ptr();
        match f {
            Family::Encrypt => p11!(raw, C_EncryptUpdate, s, d, 16, buf.as_mut_ptr(), &mut len),
            Family::Decrypt => p11!(raw, C_DecryptUpdate, s, d, 16, buf.as_mut_ptr(), &mut len),
            Family::Digest => p11!(raw, C_DigestUpdate, s, d, 16),
            Family::Sign => p11!(raw, C_SignUpdate, s, d, 16),
            Family::Verify => p11!(raw, C_VerifyUpdate, s, d, 16),
        }
    }

    fn final_(&mut self, f: Family) -> CK_RV {
        let (raw, s) = (&self.raw, self.s);
        let mut buf = [0u8; 64];
        let mut len: CK_ULONG = 64;
        let b = buf.as_mut_ptr();
        match f {
            Family::Encrypt => p11!(raw, C_EncryptFinal, s, b, &mut len),
            Family::Decrypt => p11!(raw, C_DecryptFinal, s, b, &mut len),
            Family::Digest => p11!(raw, C_DigestFinal, s, b, &mut len),
            Family::Sign => p11!(raw, C_SignFinal, s, b, &mut len),
            Family::Verify => p11!(raw, C_VerifyFinal, s, b, 32),
        }
    }

    /// The operation is over: its single-part call is not initialized, and
    /// a new init succeeds (then the fresh operation is ended again).
    fn assert_ended(&mut self, f: Family, what: &str) {
        assert_rv(
            self.oneshot(f, Out::Room),
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{f:?}: single-part call after {what}"),
        );
        assert_rv(self.init(f), CKR_OK, &format!("{f:?}: init after {what}"));
        self.end(f);
    }

    /// End a live operation through a normal single-part call (verifying
    /// the zero MAC fails, which ends the operation just as well).
    fn end(&mut self, f: Family) {
        let rv = self.oneshot(f, Out::Room);
        assert!(
            rv == CKR_OK || (f == Family::Verify && rv == CKR_SIGNATURE_INVALID),
            "{f:?}: ending a fresh operation answered {}",
            rv_name(rv)
        );
    }
}

fn start() -> (Daemon, Fixture) {
    let daemon = Daemon::start();
    daemon.export_socket();
    let fx = Fixture::new();
    (daemon, fx)
}

/// After a single-part length query (or a too-small buffer), the operation
/// is a single-part one: `C_*Update` answers `CKR_OPERATION_ACTIVE` and
/// that error ends it.
#[test]
fn update_after_a_single_part_length_answer_is_operation_active_and_ends_it() {
    let _g = serial();
    let (_daemon, mut fx) = start();
    for f in ALL.into_iter().filter(|f| *f != Family::Verify) {
        for out in [Out::Query, Out::Small] {
            assert_rv(fx.init(f), CKR_OK, &format!("{f:?} init"));
            let want = match out {
                Out::Small => CKR_BUFFER_TOO_SMALL,
                _ => CKR_OK,
            };
            assert_rv(
                fx.oneshot(f, out),
                want,
                &format!("{f:?}: single-part call with {out:?}"),
            );
            assert_rv(
                fx.update(f),
                CKR_OPERATION_ACTIVE,
                &format!("{f:?}: update after single-part {out:?}"),
            );
            fx.assert_ended(f, &format!("update refused after {out:?}"));
        }
    }
    assert_rv(fx.raw.finalize(), CKR_OK, "C_Finalize");
}

/// After a single-part length query, `C_*Final` answers
/// `CKR_OPERATION_ACTIVE` and that error ends the operation (the issue's
/// `C_Digest(NULL)` then `C_DigestFinal` case, for every family).
#[test]
fn final_after_a_single_part_length_query_is_operation_active_and_ends_it() {
    let _g = serial();
    let (_daemon, mut fx) = start();
    for f in ALL.into_iter().filter(|f| *f != Family::Verify) {
        assert_rv(fx.init(f), CKR_OK, &format!("{f:?} init"));
        assert_rv(
            fx.oneshot(f, Out::Query),
            CKR_OK,
            &format!("{f:?}: length query"),
        );
        assert_rv(
            fx.final_(f),
            CKR_OPERATION_ACTIVE,
            &format!("{f:?}: final after a single-part length query"),
        );
        assert_rv(
            fx.final_(f),
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{f:?}: final again"),
        );
        fx.assert_ended(f, "final refused");
    }
    assert_rv(fx.raw.finalize(), CKR_OK, "C_Finalize");
}

/// Once `C_*Update` ran, the single-part call answers
/// `CKR_OPERATION_ACTIVE` — as a length query or with a buffer — and that
/// error ends the operation: `C_*Final` then answers
/// `CKR_OPERATION_NOT_INITIALIZED`.
#[test]
fn single_part_call_after_update_is_operation_active_and_ends_it() {
    let _g = serial();
    let (_daemon, mut fx) = start();
    for f in ALL {
        for out in [Out::Query, Out::Room] {
            assert_rv(fx.init(f), CKR_OK, &format!("{f:?} init"));
            assert_rv(fx.update(f), CKR_OK, &format!("{f:?} update"));
            assert_rv(
                fx.oneshot(f, out),
                CKR_OPERATION_ACTIVE,
                &format!("{f:?}: single-part call ({out:?}) after update"),
            );
            assert_rv(
                fx.final_(f),
                CKR_OPERATION_NOT_INITIALIZED,
                &format!("{f:?}: final after the refused single-part call"),
            );
            assert_rv(fx.init(f), CKR_OK, &format!("{f:?} init again"));
            fx.end(f);
        }
    }
    assert_rv(fx.raw.finalize(), CKR_OK, "C_Finalize");
}

/// The rules above do not get in the way of the legal sequences: a length
/// query then the real single-part call, and update → final with a final
/// length query in between.
#[test]
fn legal_sequences_still_work() {
    let _g = serial();
    let (_daemon, mut fx) = start();
    for f in [Family::Encrypt, Family::Digest, Family::Sign] {
        assert_rv(fx.init(f), CKR_OK, &format!("{f:?} init"));
        assert_rv(fx.oneshot(f, Out::Query), CKR_OK, "length query");
        assert_rv(fx.oneshot(f, Out::Small), CKR_BUFFER_TOO_SMALL, "small");
        assert_rv(fx.oneshot(f, Out::Room), CKR_OK, "single-part call");
        assert_rv(fx.init(f), CKR_OK, &format!("{f:?} init for multi-part"));
        assert_rv(fx.update(f), CKR_OK, "update");
        let (raw, s) = (&fx.raw, fx.s);
        let mut len: CK_ULONG = 0;
        let rv = match f {
            Family::Encrypt => p11!(raw, C_EncryptFinal, s, null_mut(), &mut len),
            Family::Digest => p11!(raw, C_DigestFinal, s, null_mut(), &mut len),
            _ => p11!(raw, C_SignFinal, s, null_mut(), &mut len),
        };
        assert_rv(rv, CKR_OK, &format!("{f:?}: final length query"));
        let want = if f == Family::Encrypt { 0 } else { 32 };
        assert_eq!(
            len, want,
            "{f:?}: final length (CBC keeps nothing after 16 bytes)"
        );
        assert_rv(fx.final_(f), CKR_OK, &format!("{f:?}: final"));
        assert_rv(
            fx.final_(f),
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{f:?}: final after the operation finished"),
        );
    }
    assert_rv(fx.raw.finalize(), CKR_OK, "C_Finalize");
}
