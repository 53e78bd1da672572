//! Every mechanism of the first slice through the module, with published
//! known answers; and every listed mechanism answers C_GetMechanismInfo
//! ("nothing listed that does not work").

use std::ptr::null_mut;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

const K128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const P1: &str = "6bc1bee22e409f96e93d7e117393172a";

struct T<'a> {
    raw: &'a Raw,
    s: CK_SESSION_HANDLE,
}

impl T<'_> {
    fn secret(&self, key_type: CK_KEY_TYPE, value: &[u8]) -> CK_OBJECT_HANDLE {
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, key_type)
            .bool(CKA_TOKEN, false)
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true)
            .bool(CKA_WRAP, true)
            .bool(CKA_UNWRAP, true)
            .bytes(CKA_VALUE, value);
        self.raw
            .create(self.s, &mut t)
            .unwrap_or_else(|rv| panic!("C_CreateObject(key type {key_type:#x}): {}", rv_name(rv)))
    }

    fn encrypt(
        &self,
        mech: &mut CK_MECHANISM,
        k: CK_OBJECT_HANDLE,
        data: &[u8],
    ) -> Result<Vec<u8>, CK_RV> {
        let raw = self.raw;
        let rv = p11!(raw, C_EncryptInit, self.s, mech, k);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut d = data.to_vec();
        let mut len: CK_ULONG = 0;
        let rv = p11!(
            raw,
            C_Encrypt,
            self.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            null_mut(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; len as usize];
        let rv = p11!(
            raw,
            C_Encrypt,
            self.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        out.truncate(len as usize);
        Ok(out)
    }

    fn decrypt(
        &self,
        mech: &mut CK_MECHANISM,
        k: CK_OBJECT_HANDLE,
        data: &[u8],
    ) -> Result<Vec<u8>, CK_RV> {
        let raw = self.raw;
        let rv = p11!(raw, C_DecryptInit, self.s, mech, k);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut d = data.to_vec();
        let mut len: CK_ULONG = 0;
        let rv = p11!(
            raw,
            C_Decrypt,
            self.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            null_mut(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; len as usize];
        let rv = p11!(
            raw,
            C_Decrypt,
            self.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        out.truncate(len as usize);
        Ok(out)
    }

    fn sign(
        &self,
        mech: &mut CK_MECHANISM,
        k: CK_OBJECT_HANDLE,
        data: &[u8],
    ) -> Result<Vec<u8>, CK_RV> {
        let raw = self.raw;
        let rv = p11!(raw, C_SignInit, self.s, mech, k);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut d = data.to_vec();
        let mut out = vec![0u8; 64];
        let mut len: CK_ULONG = 64;
        let rv = p11!(
            raw,
            C_Sign,
            self.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        out.truncate(len as usize);
        Ok(out)
    }

    fn verify(
        &self,
        mech: &mut CK_MECHANISM,
        k: CK_OBJECT_HANDLE,
        data: &[u8],
        sig: &[u8],
    ) -> CK_RV {
        let raw = self.raw;
        let rv = p11!(raw, C_VerifyInit, self.s, mech, k);
        if rv != CKR_OK {
            return rv;
        }
        let mut d = data.to_vec();
        let mut sg = sig.to_vec();
        p11!(
            raw,
            C_Verify,
            self.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            sg.as_mut_ptr(),
            sg.len() as CK_ULONG
        )
    }

    fn digest(&self, m: CK_MECHANISM_TYPE, data: &[u8]) -> Vec<u8> {
        let raw = self.raw;
        let mut mech = CK_MECHANISM {
            mechanism: m,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_rv(
            p11!(raw, C_DigestInit, self.s, &mut mech),
            CKR_OK,
            &format!("C_DigestInit({m:#x})"),
        );
        let mut d = data.to_vec();
        let mut out = vec![0u8; 64];
        let mut len: CK_ULONG = 64;
        assert_rv(
            p11!(
                raw,
                C_Digest,
                self.s,
                d.as_mut_ptr(),
                d.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut len
            ),
            CKR_OK,
            &format!("C_Digest({m:#x})"),
        );
        out.truncate(len as usize);
        out
    }

    fn wrap(
        &self,
        m: CK_MECHANISM_TYPE,
        kek: CK_OBJECT_HANDLE,
        k: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>, CK_RV> {
        let raw = self.raw;
        let mut mech = CK_MECHANISM {
            mechanism: m,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut len: CK_ULONG = 0;
        let rv = p11!(
            raw,
            C_WrapKey,
            self.s,
            &mut mech,
            kek,
            k,
            null_mut(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; len as usize];
        let rv = p11!(
            raw,
            C_WrapKey,
            self.s,
            &mut mech,
            kek,
            k,
            out.as_mut_ptr(),
            &mut len
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        out.truncate(len as usize);
        Ok(out)
    }

    fn unwrap(
        &self,
        m: CK_MECHANISM_TYPE,
        kek: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        t: &mut Template,
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let raw = self.raw;
        let mut mech = CK_MECHANISM {
            mechanism: m,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut w = wrapped.to_vec();
        let mut h: CK_OBJECT_HANDLE = 0;
        let rv = p11!(
            raw,
            C_UnwrapKey,
            self.s,
            &mut mech,
            kek,
            w.as_mut_ptr(),
            w.len() as CK_ULONG,
            t.as_mut_ptr(),
            t.len(),
            &mut h
        );
        if rv == CKR_OK {
            Ok(h)
        } else {
            Err(rv)
        }
    }
}

fn mech(m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: m,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

#[test]
fn known_answers_for_the_first_slice() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    raw.init_token(slot);
    let s = raw.open_rw(slot);
    raw.login_user(s);
    let t = T { raw: &raw, s };
    let failures: std::cell::RefCell<Vec<String>> = Default::default();
    let fail = |m: String| failures.borrow_mut().push(m);
    let expect = |what: &str, got: Result<Vec<u8>, CK_RV>, want: &str| match got {
        Ok(v) if v == hex(want) => {}
        Ok(v) => fail(format!(
            "{what}: wrong output {}",
            v.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )),
        Err(rv) => fail(format!("{what}: {}", rv_name(rv))),
    };

    // Digests (FIPS 180-4 / FIPS 202 "abc").
    expect(
        "SHA-1(abc)",
        Ok(t.digest(CKM_SHA_1, b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d",
    );
    expect(
        "SHA-256(abc)",
        Ok(t.digest(CKM_SHA256, b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    expect(
        "SHA3-256(abc)",
        Ok(t.digest(CKM_SHA3_256, b"abc")),
        "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
    );
    let sha512 = t.digest(CKM_SHA512, b"abc");
    expect(
        "SHA-512(abc) prefix",
        Ok(sha512[..16].to_vec()),
        "ddaf35a193617abacc417349ae204131",
    );

    let k = t.secret(CKK_AES, &hex(K128));
    // AES-ECB (SP 800-38A F.1.1).
    expect(
        "AES-128-ECB",
        t.encrypt(&mut mech(CKM_AES_ECB), k, &hex(P1)),
        "3ad77bb40d7a3660a89ecaf32466ef97",
    );
    expect(
        "AES-128-ECB decrypt",
        t.decrypt(
            &mut mech(CKM_AES_ECB),
            k,
            &hex("3ad77bb40d7a3660a89ecaf32466ef97"),
        ),
        P1,
    );
    // AES-CTR (SP 800-38A F.5.1).
    let mut ctr = CK_AES_CTR_PARAMS {
        ulCounterBits: 128,
        cb: hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .try_into()
            .expect("16"),
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_CTR,
        pParameter: (&mut ctr as *mut CK_AES_CTR_PARAMS).cast(),
        ulParameterLen: std::mem::size_of::<CK_AES_CTR_PARAMS>() as CK_ULONG,
    };
    expect(
        "AES-128-CTR",
        t.encrypt(&mut m, k, &hex(P1)),
        "874d6191b620e3261bef6864990db6ce",
    );
    // AES-CMAC (RFC 4493 example 2).
    expect(
        "AES-CMAC",
        t.sign(&mut mech(CKM_AES_CMAC), k, &hex(P1)),
        "070a16b46b4d4144f79bdd9dd04a287c",
    );
    let rv = t.verify(
        &mut mech(CKM_AES_CMAC),
        k,
        &hex(P1),
        &hex("070a16b46b4d4144f79bdd9dd04a287c"),
    );
    if rv != CKR_OK {
        fail(format!("AES-CMAC verify: {}", rv_name(rv)));
    }
    let rv = t.verify(
        &mut mech(CKM_AES_CMAC),
        k,
        &hex(P1),
        &hex("070a16b46b4d4144f79bdd9dd04a287d"),
    );
    if rv != CKR_SIGNATURE_INVALID {
        fail(format!(
            "AES-CMAC verify of a wrong MAC: expected CKR_SIGNATURE_INVALID, got {}",
            rv_name(rv)
        ));
    }
    // HMAC-SHA-256 (RFC 4231 test case 2) with a generic secret key.
    let hk = t.secret(CKK_GENERIC_SECRET, b"Jefe");
    expect(
        "HMAC-SHA-256",
        t.sign(
            &mut mech(CKM_SHA256_HMAC),
            hk,
            b"what do ya want for nothing?",
        ),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    );
    // HMAC-SHA-256-GENERAL truncated to 16 bytes.
    let mut outlen: CK_ULONG = 16;
    let mut m = CK_MECHANISM {
        mechanism: CKM_SHA256_HMAC_GENERAL,
        pParameter: (&mut outlen as *mut CK_ULONG).cast(),
        ulParameterLen: 8,
    };
    expect(
        "HMAC-SHA-256-GENERAL(16)",
        t.sign(&mut m, hk, b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c7",
    );

    // RFC 5649 (KWP) with the 192-bit KEK of §6, under both mechanism codes.
    let kek = t.secret(
        CKK_AES,
        &hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"),
    );
    let g20 = t.secret(
        CKK_GENERIC_SECRET,
        &hex("c37b7e6492584340bed12207808941155068f738"),
    );
    let g7 = t.secret(CKK_GENERIC_SECRET, &hex("466f7250617369"));
    expect(
        "KWP 20-byte key",
        t.wrap(CKM_AES_KEY_WRAP_KWP, kek, g20),
        "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
    );
    expect(
        "KWP 7-byte key",
        t.wrap(CKM_AES_KEY_WRAP_KWP, kek, g7),
        "afbeb0f07dfbf5419200f2ccb50bb24f",
    );
    expect(
        "KWP under the 2.40 code CKM_AES_KEY_WRAP_PAD",
        t.wrap(CKM_AES_KEY_WRAP_PAD, kek, g7),
        "afbeb0f07dfbf5419200f2ccb50bb24f",
    );
    let mut tmpl = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_TOKEN, false)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true);
    match t.unwrap(
        CKM_AES_KEY_WRAP_KWP,
        kek,
        &hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"),
        &mut tmpl,
    ) {
        Ok(h) => expect(
            "KWP unwrap value",
            raw.attr(s, h, CKA_VALUE),
            "c37b7e6492584340bed12207808941155068f738",
        ),
        Err(rv) => fail(format!("KWP unwrap: {}", rv_name(rv))),
    }
    // RFC 3394 unwrap with CKA_VALUE_LEN in the template (SoftHSM refuses it).
    let kek128 = t.secret(CKK_AES, &hex("000102030405060708090A0B0C0D0E0F"));
    let mut tmpl = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .ulong(CKA_VALUE_LEN, 16)
        .bool(CKA_TOKEN, false)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_ENCRYPT, true);
    match t.unwrap(
        CKM_AES_KEY_WRAP,
        kek128,
        &hex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"),
        &mut tmpl,
    ) {
        Ok(h) => {
            expect(
                "RFC 3394 unwrap value",
                raw.attr(s, h, CKA_VALUE),
                "00112233445566778899AABBCCDDEEFF",
            );
            let local = raw.attr(s, h, CKA_LOCAL).map(|v| v[0]);
            if local != Ok(CK_FALSE) {
                fail(format!(
                    "unwrapped key CKA_LOCAL: expected FALSE, got {local:?}"
                ));
            }
        }
        Err(rv) => fail(format!(
            "RFC 3394 unwrap with CKA_VALUE_LEN: {}",
            rv_name(rv)
        )),
    }
    // Tampered RFC 3394 input (into a non-sensitive key: the KEK can
    // encrypt, so it never unwraps into a sensitive one).
    let mut tmpl = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .bool(CKA_SENSITIVE, false);
    match t.unwrap(
        CKM_AES_KEY_WRAP,
        kek128,
        &hex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE6"),
        &mut tmpl,
    ) {
        Err(CKR_WRAPPED_KEY_INVALID) | Err(CKR_ENCRYPTED_DATA_INVALID) => {}
        other => fail(format!(
            "tampered RFC 3394 unwrap: expected CKR_WRAPPED_KEY_INVALID, got {:?}",
            other.map_err(rv_name)
        )),
    }
    // CBC-PAD wrapping round trip.
    let mut iv = [3u8; 16];
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    let mut wlen: CK_ULONG = 64;
    let mut wrapped = vec![0u8; 64];
    let rv = p11!(
        raw,
        C_WrapKey,
        s,
        &mut m,
        kek128,
        g7,
        wrapped.as_mut_ptr(),
        &mut wlen
    );
    if rv != CKR_OK {
        fail(format!("C_WrapKey(CBC-PAD): {}", rv_name(rv)));
    } else {
        wrapped.truncate(wlen as usize);
        let back = t.decrypt(
            &mut CK_MECHANISM {
                mechanism: CKM_AES_CBC_PAD,
                pParameter: iv.as_mut_ptr().cast(),
                ulParameterLen: 16,
            },
            kek128,
            &wrapped,
        );
        expect(
            "CBC-PAD wrap decrypts to the key value",
            back,
            "466f7250617369",
        );
    }

    // Multi-part GCM equals single-part.
    let gk = t.secret(CKK_AES, &hex("feffe9928665731c6d6a8f9467308308"));
    let mut gcm_iv = hex("cafebabefacedbaddecaf888");
    let mut aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let mut params = CK_GCM_PARAMS {
        pIv: gcm_iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 20,
        ulTagBits: 128,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: (&mut params as *mut CK_GCM_PARAMS).cast(),
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    };
    let p = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    let want = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e0915bc94fbc3221a5db94fae95ae7121a47";
    if p11!(raw, C_EncryptInit, s, &mut m, gk) == CKR_OK {
        let mut out = Vec::new();
        let mut ok = true;
        for chunk in p.chunks(17) {
            let mut c = chunk.to_vec();
            let mut buf = vec![0u8; 128];
            let mut len: CK_ULONG = 128;
            let rv = p11!(
                raw,
                C_EncryptUpdate,
                s,
                c.as_mut_ptr(),
                c.len() as CK_ULONG,
                buf.as_mut_ptr(),
                &mut len
            );
            if rv != CKR_OK {
                fail(format!("GCM C_EncryptUpdate: {}", rv_name(rv)));
                ok = false;
                break;
            }
            out.extend_from_slice(&buf[..len as usize]);
        }
        if ok {
            let mut buf = vec![0u8; 128];
            let mut len: CK_ULONG = 128;
            let rv = p11!(raw, C_EncryptFinal, s, buf.as_mut_ptr(), &mut len);
            if rv == CKR_OK {
                out.extend_from_slice(&buf[..len as usize]);
                expect("multi-part AES-GCM (17-byte updates)", Ok(out), want);
            } else {
                fail(format!("GCM C_EncryptFinal: {}", rv_name(rv)));
            }
        }
    } else {
        fail("GCM C_EncryptInit failed".into());
    }

    // GCM with a 96-bit tag: the tag is the first 12 bytes of the 128-bit one.
    let mut gcm_iv = hex("cafebabefacedbaddecaf888");
    let mut aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let mut params = CK_GCM_PARAMS {
        pIv: gcm_iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 20,
        ulTagBits: 96,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: (&mut params as *mut CK_GCM_PARAMS).cast(),
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    };
    expect(
        "AES-GCM with a 96-bit tag",
        t.encrypt(&mut m, gk, &p),
        &want[..want.len() - 8],
    );

    // Multi-part digest and C_DigestKey.
    let mut m = mech(CKM_SHA256);
    if p11!(raw, C_DigestInit, s, &mut m) == CKR_OK {
        let mut a = b"a".to_vec();
        let mut bc = b"bc".to_vec();
        let r1 = p11!(raw, C_DigestUpdate, s, a.as_mut_ptr(), 1);
        let r2 = p11!(raw, C_DigestUpdate, s, bc.as_mut_ptr(), 2);
        let mut out = [0u8; 32];
        let mut len: CK_ULONG = 32;
        let r3 = p11!(raw, C_DigestFinal, s, out.as_mut_ptr(), &mut len);
        if (r1, r2, r3) != (CKR_OK, CKR_OK, CKR_OK) {
            fail(format!(
                "multi-part SHA-256: {} {} {}",
                rv_name(r1),
                rv_name(r2),
                rv_name(r3)
            ));
        } else {
            expect(
                "multi-part SHA-256(a|bc)",
                Ok(out.to_vec()),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            );
        }
    }
    let mut m = mech(CKM_SHA256);
    if p11!(raw, C_DigestInit, s, &mut m) == CKR_OK {
        let r1 = p11!(raw, C_DigestKey, s, k);
        let mut out = [0u8; 32];
        let mut len: CK_ULONG = 32;
        let r2 = p11!(raw, C_DigestFinal, s, out.as_mut_ptr(), &mut len);
        if (r1, r2) != (CKR_OK, CKR_OK) {
            fail(format!(
                "C_DigestKey: {} / C_DigestFinal: {}",
                rv_name(r1),
                rv_name(r2)
            ));
        } else {
            expect(
                "SHA-256 of a key's value via C_DigestKey",
                Ok(out.to_vec()),
                "d4ffb8b77f7d6b26196e9a070e983f6701a4c42dec813d4de1a535d20a7df536",
            );
        }
    }

    // Key generation: AES 16/24/32 and generic secret.
    for len in [16u64, 24, 32] {
        let mut tmpl = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_VALUE_LEN, len)
            .bool(CKA_TOKEN, false)
            .bool(CKA_ENCRYPT, true);
        let mut m = mech(CKM_AES_KEY_GEN);
        let mut h: CK_OBJECT_HANDLE = 0;
        let rv = p11!(
            raw,
            C_GenerateKey,
            s,
            &mut m,
            tmpl.as_mut_ptr(),
            tmpl.len(),
            &mut h
        );
        if rv != CKR_OK {
            fail(format!("C_GenerateKey(AES, {len}): {}", rv_name(rv)));
        } else {
            let vl = raw
                .attr(s, h, CKA_VALUE_LEN)
                .map(|v| u64::from_ne_bytes(v.try_into().unwrap_or([0; 8])));
            if vl != Ok(len) {
                fail(format!("AES-{len} key CKA_VALUE_LEN = {vl:?}"));
            }
        }
    }
    let mut tmpl = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_VALUE_LEN, 48)
        .bool(CKA_TOKEN, false)
        .bool(CKA_SIGN, true);
    let mut m = mech(CKM_GENERIC_SECRET_KEY_GEN);
    let mut h: CK_OBJECT_HANDLE = 0;
    let rv = p11!(
        raw,
        C_GenerateKey,
        s,
        &mut m,
        tmpl.as_mut_ptr(),
        tmpl.len(),
        &mut h
    );
    if rv != CKR_OK {
        fail(format!(
            "C_GenerateKey(GENERIC_SECRET, 48): {}",
            rv_name(rv)
        ));
    }
    // AES key of a wrong size is refused.
    let mut tmpl = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_VALUE_LEN, 20)
        .bool(CKA_TOKEN, false);
    let mut m = mech(CKM_AES_KEY_GEN);
    let rv = p11!(
        raw,
        C_GenerateKey,
        s,
        &mut m,
        tmpl.as_mut_ptr(),
        tmpl.len(),
        &mut h
    );
    if rv != CKR_ATTRIBUTE_VALUE_INVALID
        && rv != CKR_KEY_SIZE_RANGE
        && rv != CKR_TEMPLATE_INCONSISTENT
    {
        fail(format!("C_GenerateKey(AES, 20 bytes): expected CKR_ATTRIBUTE_VALUE_INVALID or CKR_KEY_SIZE_RANGE, got {}", rv_name(rv)));
    }

    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} known-answer failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

#[test]
fn every_listed_mechanism_has_info() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    let mut n: CK_ULONG = 0;
    assert_rv(
        p11!(raw, C_GetMechanismList, slot, null_mut(), &mut n),
        CKR_OK,
        "C_GetMechanismList(NULL)",
    );
    assert!(n > 0, "no mechanisms listed");
    let mut small = vec![0 as CK_MECHANISM_TYPE; 1];
    let mut n1: CK_ULONG = 1;
    if n > 1 {
        assert_rv(
            p11!(raw, C_GetMechanismList, slot, small.as_mut_ptr(), &mut n1),
            CKR_BUFFER_TOO_SMALL,
            "C_GetMechanismList(1 entry)",
        );
        assert_eq!(n1, n, "count reported with CKR_BUFFER_TOO_SMALL");
    }
    let mut list = vec![0 as CK_MECHANISM_TYPE; n as usize];
    assert_rv(
        p11!(raw, C_GetMechanismList, slot, list.as_mut_ptr(), &mut n),
        CKR_OK,
        "C_GetMechanismList",
    );
    let mut bad = Vec::new();
    for m in &list {
        let mut info = CK_MECHANISM_INFO::default();
        let rv = p11!(raw, C_GetMechanismInfo, slot, *m, &mut info);
        if rv != CKR_OK {
            bad.push(format!("{m:#x}: {}", rv_name(rv)));
        } else if info.flags == 0 {
            bad.push(format!("{m:#x}: no function flags"));
        } else if info.ulMinKeySize > info.ulMaxKeySize {
            bad.push(format!(
                "{m:#x}: min key size {} > max {}",
                info.ulMinKeySize, info.ulMaxKeySize
            ));
        }
    }
    for must in [
        CKM_SHA_1,
        CKM_SHA256,
        CKM_SHA3_256,
        CKM_AES_KEY_GEN,
        CKM_AES_ECB,
        CKM_AES_CBC,
        CKM_AES_CBC_PAD,
        CKM_AES_CTR,
        CKM_AES_GCM,
        CKM_AES_CMAC,
        CKM_SHA256_HMAC,
        CKM_GENERIC_SECRET_KEY_GEN,
        CKM_AES_KEY_WRAP,
        CKM_AES_KEY_WRAP_KWP,
    ] {
        if !list.contains(&must) {
            bad.push(format!("{must:#x} not listed"));
        }
    }
    let mut info = CK_MECHANISM_INFO::default();
    let rv = p11!(raw, C_GetMechanismInfo, slot, 0x7fff_fff0, &mut info);
    if rv != CKR_MECHANISM_INVALID {
        bad.push(format!(
            "C_GetMechanismInfo(unknown): expected CKR_MECHANISM_INVALID, got {}",
            rv_name(rv)
        ));
    }
    let mut info = CK_MECHANISM_INFO::default();
    let rv = p11!(raw, C_GetMechanismInfo, slot, CKM_AES_GCM, &mut info);
    if rv == CKR_OK
        && (info.flags & (CKF_ENCRYPT | CKF_DECRYPT) != (CKF_ENCRYPT | CKF_DECRYPT)
            || info.ulMinKeySize != 16
            || info.ulMaxKeySize != 32)
    {
        bad.push(format!(
            "AES-GCM info: flags {:#x}, key sizes {}..{} (want ENCRYPT|DECRYPT, 16..32 bytes)",
            info.flags, info.ulMinKeySize, info.ulMaxKeySize
        ));
    }
    assert!(
        bad.is_empty(),
        "mechanism list/info problems:\n  {}",
        bad.join("\n  ")
    );
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}
