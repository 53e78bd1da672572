//! fork(): the child's inherited state is never used. Its calls answer
//! CKR_CRYPTOKI_NOT_INITIALIZED until it calls C_Initialize, which opens fresh
//! connections; the parent keeps working on its own connections afterwards.

use std::ptr::null_mut;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

const KEY128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const PLAIN20: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a57";
const CBC_PAD_CT: &str = "7649abac8119b246cee98e9b12e9197d2e013f890472d82217b17f45f6e7f539";

fn encrypt_kat(raw: &Raw, s: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE) -> Result<(), String> {
    let mut iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    let rv = p11!(raw, C_EncryptInit, s, &mut mech, k);
    if rv != CKR_OK {
        return Err(format!("C_EncryptInit: {}", rv_name(rv)));
    }
    let mut plain = hex(PLAIN20);
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        plain.as_mut_ptr(),
        20,
        out.as_mut_ptr(),
        &mut len
    );
    if rv != CKR_OK {
        return Err(format!("C_Encrypt: {}", rv_name(rv)));
    }
    if out.to_vec() != hex(CBC_PAD_CT) {
        return Err("C_Encrypt: wrong ciphertext".into());
    }
    Ok(())
}

/// Message to stderr without the test harness's capture (which a forked
/// child would never flush).
fn say(msg: &str) {
    let line = format!("[fork child {}] {msg}\n", std::process::id());
    // SAFETY: write(2) of a valid buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// The child's checks; the step number that failed becomes its exit code.
fn child_body(
    raw: &Raw,
    parent_session: CK_SESSION_HANDLE,
    parent_key: CK_OBJECT_HANDLE,
) -> Result<(), (i32, String)> {
    let mut n: CK_ULONG = 0;
    let rv = p11!(raw, C_GetSlotList, CK_TRUE, null_mut(), &mut n);
    if rv != CKR_CRYPTOKI_NOT_INITIALIZED {
        return Err((10, format!("C_GetSlotList in the child before C_Initialize: expected CKR_CRYPTOKI_NOT_INITIALIZED, got {}", rv_name(rv))));
    }
    let mut iv = [0u8; 16];
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    let rv = p11!(raw, C_EncryptInit, parent_session, &mut mech, parent_key);
    if rv != CKR_CRYPTOKI_NOT_INITIALIZED {
        return Err((11, format!("C_EncryptInit on the parent's session in the child: expected CKR_CRYPTOKI_NOT_INITIALIZED, got {}", rv_name(rv))));
    }
    let rv = raw.initialize();
    if rv != CKR_OK {
        return Err((12, format!("C_Initialize in the child: {}", rv_name(rv))));
    }
    let mut slots = [0 as CK_SLOT_ID; 8];
    let mut n: CK_ULONG = 8;
    let rv = p11!(raw, C_GetSlotList, CK_TRUE, slots.as_mut_ptr(), &mut n);
    if rv != CKR_OK || n == 0 {
        return Err((
            13,
            format!("C_GetSlotList in the child: {} ({n} slots)", rv_name(rv)),
        ));
    }
    let mut s: CK_SESSION_HANDLE = 0;
    let rv = p11!(
        raw,
        C_OpenSession,
        slots[0],
        CKF_SERIAL_SESSION | CKF_RW_SESSION,
        null_mut(),
        None,
        &mut s
    );
    if rv != CKR_OK {
        return Err((14, format!("C_OpenSession in the child: {}", rv_name(rv))));
    }
    // A new application: not logged in yet, even though the parent is.
    let rv = p11!(
        raw,
        C_Login,
        s,
        CKU_USER,
        USER_PIN.as_ptr() as *mut u8,
        USER_PIN.len() as CK_ULONG
    );
    if rv != CKR_OK {
        return Err((15, format!("C_Login in the child: {}", rv_name(rv))));
    }
    let mut label = b"fork-key".to_vec();
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: label.as_mut_ptr().cast(),
        ulValueLen: label.len() as CK_ULONG,
    }];
    let rv = p11!(raw, C_FindObjectsInit, s, t.as_mut_ptr(), 1);
    if rv != CKR_OK {
        return Err((
            16,
            format!("C_FindObjectsInit in the child: {}", rv_name(rv)),
        ));
    }
    let mut found = [0 as CK_OBJECT_HANDLE; 4];
    let mut n: CK_ULONG = 0;
    let rv = p11!(raw, C_FindObjects, s, found.as_mut_ptr(), 4, &mut n);
    let _ = p11!(raw, C_FindObjectsFinal, s);
    if rv != CKR_OK || n != 1 {
        return Err((
            17,
            format!(
                "C_FindObjects(fork-key) in the child: {} ({n} found)",
                rv_name(rv)
            ),
        ));
    }
    encrypt_kat(raw, s, found[0]).map_err(|e| (18, format!("child: {e}")))?;
    let rv = raw.finalize();
    if rv != CKR_OK {
        return Err((19, format!("C_Finalize in the child: {}", rv_name(rv))));
    }
    Ok(())
}

