//! SM3 (GB/T 32905-2016): `CKM_SM3` digest, `CKM_SM3_HMAC` and
//! `CKM_SM3_HMAC_GENERAL` (RFC 2104 over SM3). Codes are Thales Luna's
//! (`include/p11kms.h`, `docs/sm.md`).
//!
//! The digest and HMAC machinery is the generic one of `mech::digest` and
//! `mech::hmac`; this file only names SM3 and brings its known answers.
//! HMAC-SM3 keys are `CKK_GENERIC_SECRET` (Luna defines no SM3 HMAC key
//! type), 1 to 512 bytes.

use ::hmac::Hmac;
use p11kms_protocol::vendor;
use pkcs11_sys as ck;
use sm3::{Digest, Sm3};

use super::digest::DigestMech;
use super::{hmac, Registry};
use crate::error::{Error, Result};

/// Register SM3 and HMAC-SM3 with their known-answer tests.
pub fn register(r: &mut Registry) {
    r.add(DigestMech::<Sm3>::new(vendor::CKM_SM3));
    hmac::add::<Hmac<Sm3>>(
        r,
        vendor::CKM_SM3_HMAC,
        vendor::CKM_SM3_HMAC_GENERAL,
        ck::CKK_GENERIC_SECRET,
    );
    r.add_self_test("SM3 (GB/T 32905 A.1 and A.2)", self_test);
    r.add_self_test("HMAC-SM3", self_test_hmac);
}

/// The SM3 of `data` (used by SM2 for Z_A and e).
pub fn sm3(data: &[&[u8]]) -> [u8; 32] {
    let mut h = Sm3::new();
    for d in data {
        h.update(d);
    }
    h.finalize().into()
}

/// GB/T 32905-2016 appendix A: "abc" and "abcd" × 16.
pub(crate) const KAT: [(&[u8], &str); 2] = [
    (
        b"abc",
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
    ),
    (
        b"abcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcd",
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
    ),
];

/// HMAC-SM3 with the key and message of RFC 4231 case 2; the MAC is what
/// OpenSSL 3 computes (`openssl mac -digest SM3 -macopt key:Jefe HMAC`).
pub(crate) const HMAC_KAT: (&[u8], &[u8], &str) = (
    b"Jefe",
    b"what do ya want for nothing?",
    "2e87f1d16862e6d964b50a5200bf2b10b764faa9680a296a2405f24bec39f882",
);

fn self_test() -> Result<()> {
    for (msg, want) in KAT {
        if sm3(&[msg])[..] != super::aes::hex_bytes(want)[..] {
            return Err(Error::general("SM3 known answer mismatch"));
        }
    }
    Ok(())
}

fn self_test_hmac() -> Result<()> {
    use ::hmac::{KeyInit, Mac};
    let (key, msg, want) = HMAC_KAT;
    let mut mac =
        <Hmac<Sm3> as KeyInit>::new_from_slice(key).map_err(|_| Error::general("HMAC-SM3 key"))?;
    mac.update(msg);
    if mac.finalize().into_bytes()[..] != super::aes::hex_bytes(want)[..] {
        return Err(Error::general("HMAC-SM3 known answer mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use p11kms_protocol::MechParam;
    use zeroize::Zeroizing;

    use super::*;
    use crate::mech::Key;

    fn registry() -> Registry {
        let mut r = Registry::default();
        register(&mut r);
        r
    }

    #[test]
    fn digest_vectors_and_multipart() {
        let r = registry();
        let m = r.get(vendor::CKM_SM3).expect("registered");
        assert_eq!(m.info().flags, ck::CKF_DIGEST);
        for (msg, want) in KAT {
            let mut op = m.digest_init(&MechParam::None).expect("init");
            assert_eq!(op.len(), 32);
            for c in msg.chunks(5) {
                op.update(c);
            }
            assert_eq!(hex::encode(op.finalize()), want);
        }
        assert_eq!(
            m.digest_init(&MechParam::Bytes(vec![1]))
                .err()
                .expect("param")
                .rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
        r.run_self_tests().expect("self-tests");
    }

    #[test]
    fn hmac_full_and_general() {
        let r = registry();
        let (key, msg, want) = HMAC_KAT;
        let key = Arc::new(Key::new(
            ck::CKO_SECRET_KEY,
            ck::CKK_GENERIC_SECRET,
            Zeroizing::new(key.to_vec()),
        ));
        let want = hex::decode(want).expect("hex");
        let m = r.get(vendor::CKM_SM3_HMAC).expect("registered");
        let mut op = m.sign_init(&key, &MechParam::None).expect("init");
        for c in msg.chunks(3) {
            op.update(c).expect("update");
        }
        assert_eq!(op.finalize().expect("mac"), want);
        m.verify_init(&key, &MechParam::None)
            .expect("init")
            .oneshot(msg, &want)
            .expect("verify");
        let g = r.get(vendor::CKM_SM3_HMAC_GENERAL).expect("registered");
        let mac = g
            .sign_init(&key, &MechParam::MacLen(10))
            .expect("init")
            .oneshot(msg)
            .expect("mac");
        assert_eq!(mac, want[..10]);
        assert_eq!(
            g.sign_init(&key, &MechParam::MacLen(33))
                .err()
                .expect("len")
                .rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
        let sm4 = Arc::new(Key::new(
            ck::CKO_SECRET_KEY,
            vendor::CKK_SM4,
            Zeroizing::new(vec![0; 16]),
        ));
        assert_eq!(
            m.sign_init(&sm4, &MechParam::None).err().expect("type").rv,
            ck::CKR_KEY_TYPE_INCONSISTENT
        );
    }
}
