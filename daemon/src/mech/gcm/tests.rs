//! GCM spec vectors, IV and tag lengths, tampering and chunking.

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
    if s == "-" {
        Vec::new()
    } else {
        hex::decode(s).expect("hex")
    }
}

fn gcm(iv: &[u8], aad: &[u8], tag_bits: u64, iv_bits: Option<u64>) -> MechParam {
    MechParam::Gcm {
        iv: iv.to_vec(),
        iv_bits,
        aad: aad.to_vec(),
        tag_bits,
    }
}

fn run(
    r: &Registry,
    key: &Arc<Key>,
    p: &MechParam,
    encrypt: bool,
    data: &[u8],
    chunk: Option<usize>,
) -> Result<Vec<u8>> {
    let m = r.get(ck::CKM_AES_GCM)?;
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
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        assert_eq!(op.update_len(c.len()), 0);
        let part = op.update(c)?;
        assert!(part.is_empty(), "GCM releases nothing before final");
        out.extend(part);
    }
    let bound = op.final_len();
    let last = op.finalize()?;
    assert!(last.len() <= bound);
    out.extend(last);
    Ok(out)
}

/// name, key, iv, aad, plaintext, ciphertext || tag.
type Vector = (String, Arc<Key>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

fn vectors() -> Vec<Vector> {
    include_str!("../../../testdata/aes_gcm.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                aes_key(&h(f[1])),
                h(f[2]),
                h(f[3]),
                h(f[4]),
                h(f[5]),
            )
        })
        .collect()
}

#[test]
fn spec_vectors() {
    let r = registry();
    let v = vectors();
    assert_eq!(v.len(), 6);
    for (name, key, iv, aad, pt, ct) in v {
        for iv_bits in [None, Some(0), Some(iv.len() as u64 * 8)] {
            let p = gcm(&iv, &aad, 128, iv_bits);
            for chunk in [None, Some(1), Some(7), Some(16), Some(1000)] {
                assert_eq!(
                    run(&r, &key, &p, true, &pt, chunk).expect("encrypt"),
                    ct,
                    "{name} {chunk:?}"
                );
                assert_eq!(
                    run(&r, &key, &p, false, &ct, chunk).expect("decrypt"),
                    pt,
                    "{name} {chunk:?}"
                );
            }
        }
    }
}

#[test]
fn truncated_tags() {
    let r = registry();
    for (name, key, iv, aad, pt, ct) in vectors() {
        for tag_bits in [32u64, 64, 96, 104, 112, 120] {
            let p = gcm(&iv, &aad, tag_bits, None);
            let want = &ct[..pt.len() + tag_bits as usize / 8];
            assert_eq!(
                run(&r, &key, &p, true, &pt, None).expect("encrypt"),
                want,
                "{name} {tag_bits}"
            );
            assert_eq!(
                run(&r, &key, &p, false, want, Some(5)).expect("decrypt"),
                pt,
                "{name} {tag_bits}"
            );
            let mut bad = want.to_vec();
            *bad.last_mut().expect("tag") ^= 0x80;
            assert_eq!(
                run(&r, &key, &p, false, &bad, None)
                    .expect_err("tampered")
                    .rv,
                ck::CKR_ENCRYPTED_DATA_INVALID
            );
            // The full tag is too long for a truncated-tag operation.
            assert_eq!(
                run(&r, &key, &p, false, &ct, None)
                    .expect_err("wrong length")
                    .rv,
                ck::CKR_ENCRYPTED_DATA_INVALID
            );
        }
    }
}

