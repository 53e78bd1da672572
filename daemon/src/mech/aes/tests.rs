//! SP 800-38A vectors, chunking, padding, counter-width and error tests.

use super::*;

fn registry() -> Registry {
    let mut r = Registry::default();
    register(&mut r);
    r
}

fn aes_key(v: &[u8]) -> Arc<Key> {
    Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_AES,
        Zeroizing::new(v.to_vec()),
    ))
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn op(
    r: &Registry,
    mech: u64,
    key: &Arc<Key>,
    param: &MechParam,
    encrypt: bool,
) -> Box<dyn CipherOp> {
    let m = r.get(mech).expect("registered");
    if encrypt {
        m.encrypt_init(key, param)
    } else {
        m.decrypt_init(key, param)
    }
    .expect("init")
}

fn oneshot(
    r: &Registry,
    mech: u64,
    key: &Arc<Key>,
    param: &MechParam,
    encrypt: bool,
    data: &[u8],
) -> Result<Vec<u8>> {
    let mut o = op(r, mech, key, param, encrypt);
    let bound = o.oneshot_len(data.len())?;
    let out = o.oneshot(data)?;
    assert!(
        out.len() <= bound,
        "oneshot output {} over bound {bound}",
        out.len()
    );
    Ok(out)
}

/// Multi-part with the given chunk sizes (cycled), checking the bounds.
fn chunked(
    r: &Registry,
    mech: u64,
    key: &Arc<Key>,
    param: &MechParam,
    encrypt: bool,
    data: &[u8],
    sizes: &[usize],
) -> Result<Vec<u8>> {
    let mut o = op(r, mech, key, param, encrypt);
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        let bound = o.update_len(n);
        let part = o.update(&rest[..n])?;
        assert!(
            part.len() <= bound,
            "update output {} over bound {bound}",
            part.len()
        );
        out.extend_from_slice(&part);
        rest = &rest[n..];
    }
    let bound = o.final_len();
    let last = o.finalize()?;
    assert!(
        last.len() <= bound,
        "final output {} over bound {bound}",
        last.len()
    );
    out.extend_from_slice(&last);
    Ok(out)
}

const CHUNKINGS: &[&[usize]] = &[&[1], &[7], &[15, 1, 17], &[16], &[33, 2], &[1000]];

fn param_for(mode: &str, iv: &str) -> (u64, MechParam) {
    match mode {
        "ECB" => (ck::CKM_AES_ECB, MechParam::None),
        "CBC" => (ck::CKM_AES_CBC, MechParam::Bytes(h(iv))),
        "CTR" => (
            ck::CKM_AES_CTR,
            MechParam::Ctr {
                counter_bits: 128,
                cb: h(iv).try_into().expect("16 bytes"),
            },
        ),
        _ => panic!("unknown mode {mode}"),
    }
}

#[test]
fn sp800_38a_vectors() {
    let r = registry();
    let mut n = 0;
    for line in include_str!("../../../testdata/aes_sp800_38a.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (mech, param) = param_for(f[0], f[2]);
        let key = aes_key(&h(f[1]));
        let (pt, ct) = (h(f[3]), h(f[4]));
        assert_eq!(
            oneshot(&r, mech, &key, &param, true, &pt).expect("encrypt"),
            ct,
            "{line}"
        );
        assert_eq!(
            oneshot(&r, mech, &key, &param, false, &ct).expect("decrypt"),
            pt,
            "{line}"
        );
        for sizes in CHUNKINGS {
            assert_eq!(
                chunked(&r, mech, &key, &param, true, &pt, sizes).expect("encrypt"),
                ct,
                "{line} {sizes:?}"
            );
            assert_eq!(
                chunked(&r, mech, &key, &param, false, &ct, sizes).expect("decrypt"),
                pt,
                "{line} {sizes:?}"
            );
        }
        n += 1;
    }
    assert_eq!(n, 9);
}

