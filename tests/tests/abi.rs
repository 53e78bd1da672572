//! The C ABI rules, through the raw function list: PKCS#11 §5.2 length
//! queries and CKR_BUFFER_TOO_SMALL with the operation kept alive,
//! C_Initialize / C_Finalize rules.

use std::ptr::null_mut;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

const KEY128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const PLAIN20: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a57";
/// AES-128-CBC-PAD of PLAIN20, IV 00..0f (checked with python-cryptography).
const CBC_PAD_CT: &str = "7649abac8119b246cee98e9b12e9197d2e013f890472d82217b17f45f6e7f539";

fn ready(raw: &Raw) -> CK_SESSION_HANDLE {
    let slot = raw.first_slot();
    if raw.token_info(slot).flags & CKF_TOKEN_INITIALIZED == 0 {
        raw.init_token(slot);
    }
    let s = raw.open_rw(slot);
    raw.login_user(s);
    s
}

fn key(raw: &Raw, s: CK_SESSION_HANDLE, hexkey: &str) -> CK_OBJECT_HANDLE {
    raw.create(s, &mut aes_key_template("kat", &hex(hexkey), false))
        .unwrap_or_else(|rv| panic!("C_CreateObject(AES key): {}", rv_name(rv)))
}

#[test]
fn length_query_then_too_small_then_right_buffer() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let s = ready(&raw);
    let k = key(&raw, s, KEY128);

    // --- C_Encrypt, AES-CBC-PAD, 20 bytes -> 32 bytes
    let mut iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit(CBC-PAD)",
    );
    let mut plain = hex(PLAIN20);
    let mut len: CK_ULONG = 0;
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        plain.as_mut_ptr(),
        plain.len() as CK_ULONG,
        null_mut(),
        &mut len
    );
    assert_rv(rv, CKR_OK, "C_Encrypt(pOut = NULL)");
    assert_eq!(len, 32, "length query for 20 bytes of AES-CBC-PAD");
    let mut small = [0u8; 16];
    let mut len: CK_ULONG = 16;
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        plain.as_mut_ptr(),
        plain.len() as CK_ULONG,
        small.as_mut_ptr(),
        &mut len
    );
    assert_rv(rv, CKR_BUFFER_TOO_SMALL, "C_Encrypt(16-byte buffer)");
    assert_eq!(len, 32, "needed length reported with CKR_BUFFER_TOO_SMALL");
    assert_eq!(small, [0u8; 16], "nothing written into a too-small buffer");
    let mut out = [0u8; 48];
    let mut len: CK_ULONG = 48;
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        plain.as_mut_ptr(),
        plain.len() as CK_ULONG,
        out.as_mut_ptr(),
        &mut len
    );
    assert_rv(
        rv,
        CKR_OK,
        "C_Encrypt(right buffer) after NULL and too-small calls",
    );
    assert_eq!(
        &out[..len as usize],
        &hex(CBC_PAD_CT)[..],
        "AES-128-CBC-PAD known answer"
    );
    // The operation is over now.
    let mut len: CK_ULONG = 48;
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        plain.as_mut_ptr(),
        plain.len() as CK_ULONG,
        out.as_mut_ptr(),
        &mut len
    );
    assert_rv(
        rv,
        CKR_OPERATION_NOT_INITIALIZED,
        "C_Encrypt after the operation finished",
    );

    // --- C_Decrypt, AES-GCM (test case 4): query may over-estimate, result is exact
    let kg = key(&raw, s, "feffe9928665731c6d6a8f9467308308");
    let mut gcm_iv = hex("cafebabefacedbaddecaf888");
    let mut aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let mut params = CK_GCM_PARAMS {
        pIv: gcm_iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: aad.len() as CK_ULONG,
        ulTagBits: 128,
    };
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: (&mut params as *mut CK_GCM_PARAMS).cast(),
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    };
    let mut ct = hex(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091\
         5bc94fbc3221a5db94fae95ae7121a47",
    );
    assert_rv(
        p11!(raw, C_DecryptInit, s, &mut mech, kg),
        CKR_OK,
        "C_DecryptInit(GCM, 3.0 params)",
    );
    let mut len: CK_ULONG = 0;
    let rv = p11!(
        raw,
        C_Decrypt,
        s,
        ct.as_mut_ptr(),
        ct.len() as CK_ULONG,
        null_mut(),
        &mut len
    );
    assert_rv(rv, CKR_OK, "C_Decrypt(GCM, pOut = NULL)");
    assert!(len >= 60, "GCM decrypt length query {len} < 60");
    let mut small = [0u8; 10];
    let mut len2: CK_ULONG = 10;
    let rv = p11!(
        raw,
        C_Decrypt,
        s,
        ct.as_mut_ptr(),
        ct.len() as CK_ULONG,
        small.as_mut_ptr(),
        &mut len2
    );
    assert_rv(rv, CKR_BUFFER_TOO_SMALL, "C_Decrypt(GCM, 10-byte buffer)");
    assert!(
        len2 >= 60,
        "needed length {len2} after CKR_BUFFER_TOO_SMALL"
    );
    let mut out = vec![0u8; len as usize];
    let rv = p11!(
        raw,
        C_Decrypt,
        s,
        ct.as_mut_ptr(),
        ct.len() as CK_ULONG,
        out.as_mut_ptr(),
        &mut len
    );
    assert_rv(rv, CKR_OK, "C_Decrypt(GCM, right buffer)");
    assert_eq!(
        &out[..len as usize],
        &hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")[..],
        "GCM test case 4 plaintext"
    );

    // --- GCM with the 2.40 parameter layout (no ulIvBits, 40 bytes), as Java sends it first
    #[repr(C)]
    struct GcmParams240 {
        p_iv: *mut u8,
        ul_iv_len: CK_ULONG,
        p_aad: *mut u8,
        ul_aad_len: CK_ULONG,
        ul_tag_bits: CK_ULONG,
    }
    let mut p240 = GcmParams240 {
        p_iv: gcm_iv.as_mut_ptr(),
        ul_iv_len: 12,
        p_aad: aad.as_mut_ptr(),
        ul_aad_len: aad.len() as CK_ULONG,
        ul_tag_bits: 128,
    };
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: (&mut p240 as *mut GcmParams240).cast(),
        ulParameterLen: 40,
    };
    assert_rv(
        p11!(raw, C_DecryptInit, s, &mut mech, kg),
        CKR_OK,
        "C_DecryptInit(GCM, 2.40 params, 40 bytes)",
    );
    let mut out = vec![0u8; 128];
    let mut len: CK_ULONG = 128;
    let rv = p11!(
        raw,
        C_Decrypt,
        s,
        ct.as_mut_ptr(),
        ct.len() as CK_ULONG,
        out.as_mut_ptr(),
        &mut len
    );
    assert_rv(rv, CKR_OK, "C_Decrypt(GCM, 2.40 params)");
    assert_eq!(len, 60, "GCM 2.40 layout plaintext length");

    // --- C_Digest SHA-256("abc")
    let mut mech = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_rv(
        p11!(raw, C_DigestInit, s, &mut mech),
        CKR_OK,
        "C_DigestInit(SHA-256)",
    );
    let mut data = b"abc".to_vec();
    let mut len: CK_ULONG = 0;
    assert_rv(
        p11!(raw, C_Digest, s, data.as_mut_ptr(), 3, null_mut(), &mut len),
        CKR_OK,
        "C_Digest(NULL)",
    );
    assert_eq!(len, 32);
    let mut small = [0u8; 31];
    let mut len: CK_ULONG = 31;
    assert_rv(
        p11!(
            raw,
            C_Digest,
            s,
            data.as_mut_ptr(),
            3,
            small.as_mut_ptr(),
            &mut len
        ),
        CKR_BUFFER_TOO_SMALL,
        "C_Digest(31 bytes)",
    );
    assert_eq!(len, 32);
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    assert_rv(
        p11!(
            raw,
            C_Digest,
            s,
            data.as_mut_ptr(),
            3,
            out.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_Digest(32 bytes)",
    );
    assert_eq!(
        out.to_vec(),
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );

    // --- C_WrapKey (RFC 3394): 16-byte key -> 24 bytes; RFC 3394 §4.1 vector
    let kek = key(&raw, s, "000102030405060708090A0B0C0D0E0F");
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_SENSITIVE, false)
        .bytes(CKA_VALUE, &hex("00112233445566778899AABBCCDDEEFF"));
    let target = raw
        .create(s, &mut t)
        .unwrap_or_else(|rv| panic!("C_CreateObject: {}", rv_name(rv)));
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut len: CK_ULONG = 0;
    assert_rv(
        p11!(
            raw,
            C_WrapKey,
            s,
            &mut mech,
            kek,
            target,
            null_mut(),
            &mut len
        ),
        CKR_OK,
        "C_WrapKey(NULL)",
    );
    assert_eq!(len, 24, "wrapped length of a 16-byte key");
    let mut small = [0u8; 8];
    let mut len: CK_ULONG = 8;
    assert_rv(
        p11!(
            raw,
            C_WrapKey,
            s,
            &mut mech,
            kek,
            target,
            small.as_mut_ptr(),
            &mut len
        ),
        CKR_BUFFER_TOO_SMALL,
        "C_WrapKey(8 bytes)",
    );
    assert_eq!(len, 24);
    let mut out = [0u8; 24];
    let mut len: CK_ULONG = 24;
    assert_rv(
        p11!(
            raw,
            C_WrapKey,
            s,
            &mut mech,
            kek,
            target,
            out.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_WrapKey(24 bytes)",
    );
    assert_eq!(
        out.to_vec(),
        hex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"),
        "RFC 3394 §4.1"
    );

    // --- C_GenerateRandom with a NULL buffer is a bad argument, not a crash
    let rv = p11!(raw, C_GenerateRandom, s, null_mut(), 16);
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_GenerateRandom(NULL, 16)");

    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

extern "C" fn create_mutex(_: *mut *mut std::ffi::c_void) -> CK_RV {
    CKR_OK
}
extern "C" fn mutex_op(_: *mut std::ffi::c_void) -> CK_RV {
    CKR_OK
}

#[test]
fn initialize_and_finalize_rules() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();

    // Before C_Initialize.
    let mut n: CK_ULONG = 0;
    assert_rv(
        p11!(raw, C_GetSlotList, CK_TRUE, null_mut(), &mut n),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_GetSlotList before C_Initialize",
    );

    // Mutex callbacks without CKF_OS_LOCKING_OK: CKR_CANT_LOCK.
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: Some(create_mutex),
        DestroyMutex: Some(mutex_op),
        LockMutex: Some(mutex_op),
        UnlockMutex: Some(mutex_op),
        flags: 0,
        pReserved: null_mut(),
    };
    let rv = p11!(
        raw,
        C_Initialize,
        (&mut args as *mut CK_C_INITIALIZE_ARGS).cast()
    );
    assert_rv(
        rv,
        CKR_CANT_LOCK,
        "C_Initialize(app mutex callbacks, no CKF_OS_LOCKING_OK)",
    );
    // Only some callbacks: CKR_ARGUMENTS_BAD.
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: Some(create_mutex),
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: 0,
        pReserved: null_mut(),
    };
    let rv = p11!(
        raw,
        C_Initialize,
        (&mut args as *mut CK_C_INITIALIZE_ARGS).cast()
    );
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_Initialize(only CreateMutex set)");
    // pReserved must be NULL.
    let mut dummy = 0u8;
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: (&mut dummy as *mut u8).cast(),
    };
    let rv = p11!(
        raw,
        C_Initialize,
        (&mut args as *mut CK_C_INITIALIZE_ARGS).cast()
    );
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_Initialize(pReserved != NULL)");

    // NULL args, then again.
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize(NULL)");
    assert_rv(
        raw.initialize(),
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
        "second C_Initialize",
    );
    assert_rv(
        raw.initialize_os_locking(),
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
        "third C_Initialize (OS locking)",
    );
    let s = ready(&raw);
    let k = key(&raw, s, KEY128);
    let _ = k;

    // C_Finalize(pReserved != NULL) is a bad argument.
    let rv = p11!(raw, C_Finalize, (&mut dummy as *mut u8).cast());
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_Finalize(non-NULL)");
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
    assert_rv(
        raw.finalize(),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "second C_Finalize",
    );
    assert_rv(
        p11!(raw, C_GetSlotList, CK_TRUE, null_mut(), &mut n),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_GetSlotList after C_Finalize",
    );
    let rv = p11!(raw, C_CloseSession, s);
    assert_rv(
        rv,
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_CloseSession after C_Finalize",
    );

    // And initialize again: everything works, session objects of the old
    // application context are gone.
    assert_rv(
        raw.initialize_os_locking(),
        CKR_OK,
        "C_Initialize(CKF_OS_LOCKING_OK) after C_Finalize",
    );
    let slot = raw.first_slot();
    assert!(
        raw.token_info(slot).flags & CKF_TOKEN_INITIALIZED != 0,
        "token still initialized"
    );
    let s = raw.open_rw(slot);
    raw.login_user(s);
    let mut t = Template::new().bytes(CKA_LABEL, b"kat");
    assert!(
        raw.find(s, &mut t).is_empty(),
        "session objects survived C_Finalize"
    );
    let k = key(&raw, s, KEY128);
    let mut iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit after re-initialize",
    );
    let mut plain = hex(PLAIN20);
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    assert_rv(
        p11!(
            raw,
            C_Encrypt,
            s,
            plain.as_mut_ptr(),
            20,
            out.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_Encrypt after re-initialize",
    );
    assert_eq!(out.to_vec(), hex(CBC_PAD_CT));
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

/// An argument the module rejects itself still ends the operation, as
/// every error but CKR_BUFFER_TOO_SMALL does (v3.0 §5.8–§5.12): the next
/// `C_*Init` succeeds instead of answering CKR_OPERATION_ACTIVE.
#[test]
fn a_locally_rejected_call_ends_the_operation() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let s = ready(&raw);
    let k = key(&raw, s, KEY128);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut data = [0u8; 16];
    let mut out = [0u8; 16];

    // C_Encrypt with pulEncryptedDataLen = NULL.
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit",
    );
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        data.as_mut_ptr(),
        16,
        out.as_mut_ptr(),
        null_mut()
    );
    assert_rv(
        rv,
        CKR_ARGUMENTS_BAD,
        "C_Encrypt(pulEncryptedDataLen = NULL)",
    );
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit after a locally rejected C_Encrypt",
    );
    // C_EncryptUpdate with pData = NULL and a length.
    let mut len: CK_ULONG = 16;
    let rv = p11!(
        raw,
        C_EncryptUpdate,
        s,
        null_mut(),
        16,
        out.as_mut_ptr(),
        &mut len
    );
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_EncryptUpdate(pPart = NULL, 16)");
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit after a locally rejected C_EncryptUpdate",
    );
    // C_EncryptFinal with pulLastEncryptedPartLen = NULL.
    let rv = p11!(raw, C_EncryptFinal, s, out.as_mut_ptr(), null_mut());
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_EncryptFinal(NULL length)");
    assert_rv(
        p11!(raw, C_DecryptInit, s, &mut mech, k),
        CKR_OK,
        "C_DecryptInit",
    );
    let rv = p11!(
        raw,
        C_Decrypt,
        s,
        null_mut(),
        16,
        out.as_mut_ptr(),
        &mut len
    );
    assert_rv(
        rv,
        CKR_ARGUMENTS_BAD,
        "C_Decrypt(pEncryptedData = NULL, 16)",
    );
    assert_rv(
        p11!(raw, C_DecryptInit, s, &mut mech, k),
        CKR_OK,
        "C_DecryptInit after a locally rejected C_Decrypt",
    );

    // Digest: C_DigestUpdate with pPart = NULL and a length.
    let mut sha = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_rv(p11!(raw, C_DigestInit, s, &mut sha), CKR_OK, "C_DigestInit");
    let rv = p11!(raw, C_DigestUpdate, s, null_mut(), 3);
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_DigestUpdate(NULL, 3)");
    assert_rv(
        p11!(raw, C_DigestInit, s, &mut sha),
        CKR_OK,
        "C_DigestInit after a locally rejected C_DigestUpdate",
    );

    // Verify (SHA-256 HMAC with a generic secret): C_VerifyFinal with
    // pSignature = NULL and a length.
    let mut tmpl = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_TOKEN, false)
        .bool(CKA_VERIFY, true)
        .bytes(CKA_VALUE, &[0x0b; 32]);
    let mk = raw
        .create(s, &mut tmpl)
        .unwrap_or_else(|rv| panic!("C_CreateObject(HMAC key): {}", rv_name(rv)));
    let mut mac = CK_MECHANISM {
        mechanism: CKM_SHA256_HMAC,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_rv(
        p11!(raw, C_VerifyInit, s, &mut mac, mk),
        CKR_OK,
        "C_VerifyInit",
    );
    let rv = p11!(raw, C_VerifyUpdate, s, data.as_mut_ptr(), 16);
    assert_rv(rv, CKR_OK, "C_VerifyUpdate");
    let rv = p11!(raw, C_VerifyFinal, s, null_mut(), 32);
    assert_rv(rv, CKR_ARGUMENTS_BAD, "C_VerifyFinal(NULL, 32)");
    assert_rv(
        p11!(raw, C_VerifyInit, s, &mut mac, mk),
        CKR_OK,
        "C_VerifyInit after a locally rejected C_VerifyFinal",
    );
    // A length query (pOut = NULL) keeps the operation: it is not an error.
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OK,
        "C_EncryptInit",
    );
    let rv = p11!(
        raw,
        C_Encrypt,
        s,
        data.as_mut_ptr(),
        16,
        null_mut(),
        &mut len
    );
    assert_rv(rv, CKR_OK, "C_Encrypt(pEncryptedData = NULL)");
    assert_rv(
        p11!(raw, C_EncryptInit, s, &mut mech, k),
        CKR_OPERATION_ACTIVE,
        "C_EncryptInit while the queried operation is active",
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}