#[test]
fn tampering_and_lengths() {
    let r = registry();
    let (_, key, iv, aad, _, ct) = vectors().swap_remove(1);
    let p = gcm(&iv, &aad, 128, None);
    for i in [0, ct.len() / 2, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[i] ^= 1;
        assert_eq!(
            run(&r, &key, &p, false, &bad, None)
                .expect_err("tampered")
                .rv,
            ck::CKR_ENCRYPTED_DATA_INVALID
        );
        assert_eq!(
            run(&r, &key, &p, false, &bad, Some(3))
                .expect_err("tampered")
                .rv,
            ck::CKR_ENCRYPTED_DATA_INVALID
        );
    }
    let mut other_aad = aad.clone();
    other_aad[0] ^= 1;
    assert_eq!(
        run(&r, &key, &gcm(&iv, &other_aad, 128, None), false, &ct, None)
            .expect_err("aad")
            .rv,
        ck::CKR_ENCRYPTED_DATA_INVALID
    );
    for short in [0, 1, 15] {
        assert_eq!(
            run(&r, &key, &p, false, &ct[..short], None)
                .expect_err("short")
                .rv,
            ck::CKR_ENCRYPTED_DATA_LEN_RANGE
        );
        assert_eq!(
            run(&r, &key, &p, false, &ct[..short], Some(4))
                .expect_err("short")
                .rv,
            ck::CKR_ENCRYPTED_DATA_LEN_RANGE
        );
    }
    // Only the tag: an empty plaintext.
    let tag_only = run(&r, &key, &p, true, &[], None).expect("empty");
    assert_eq!(tag_only.len(), 16);
    assert!(run(&r, &key, &p, false, &tag_only, None)
        .expect("empty")
        .is_empty());
}

#[test]
fn params() {
    let r = registry();
    let m = r.get(ck::CKM_AES_GCM).expect("registered");
    let key = aes_key(&[0; 16]);
    let bad = [
        gcm(&[0; 12], &[], 0, None),
        gcm(&[0; 12], &[], 8, None),
        gcm(&[0; 12], &[], 100, None),
        gcm(&[0; 12], &[], 136, None),
        gcm(&[], &[], 128, None),
        gcm(&[], &[], 128, Some(0)),
        gcm(&[0; 257], &[], 128, None),
        MechParam::None,
        MechParam::Bytes(vec![0; 12]),
    ];
    for p in bad {
        assert_eq!(
            m.encrypt_init(&key, &p).err().expect("bad").rv,
            ck::CKR_MECHANISM_PARAM_INVALID,
            "{p:?}"
        );
        assert_eq!(
            m.decrypt_init(&key, &p).err().expect("bad").rv,
            ck::CKR_MECHANISM_PARAM_INVALID,
            "{p:?}"
        );
    }
    // IVs of 1 to 256 bytes; ulIvBits is advisory, whatever it says.
    for (iv_len, iv_bits) in [
        (1, None),
        (12, Some(95)),
        (16, Some(64)),
        (60, Some(0)),
        (256, Some(7)),
    ] {
        let p = gcm(&vec![0; iv_len], &[], 128, iv_bits);
        assert!(m.encrypt_init(&key, &p).is_ok(), "{iv_len} {iv_bits:?}");
        assert!(m.decrypt_init(&key, &p).is_ok(), "{iv_len} {iv_bits:?}");
    }
    let generic = Arc::new(Key::new(
        ck::CKO_SECRET_KEY,
        ck::CKK_GENERIC_SECRET,
        Zeroizing::new(vec![0; 16]),
    ));
    assert_eq!(
        m.encrypt_init(&generic, &gcm(&[0; 12], &[], 128, None))
            .err()
            .expect("type")
            .rv,
        ck::CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        m.encrypt_init(&aes_key(&[0; 20]), &gcm(&[0; 12], &[], 128, None))
            .err()
            .expect("size")
            .rv,
        ck::CKR_KEY_SIZE_RANGE
    );
    let i = m.info();
    assert_eq!(
        (i.min_key_size, i.max_key_size, i.flags),
        (16, 32, ck::CKF_ENCRYPT | ck::CKF_DECRYPT)
    );
    r.run_self_tests().expect("self-test");
}

#[test]
fn expanded_key_is_cached() {
    let key = aes_key(&[5; 32]);
    let a = gcm_for(&key, 12, 16).expect("gcm");
    let b = gcm_for(&key, 12, 16).expect("gcm");
    assert!(Arc::ptr_eq(&a, &b));
}

/// name, key, iv, aad, plaintext, ciphertext, tag.
type CavpVector = (
    String,
    Arc<Key>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);

fn cavp_vectors() -> Vec<CavpVector> {
    include_str!("../../../testdata/aes_gcm_cavp_ext_iv.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                aes_key(&h(f[1])),
                h(f[2]),
                h(f[3]),
                h(f[4]),
                h(f[5]),
                h(f[6]),
            )
        })
        .collect()
}

