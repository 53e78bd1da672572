//! Random number generation (PKCS#11 v3.0 §5.15).

use p11kms_protocol::{Request, Response};
use pkcs11_sys::*;

use crate::client::{call, ensure};
use crate::ffi::{boundary, data_in, len_in, CkResult};
use crate::slot::expect_ok;

/// Bytes asked of the daemon per round trip: large requests are split so
/// no single frame gets near the frame limit.
const CHUNK: usize = 1024 * 1024;

/// `C_SeedRandom`.
///
/// # Safety
/// `seed` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    session: CK_SESSION_HANDLE,
    seed: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { seed_random(session, seed, len) })
}

unsafe fn seed_random(
    session: CK_SESSION_HANDLE,
    seed: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    // SAFETY: forwarded contract.
    let seed = unsafe { data_in(seed, len) }?;
    expect_ok(call(Request::SeedRandom { session, seed })?)
}

/// `C_GenerateRandom`.
///
/// # Safety
/// `out` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    session: CK_SESSION_HANDLE,
    out: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CK_RV {
    boundary!(unsafe { generate_random(session, out, len) })
}

unsafe fn generate_random(
    session: CK_SESSION_HANDLE,
    out: CK_BYTE_PTR,
    len: CK_ULONG,
) -> CkResult<()> {
    ensure()?;
    let total = len_in(len)?;
    if out.is_null() && total > 0 {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let mut done = 0usize;
    // One request even for zero bytes, so the session is still checked.
    loop {
        let n = (total - done).min(CHUNK);
        let Response::Bytes(bytes) = call(Request::GenerateRandom {
            session,
            len: n as u64,
        })?
        else {
            return Err(CKR_DEVICE_ERROR);
        };
        if bytes.len() != n {
            return Err(CKR_DEVICE_ERROR);
        }
        if n > 0 {
            // SAFETY: `out` has `total` writable bytes and `done + n <= total`.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.add(done), n) };
        }
        done += n;
        if done == total {
            return Ok(());
        }
    }
}