#[test]
fn cbc_pad() {
    let r = registry();
    let key = aes_key(&h("2b7e151628aed2a6abf7158809cf4f3c"));
    let iv = MechParam::Bytes(h("000102030405060708090a0b0c0d0e0f"));
    for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
        let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let ct = oneshot(&r, ck::CKM_AES_CBC_PAD, &key, &iv, true, &pt).expect("encrypt");
        assert_eq!(ct.len(), len / 16 * 16 + 16);
        // The padded input through plain CBC gives the same ciphertext.
        let mut padded = pt.clone();
        padded.extend(std::iter::repeat_n((16 - len % 16) as u8, 16 - len % 16));
        assert_eq!(
            oneshot(&r, ck::CKM_AES_CBC, &key, &iv, true, &padded).expect("cbc"),
            ct
        );
        assert_eq!(
            oneshot(&r, ck::CKM_AES_CBC_PAD, &key, &iv, false, &ct).expect("decrypt"),
            pt
        );
        for sizes in CHUNKINGS {
            assert_eq!(
                chunked(&r, ck::CKM_AES_CBC_PAD, &key, &iv, true, &pt, sizes).expect("encrypt"),
                ct
            );
            assert_eq!(
                chunked(&r, ck::CKM_AES_CBC_PAD, &key, &iv, false, &ct, sizes).expect("decrypt"),
                pt
            );
        }
    }
    // A last block whose padding byte is 0 or inconsistent.
    for last in [
        h("00000000000000000000000000000000"),
        h("000102030405060708090a0b0c0d0e03"),
    ] {
        let ct = oneshot(&r, ck::CKM_AES_CBC, &key, &iv, true, &last).expect("cbc");
        let e = oneshot(&r, ck::CKM_AES_CBC_PAD, &key, &iv, false, &ct).expect_err("bad pad");
        assert_eq!(e.rv, ck::CKR_ENCRYPTED_DATA_INVALID);
        let e = chunked(&r, ck::CKM_AES_CBC_PAD, &key, &iv, false, &ct, &[3]).expect_err("bad pad");
        assert_eq!(e.rv, ck::CKR_ENCRYPTED_DATA_INVALID);
    }
    for len in [0, 15, 17] {
        let e = oneshot(&r, ck::CKM_AES_CBC_PAD, &key, &iv, false, &vec![0; len]).expect_err("len");
        assert_eq!(e.rv, ck::CKR_ENCRYPTED_DATA_LEN_RANGE);
        let e = chunked(
            &r,
            ck::CKM_AES_CBC_PAD,
            &key,
            &iv,
            false,
            &vec![0; len],
            &[4],
        )
        .expect_err("len");
        assert_eq!(e.rv, ck::CKR_ENCRYPTED_DATA_LEN_RANGE);
    }
}

#[test]
fn cbc_pad_wrap() {
    let r = registry();
    let m = r.get(ck::CKM_AES_CBC_PAD).expect("registered");
    let kek = aes_key(&[7; 32]);
    let iv = MechParam::Bytes(vec![9; 16]);
    let secret = [0x42u8; 24];
    let bound = m.wrap_len(&iv, &kek, secret.len()).expect("len");
    let wrapped = m.wrap(&iv, &kek, &secret).expect("wrap");
    assert_eq!(wrapped.len(), 32);
    assert!(wrapped.len() <= bound);
    assert_eq!(
        m.unwrap(&iv, &kek, &wrapped).expect("unwrap").as_slice(),
        secret
    );
    assert_eq!(
        m.unwrap(&iv, &kek, &wrapped[..31]).expect_err("len").rv,
        ck::CKR_WRAPPED_KEY_LEN_RANGE
    );
    let bad = oneshot(&r, ck::CKM_AES_CBC, &kek, &iv, true, &[0; 32]).expect("cbc");
    assert_eq!(
        m.unwrap(&iv, &kek, &bad).expect_err("pad").rv,
        ck::CKR_WRAPPED_KEY_INVALID
    );
    let hmac_key = Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_GENERIC_SECRET,
        Zeroizing::new(vec![1; 32]),
    ));
    assert_eq!(
        m.wrap(&iv, &hmac_key, &secret).expect_err("type").rv,
        ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        m.unwrap(&iv, &hmac_key, &wrapped).expect_err("type").rv,
        ck::CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT
    );
    // Only CBC-PAD wraps.
    let cbc = r.get(ck::CKM_AES_CBC).expect("registered");
    assert_eq!(
        cbc.wrap(&iv, &kek, &[0; 16]).expect_err("no wrap").rv,
        ck::CKR_MECHANISM_INVALID
    );
}

