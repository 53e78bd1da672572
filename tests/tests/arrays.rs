//! Array attributes through the module (PKCS#11 v3.0 §4.7–§4.10, §5.7.5):
//! `CKA_ALLOWED_MECHANISMS` stored, reported and enforced on every use of a
//! key, and only ever narrowed; `CKA_WRAP_TEMPLATE`, `CKA_UNWRAP_TEMPLATE`
//! and `CKA_DERIVE_TEMPLATE` stored, reported with the nested length rules
//! and enforced by `C_WrapKey`, `C_UnwrapKey` and `C_DeriveKey`.

use std::ffi::c_void;
use std::mem::size_of;
use std::ptr::null_mut;

use p11kms_e2e::sys::*;
use p11kms_e2e::*;

/// DER of the P-256 OID (`CKA_EC_PARAMS`).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn ulongs(v: &[CK_ULONG]) -> Vec<u8> {
    v.iter().flat_map(|m| m.to_ne_bytes()).collect()
}

fn mech(m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: m,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

/// A nested template for `CKA_*_TEMPLATE`: owns its values, hands out the
/// `CK_ATTRIBUTE` array.
struct Nested {
    _values: Vec<Vec<u8>>,
    attrs: Vec<CK_ATTRIBUTE>,
}

impl Nested {
    fn new(items: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> Nested {
        let mut values: Vec<Vec<u8>> = items.iter().map(|(_, v)| v.clone()).collect();
        let attrs = items
            .iter()
            .zip(values.iter_mut())
            .map(|((ty, _), v)| CK_ATTRIBUTE {
                type_: *ty,
                pValue: v.as_mut_ptr().cast(),
                ulValueLen: v.len() as CK_ULONG,
            })
            .collect();
        Nested {
            _values: values,
            attrs,
        }
    }

    /// The outer attribute `ty` pointing at this array (valid while `self`
    /// lives: the vectors' buffers stay put when `self` moves).
    fn attribute(&mut self, ty: CK_ATTRIBUTE_TYPE) -> CK_ATTRIBUTE {
        CK_ATTRIBUTE {
            type_: ty,
            pValue: self.attrs.as_mut_ptr().cast(),
            ulValueLen: (self.attrs.len() * size_of::<CK_ATTRIBUTE>()) as CK_ULONG,
        }
    }
}

struct Fx {
    raw: Raw,
    s: CK_SESSION_HANDLE,
}

impl Fx {
    fn new() -> Fx {
        let raw = Raw::load();
        assert_rv(raw.initialize(), CKR_OK, "C_Initialize");
        let slot = raw.first_slot();
        raw.init_token(slot);
        let s = raw.open_rw(slot);
        raw.login_user(s);
        Fx { raw, s }
    }

    fn create_raw(&self, attrs: &mut [CK_ATTRIBUTE]) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let mut h = 0;
        let raw = &self.raw;
        let rv = p11!(
            raw,
            C_CreateObject,
            self.s,
            attrs.as_mut_ptr(),
            attrs.len() as CK_ULONG,
            &mut h
        );
        if rv == CKR_OK {
            Ok(h)
        } else {
            Err(rv)
        }
    }

    /// An AES-128 session key, extractable and not sensitive, with every
    /// usage, plus `extra`.
    fn aes(&self, label: &str, extra: Template) -> CK_OBJECT_HANDLE {
        let mut t = extra
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES)
            .bool(CKA_TOKEN, false)
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true)
            .bool(CKA_WRAP, true)
            .bool(CKA_UNWRAP, true)
            .bytes(CKA_LABEL, label.as_bytes())
            .bytes(CKA_VALUE, &[0x42; 16]);
        self.raw
            .create(self.s, &mut t)
            .unwrap_or_else(|rv| panic!("C_CreateObject({label}): {}", rv_name(rv)))
    }

    fn encrypt_init(&self, m: CK_MECHANISM_TYPE, k: CK_OBJECT_HANDLE) -> CK_RV {
        let raw = &self.raw;
        let mut iv = [0u8; 16];
        let mut gcm_iv = [0u8; 12];
        let mut gcm = CK_GCM_PARAMS {
            pIv: gcm_iv.as_mut_ptr(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        let mut mech = match m {
            CKM_AES_GCM => CK_MECHANISM {
                mechanism: m,
                pParameter: (&mut gcm as *mut CK_GCM_PARAMS).cast(),
                ulParameterLen: size_of::<CK_GCM_PARAMS>() as CK_ULONG,
            },
            CKM_AES_CBC_PAD => CK_MECHANISM {
                mechanism: m,
                pParameter: iv.as_mut_ptr().cast(),
                ulParameterLen: 16,
            },
            _ => mech(m),
        };
        let rv = p11!(raw, C_EncryptInit, self.s, &mut mech, k);
        if rv == CKR_OK {
            // End it again.
            let mut out = [0u8; 64];
            let mut len: CK_ULONG = 64;
            let mut data = [0u8; 16];
            let rv = p11!(
                raw,
                C_Encrypt,
                self.s,
                data.as_mut_ptr(),
                16,
                out.as_mut_ptr(),
                &mut len
            );
            assert_rv(rv, CKR_OK, "C_Encrypt after an allowed init");
        }
        rv
    }

    fn wrap(
        &self,
        m: CK_MECHANISM_TYPE,
        wrapping: CK_OBJECT_HANDLE,
        k: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>, CK_RV> {
        let raw = &self.raw;
        let mut out = vec![0u8; 512];
        let mut len = out.len() as CK_ULONG;
        let rv = p11!(
            raw,
            C_WrapKey,
            self.s,
            &mut mech(m),
            wrapping,
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
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        t: &mut Template,
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let raw = &self.raw;
        let mut w = wrapped.to_vec();
        let mut h = 0;
        let rv = p11!(
            raw,
            C_UnwrapKey,
            self.s,
            &mut mech(m),
            unwrapping,
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

    /// A P-256 pair whose private half has `CKA_DERIVE` and the extra
    /// private attributes; returns (public, private).
    fn ec_pair(
        &self,
        private_extra: &mut Vec<CK_ATTRIBUTE>,
    ) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        let raw = &self.raw;
        let mut public = Template::new()
            .bytes(CKA_EC_PARAMS, P256)
            .bool(CKA_TOKEN, false)
            .bool(CKA_VERIFY, true);
        let mut private_t = Template::new()
            .bool(CKA_TOKEN, false)
            .bool(CKA_DERIVE, true)
            .bool(CKA_SIGN, true);
        let mut private: Vec<CK_ATTRIBUTE> = (0..private_t.len() as usize)
            // SAFETY: the template's array has len() elements.
            .map(|i| unsafe { *private_t.as_mut_ptr().add(i) })
            .collect();
        private.append(private_extra);
        let (mut hpub, mut hpriv) = (0, 0);
        let rv = p11!(
            raw,
            C_GenerateKeyPair,
            self.s,
            &mut mech(CKM_EC_KEY_PAIR_GEN),
            public.as_mut_ptr(),
            public.len(),
            private.as_mut_ptr(),
            private.len() as CK_ULONG,
            &mut hpub,
            &mut hpriv
        );
        assert_rv(rv, CKR_OK, "C_GenerateKeyPair(P-256)");
        (hpub, hpriv)
    }

    /// ECDH of `base` with `peer`'s point into an AES-128 key.
    fn derive(
        &self,
        base: CK_OBJECT_HANDLE,
        peer: CK_OBJECT_HANDLE,
        m: CK_MECHANISM_TYPE,
        t: &mut Template,
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let raw = &self.raw;
        let mut point = raw.attr(self.s, peer, CKA_EC_POINT).expect("CKA_EC_POINT");
        let mut p = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_NULL,
            ulSharedDataLen: 0,
            pSharedData: null_mut(),
            ulPublicDataLen: point.len() as CK_ULONG,
            pPublicData: point.as_mut_ptr(),
        };
        let mut m = CK_MECHANISM {
            mechanism: m,
            pParameter: (&mut p as *mut CK_ECDH1_DERIVE_PARAMS).cast(),
            ulParameterLen: size_of::<CK_ECDH1_DERIVE_PARAMS>() as CK_ULONG,
        };
        let mut h = 0;
        let rv = p11!(
            raw,
            C_DeriveKey,
            self.s,
            &mut m,
            base,
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

fn secret_template() -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .bool(CKA_ENCRYPT, true)
}

/// `CKA_ALLOWED_MECHANISMS` crosses the wire both ways, reads back as
/// stored (empty when never set), is enforced by every init path
/// (encrypt, decrypt, sign, verify, digest-key, wrap, unwrap, derive) with
/// `CKR_MECHANISM_INVALID` (`CKR_KEY_INDIGESTIBLE` for `C_DigestKey`), and
/// can only lose mechanisms.
#[test]
fn allowed_mechanisms_are_stored_reported_enforced_and_only_narrow() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let fx = Fx::new();
    let (raw, s) = (&fx.raw, fx.s);

    let k = fx.aes(
        "gcm-only",
        Template::new().bytes(
            CKA_ALLOWED_MECHANISMS,
            &ulongs(&[CKM_AES_GCM, CKM_AES_KEY_WRAP]),
        ),
    );
    assert_eq!(
        raw.attr(s, k, CKA_ALLOWED_MECHANISMS),
        Ok(ulongs(&[CKM_AES_GCM, CKM_AES_KEY_WRAP])),
        "CKA_ALLOWED_MECHANISMS reads back as stored"
    );
    let plain = fx.aes("any", Template::new());
    assert_eq!(
        raw.attr(s, plain, CKA_ALLOWED_MECHANISMS),
        Ok(Vec::new()),
        "a key made without the attribute reports an empty list"
    );

    // Encrypt / decrypt.
    assert_rv(
        fx.encrypt_init(CKM_AES_GCM, k),
        CKR_OK,
        "C_EncryptInit(GCM), allowed",
    );
    assert_rv(
        fx.encrypt_init(CKM_AES_CBC_PAD, k),
        CKR_MECHANISM_INVALID,
        "C_EncryptInit(CBC-PAD), not allowed",
    );
    assert_rv(
        fx.encrypt_init(CKM_AES_CBC_PAD, plain),
        CKR_OK,
        "C_EncryptInit(CBC-PAD) on a key without a list",
    );
    let mut iv = [0u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr().cast(),
        ulParameterLen: 16,
    };
    assert_rv(
        p11!(raw, C_DecryptInit, s, &mut cbc, k),
        CKR_MECHANISM_INVALID,
        "C_DecryptInit(CBC-PAD), not allowed",
    );

    // Sign / verify (CMAC allowed, HMAC not).
    let mac = fx.aes(
        "cmac-only",
        Template::new().bytes(CKA_ALLOWED_MECHANISMS, &ulongs(&[CKM_AES_CMAC])),
    );
    assert_rv(
        p11!(raw, C_SignInit, s, &mut mech(CKM_AES_CMAC), mac),
        CKR_OK,
        "C_SignInit(CMAC), allowed",
    );
    let mut data = [1u8; 16];
    let mut sig = [0u8; 16];
    let mut len: CK_ULONG = 16;
    assert_rv(
        p11!(
            raw,
            C_Sign,
            s,
            data.as_mut_ptr(),
            16,
            sig.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_Sign(CMAC)",
    );
    assert_rv(
        p11!(raw, C_SignInit, s, &mut mech(CKM_AES_CMAC_GENERAL), mac),
        CKR_MECHANISM_INVALID,
        "C_SignInit(CMAC_GENERAL), not allowed",
    );
    assert_rv(
        p11!(raw, C_VerifyInit, s, &mut mech(CKM_AES_CMAC_GENERAL), mac),
        CKR_MECHANISM_INVALID,
        "C_VerifyInit(CMAC_GENERAL), not allowed",
    );
    assert_rv(
        p11!(raw, C_VerifyInit, s, &mut mech(CKM_AES_CMAC), mac),
        CKR_OK,
        "C_VerifyInit(CMAC), allowed",
    );
    assert_rv(
        p11!(
            raw,
            C_Verify,
            s,
            data.as_mut_ptr(),
            16,
            sig.as_mut_ptr(),
            16
        ),
        CKR_OK,
        "C_Verify(CMAC)",
    );

    // C_DigestKey: the digest mechanism must be allowed for the key.
    let sha1_only = fx.aes(
        "sha1-only",
        Template::new().bytes(CKA_ALLOWED_MECHANISMS, &ulongs(&[CKM_SHA_1])),
    );
    assert_rv(
        p11!(raw, C_DigestInit, s, &mut mech(CKM_SHA256)),
        CKR_OK,
        "C_DigestInit(SHA-256)",
    );
    assert_rv(
        p11!(raw, C_DigestKey, s, sha1_only),
        CKR_KEY_INDIGESTIBLE,
        "C_DigestKey with SHA-256, key allows SHA-1 only",
    );
    assert_rv(
        p11!(raw, C_DigestInit, s, &mut mech(CKM_SHA_1)),
        CKR_OK,
        "C_DigestInit(SHA-1) after the refusal ended the digest",
    );
    assert_rv(
        p11!(raw, C_DigestKey, s, sha1_only),
        CKR_OK,
        "C_DigestKey with SHA-1, allowed",
    );
    let mut out = [0u8; 20];
    let mut len: CK_ULONG = 20;
    assert_rv(
        p11!(raw, C_DigestFinal, s, out.as_mut_ptr(), &mut len),
        CKR_OK,
        "C_DigestFinal",
    );

    // Wrap / unwrap (k allows CKM_AES_KEY_WRAP, not the padded variant).
    let wrapped = fx
        .wrap(CKM_AES_KEY_WRAP, k, plain)
        .expect("C_WrapKey(AES_KEY_WRAP), allowed");
    assert_eq!(
        fx.wrap(CKM_AES_KEY_WRAP_PAD, k, plain),
        Err(CKR_MECHANISM_INVALID),
        "C_WrapKey(AES_KEY_WRAP_PAD), not allowed"
    );
    let open = || {
        secret_template()
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true)
    };
    assert!(
        fx.unwrap(CKM_AES_KEY_WRAP, k, &wrapped, &mut open())
            .is_ok(),
        "C_UnwrapKey(AES_KEY_WRAP), allowed"
    );
    assert_eq!(
        fx.unwrap(CKM_AES_KEY_WRAP_PAD, k, &wrapped, &mut open()),
        Err(CKR_MECHANISM_INVALID),
        "C_UnwrapKey(AES_KEY_WRAP_PAD), not allowed"
    );

    // Derive: a P-256 key that allows only the cofactor variant of ECDH.
    let cofactor = ulongs(&[CKM_ECDH1_COFACTOR_DERIVE]);
    let mut extra = vec![CK_ATTRIBUTE {
        type_: CKA_ALLOWED_MECHANISMS,
        pValue: cofactor.as_ptr() as *mut c_void,
        ulValueLen: cofactor.len() as CK_ULONG,
    }];
    let (public, private) = fx.ec_pair(&mut extra);
    assert_eq!(
        fx.derive(
            private,
            public,
            CKM_ECDH1_DERIVE,
            &mut secret_template().ulong(CKA_VALUE_LEN, 16)
        ),
        Err(CKR_MECHANISM_INVALID),
        "C_DeriveKey(ECDH1_DERIVE), not allowed"
    );

    // Narrowing only.
    let set = |k, v: &[u8]| {
        let mut t = Template::new().bytes(CKA_ALLOWED_MECHANISMS, v);
        p11!(raw, C_SetAttributeValue, s, k, t.as_mut_ptr(), t.len())
    };
    assert_rv(
        set(
            k,
            &ulongs(&[CKM_AES_GCM, CKM_AES_KEY_WRAP, CKM_AES_CBC_PAD]),
        ),
        CKR_ATTRIBUTE_READ_ONLY,
        "adding a mechanism",
    );
    assert_rv(
        set(k, &[]),
        CKR_ATTRIBUTE_READ_ONLY,
        "emptying the list (= every mechanism)",
    );
    assert_rv(
        set(k, &ulongs(&[CKM_AES_GCM])),
        CKR_OK,
        "dropping a mechanism",
    );
    assert_eq!(
        raw.attr(s, k, CKA_ALLOWED_MECHANISMS),
        Ok(ulongs(&[CKM_AES_GCM]))
    );
    assert_eq!(
        fx.wrap(CKM_AES_KEY_WRAP, k, plain),
        Err(CKR_MECHANISM_INVALID),
        "C_WrapKey after the list lost it"
    );
    assert_rv(
        set(plain, &ulongs(&[CKM_AES_ECB])),
        CKR_OK,
        "a first list narrows \"every mechanism\"",
    );
    assert_rv(
        fx.encrypt_init(CKM_AES_CBC_PAD, plain),
        CKR_MECHANISM_INVALID,
        "C_EncryptInit after narrowing",
    );
    assert_rv(
        set(k, &[1, 2, 3]),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "not a whole number of CK_ULONGs",
    );

    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

/// `pkcs11-tool --keypairgen --key-type rsa:2048 --allowed-mechanisms
/// RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS` does this: the private key signs with
/// PSS and refuses PKCS#1 v1.5.
#[test]
fn rsa_key_pair_with_allowed_mechanisms_signs_pss_only() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let fx = Fx::new();
    let (raw, s) = (&fx.raw, fx.s);
    let allowed = ulongs(&[CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS]);
    let mut public = Template::new()
        .ulong(CKA_MODULUS_BITS, 2048)
        .bytes(CKA_PUBLIC_EXPONENT, &[1, 0, 1])
        .bool(CKA_TOKEN, false)
        .bool(CKA_VERIFY, true);
    let mut private = Template::new()
        .bool(CKA_TOKEN, false)
        .bool(CKA_SIGN, true)
        .bytes(CKA_ALLOWED_MECHANISMS, &allowed);
    let (mut hpub, mut hpriv) = (0, 0);
    let rv = p11!(
        raw,
        C_GenerateKeyPair,
        s,
        &mut mech(CKM_RSA_PKCS_KEY_PAIR_GEN),
        public.as_mut_ptr(),
        public.len(),
        private.as_mut_ptr(),
        private.len(),
        &mut hpub,
        &mut hpriv
    );
    assert_rv(
        rv,
        CKR_OK,
        "C_GenerateKeyPair(RSA 2048, CKA_ALLOWED_MECHANISMS)",
    );
    assert_eq!(raw.attr(s, hpriv, CKA_ALLOWED_MECHANISMS), Ok(allowed));
    let mut pss = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: 32,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS_PSS,
        pParameter: (&mut pss as *mut CK_RSA_PKCS_PSS_PARAMS).cast(),
        ulParameterLen: size_of::<CK_RSA_PKCS_PSS_PARAMS>() as CK_ULONG,
    };
    assert_rv(
        p11!(raw, C_SignInit, s, &mut m, hpriv),
        CKR_OK,
        "C_SignInit(SHA256-RSA-PKCS-PSS)",
    );
    let mut data = *b"message";
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_rv(
        p11!(
            raw,
            C_Sign,
            s,
            data.as_mut_ptr(),
            7,
            sig.as_mut_ptr(),
            &mut len
        ),
        CKR_OK,
        "C_Sign(PSS)",
    );
    assert_eq!(len, 256);
    assert_rv(
        p11!(raw, C_VerifyInit, s, &mut m, hpub),
        CKR_OK,
        "C_VerifyInit(PSS) with the public key",
    );
    assert_rv(
        p11!(
            raw,
            C_Verify,
            s,
            data.as_mut_ptr(),
            7,
            sig.as_mut_ptr(),
            len
        ),
        CKR_OK,
        "the PSS signature verifies",
    );
    for refused in [CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS] {
        assert_rv(
            p11!(raw, C_SignInit, s, &mut mech(refused), hpriv),
            CKR_MECHANISM_INVALID,
            &format!("C_SignInit({refused:#x}), PKCS#1 v1.5 not allowed"),
        );
    }
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}

/// The template attributes: stored, read back in the three steps of
/// §5.7.5, never changed afterwards, and enforced: a wrap of a key that
/// does not match the wrapping key's `CKA_WRAP_TEMPLATE` is
/// `CKR_KEY_NOT_WRAPPABLE`; unwrap and derive apply the key's template and
/// refuse a caller template that contradicts it.
#[test]
fn wrap_unwrap_and_derive_templates() {
    let _g = serial();
    let daemon = Daemon::start();
    daemon.export_socket();
    let fx = Fx::new();
    let (raw, s) = (&fx.raw, fx.s);

    // A KEK that wraps only keys labelled "wrappable" and unwraps into
    // sensitive, unextractable keys.
    let mut wrap_t = Nested::new(&[
        (CKA_LABEL, b"wrappable".to_vec()),
        (CKA_CLASS, CKO_SECRET_KEY.to_ne_bytes().to_vec()),
    ]);
    let mut unwrap_t = Nested::new(&[
        (CKA_SENSITIVE, vec![CK_TRUE]),
        (CKA_EXTRACTABLE, vec![CK_FALSE]),
    ]);
    let class = CKO_SECRET_KEY.to_ne_bytes();
    let kt = CKK_AES.to_ne_bytes();
    let (tru, fals) = ([CK_TRUE], [CK_FALSE]);
    let value = [0x24u8; 16];
    let a = |ty, v: &[u8]| CK_ATTRIBUTE {
        type_: ty,
        pValue: v.as_ptr() as *mut c_void,
        ulValueLen: v.len() as CK_ULONG,
    };
    let mut kek_t = vec![
        a(CKA_CLASS, &class),
        a(CKA_KEY_TYPE, &kt),
        a(CKA_TOKEN, &fals),
        // Neither encrypts nor decrypts: it may wrap and unwrap sensitive keys.
        a(CKA_ENCRYPT, &fals),
        a(CKA_DECRYPT, &fals),
        a(CKA_WRAP, &tru),
        a(CKA_UNWRAP, &tru),
        a(CKA_VALUE, &value),
        wrap_t.attribute(CKA_WRAP_TEMPLATE),
        unwrap_t.attribute(CKA_UNWRAP_TEMPLATE),
    ];
    let kek = fx
        .create_raw(&mut kek_t)
        .unwrap_or_else(|rv| panic!("C_CreateObject(KEK with templates): {}", rv_name(rv)));

    // --- C_GetAttributeValue of CKA_WRAP_TEMPLATE in three steps.
    let mut outer = CK_ATTRIBUTE {
        type_: CKA_WRAP_TEMPLATE,
        pValue: null_mut(),
        ulValueLen: 0,
    };
    assert_rv(
        p11!(raw, C_GetAttributeValue, s, kek, &mut outer, 1),
        CKR_OK,
        "step 1 (pValue NULL)",
    );
    assert_eq!(
        outer.ulValueLen as usize,
        2 * size_of::<CK_ATTRIBUTE>(),
        "two entries"
    );
    let mut entries = [CK_ATTRIBUTE {
        type_: 0,
        pValue: null_mut(),
        ulValueLen: 0,
    }; 2];
    outer.pValue = entries.as_mut_ptr().cast();
    assert_rv(
        p11!(raw, C_GetAttributeValue, s, kek, &mut outer, 1),
        CKR_OK,
        "step 2 (entries, pValue NULL)",
    );
    let mut got: Vec<(CK_ATTRIBUTE_TYPE, CK_ULONG)> =
        entries.iter().map(|e| (e.type_, e.ulValueLen)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![(CKA_CLASS, 8), (CKA_LABEL, 9)],
        "types and lengths"
    );
    let mut bufs: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| vec![0u8; e.ulValueLen as usize])
        .collect();
    for (e, b) in entries.iter_mut().zip(bufs.iter_mut()) {
        e.pValue = b.as_mut_ptr().cast();
    }
    assert_rv(
        p11!(raw, C_GetAttributeValue, s, kek, &mut outer, 1),
        CKR_OK,
        "step 3 (values)",
    );
    for (e, b) in entries.iter().zip(&bufs) {
        match e.type_ {
            CKA_CLASS => assert_eq!(b.as_slice(), CKO_SECRET_KEY.to_ne_bytes()),
            CKA_LABEL => assert_eq!(b.as_slice(), b"wrappable"),
            t => panic!("unexpected nested type {t:#x}"),
        }
    }
    let mut small = CK_ATTRIBUTE {
        type_: CKA_WRAP_TEMPLATE,
        pValue: entries.as_mut_ptr().cast(),
        ulValueLen: size_of::<CK_ATTRIBUTE>() as CK_ULONG,
    };
    assert_rv(
        p11!(raw, C_GetAttributeValue, s, kek, &mut small, 1),
        CKR_BUFFER_TOO_SMALL,
        "room for one entry of two",
    );
    assert_eq!(small.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    // A key without templates reports empty ones.
    let plain = fx.aes("plain", Template::new());
    assert_eq!(raw.attr(s, plain, CKA_DERIVE_TEMPLATE), Ok(Vec::new()));
    // Templates are fixed once the key exists.
    let mut t2 = Nested::new(&[(CKA_LABEL, b"anything".to_vec())]);
    let mut set = [t2.attribute(CKA_WRAP_TEMPLATE)];
    assert_rv(
        p11!(raw, C_SetAttributeValue, s, kek, set.as_mut_ptr(), 1),
        CKR_ATTRIBUTE_READ_ONLY,
        "C_SetAttributeValue(CKA_WRAP_TEMPLATE)",
    );
    // A template inside a template is not a valid value.
    let mut inner = Nested::new(&[(CKA_LABEL, b"x".to_vec())]);
    let mut outer_t = Nested::new(&[]);
    outer_t.attrs.push(inner.attribute(CKA_DERIVE_TEMPLATE));
    let mut bad = vec![
        a(CKA_CLASS, &class),
        a(CKA_KEY_TYPE, &kt),
        a(CKA_VALUE, &value),
        outer_t.attribute(CKA_WRAP_TEMPLATE),
    ];
    assert_eq!(
        fx.create_raw(&mut bad),
        Err(CKR_ATTRIBUTE_VALUE_INVALID),
        "nested template"
    );

    // --- C_WrapKey honours CKA_WRAP_TEMPLATE.
    let good = fx.aes("wrappable", Template::new());
    let other = fx.aes("other", Template::new());
    let wrapped = fx
        .wrap(CKM_AES_KEY_WRAP, kek, good)
        .expect("C_WrapKey of a matching key");
    assert_eq!(
        fx.wrap(CKM_AES_KEY_WRAP, kek, other),
        Err(CKR_KEY_NOT_WRAPPABLE),
        "C_WrapKey of a key outside the template"
    );

    // --- C_UnwrapKey applies CKA_UNWRAP_TEMPLATE.
    let h = fx
        .unwrap(CKM_AES_KEY_WRAP, kek, &wrapped, &mut secret_template())
        .unwrap_or_else(|rv| panic!("C_UnwrapKey: {}", rv_name(rv)));
    assert_eq!(
        raw.attr(s, h, CKA_SENSITIVE),
        Ok(vec![CK_TRUE]),
        "CKA_SENSITIVE from the unwrap template"
    );
    assert_eq!(
        raw.attr(s, h, CKA_EXTRACTABLE),
        Ok(vec![CK_FALSE]),
        "CKA_EXTRACTABLE from the unwrap template"
    );
    assert!(
        fx.unwrap(
            CKM_AES_KEY_WRAP,
            kek,
            &wrapped,
            &mut secret_template().bool(CKA_SENSITIVE, true)
        )
        .is_ok(),
        "a caller template that agrees"
    );
    assert_eq!(
        fx.unwrap(
            CKM_AES_KEY_WRAP,
            kek,
            &wrapped,
            &mut secret_template().bool(CKA_EXTRACTABLE, true)
        ),
        Err(CKR_TEMPLATE_INCONSISTENT),
        "a caller template that contradicts CKA_UNWRAP_TEMPLATE"
    );

    // --- C_DeriveKey applies CKA_DERIVE_TEMPLATE.
    let mut derive_t = Nested::new(&[(CKA_ENCRYPT, vec![CK_FALSE]), (CKA_DECRYPT, vec![CK_TRUE])]);
    let mut extra = vec![derive_t.attribute(CKA_DERIVE_TEMPLATE)];
    let (public, private) = fx.ec_pair(&mut extra);
    let dt = || {
        Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES)
            .bool(CKA_TOKEN, false)
            .ulong(CKA_VALUE_LEN, 16)
    };
    let d = fx
        .derive(private, public, CKM_ECDH1_DERIVE, &mut dt())
        .unwrap_or_else(|rv| panic!("C_DeriveKey(ECDH): {}", rv_name(rv)));
    assert_eq!(
        raw.attr(s, d, CKA_ENCRYPT),
        Ok(vec![CK_FALSE]),
        "CKA_ENCRYPT from the derive template"
    );
    assert_eq!(
        raw.attr(s, d, CKA_DECRYPT),
        Ok(vec![CK_TRUE]),
        "CKA_DECRYPT from the derive template"
    );
    assert_eq!(
        fx.derive(
            private,
            public,
            CKM_ECDH1_DERIVE,
            &mut dt().bool(CKA_ENCRYPT, true)
        ),
        Err(CKR_TEMPLATE_INCONSISTENT),
        "a caller template that contradicts CKA_DERIVE_TEMPLATE"
    );
    drop((wrap_t, unwrap_t, t2, inner));
    assert_rv(raw.finalize(), CKR_OK, "C_Finalize");
}