/// NIST CAVP vectors with 8- and 1024-bit IVs (J0 through GHASH), single-
/// and multi-part, both parameter layouts, `ulIvBits` ignored; a flipped
/// tag bit is refused.
#[test]
fn cavp_vectors_with_non_96_bit_ivs() {
    let r = registry();
    let v = cavp_vectors();
    assert_eq!(v.len(), 11);
    for (name, key, iv, aad, pt, ct, tag) in v {
        assert_ne!(iv.len(), 12, "{name}");
        let sealed: Vec<u8> = ct.iter().chain(&tag).copied().collect();
        let tag_bits = tag.len() as u64 * 8;
        for iv_bits in [None, Some(0), Some(iv.len() as u64 * 8), Some(96)] {
            let p = gcm(&iv, &aad, tag_bits, iv_bits);
            for chunk in [None, Some(1), Some(16), Some(1000)] {
                assert_eq!(
                    run(&r, &key, &p, true, &pt, chunk).expect("encrypt"),
                    sealed,
                    "{name} {chunk:?}"
                );
                assert_eq!(
                    run(&r, &key, &p, false, &sealed, chunk).expect("decrypt"),
                    pt,
                    "{name} {chunk:?}"
                );
            }
        }
        let mut bad = sealed.clone();
        *bad.last_mut().expect("tag") ^= 1;
        assert_eq!(
            run(&r, &key, &gcm(&iv, &aad, tag_bits, None), false, &bad, None)
                .expect_err("tampered")
                .rv,
            ck::CKR_ENCRYPTED_DATA_INVALID,
            "{name}"
        );
    }
}

/// Every IV length class against an independent GCM: the aes-gcm crate
/// instantiated with the nonce length fixed at compile time (it derives J0
/// the same way for non-96-bit nonces, from its own code path).
#[test]
fn any_iv_length_agrees_with_the_aes_gcm_crate() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use cipher::consts::{U1, U128, U13, U16, U255, U256, U60, U8};

    fn reference<N: ArraySize>(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let c = AesGcm::<aes::Aes256, N>::new_from_slice(key).expect("key");
        c.encrypt(
            &Nonce::<N>::try_from(iv).expect("nonce"),
            Payload { msg: pt, aad },
        )
        .expect("encrypt")
    }
    let r = registry();
    let k: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(7)).collect();
    let key = aes_key(&k);
    let aad: Vec<u8> = (0..37u8).collect();
    let pt: Vec<u8> = (0..100u8).map(|i| i ^ 0x5a).collect();
    type Ref = fn(&[u8], &[u8], &[u8], &[u8]) -> Vec<u8>;
    let cases: [(usize, Ref); 9] = [
        (1, reference::<U1>),
        (8, reference::<U8>),
        (12, reference::<U12>),
        (13, reference::<U13>),
        (16, reference::<U16>),
        (60, reference::<U60>),
        (128, reference::<U128>),
        (255, reference::<U255>),
        (256, reference::<U256>),
    ];
    for (n, reference) in cases {
        let iv: Vec<u8> = (0..n).map(|i| (i * 31 + 3) as u8).collect();
        let want = reference(&k, &iv, &aad, &pt);
        let p = gcm(&iv, &aad, 128, Some(96));
        assert_eq!(
            run(&r, &key, &p, true, &pt, Some(33)).expect("encrypt"),
            want,
            "IV of {n} bytes"
        );
        assert_eq!(
            run(&r, &key, &p, false, &want, None).expect("decrypt"),
            pt,
            "IV of {n} bytes"
        );
        // The run-time-IV path also derives J0 correctly for 96 bits.
        let any = key
            .cached(|_| Ok(GcmAnyIv::new(AesBlock::for_key(&key)?)))
            .expect("state");
        let mut buf = pt.clone();
        AnyIvTag {
            gcm: any,
            tag_len: 16,
        }
        .seal(&iv, &aad, &mut buf)
        .expect("seal");
        assert_eq!(buf, want, "GcmAnyIv, IV of {n} bytes");
    }
}
