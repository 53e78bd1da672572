//! The C ABI end to end against a fake daemon speaking the real protocol on
//! a real Unix socket: handshake, pool, length rules, attribute answers,
//! mechanism parameters on the wire, fork behaviour. One test function,
//! because the module's state is process-wide, as in a real consumer.

#![allow(clippy::unwrap_used)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::ptr;
use std::sync::{Arc, Mutex};

use p11kms_protocol::frame::{read_frame, write_frame};
use p11kms_protocol::{
    AttrResult, MechParam, Mechanism, Request, Response, TokenInfo, PROTOCOL_VERSION,
};
use pkcs11_sys::*;

#[derive(Default)]
struct Seen {
    hellos: Vec<([u8; 16], u32)>,
    mechs: Vec<Mechanism>,
}

fn answer(req: Request, seen: &Mutex<Seen>) -> Response {
    match req {
        Request::Hello { app_id, pid, .. } => {
            seen.lock().unwrap().hellos.push((app_id, pid));
            Response::Hello {
                version: PROTOCOL_VERSION,
                server: "fake".into(),
            }
        }
        Request::GetSlotList { .. } => Response::SlotList(vec![1, 2, 3]),
        Request::GetTokenInfo { .. } => Response::TokenInfo(TokenInfo {
            label: "my token".into(),
            serial: "0123456789abcdef-too-long".into(),
            utc_time: String::new(),
            ..Default::default()
        }),
        Request::OpenSession { .. } => Response::Handle(77),
        Request::EncryptInit { mech, .. } => {
            seen.lock().unwrap().mechs.push(mech);
            Response::Ok
        }
        Request::Encrypt { data, out, .. } => {
            let len = data.len() as u64 + 1;
            match out {
                Some(cap) if cap >= len => {
                    let mut v: Vec<u8> = data.iter().rev().copied().collect();
                    v.push(0xff);
                    Response::Output { len, data: Some(v) }
                }
                _ => Response::Output { len, data: None },
            }
        }
        Request::GetAttributeValue { types, .. } => Response::Attributes(
            types
                .iter()
                .map(|&t| match t {
                    CKA_LABEL => AttrResult::Value(b"label".to_vec()),
                    CKA_VALUE => AttrResult::Sensitive,
                    _ => AttrResult::Invalid,
                })
                .collect(),
        ),
        Request::GenerateRandom { len, .. } => Response::Bytes(vec![0xab; len as usize]),
        _ => Response::Error(CKR_FUNCTION_NOT_SUPPORTED),
    }
}

fn serve(mut s: UnixStream, seen: Arc<Mutex<Seen>>) {
    while let Ok(req) = read_frame::<_, Request>(&mut s) {
        if write_frame(&mut s, &answer(req, &seen)).is_err() {
            return;
        }
    }
}

fn start_fake_daemon() -> (std::path::PathBuf, Arc<Mutex<Seen>>) {
    let dir = std::env::temp_dir().join(format!("p11kms-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fake.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let seen = seen2.clone();
            std::thread::spawn(move || serve(s, seen));
        }
    });
    (path, seen)
}

/// The 3.0 function table, as a consumer gets it.
fn table() -> &'static CK_FUNCTION_LIST_3_0 {
    let mut iface: CK_INTERFACE_PTR = ptr::null_mut();
    unsafe {
        assert_eq!(
            p11kms::C_GetInterface(ptr::null_mut(), ptr::null_mut(), &mut iface, 0),
            CKR_OK
        );
        &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0)
    }
}

/// Call through the table: `f!(C_Name)(args)`.
macro_rules! f {
    ($name:ident) => {
        table().$name.unwrap()
    };
}

unsafe fn slot_count() -> (CK_RV, CK_ULONG) {
    let mut n: CK_ULONG = 0;
    let rv = unsafe { f!(C_GetSlotList)(CK_TRUE, ptr::null_mut(), &mut n) };
    (rv, n)
}

