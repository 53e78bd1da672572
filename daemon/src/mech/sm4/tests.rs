//! SM4 against the standard's examples, RFC 8998 and OpenSSL 3 output
//! (`openssl enc -sm4-cbc/-sm4-ctr -K 0123..3210 -iv 0001..0f`).

use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    r
}

fn sm4_key(v: &[u8]) -> Arc<Key> {
    Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        vendor::CKK_SM4,
        Zeroizing::new(v.to_vec()),
    ))
}

const IV: &str = "000102030405060708090a0b0c0d0e0f";
/// "The quick brown fox jumps over the lazy dog." (44 bytes)
const FOX: &str =
    "54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f672e";
const FOX_CBC_PAD: &str = "b6556613480f80c2a4c4beadbdc795ced203d6945466924b4faa7bf47bfb403416f9f170bafbf72fe52be77cae3d3a98";
const FOX_CTR: &str =
    "52f0f9414cd301ce41ad95f08edf974a0968756b2ad69171a9b17c93e4728d6e74bf728cab558e4e66821ee0";
/// Last block of SM4-CBC over the first 32 bytes of FOX with a zero IV.
const FOX32_CBC_MAC: &str = "645956e3a0a3deb65ab65a6bc91e54cf";

fn run(op: &mut dyn CipherOp, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        out.extend(op.update(c).expect("update"));
    }
    out.extend(op.finalize().expect("final"));
    out
}

#[test]
fn standard_example_ecb() {
    let r = registry();
    let key = sm4_key(&h(kat::KEY));
    let m = r.get(vendor::CKM_SM4_ECB).expect("registered");
    let mut op = m.encrypt_init(&key, &MechParam::None).expect("init");
    assert_eq!(op.oneshot(&h(kat::PT)).expect("enc"), h(kat::CT));
    let mut op = m.decrypt_init(&key, &MechParam::None).expect("init");
    assert_eq!(op.oneshot(&h(kat::CT)).expect("dec"), h(kat::PT));
    r.run_self_tests().expect("self-tests");
}

/// GB/T 32907-2016 A.2: the example block encrypted 1,000,000 times.
#[test]
fn standard_example_million() {
    let cipher = Sm4Block::from_raw(&h(kat::KEY)).expect("key");
    let mut b = Array::<u8, U16>::try_from(&h(kat::PT)[..]).expect("block");
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut b);
    }
    assert_eq!(hex::encode(b), "595298c7c6fd271f0402f804c33d3f66");
}