#[test]
fn block_mode_lengths_and_params() {
    let r = registry();
    let key = aes_key(&[1; 16]);
    let iv = MechParam::Bytes(vec![0; 16]);
    for (mech, p) in [
        (ck::CKM_AES_ECB, MechParam::None),
        (ck::CKM_AES_CBC, iv.clone()),
    ] {
        assert_eq!(
            oneshot(&r, mech, &key, &p, true, &[0; 17])
                .expect_err("len")
                .rv,
            ck::CKR_DATA_LEN_RANGE
        );
        assert_eq!(
            oneshot(&r, mech, &key, &p, false, &[0; 17])
                .expect_err("len")
                .rv,
            ck::CKR_ENCRYPTED_DATA_LEN_RANGE
        );
        assert_eq!(
            chunked(&r, mech, &key, &p, true, &[0; 17], &[5])
                .expect_err("len")
                .rv,
            ck::CKR_DATA_LEN_RANGE
        );
        assert_eq!(
            chunked(&r, mech, &key, &p, false, &[0; 17], &[5])
                .expect_err("len")
                .rv,
            ck::CKR_ENCRYPTED_DATA_LEN_RANGE
        );
        assert!(oneshot(&r, mech, &key, &p, true, &[])
            .expect("empty")
            .is_empty());
    }
    for bad in [
        MechParam::None,
        MechParam::Bytes(vec![0; 15]),
        MechParam::Bytes(vec![0; 17]),
    ] {
        for mech in [ck::CKM_AES_CBC, ck::CKM_AES_CBC_PAD] {
            let e = r
                .get(mech)
                .expect("registered")
                .encrypt_init(&key, &bad)
                .err()
                .expect("error");
            assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID);
        }
    }
    let e = r
        .get(ck::CKM_AES_ECB)
        .expect("registered")
        .encrypt_init(&key, &iv)
        .err()
        .expect("error");
    assert_eq!(e.rv, ck::CKR_MECHANISM_PARAM_INVALID);
}

