//! RFC 3394 / RFC 5649 vectors through wrap, unwrap, encrypt and decrypt.

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

fn cipher(
    r: &Registry,
    mech: u64,
    key: &Arc<Key>,
    p: &MechParam,
    encrypt: bool,
    data: &[u8],
    chunk: Option<usize>,
) -> Result<Vec<u8>> {
    let m = r.get(mech)?;
    let mut op = if encrypt {
        m.encrypt_init(key, p)?
    } else {
        m.decrypt_init(key, p)?
    };
    let Some(chunk) = chunk else {
        let bound = op.oneshot_len(data.len())?;
        let out = op.oneshot(data)?;
        assert!(out.len() <= bound);
        return Ok(out);
    };
    for c in data.chunks(chunk) {
        assert!(op.update(c)?.is_empty());
    }
    let bound = op.final_len();
    let out = op.finalize()?;
    assert!(out.len() <= bound);
    Ok(out)
}

#[test]
fn rfc_vectors() {
    let r = registry();
    let mut n = 0;
    for line in include_str!("../../../testdata/aes_keywrap.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (mechs, iv): (&[u64], &[u8]) = match f[0] {
            "KW" => (&[ck::CKM_AES_KEY_WRAP], &KW_IV),
            _ => (
                &[ck::CKM_AES_KEY_WRAP_KWP, ck::CKM_AES_KEY_WRAP_PAD],
                &KWP_IV,
            ),
        };
        let (kek, data, wrapped) = (aes_key(&h(f[1])), h(f[2]), h(f[3]));
        for &mech in mechs {
            let m = r.get(mech).expect("registered");
            for p in [MechParam::None, MechParam::Bytes(iv.to_vec())] {
                assert!(m.wrap_len(&p, &kek, data.len()).expect("len") >= wrapped.len());
                assert_eq!(m.wrap(&p, &kek, &data).expect("wrap"), wrapped, "{line}");
                assert_eq!(
                    m.unwrap(&p, &kek, &wrapped).expect("unwrap").as_slice(),
                    data,
                    "{line}"
                );
                for chunk in [None, Some(1), Some(5), Some(8)] {
                    assert_eq!(
                        cipher(&r, mech, &kek, &p, true, &data, chunk).expect("encrypt"),
                        wrapped,
                        "{line}"
                    );
                    assert_eq!(
                        cipher(&r, mech, &kek, &p, false, &wrapped, chunk).expect("decrypt"),
                        data,
                        "{line}"
                    );
                }
            }
        }
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn integrity_and_lengths() {
    let r = registry();
    let kek = aes_key(&[7; 16]);
    for mech in [
        ck::CKM_AES_KEY_WRAP,
        ck::CKM_AES_KEY_WRAP_KWP,
        ck::CKM_AES_KEY_WRAP_PAD,
    ] {
        let m = r.get(mech).expect("registered");
        let wrapped = m.wrap(&MechParam::None, &kek, &[0x55; 32]).expect("wrap");
        for i in [0, 8, wrapped.len() - 1] {
            let mut bad = wrapped.clone();
            bad[i] ^= 1;
            assert_eq!(
                m.unwrap(&MechParam::None, &kek, &bad)
                    .expect_err("tampered")
                    .rv,
                ck::CKR_WRAPPED_KEY_INVALID
            );
            assert_eq!(
                cipher(&r, mech, &kek, &MechParam::None, false, &bad, None)
                    .expect_err("tampered")
                    .rv,
                ck::CKR_ENCRYPTED_DATA_INVALID
            );
        }
        // Another KEK fails the integrity check too.
        assert_eq!(
            m.unwrap(&MechParam::None, &aes_key(&[8; 16]), &wrapped)
                .expect_err("kek")
                .rv,
            ck::CKR_WRAPPED_KEY_INVALID
        );
        for len in [0, 8, 15, 33] {
            assert_eq!(
                m.unwrap(&MechParam::None, &kek, &vec![0; len])
                    .expect_err("len")
                    .rv,
                ck::CKR_WRAPPED_KEY_LEN_RANGE,
                "{len}"
            );
            let e = cipher(
                &r,
                mech,
                &kek,
                &MechParam::None,
                false,
                &vec![0; len],
                Some(3),
            )
            .expect_err("len");
            assert_eq!(e.rv, ck::CKR_ENCRYPTED_DATA_LEN_RANGE);
        }
        assert_eq!(
            m.wrap(&MechParam::None, &kek, &[]).expect_err("empty").rv,
            ck::CKR_KEY_SIZE_RANGE
        );
        assert_eq!(
            cipher(&r, mech, &kek, &MechParam::None, true, &[], None)
                .expect_err("empty")
                .rv,
            ck::CKR_DATA_LEN_RANGE
        );
        for bad in [
            MechParam::Bytes(vec![0; 8]),
            MechParam::Bytes(vec![0; 4]),
            MechParam::MacLen(8),
        ] {
            assert_eq!(
                m.wrap(&bad, &kek, &[0; 16]).expect_err("iv").rv,
                ck::CKR_MECHANISM_PARAM_INVALID
            );
            assert_eq!(
                m.encrypt_init(&kek, &bad).err().expect("iv").rv,
                ck::CKR_MECHANISM_PARAM_INVALID
            );
        }
        let i = m.info();
        assert_eq!((i.min_key_size, i.max_key_size), (16, 32));
        assert_eq!(
            i.flags,
            ck::CKF_ENCRYPT | ck::CKF_DECRYPT | ck::CKF_WRAP | ck::CKF_UNWRAP
        );
        let generic = Arc::new(Key::new(
            ck::CKO_SECRET_KEY,
            ck::CKK_GENERIC_SECRET,
            Zeroizing::new(vec![0; 16]),
        ));
        assert_eq!(
            m.wrap(&MechParam::None, &generic, &[0; 16])
                .expect_err("type")
                .rv,
            ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT
        );
        assert_eq!(
            m.unwrap(&MechParam::None, &generic, &wrapped)
                .expect_err("type")
                .rv,
            ck::CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT
        );
    }
    // RFC 3394 takes whole semiblocks, at least two.
    let kw = r.get(ck::CKM_AES_KEY_WRAP).expect("registered");
    for len in [8, 20, 31] {
        assert_eq!(
            kw.wrap(&MechParam::None, &kek, &vec![0; len])
                .expect_err("len")
                .rv,
            ck::CKR_KEY_SIZE_RANGE
        );
        assert_eq!(
            kw.wrap_len(&MechParam::None, &kek, len)
                .expect_err("len")
                .rv,
            ck::CKR_KEY_SIZE_RANGE
        );
        assert_eq!(
            cipher(
                &r,
                ck::CKM_AES_KEY_WRAP,
                &kek,
                &MechParam::None,
                true,
                &vec![0; len],
                None
            )
            .expect_err("len")
            .rv,
            ck::CKR_DATA_LEN_RANGE
        );
    }
    // RFC 5649 takes any length.
    let kwp = r.get(ck::CKM_AES_KEY_WRAP_KWP).expect("registered");
    for len in [1usize, 7, 8, 9, 20, 31, 65] {
        let data: Vec<u8> = (0..len as u8).collect();
        let w = kwp.wrap(&MechParam::None, &kek, &data).expect("wrap");
        assert_eq!(w.len(), len.div_ceil(8) * 8 + 8);
        assert_eq!(
            kwp.unwrap(&MechParam::None, &kek, &w)
                .expect("unwrap")
                .as_slice(),
            data
        );
    }
    r.run_self_tests().expect("self-test");
}
