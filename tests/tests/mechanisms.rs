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

/// Vendor codes from `include/p11kms.h`.
const CKM_SM4_GCM: CK_MECHANISM_TYPE = 0x8E11_0012;
const CKK_SM4: CK_KEY_TYPE = 0x8000_0015;

/// Run `C_*Init` + `C_*Update` in `chunk`-byte pieces + `C_*Final`.
fn multipart(
    raw: &Raw,
    s: CK_SESSION_HANDLE,
    encrypt: bool,
    m: &mut CK_MECHANISM,
    k: CK_OBJECT_HANDLE,
    data: &[u8],
    chunk: usize,
) -> Result<Vec<u8>, CK_RV> {
    let rv = if encrypt {
        p11!(raw, C_EncryptInit, s, m, k)
    } else {
        p11!(raw, C_DecryptInit, s, m, k)
    };
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        let mut c = c.to_vec();
        let mut buf = vec![0u8; c.len() + 64];
        let mut len = buf.len() as CK_ULONG;
        let (p, n, b) = (c.as_mut_ptr(), c.len() as CK_ULONG, buf.as_mut_ptr());
        let rv = if encrypt {
            p11!(raw, C_EncryptUpdate, s, p, n, b, &mut len)
        } else {
            p11!(raw, C_DecryptUpdate, s, p, n, b, &mut len)
        };
        if rv != CKR_OK {
            return Err(rv);
        }
        out.extend_from_slice(&buf[..len as usize]);
    }
    let mut buf = vec![0u8; data.len() + 64];
    let mut len = buf.len() as CK_ULONG;
    let rv = if encrypt {
        p11!(raw, C_EncryptFinal, s, buf.as_mut_ptr(), &mut len)
    } else {
        p11!(raw, C_DecryptFinal, s, buf.as_mut_ptr(), &mut len)
    };
    if rv != CKR_OK {
        return Err(rv);
    }
    out.extend_from_slice(&buf[..len as usize]);
    Ok(out)
}

/// name, mechanism, key type, key, iv, ulIvBits, aad, plaintext, ciphertext || tag
type GcmCase = (
    &'static str,
    CK_MECHANISM_TYPE,
    CK_KEY_TYPE,
    &'static str,
    &'static str,
    CK_ULONG,
    &'static str,
    &'static str,
    &'static str,
);

