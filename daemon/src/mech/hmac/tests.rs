//! RFC 4231 (HMAC-SHA-2), RFC 2202 (HMAC-SHA-1) and NIST HMAC-SHA3 sample
//! vectors, through the registered mechanisms.

use super::*;

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    r
}

fn key(key_type: u64, v: &[u8]) -> Arc<Key> {
    Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        key_type,
        zeroize::Zeroizing::new(v.to_vec()),
    ))
}

fn sign(r: &Registry, mech: u64, k: &Arc<Key>, param: &MechParam, msg: &[u8]) -> Result<Vec<u8>> {
    r.get(mech)?.sign_init(k, param)?.oneshot(msg)
}

fn verify(
    r: &Registry,
    mech: u64,
    k: &Arc<Key>,
    param: &MechParam,
    msg: &[u8],
    sig: &[u8],
) -> Result<()> {
    r.get(mech)?.verify_init(k, param)?.oneshot(msg, sig)
}

/// RFC 4231 §4.2–4.8: (key, data, [SHA-224, SHA-256, SHA-384, SHA-512]).
fn rfc4231() -> Vec<(Vec<u8>, Vec<u8>, [&'static str; 4])> {
    vec![
        (vec![0x0b; 20], b"Hi There".to_vec(), [
            "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ]),
        (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), [
            "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ]),
        (vec![0xaa; 20], vec![0xdd; 50], [
            "7fb3cb3588c6c1f6ffa9694d7d6ad2649365b0c1f65d69d1ec8333ea",
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27",
            "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
        ]),
        ((1..=25).collect(), vec![0xcd; 50], [
            "6c11506874013cac6a2abc1bb382627cec6a90d86efc012de7afec5a",
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
            "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
        ]),
        (vec![0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(), [
            "95e9a0db962095adaebe9b2d6f0dbce2d499f112f2d2b7273fa6870e",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        ]),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            [
                "3a854166ac5d9f023f54d517d0b39dbd946770db9c2b95c9f6f565d1",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e",
                "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
            ],
        ),
    ]
}

const SHA2: [(u64, u64, u64); 4] = [
    (
        ck::CKM_SHA224_HMAC,
        ck::CKM_SHA224_HMAC_GENERAL,
        ck::CKK_SHA224_HMAC,
    ),
    (
        ck::CKM_SHA256_HMAC,
        ck::CKM_SHA256_HMAC_GENERAL,
        ck::CKK_SHA256_HMAC,
    ),
    (
        ck::CKM_SHA384_HMAC,
        ck::CKM_SHA384_HMAC_GENERAL,
        ck::CKK_SHA384_HMAC,
    ),
    (
        ck::CKM_SHA512_HMAC,
        ck::CKM_SHA512_HMAC_GENERAL,
        ck::CKK_SHA512_HMAC,
    ),
];

#[test]
fn rfc4231_vectors() {
    let r = registry();
    for (k, msg, wants) in rfc4231() {
        for ((mech, _, kt), want) in SHA2.iter().zip(wants) {
            let want = hex::decode(want).expect("hex");
            for key_type in [ck::CKK_GENERIC_SECRET, *kt] {
                let k = key(key_type, &k);
                assert_eq!(
                    sign(&r, *mech, &k, &MechParam::None, &msg).expect("sign"),
                    want,
                    "mech 0x{mech:x}"
                );
                verify(&r, *mech, &k, &MechParam::None, &msg, &want).expect("verify");
            }
        }
    }
}

/// RFC 4231 §4.6: the output truncated to 128 bits, via *_HMAC_GENERAL.
#[test]
fn rfc4231_truncated() {
    let r = registry();
    let wants = [
        "0e2aea68a90c8d37c988bcdb9fca6fa8",
        "a3b6167473100ee06e0c796c2955552b",
        "3abf34c3503b2a23a46efc619baef897",
        "415fad6271580a531d4179bc891d87a6",
    ];
    let k = key(ck::CKK_GENERIC_SECRET, &[0x0c; 20]);
    for ((_, general, _), want) in SHA2.iter().zip(wants) {
        let want = hex::decode(want).expect("hex");
        let p = MechParam::MacLen(16);
        let msg = b"Test With Truncation";
        assert_eq!(sign(&r, *general, &k, &p, msg).expect("sign"), want);
        verify(&r, *general, &k, &p, msg, &want).expect("verify");
        let err = verify(&r, *general, &k, &p, msg, &want[..15]).expect_err("short");
        assert_eq!(err.rv, ck::CKR_SIGNATURE_LEN_RANGE);
    }
}

#[test]
fn sha1_and_sha3_vectors() {
    let r = registry();
    // RFC 2202 test case 1.
    let k = key(ck::CKK_SHA_1_HMAC, &[0x0b; 20]);
    assert_eq!(
        hex::encode(sign(&r, ck::CKM_SHA_1_HMAC, &k, &MechParam::None, b"Hi There").expect("sign")),
        "b617318655057264e28bc0b6fb378c8ef146be00"
    );
    // NIST CSRC HMAC_SHA3 examples, key 00..1f, "keylen<blocklen".
    let k = key(ck::CKK_GENERIC_SECRET, &(0..32).collect::<Vec<u8>>());
    let msg = b"Sample message for keylen<blocklen";
    for (mech, want) in [
        (ck::CKM_SHA3_224_HMAC, "7bf598119c2788783550195d105f6956986e0076bd2097e10c979c89"),
        (ck::CKM_SHA3_256_HMAC, "4fe8e202c4f058e8dddc23d8c34e467343e23555e24fc2f025d598f558f67205"),
        (ck::CKM_SHA3_384_HMAC, "0c3b82c4b2d0c728dd73e65460d605e3e3f0f1740516225c17478a32d6d3bbb8ddd8ae2af6543c3c62da12d9b7cd3766"),
        (
            ck::CKM_SHA3_512_HMAC,
            "45c37e949cce1eb50ccf6c96439c06e25f4a4416a99a8a8959593aefb8ef584eb0704dc5855faae16196792f4437cdef36d8467b037303ecf62584a4ccc18ddf",
        ),
    ] {
        assert_eq!(hex::encode(sign(&r, mech, &k, &MechParam::None, msg).expect("sign")), want, "mech 0x{mech:x}");
    }
}

#[test]
fn multipart_equals_oneshot() {
    let r = registry();
    let k = key(ck::CKK_GENERIC_SECRET, b"0123456789abcdef0123456789abcdef");
    let msg: Vec<u8> = (0..777u32).map(|i| (i * 7) as u8).collect();
    for mech in [
        ck::CKM_SHA_1_HMAC,
        ck::CKM_SHA256_HMAC,
        ck::CKM_SHA512_HMAC,
        ck::CKM_SHA3_256_HMAC,
    ] {
        let one = sign(&r, mech, &k, &MechParam::None, &msg).expect("sign");
        let mut op = r
            .get(mech)
            .expect("mech")
            .sign_init(&k, &MechParam::None)
            .expect("init");
        assert_eq!(op.sig_len(), one.len());
        for chunk in msg.chunks(13) {
            op.update(chunk).expect("update");
        }
        assert_eq!(op.finalize().expect("final"), one);
        let mut v = r
            .get(mech)
            .expect("mech")
            .verify_init(&k, &MechParam::None)
            .expect("init");
        for chunk in msg.chunks(5) {
            v.update(chunk).expect("update");
        }
        v.finalize(&one).expect("verify");
    }
}

#[test]
fn errors() {
    let r = registry();
    let k = key(ck::CKK_GENERIC_SECRET, b"secret");
    let sig = sign(&r, ck::CKM_SHA256_HMAC, &k, &MechParam::None, b"m").expect("sign");
    let mut bad = sig.clone();
    bad[0] ^= 1;
    assert_eq!(
        verify(&r, ck::CKM_SHA256_HMAC, &k, &MechParam::None, b"m", &bad)
            .expect_err("bad")
            .rv,
        ck::CKR_SIGNATURE_INVALID
    );
    assert_eq!(
        verify(
            &r,
            ck::CKM_SHA256_HMAC,
            &k,
            &MechParam::None,
            b"m",
            &sig[..31]
        )
        .expect_err("len")
        .rv,
        ck::CKR_SIGNATURE_LEN_RANGE
    );
    let wrong_type = key(ck::CKK_AES, b"0123456789abcdef");
    assert_eq!(
        sign(&r, ck::CKM_SHA256_HMAC, &wrong_type, &MechParam::None, b"m")
            .expect_err("type")
            .rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    let other_hash = key(ck::CKK_SHA384_HMAC, b"secret");
    assert_eq!(
        sign(&r, ck::CKM_SHA256_HMAC, &other_hash, &MechParam::None, b"m")
            .expect_err("type")
            .rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    for n in [0, 33] {
        let e = sign(
            &r,
            ck::CKM_SHA256_HMAC_GENERAL,
            &k,
            &MechParam::MacLen(n),
            b"m",
        )
        .expect_err("len");
        assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID);
    }
    assert_eq!(
        sign(
            &r,
            ck::CKM_SHA256_HMAC_GENERAL,
            &k,
            &MechParam::MacLen(32),
            b"m"
        )
        .expect("full"),
        sig
    );
    assert_eq!(
        sign(&r, ck::CKM_SHA256_HMAC, &k, &MechParam::MacLen(16), b"m")
            .expect_err("param")
            .rv,
        ck::CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        sign(&r, ck::CKM_SHA256_HMAC_GENERAL, &k, &MechParam::None, b"m")
            .expect_err("param")
            .rv,
        ck::CKR_MECHANISM_PARAM_INVALID
    );
    let info = r.get(ck::CKM_SHA256_HMAC).expect("mech").info();
    assert_eq!(info.flags, ck::CKF_SIGN | ck::CKF_VERIFY);
    r.run_self_tests().expect("self-test");
}