#[test]
fn cbc_and_cbc_pad_match_openssl() {
    let r = registry();
    let key = sm4_key(&h(kat::KEY));
    let iv = MechParam::Bytes(h(IV));
    let fox = h(FOX);
    let pad = r.get(vendor::CKM_SM4_CBC_PAD).expect("registered");
    for chunk in [1, 7, 16, 44] {
        let mut op = pad.encrypt_init(&key, &iv).expect("init");
        assert_eq!(
            run(op.as_mut(), &fox, chunk),
            h(FOX_CBC_PAD),
            "chunk {chunk}"
        );
        let mut op = pad.decrypt_init(&key, &iv).expect("init");
        assert_eq!(
            run(op.as_mut(), &h(FOX_CBC_PAD), chunk),
            fox,
            "chunk {chunk}"
        );
    }
    let cbc = r.get(vendor::CKM_SM4_CBC).expect("registered");
    let mut op = cbc.encrypt_init(&key, &iv).expect("init");
    assert_eq!(op.oneshot(&fox[..32]).expect("enc"), h(&FOX_CBC_PAD[..64]));
    let mut op = cbc.encrypt_init(&key, &iv).expect("init");
    assert_eq!(
        op.oneshot(&fox).map(drop).expect_err("len").rv,
        ck::CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        cbc.encrypt_init(&key, &MechParam::Bytes(vec![0; 8]))
            .map(drop)
            .expect_err("iv")
            .rv,
        ck::CKR_MECHANISM_PARAM_INVALID
    );
    // Bad padding is an error, never a panic.
    let mut bad = h(FOX_CBC_PAD);
    bad[47] ^= 0xff;
    let mut op = pad.decrypt_init(&key, &iv).expect("init");
    assert_eq!(
        op.oneshot(&bad).map(drop).expect_err("pad").rv,
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
}

#[test]
fn ctr_matches_openssl() {
    let r = registry();
    let key = sm4_key(&h(kat::KEY));
    let mut cb = [0u8; 16];
    cb.copy_from_slice(&h(IV));
    let p = MechParam::Ctr {
        counter_bits: 128,
        cb,
    };
    let m = r.get(vendor::CKM_SM4_CTR).expect("registered");
    for chunk in [1, 5, 16, 44] {
        let mut op = m.encrypt_init(&key, &p).expect("init");
        assert_eq!(run(op.as_mut(), &h(FOX), chunk), h(FOX_CTR));
    }
    let mut op = m.decrypt_init(&key, &p).expect("init");
    assert_eq!(op.oneshot(&h(FOX_CTR)).expect("dec"), h(FOX));
}

#[test]
fn gcm_rfc8998_and_tamper() {
    let r = registry();
    let key = sm4_key(&h(kat::KEY));
    let m = r.get(vendor::CKM_SM4_GCM).expect("registered");
    let param = MechParam::Gcm {
        iv: h(kat::GCM_IV),
        iv_bits: Some(96),
        aad: h(kat::GCM_AAD),
        tag_bits: 128,
    };
    let mut want = h(kat::GCM_CT);
    want.extend(h(kat::GCM_TAG));
    let mut op = m.encrypt_init(&key, &param).expect("init");
    assert_eq!(run(op.as_mut(), &h(kat::GCM_PT), 13), want);
    let mut bad = want.clone();
    bad[3] ^= 1;
    let mut op = m.decrypt_init(&key, &param).expect("init");
    assert_eq!(
        op.oneshot(&bad).map(drop).expect_err("tag").rv,
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
    let mut op = m.decrypt_init(&key, &param).expect("init");
    assert_eq!(
        op.oneshot(&want[..10]).map(drop).expect_err("short").rv,
        ck::CKR_ENCRYPTED_DATA_LEN_RANGE
    );
}

#[test]
fn cbc_mac() {
    let r = registry();
    let key = sm4_key(&h(kat::KEY));
    let fox = h(FOX);
    let full = h(FOX32_CBC_MAC);
    let g = r.get(vendor::CKM_SM4_MAC_GENERAL).expect("registered");
    for chunk in [1, 15, 16, 17, 32] {
        let mut op = g.sign_init(&key, &MechParam::MacLen(16)).expect("init");
        for c in fox[..32].chunks(chunk) {
            op.update(c).expect("update");
        }
        assert_eq!(op.finalize().expect("mac"), full, "chunk {chunk}");
    }
    let m = r.get(vendor::CKM_SM4_MAC).expect("registered");
    let mut op = m.sign_init(&key, &MechParam::None).expect("init");
    assert_eq!(op.sig_len(), 8);
    assert_eq!(op.oneshot(&fox[..32]).expect("mac"), full[..8]);
    m.verify_init(&key, &MechParam::None)
        .expect("init")
        .oneshot(&fox[..32], &full[..8])
        .expect("verify");
    assert_eq!(
        m.verify_init(&key, &MechParam::None)
            .expect("init")
            .oneshot(&fox[..31], &full[..8])
            .map(drop)
            .expect_err("bad")
            .rv,
        ck::CKR_SIGNATURE_INVALID
    );
    // Zero padding: 44 bytes MAC = 48 bytes with 4 zeros appended.
    let mut padded = fox.clone();
    padded.extend([0u8; 4]);
    let a = g
        .sign_init(&key, &MechParam::MacLen(16))
        .expect("init")
        .oneshot(&fox)
        .expect("mac");
    let b = g
        .sign_init(&key, &MechParam::MacLen(16))
        .expect("init")
        .oneshot(&padded)
        .expect("mac");
    assert_eq!(a, b);
    let empty = g
        .sign_init(&key, &MechParam::MacLen(16))
        .expect("init")
        .oneshot(&[])
        .expect("mac");
    let zero = g
        .sign_init(&key, &MechParam::MacLen(16))
        .expect("init")
        .oneshot(&[0; 16])
        .expect("mac");
    assert_eq!(empty, zero);
    for bad in [0u64, 17] {
        assert_eq!(
            g.sign_init(&key, &MechParam::MacLen(bad))
                .map(drop)
                .expect_err("len")
                .rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn key_gen_and_wrap() {
    let r = registry();
    let gen = r.get(vendor::CKM_SM4_KEY_GEN).expect("registered");
    let k = gen.generate_key(&MechParam::None, None).expect("gen");
    assert_eq!((k.key_type, k.value.len()), (vendor::CKK_SM4, 16));
    assert_eq!(
        gen.generate_key(&MechParam::None, Some(32))
            .err()
            .map(|e| e.rv),
        Some(ck::CKR_ATTRIBUTE_VALUE_INVALID)
    );
    let kek = sm4_key(&k.value);
    let w = r.get(vendor::CKM_SM4_KEY_WRAP).expect("registered");
    for len in [1usize, 16, 20, 138] {
        let secret: Vec<u8> = (0..len as u8).collect();
        let wrapped = w.wrap(&MechParam::None, &kek, &secret).expect("wrap");
        assert_eq!(
            wrapped.len(),
            w.wrap_len(&MechParam::None, &kek, len).expect("len")
        );
        assert_eq!(
            &w.unwrap(&MechParam::None, &kek, &wrapped).expect("unwrap")[..],
            &secret[..]
        );
        let mut bad = wrapped.clone();
        bad[0] ^= 1;
        assert_eq!(
            w.unwrap(&MechParam::None, &kek, &bad)
                .map(drop)
                .expect_err("bad")
                .rv,
            ck::CKR_WRAPPED_KEY_INVALID
        );
    }
    for bad_len in [0usize, 8, 17] {
        assert_eq!(
            w.unwrap(&MechParam::None, &kek, &vec![0; bad_len])
                .map(drop)
                .expect_err("len")
                .rv,
            ck::CKR_WRAPPED_KEY_LEN_RANGE
        );
    }
    let pad = r.get(vendor::CKM_SM4_CBC_PAD).expect("registered");
    let iv = MechParam::Bytes(h(IV));
    let wrapped = pad.wrap(&iv, &kek, &[7; 16]).expect("wrap");
    assert_eq!(
        &pad.unwrap(&iv, &kek, &wrapped).expect("unwrap")[..],
        &[7; 16]
    );
}

#[test]
fn key_checks() {
    let r = registry();
    let aes = Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_AES,
        Zeroizing::new(vec![0; 16]),
    ));
    let short = sm4_key(&[0; 15]);
    let m = r.get(vendor::CKM_SM4_ECB).expect("registered");
    assert_eq!(
        m.encrypt_init(&aes, &MechParam::None)
            .map(drop)
            .expect_err("type")
            .rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        m.encrypt_init(&short, &MechParam::None)
            .map(drop)
            .expect_err("size")
            .rv,
        ck::CKR_KEY_SIZE_RANGE
    );
    let w = r.get(vendor::CKM_SM4_KEY_WRAP).expect("registered");
    assert_eq!(
        w.wrap(&MechParam::None, &aes, &[0; 16])
            .map(drop)
            .expect_err("type")
            .rv,
        ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT
    );
    for mech in r.list() {
        let i = r.get(mech).expect("registered").info();
        assert_eq!((i.min_key_size, i.max_key_size), (16, 16));
    }
}

/// Rough SM4 throughput for the report (`cargo test --release -p p11kmsd
/// sm4_throughput -- --ignored --nocapture`); the benchmark proper is
/// bench/.
#[test]
#[ignore]
fn sm4_throughput() {
    let r = registry();
    let key = sm4_key(&h(kat::KEY));
    let data = vec![0x5au8; 1 << 20];
    for (name, mech, param) in [
        ("CBC", vendor::CKM_SM4_CBC, MechParam::Bytes(h(IV))),
        (
            "CTR",
            vendor::CKM_SM4_CTR,
            MechParam::Ctr {
                counter_bits: 128,
                cb: [0; 16],
            },
        ),
        (
            "GCM",
            vendor::CKM_SM4_GCM,
            MechParam::Gcm {
                iv: vec![0; 12],
                iv_bits: None,
                aad: Vec::new(),
                tag_bits: 128,
            },
        ),
    ] {
        let m = r.get(mech).expect("registered");
        let start = std::time::Instant::now();
        let mut n = 0;
        while start.elapsed().as_secs_f64() < 1.0 {
            m.encrypt_init(&key, &param)
                .expect("init")
                .oneshot(&data)
                .expect("enc");
            n += 1;
        }
        println!(
            "SM4-{name}: {:.0} MB/s",
            n as f64 * data.len() as f64 / 1e6 / start.elapsed().as_secs_f64()
        );
    }
}

/// Every SM4 mode over lengths that cross the kernels' eight-block
/// batches, in odd chunks, against the same modes over RustCrypto's `sm4`
/// (an independent, table-driven implementation): bit-identical.
#[test]
fn modes_match_an_independent_implementation() {
    use cipher::{BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
    let r = registry();
    let raw: Vec<u8> = (0u8..16).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let key = sm4_key(&raw);
    let reference = sm4::Sm4::new_from_slice(&raw).expect("key");
    let iv: Vec<u8> = (0u8..16).map(|i| i.wrapping_mul(11)).collect();
    for blocks in [0usize, 1, 3, 7, 8, 9, 16, 17, 63, 64, 65, 200] {
        let data: Vec<u8> = (0..blocks * 16).map(|i| (i * 7 + blocks) as u8).collect();
        // ECB: block by block.
        let mut ecb = data.clone();
        for b in ecb.chunks_exact_mut(16) {
            let block: &mut Array<u8, U16> = b.try_into().expect("block");
            reference.encrypt_block(block);
        }
        // CBC with the `cbc` crate over the reference cipher.
        let mut cbc = data.clone();
        cbc::Encryptor::<sm4::Sm4>::new_from_slices(&raw, &iv)
            .expect("cbc")
            .encrypt_blocks(Array::slice_as_chunks_mut(&mut cbc).0);
        // CTR with the `ctr` crate.
        let mut ctr = data.clone();
        ctr::Ctr128BE::<sm4::Sm4>::new_from_slices(&raw, &iv)
            .expect("ctr")
            .apply_keystream(&mut ctr);
        let mut cb = [0u8; 16];
        cb.copy_from_slice(&iv);
        for (mech, param, expect) in [
            (vendor::CKM_SM4_ECB, MechParam::None, &ecb),
            (vendor::CKM_SM4_CBC, MechParam::Bytes(iv.clone()), &cbc),
            (
                vendor::CKM_SM4_CTR,
                MechParam::Ctr {
                    counter_bits: 128,
                    cb,
                },
                &ctr,
            ),
        ] {
            let m = r.get(mech).expect("registered");
            for chunk in [1, 13, 16, 100, 4096] {
                let mut op = m.encrypt_init(&key, &param).expect("init");
                assert_eq!(
                    &run(op.as_mut(), &data, chunk),
                    expect,
                    "{mech:#x} enc, {blocks} blocks, chunk {chunk}"
                );
                let mut op = m.decrypt_init(&key, &param).expect("init");
                assert_eq!(
                    run(op.as_mut(), expect, chunk),
                    data,
                    "{mech:#x} dec, {blocks} blocks, chunk {chunk}"
                );
            }
        }
    }
}

/// SM4-GCM with IVs of 1 to 256 bytes (J0 through GHASH for all but 96
/// bits; no published SM4-GCM vector has such an IV) against GCM built by
/// the aes-gcm crate over RustCrypto's independent `sm4`, with the nonce
/// length fixed at compile time; single- and multi-part.
#[test]
fn gcm_any_iv_length_matches_an_independent_implementation() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{AesGcm, Nonce};
    use cipher::array::ArraySize;
    use cipher::consts::{U1, U12, U128, U16, U256, U64, U8};

    fn reference<N: ArraySize>(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        AesGcm::<sm4::Sm4, N>::new_from_slice(key)
            .expect("key")
            .encrypt(
                &Nonce::<N>::try_from(iv).expect("nonce"),
                Payload { msg: pt, aad },
            )
            .expect("encrypt")
    }
    type Ref = fn(&[u8], &[u8], &[u8], &[u8]) -> Vec<u8>;
    let r = registry();
    let m = r.get(vendor::CKM_SM4_GCM).expect("registered");
    let raw = h(kat::KEY);
    let key = sm4_key(&raw);
    let aad = h(kat::GCM_AAD);
    let pt = h(kat::GCM_PT);
    let cases: [(usize, Ref); 7] = [
        (1, reference::<U1>),
        (8, reference::<U8>),
        (12, reference::<U12>),
        (16, reference::<U16>),
        (64, reference::<U64>),
        (128, reference::<U128>),
        (256, reference::<U256>),
    ];
    for (n, reference) in cases {
        let iv: Vec<u8> = (0..n).map(|i| (i * 13 + 1) as u8).collect();
        let want = reference(&raw, &iv, &aad, &pt);
        let param = MechParam::Gcm {
            iv,
            iv_bits: Some(0),
            aad: aad.clone(),
            tag_bits: 128,
        };
        let mut op = m.encrypt_init(&key, &param).expect("init");
        assert_eq!(op.oneshot(&pt).expect("enc"), want, "IV of {n} bytes");
        let mut op = m.decrypt_init(&key, &param).expect("init");
        assert_eq!(run(op.as_mut(), &want, 7), pt, "IV of {n} bytes");
    }
}