fn wait_child(pid: libc::pid_t, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            assert!(
                libc::WIFEXITED(status),
                "{what}: child did not exit normally (status {status:#x}, signal {})",
                libc::WTERMSIG(status)
            );
            let code = libc::WEXITSTATUS(status);
            assert_eq!(
                code, 0,
                "{what}: child failed at step {code} (see its stderr line above)"
            );
            return;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kill our own hung child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what}: child hung for 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn child_gets_not_initialized_then_reinitializes_parent_unaffected() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    raw.init_token(slot);
    let s = raw.open_rw(slot);
    raw.login_user(s);
    let k = raw
        .create(s, &mut aes_key_template("fork-key", &hex(KEY128), true))
        .unwrap_or_else(|rv| panic!("C_CreateObject: {}", rv_name(rv)));
    encrypt_kat(&raw, s, k).expect("parent before fork");

    // Child 1: the full cycle.
    // SAFETY: the child only calls into the module and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_body(&raw, s, k)))
            {
                Ok(Ok(())) => 0,
                Ok(Err((code, msg))) => {
                    say(&msg);
                    code
                }
                Err(_) => {
                    say("panicked");
                    99
                }
            };
        // SAFETY: leave without running the parent's atexit/destructors.
        unsafe { libc::_exit(code) };
    }
    wait_child(pid, "child 1 (not-initialized, re-initialize, work)");

    // The parent's session, login and operation state are intact.
    encrypt_kat(&raw, s, k).expect("parent after child 1");

    // Child 2: exits through exit(3) without touching the module: library
    // destructors run in the child and must not write to the parent's socket.
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain process exit in the child.
        unsafe { libc::exit(0) };
    }
    wait_child(pid, "child 2 (exit without calls)");

    // Child 3: C_Finalize without C_Initialize, then exit.
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let rv = raw.finalize();
        let code = if rv == CKR_CRYPTOKI_NOT_INITIALIZED {
            0
        } else {
            say(&format!(
                "C_Finalize in the child: expected CKR_CRYPTOKI_NOT_INITIALIZED, got {}",
                rv_name(rv)
            ));
            20
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    }
    wait_child(pid, "child 3 (C_Finalize without C_Initialize)");

    // Parent still fine, still logged in (child contexts did not log it out).
    encrypt_kat(&raw, s, k).expect("parent after children 2 and 3");
    let mut info = CK_SESSION_INFO::default();
    assert_rv(
        p11!(raw, C_GetSessionInfo, s, &mut info),
        CKR_OK,
        "C_GetSessionInfo",
    );
    assert_eq!(
        info.state, CKS_RW_USER_FUNCTIONS,
        "parent session state after the children"
    );
    // A multi-part operation in the parent across a fork.
    let mut iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit",
    );
    let mut plain = hex(PLAIN20);
    let mut out = [0u8; 64];
    let mut len: CK_ULONG = 64;
    assert_rv(
        p11!(
            raw,
            C_EncryptUpdate,
            s,
            plain.as_mut_ptr(),
            10,
            out.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_EncryptUpdate",
    );
    let mut got = out[..len as usize].to_vec();
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    wait_child(
        pid,
        "child 4 (fork in the middle of a multi-part operation)",
    );
    let mut len: CK_ULONG = 64;
    assert_rv(
        p11!(
            raw,
            C_EncryptUpdate,
            s,
            plain[10..].as_mut_ptr(),
            10,
            out.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_EncryptUpdate",
    );
    got.extend_from_slice(&out[..len as usize]);
    let mut len: CK_ULONG = 64;
    assert_rv(
        p11!(raw, C_EncryptFinal, s, out.as_mut_ptr(), &mut len),
        CKR_OK,
        "C_EncryptFinal",
    );
    got.extend_from_slice(&out[..len as usize]);
    assert_eq!(got, hex(CBC_PAD_CT), "multi-part CBC-PAD across a fork");

    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
    drop(daemon);
}