#[test]
fn key_checks() {
    let r = registry();
    let m = r.get(ck::CKM_AES_ECB).expect("registered");
    let generic = Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_GENERIC_SECRET,
        Zeroizing::new(vec![0; 16]),
    ));
    assert_eq!(
        m.encrypt_init(&generic, &MechParam::None)
            .err()
            .expect("type")
            .rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    let public = Arc::new(Key::new(
        ck::CKO_PUBLIC_KEY,
        ck::CKK_AES,
        Zeroizing::new(vec![0; 16]),
    ));
    assert_eq!(
        m.encrypt_init(&public, &MechParam::None)
            .err()
            .expect("class")
            .rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    for len in [0, 8, 20, 64] {
        assert_eq!(
            m.encrypt_init(&aes_key(&vec![0; len]), &MechParam::None)
                .err()
                .expect("size")
                .rv,
            ck::CKR_KEY_SIZE_RANGE
        );
    }
}

#[test]
fn key_gen() {
    let r = registry();
    let m = r.get(ck::CKM_AES_KEY_GEN).expect("registered");
    for len in [16, 24, 32] {
        let k = m.generate_key(&MechParam::None, Some(len)).expect("gen");
        assert_eq!(k.key_type, ck::CKK_AES);
        assert_eq!(k.value.len(), len);
    }
    let a = m.generate_key(&MechParam::None, Some(32)).expect("gen");
    let b = m.generate_key(&MechParam::None, Some(32)).expect("gen");
    assert_ne!(a.value, b.value);
    assert_eq!(
        m.generate_key(&MechParam::None, None)
            .err()
            .expect("missing")
            .rv,
        ck::CKR_TEMPLATE_INCOMPLETE
    );
    for len in [0, 8, 17, 64] {
        assert_eq!(
            m.generate_key(&MechParam::None, Some(len))
                .err()
                .expect("len")
                .rv,
            ck::CKR_ATTRIBUTE_VALUE_INVALID
        );
    }
    assert_eq!(
        m.generate_key(&MechParam::Bytes(vec![]), Some(16))
            .err()
            .expect("param")
            .rv,
        ck::CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn mechanism_info() {
    let r = registry();
    let want = [
        (ck::CKM_AES_KEY_GEN, ck::CKF_GENERATE),
        (ck::CKM_AES_ECB, ck::CKF_ENCRYPT | ck::CKF_DECRYPT),
        (ck::CKM_AES_CBC, ck::CKF_ENCRYPT | ck::CKF_DECRYPT),
        (
            ck::CKM_AES_CBC_PAD,
            ck::CKF_ENCRYPT | ck::CKF_DECRYPT | ck::CKF_WRAP | ck::CKF_UNWRAP,
        ),
        (ck::CKM_AES_CTR, ck::CKF_ENCRYPT | ck::CKF_DECRYPT),
    ];
    assert_eq!(r.list().len(), want.len());
    for (mech, flags) in want {
        let i = r.get(mech).expect("registered").info();
        assert_eq!(
            (i.min_key_size, i.max_key_size, i.flags),
            (16, 32, flags),
            "mech 0x{mech:x}"
        );
    }
    r.run_self_tests().expect("self-test");
}

/// ECB encryption of explicit counter blocks: the reference for CTR.
fn keystream(r: &Registry, key: &Arc<Key>, blocks: &[[u8; 16]]) -> Vec<u8> {
    oneshot(
        r,
        ck::CKM_AES_ECB,
        key,
        &MechParam::None,
        true,
        &blocks.concat(),
    )
    .expect("ecb")
}

#[test]
fn ctr_counter_width_wraps() {
    let r = registry();
    let key = aes_key(&h("2b7e151628aed2a6abf7158809cf4f3c"));
    let mut base = [0xabu8; 16];
    // (bits, last two bytes of the initial block, expected last two bytes).
    type Case = (u64, [u8; 2], &'static [[u8; 2]]);
    let cases: &[Case] = &[
        (
            8,
            [0xab, 0xfe],
            &[[0xab, 0xfe], [0xab, 0xff], [0xab, 0x00], [0xab, 0x01]],
        ),
        (
            4,
            [0xab, 0xae],
            &[[0xab, 0xae], [0xab, 0xaf], [0xab, 0xa0], [0xab, 0xa1]],
        ),
        (
            12,
            [0xaf, 0xfe],
            &[[0xaf, 0xfe], [0xaf, 0xff], [0xa0, 0x00], [0xa0, 0x01]],
        ),
        (
            16,
            [0xff, 0xff],
            &[[0xff, 0xff], [0x00, 0x00], [0x00, 0x01], [0x00, 0x02]],
        ),
        (
            17,
            [0xff, 0xff],
            &[[0xff, 0xff], [0x00, 0x00], [0x00, 0x01], [0x00, 0x02]],
        ),
    ];
    for (bits, start, expect) in cases {
        base[14..].copy_from_slice(start);
        let blocks: Vec<[u8; 16]> = expect
            .iter()
            .map(|tail| {
                let mut b = base;
                b[14..].copy_from_slice(tail);
                if *bits == 17 {
                    // Bit 16 (lowest bit of byte 13) belongs to the counter:
                    // 0xab ends in 1, so the carry out of 0xffff clears it.
                    b[13] = if tail == &[0xff, 0xff] { 0xab } else { 0xaa };
                }
                b
            })
            .collect();
        let ks = keystream(&r, &key, &blocks);
        let p = MechParam::Ctr {
            counter_bits: *bits,
            cb: base,
        };
        let zeros = vec![0u8; 64];
        assert_eq!(
            oneshot(&r, ck::CKM_AES_CTR, &key, &p, true, &zeros).expect("ctr"),
            ks,
            "bits {bits}"
        );
        for sizes in CHUNKINGS {
            assert_eq!(
                chunked(&r, ck::CKM_AES_CTR, &key, &p, true, &zeros, sizes).expect("ctr"),
                ks,
                "bits {bits} {sizes:?}"
            );
        }
    }
}

#[test]
fn ctr_32_and_64_bit_counters_wrap_in_place() {
    let r = registry();
    let key = aes_key(&[3; 32]);
    for bits in [32u64, 64] {
        let mut cb = [0x11u8; 16];
        let field = (bits / 8) as usize;
        cb[16 - field..].fill(0xff);
        let mut second = cb;
        second[16 - field..].fill(0);
        let ks = keystream(&r, &key, &[cb, second]);
        let p = MechParam::Ctr {
            counter_bits: bits,
            cb,
        };
        assert_eq!(
            oneshot(&r, ck::CKM_AES_CTR, &key, &p, true, &[0; 32]).expect("ctr"),
            ks
        );
    }
    // 128 bits: the whole block is the counter.
    let p = MechParam::Ctr {
        counter_bits: 128,
        cb: [0xff; 16],
    };
    assert_eq!(
        oneshot(&r, ck::CKM_AES_CTR, &key, &p, true, &[0; 32]).expect("ctr"),
        keystream(&r, &key, &[[0xff; 16], [0; 16]])
    );
}

#[test]
fn ctr_refuses_keystream_reuse() {
    let r = registry();
    let key = aes_key(&[3; 16]);
    // Two counter bits: four blocks, whatever the starting value.
    let p = MechParam::Ctr {
        counter_bits: 2,
        cb: [0x02; 16],
    };
    assert_eq!(
        oneshot(&r, ck::CKM_AES_CTR, &key, &p, true, &[0; 64])
            .expect("fits")
            .len(),
        64
    );
    assert_eq!(
        oneshot(&r, ck::CKM_AES_CTR, &key, &p, true, &[0; 65])
            .expect_err("too long")
            .rv,
        ck::CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        op(&r, ck::CKM_AES_CTR, &key, &p, true)
            .oneshot_len(65)
            .expect_err("len")
            .rv,
        ck::CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        oneshot(&r, ck::CKM_AES_CTR, &key, &p, false, &[0; 65])
            .expect_err("too long")
            .rv,
        ck::CKR_ENCRYPTED_DATA_LEN_RANGE
    );
    let mut o = op(&r, ck::CKM_AES_CTR, &key, &p, true);
    o.update(&[0; 60]).expect("first");
    o.update(&[0; 4]).expect("fills");
    assert_eq!(
        o.update(&[0; 1]).expect_err("over").rv,
        ck::CKR_DATA_LEN_RANGE
    );
    for bits in [0u64, 129] {
        let bad = MechParam::Ctr {
            counter_bits: bits,
            cb: [0; 16],
        };
        assert_eq!(
            r.get(ck::CKM_AES_CTR)
                .expect("registered")
                .encrypt_init(&key, &bad)
                .err()
                .expect("bits")
                .rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
    }
    let bad = MechParam::Bytes(vec![0; 16]);
    assert_eq!(
        r.get(ck::CKM_AES_CTR)
            .expect("registered")
            .encrypt_init(&key, &bad)
            .err()
            .expect("param")
            .rv,
        ck::CKR_MECHANISM_PARAM_INVALID
    );
}