/// GCM with IVs other than 96 bits, through the module: NIST CAVP vectors
/// with 8- and 1024-bit IVs (gcmEncryptExtIV128.rsp), and the case of
/// issue 11 (16-byte IV, `ulIvBits` 64 contradicting `ulIvLen`, 8-byte AAD)
/// for AES-256-GCM and a 60-byte IV for SM4-GCM, both with answers computed
/// by OpenSSL 3 (python3-cryptography 48). Single- and multi-part, the 3.0
/// and the 2.40 parameter layouts.
#[test]
fn gcm_with_ivs_other_than_96_bits() {
    #[repr(C)]
    struct GcmParams240 {
        p_iv: *mut u8,
        ul_iv_len: CK_ULONG,
        p_aad: *mut u8,
        ul_aad_len: CK_ULONG,
        ul_tag_bits: CK_ULONG,
    }
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
    let cases: [GcmCase; 5] = [
        (
            "CAVP gcmEncryptExtIV128 [IVlen = 8] AADlen 160 Taglen 64",
            CKM_AES_GCM,
            CKK_AES,
            "90e625f18f04122c3e0657a2dfe0e1b8",
            "d9",
            8,
            "a7f88b0e07672401f86f515404fe5af3e53edcca",
            "e2d381298318a2135ca6d01a24d0dfab",
            "87cbfc064d5584ac1c2b385adc02fde5f0260a089fdaaa12",
        ),
        (
            "CAVP gcmEncryptExtIV128 [IVlen = 1024] AADlen 128 Taglen 120",
            CKM_AES_GCM,
            CKK_AES,
            "ec20b2dd5a4d6f8d2aa49086a7ef9080",
            "d15fd1d8ba90275826c6b085d9d2a3856e2359e41f2ab3033b6c4a61e412177233afbdd0897d113652e72e37d711627eb43636fd7d7513f213f458d89597e330e487adde840c245ce21f3e45d14075c86ee6f70a7dde573dd320786d1ff28ea026c07bfe904dfb904a990123f79a0a32febcc57d2fe529ccd2a393856757065c",
            0,
            "3abfac97f5e569ed960638002ae32738",
            "7ca608d6dac77682def3e129499d1575",
            "f7c5704950a6b03a77db660769e1204ba0d98b0c38599c1bb16354f61b0f00",
        ),
        (
            "CAVP gcmEncryptExtIV128 [IVlen = 1024] PTlen 408 AADlen 720 Taglen 32",
            CKM_AES_GCM,
            CKK_AES,
            "2633d1781ce54f74ac609a5b5209a01f",
            "7d0e90b7e9f36f760d2dcbd66f352df45f3917afdbe1d0a89cc44be0bd85cf8bf75edbdd33f1d16dad02824d81389210b0f146f3df63f9232d7035eb9e8297a09474985b3e038a5fa6840155d8848fc7c53061ba0f442b84408660a997176ca5bf3473103fd3c9a1de2580b9e539af872259ecae925a8ef50f5a176a069b1fb8",
            1024,
            "584c3cad3035d1427d6f5f1b261e97a5ea7d97c0b88cedf3b1aa5e21e5916805a63964eab4449d8806e7af60618465cf39f82769b7528bba9bb9c04992cd7b9e26efe9be38e1bfeeb41678c52d5ba3508fd7a2b1e8478505bfde",
            "ae695828625b264e0b13d3c9a539f2cf306a7501cdd35b817b699b2d7c25cf20d2dceec3fa883019db807272fddfdca8e7f672",
            "fbc32a56885100a36c276ff368db9236906021a8cc7500f2b3e78a6ca01546827073ff1103145f139f4d116eb47b84e33c716049589b3a",
        ),
        (
            "issue 11: AES-256, 16-byte IV, ulIvBits 64, 8-byte AAD",
            CKM_AES_GCM,
            CKK_AES,
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            64,
            "0001020304050607",
            "4145532d47434d207769746820612031362d6279746520495620616e6420756c497642697473203634",
            "f48c212b65181fe6ee9f789d8bb7f5f3d812614b31e7d668fa6df28d2fac621c429362fad2479fde4f44e27230d4489078612f774c20f372c5",
        ),
        (
            "SM4-GCM, 60-byte IV",
            CKM_SM4_GCM,
            CKK_SM4,
            "0123456789abcdeffedcba9876543210",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b",
            480,
            "0001020304050607",
            "534d342d47434d207769746820612036302d62797465204956",
            "3b2e2977816a4eb301a91e5268f5dd6e14ebe4de170bcc523072212563ac0889ca4dac11181e1c83d1",
        ),
    ];
    for (name, mech, kt, key, iv, iv_bits, aad, pt, sealed) in cases {
        let k = t.secret(kt, &hex(key));
        let (mut iv, mut aad, pt, sealed) = (hex(iv), hex(aad), hex(pt), hex(sealed));
        let tag_bits = ((sealed.len() - pt.len()) * 8) as CK_ULONG;
        let mut p30 = CK_GCM_PARAMS {
            pIv: iv.as_mut_ptr(),
            ulIvLen: iv.len() as CK_ULONG,
            ulIvBits: iv_bits,
            pAAD: aad.as_mut_ptr(),
            ulAADLen: aad.len() as CK_ULONG,
            ulTagBits: tag_bits,
        };
        let mut p240 = GcmParams240 {
            p_iv: iv.as_mut_ptr(),
            ul_iv_len: iv.len() as CK_ULONG,
            p_aad: aad.as_mut_ptr(),
            ul_aad_len: aad.len() as CK_ULONG,
            ul_tag_bits: tag_bits,
        };
        let mut m30 = CK_MECHANISM {
            mechanism: mech,
            pParameter: (&mut p30 as *mut CK_GCM_PARAMS).cast(),
            ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
        };
        let mut m240 = CK_MECHANISM {
            mechanism: mech,
            pParameter: (&mut p240 as *mut GcmParams240).cast(),
            ulParameterLen: 40,
        };
        for (layout, m) in [("3.0", &mut m30), ("2.40", &mut m240)] {
            let what = format!("{name} ({layout} layout)");
            assert_eq!(
                t.encrypt(m, k, &pt),
                Ok(sealed.clone()),
                "{what}: C_Encrypt"
            );
            assert_eq!(
                t.decrypt(m, k, &sealed),
                Ok(pt.clone()),
                "{what}: C_Decrypt"
            );
            assert_eq!(
                multipart(&raw, s, true, m, k, &pt, 7),
                Ok(sealed.clone()),
                "{what}: multi-part encryption"
            );
            assert_eq!(
                multipart(&raw, s, false, m, k, &sealed, 5),
                Ok(pt.clone()),
                "{what}: multi-part decryption"
            );
            let mut bad = sealed.clone();
            *bad.last_mut().expect("tag") ^= 1;
            assert_eq!(
                t.decrypt(m, k, &bad),
                Err(CKR_ENCRYPTED_DATA_INVALID),
                "{what}: flipped tag bit"
            );
        }
    }
    // PKCS#11 takes IVs of 1 to 2^32 - 1 bytes; this token stops at 256.
    let k = t.secret(CKK_AES, &[1u8; 16]);
    for (n, want) in [
        (0usize, CKR_MECHANISM_PARAM_INVALID),
        (257, CKR_MECHANISM_PARAM_INVALID),
        (1, CKR_OK),
        (256, CKR_OK),
    ] {
        let mut iv = vec![7u8; n];
        let mut p = CK_GCM_PARAMS {
            pIv: if n == 0 { null_mut() } else { iv.as_mut_ptr() },
            ulIvLen: n as CK_ULONG,
            ulIvBits: 0,
            pAAD: null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: (&mut p as *mut CK_GCM_PARAMS).cast(),
            ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
        };
        assert_rv(
            p11!(raw, C_EncryptInit, s, &mut m, k),
            want,
            &format!("C_EncryptInit(GCM, {n}-byte IV)"),
        );
        if want == CKR_OK {
            let mut len: CK_ULONG = 64;
            let mut out = [0u8; 64];
            assert_rv(
                p11!(raw, C_Encrypt, s, null_mut(), 0, out.as_mut_ptr(), &mut len),
                CKR_OK,
                "C_Encrypt(empty)",
            );
            assert_eq!(len, 16, "an empty message is its tag");
        }
    }
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

/// Ed448 is not offered (no maintained, released Ed448 crate fits the
/// provider yet): `C_GetMechanismInfo` says `CKM_EDDSA` and the Edwards
/// key-pair generation take 255-bit keys only, and a key pair on Ed448
/// (OID 1.3.101.113 or the name "edwards448") is `CKR_CURVE_NOT_SUPPORTED`.
#[test]
fn eddsa_is_ed25519_only_and_says_so() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let raw = Raw::load();
    assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
    let slot = raw.first_slot();
    for m in [CKM_EDDSA, CKM_EC_EDWARDS_KEY_PAIR_GEN] {
        let mut info = CK_MECHANISM_INFO::default();
        assert_rv(
            p11!(raw, C_GetMechanismInfo, slot, m, &mut info),
            CKR_OK,
            "C_GetMechanismInfo",
        );
        assert_eq!(
            (info.ulMinKeySize, info.ulMaxKeySize),
            (255, 255),
            "{m:#x}: Ed25519 only"
        );
    }
    raw.init_token(slot);
    let s = raw.open_rw(slot);
    raw.login_user(s);
    let oid_ed448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
    let mut name = vec![0x13, 10];
    name.extend_from_slice(b"edwards448");
    for params in [oid_ed448, &name[..]] {
        let mut public = Template::new()
            .bytes(CKA_EC_PARAMS, params)
            .bool(CKA_TOKEN, false);
        let mut private = Template::new().bool(CKA_TOKEN, false).bool(CKA_SIGN, true);
        let mut m = CK_MECHANISM {
            mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut hpub, mut hpriv) = (0, 0);
        let rv = p11!(
            raw,
            C_GenerateKeyPair,
            s,
            &mut m,
            public.as_mut_ptr(),
            public.len(),
            private.as_mut_ptr(),
            private.len(),
            &mut hpub,
            &mut hpriv
        );
        assert_rv(rv, CKR_CURVE_NOT_SUPPORTED, "C_GenerateKeyPair on Ed448");
    }
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}