#[test]
fn c_abi_against_fake_daemon() {
    unsafe {
        // Before C_Initialize.
        assert_eq!(slot_count().0, CKR_CRYPTOKI_NOT_INITIALIZED);
        let mut fl: CK_FUNCTION_LIST_PTR = ptr::null_mut();
        assert_eq!(p11kms::C_GetFunctionList(&mut fl), CKR_OK);
        assert_eq!(((*fl).version.major, (*fl).version.minor), (2, 40));
        let mut n: CK_ULONG = 0;
        assert_eq!(p11kms::C_GetInterfaceList(ptr::null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 2);
        let mut ifaces = [CK_INTERFACE::default(); 2];
        n = 1;
        assert_eq!(
            p11kms::C_GetInterfaceList(ifaces.as_mut_ptr(), &mut n),
            CKR_BUFFER_TOO_SMALL
        );
        n = 2;
        assert_eq!(
            p11kms::C_GetInterfaceList(ifaces.as_mut_ptr(), &mut n),
            CKR_OK
        );
        let v0 = &*(ifaces[0].pFunctionList as *const CK_VERSION);
        assert_eq!((v0.major, v0.minor), (3, 0));
        let mut iface: CK_INTERFACE_PTR = ptr::null_mut();
        let mut want = CK_VERSION {
            major: 2,
            minor: 40,
        };
        assert_eq!(
            p11kms::C_GetInterface(
                c"PKCS 11".as_ptr().cast_mut().cast(),
                &mut want,
                &mut iface,
                0
            ),
            CKR_OK
        );
        assert_eq!(
            ((*iface).pFunctionList as *const CK_FUNCTION_LIST),
            fl as *const CK_FUNCTION_LIST
        );
        assert_eq!(
            p11kms::C_GetInterface(ptr::null_mut(), ptr::null_mut(), &mut iface, 0),
            CKR_OK
        );
        assert_eq!(
            p11kms::C_GetInterface(
                c"other".as_ptr().cast_mut().cast(),
                ptr::null_mut(),
                &mut iface,
                0
            ),
            CKR_ARGUMENTS_BAD
        );
        let f30 = &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0);
        assert!(f30.C_MessageVerifyFinal.is_some() && f30.C_SessionCancel.is_some());

        // Daemon not reachable: clear error, no hang.
        std::env::set_var("P11KMS_SOCKET", "/nonexistent/p11kms.sock");
        assert_eq!(f!(C_Initialize)(ptr::null_mut()), CKR_DEVICE_ERROR);

        // Bad initialize arguments.
        let (path, seen) = start_fake_daemon();
        std::env::set_var("P11KMS_SOCKET", &path);
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: 0,
            pReserved: 1 as CK_VOID_PTR,
        };
        assert_eq!(f!(C_Initialize)((&raw mut args).cast()), CKR_ARGUMENTS_BAD);
        args.pReserved = ptr::null_mut();
        args.flags = CKF_OS_LOCKING_OK;
        assert_eq!(f!(C_Initialize)((&raw mut args).cast()), CKR_OK);
        assert_eq!(
            f!(C_Initialize)(ptr::null_mut()),
            CKR_CRYPTOKI_ALREADY_INITIALIZED
        );

        // Info.
        let mut info = CK_INFO::default();
        assert_eq!(f!(C_GetInfo)(&mut info), CKR_OK);
        assert_eq!(&info.manufacturerID[..8], b"p11kms  ");
        assert_eq!(
            (info.cryptokiVersion.major, info.cryptokiVersion.minor),
            (3, 0)
        );

        // Slot list length rules.
        assert_eq!(slot_count(), (CKR_OK, 3));
        let mut slots = [0 as CK_ULONG; 3];
        let mut n: CK_ULONG = 2;
        assert_eq!(
            f!(C_GetSlotList)(CK_TRUE, slots.as_mut_ptr(), &mut n),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, 3);
        assert_eq!(
            f!(C_GetSlotList)(CK_TRUE, slots.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(slots, [1, 2, 3]);
        assert_eq!(
            f!(C_GetSlotList)(CK_TRUE, slots.as_mut_ptr(), ptr::null_mut()),
            CKR_ARGUMENTS_BAD
        );

        // Token info padding.
        let mut ti = CK_TOKEN_INFO::default();
        assert_eq!(f!(C_GetTokenInfo)(1, &mut ti), CKR_OK);
        assert_eq!(&ti.label[..10], b"my token  ");
        assert_eq!(&ti.serialNumber, b"0123456789abcdef");
        assert_eq!(&ti.utcTime, b"                ");

        let mut h: CK_SESSION_HANDLE = 0;
        assert_eq!(
            f!(C_OpenSession)(1, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h),
            CKR_OK
        );
        assert_eq!(h, 77);

        // GCM parameters, both layouts, reach the daemon typed.
        let iv = [9u8; 12];
        let gcm = CK_GCM_PARAMS {
            pIv: iv.as_ptr().cast_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: ptr::null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: (&raw const gcm).cast_mut().cast(),
            ulParameterLen: 48,
        };
        assert_eq!(f!(C_EncryptInit)(h, &mut m, 5), CKR_OK);
        m.ulParameterLen = 44;
        assert_eq!(f!(C_EncryptInit)(h, &mut m, 5), CKR_MECHANISM_PARAM_INVALID);
        assert_eq!(
            seen.lock().unwrap().mechs.last().cloned(),
            Some(Mechanism {
                mech: CKM_AES_GCM,
                param: MechParam::Gcm {
                    iv: iv.to_vec(),
                    iv_bits: Some(96),
                    aad: vec![],
                    tag_bits: 128
                }
            })
        );
        assert_eq!(f!(C_EncryptInit)(h, ptr::null_mut(), 5), CKR_ARGUMENTS_BAD);

        // Encrypt length rules: query, too small, exact.
        let data = *b"abc";
        let mut out = [0u8; 8];
        let mut len: CK_ULONG = 0;
        assert_eq!(
            f!(C_Encrypt)(h, data.as_ptr().cast_mut(), 3, ptr::null_mut(), &mut len),
            CKR_OK
        );
        assert_eq!(len, 4);
        len = 2;
        assert_eq!(
            f!(C_Encrypt)(h, data.as_ptr().cast_mut(), 3, out.as_mut_ptr(), &mut len),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 4);
        len = 8;
        assert_eq!(
            f!(C_Encrypt)(h, data.as_ptr().cast_mut(), 3, out.as_mut_ptr(), &mut len),
            CKR_OK
        );
        assert_eq!(&out[..len as usize], b"cba\xff");
        assert_eq!(
            f!(C_Encrypt)(
                h,
                data.as_ptr().cast_mut(),
                3,
                out.as_mut_ptr(),
                ptr::null_mut()
            ),
            CKR_ARGUMENTS_BAD
        );

        // GetAttributeValue.
        let mut label = [0u8; 16];
        let mut t = [
            CK_ATTRIBUTE {
                type_: CKA_LABEL,
                pValue: label.as_mut_ptr().cast(),
                ulValueLen: 16,
            },
            CK_ATTRIBUTE {
                type_: CKA_VALUE,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            },
            CK_ATTRIBUTE {
                type_: CKA_ALWAYS_AUTHENTICATE,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            },
        ];
        assert_eq!(
            f!(C_GetAttributeValue)(h, 1, t.as_mut_ptr(), 3),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(t[0].ulValueLen, 5);
        assert_eq!(&label[..5], b"label");
        assert_eq!(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(
            f!(C_GetAttributeValue)(h, 1, t.as_mut_ptr().add(2), 1),
            CKR_ATTRIBUTE_TYPE_INVALID
        );

        // Random, chunked past 1 MiB.
        let mut big = vec![0u8; 3 * 1024 * 1024 + 5];
        assert_eq!(
            f!(C_GenerateRandom)(h, big.as_mut_ptr(), big.len() as CK_ULONG),
            CKR_OK
        );
        assert!(big.iter().all(|&b| b == 0xab));
        assert_eq!(
            f!(C_GenerateRandom)(h, ptr::null_mut(), 4),
            CKR_ARGUMENTS_BAD
        );

        // Daemon errors pass through; unsupported functions are honest.
        assert_eq!(f!(C_Logout)(h), CKR_FUNCTION_NOT_SUPPORTED);
        assert_eq!(
            p11kms::sign::C_SignRecoverInit(h, &mut m, 1),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(f!(C_GetFunctionStatus)(h), CKR_FUNCTION_NOT_PARALLEL);

        // Many threads at once share the pool.
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..50 {
                        assert_eq!(slot_count(), (CKR_OK, 3));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let parent_app = seen.lock().unwrap().hellos[0].0;
        assert!(seen
            .lock()
            .unwrap()
            .hellos
            .iter()
            .all(|(a, p)| *a == parent_app && *p == std::process::id()));

        // Fork: the child is not initialized until it says so, then gets a
        // fresh application id; the parent's connections stay in sync.
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let mut ok = slot_count().0 == CKR_CRYPTOKI_NOT_INITIALIZED;
            ok &= f!(C_GetInfo)(&mut info) == CKR_CRYPTOKI_NOT_INITIALIZED;
            ok &= f!(C_Initialize)(ptr::null_mut()) == CKR_OK;
            ok &= slot_count() == (CKR_OK, 3);
            ok &= f!(C_Finalize)(ptr::null_mut()) == CKR_OK;
            libc::_exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child checks failed"
        );
        {
            let s = seen.lock().unwrap();
            let child = s
                .hellos
                .iter()
                .find(|(_, p)| *p == pid as u32)
                .expect("child said hello");
            assert_ne!(child.0, parent_app);
        }
        for _ in 0..20 {
            assert_eq!(slot_count(), (CKR_OK, 3));
        }

        assert_eq!(f!(C_Finalize)(1 as CK_VOID_PTR), CKR_ARGUMENTS_BAD);
        assert_eq!(f!(C_Finalize)(ptr::null_mut()), CKR_OK);
        assert_eq!(
            f!(C_Finalize)(ptr::null_mut()),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(slot_count().0, CKR_CRYPTOKI_NOT_INITIALIZED);
    }
}
