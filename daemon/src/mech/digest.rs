//! Message digests: `CKM_SHA_1`, `CKM_SHA224`/`256`/`384`/`512` (FIPS 180-4)
//! and `CKM_SHA3_224`/`256`/`384`/`512` (FIPS 202). PKCS#11 3.0 current
//! mechanisms §2.20ff. None of them takes a parameter.

use ::digest::Digest;
use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;

use super::{DigestOp, Mechanism, Registry};
use crate::error::{Error, Result};

/// Register the digests and their known-answer test.
pub fn register(r: &mut Registry) {
    r.add(DigestMech::<sha1::Sha1>::new(ck::CKM_SHA_1));
    r.add(DigestMech::<sha2::Sha224>::new(ck::CKM_SHA224));
    r.add(DigestMech::<sha2::Sha256>::new(ck::CKM_SHA256));
    r.add(DigestMech::<sha2::Sha384>::new(ck::CKM_SHA384));
    r.add(DigestMech::<sha2::Sha512>::new(ck::CKM_SHA512));
    r.add(DigestMech::<sha3::Sha3_224>::new(ck::CKM_SHA3_224));
    r.add(DigestMech::<sha3::Sha3_256>::new(ck::CKM_SHA3_256));
    r.add(DigestMech::<sha3::Sha3_384>::new(ck::CKM_SHA3_384));
    r.add(DigestMech::<sha3::Sha3_512>::new(ck::CKM_SHA3_512));
    r.add_self_test("SHA-256 / SHA3-256 (\"abc\")", self_test);
}

/// A digest mechanism backed by the RustCrypto hash `D` (also SM3, from
/// `mech::sm3`).
pub struct DigestMech<D> {
    mech: u64,
    _hash: std::marker::PhantomData<fn() -> D>,
}

impl<D> DigestMech<D> {
    /// The mechanism `mech` computing `D`.
    pub fn new(mech: u64) -> Self {
        DigestMech {
            mech,
            _hash: std::marker::PhantomData,
        }
    }
}

impl<D> Mechanism for DigestMech<D>
where
    D: Digest + Default + Send + 'static,
{
    fn mech(&self) -> u64 {
        self.mech
    }
    fn info(&self) -> MechanismInfo {
        MechanismInfo {
            min_key_size: 0,
            max_key_size: 0,
            flags: ck::CKF_DIGEST,
        }
    }
    fn digest_init(&self, param: &MechParam) -> Result<Box<dyn DigestOp>> {
        if *param != MechParam::None {
            return Err(Error::param_invalid("digests take no parameter"));
        }
        Ok(Box::new(HashOp(D::default())))
    }
}

/// A running hash.
struct HashOp<D>(D);

impl<D: Digest + Default + Send> DigestOp for HashOp<D> {
    fn len(&self) -> usize {
        <D as Digest>::output_size()
    }
    fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.0, data);
    }
    fn finalize(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).finalize().to_vec()
    }
}

/// FIPS 180-2 B.1 and FIPS 202 example "abc" digests.
fn self_test() -> Result<()> {
    let ok = sha2::Sha256::digest(b"abc").as_slice()
        == super::aes::hex_bytes(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        )
        && sha3::Sha3_256::digest(b"abc").as_slice()
            == super::aes::hex_bytes(
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            );
    if ok {
        Ok(())
    } else {
        Err(Error::general("digest known answer mismatch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mech::Registry;

    fn digest(mech: u64, data: &[u8]) -> Vec<u8> {
        let mut r = Registry::default();
        register(&mut r);
        let mut op = r
            .get(mech)
            .expect("registered")
            .digest_init(&MechParam::None)
            .expect("init");
        op.update(data);
        let out = op.finalize();
        assert_eq!(out.len(), op.len());
        out
    }

    #[test]
    fn abc_vectors() {
        let cases: &[(u64, &str)] = &[
            (ck::CKM_SHA_1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (ck::CKM_SHA224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            (ck::CKM_SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (ck::CKM_SHA384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (
                ck::CKM_SHA512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (ck::CKM_SHA3_224, "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf"),
            (ck::CKM_SHA3_256, "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"),
            (ck::CKM_SHA3_384, "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25"),
            (
                ck::CKM_SHA3_512,
                "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
            ),
        ];
        for (mech, want) in cases {
            assert_eq!(hex::encode(digest(*mech, b"abc")), *want, "mech 0x{mech:x}");
        }
    }

    #[test]
    fn multipart_and_reuse() {
        let mut r = Registry::default();
        register(&mut r);
        let msg: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let one = digest(ck::CKM_SHA384, &msg);
        let mut op = r
            .get(ck::CKM_SHA384)
            .expect("registered")
            .digest_init(&MechParam::None)
            .expect("init");
        for chunk in msg.chunks(7) {
            op.update(chunk);
        }
        assert_eq!(op.finalize(), one);
    }

    #[test]
    fn param_rejected() {
        let mut r = Registry::default();
        register(&mut r);
        let err = r
            .get(ck::CKM_SHA256)
            .expect("registered")
            .digest_init(&MechParam::Bytes(vec![1]))
            .err()
            .expect("error");
        assert_eq!(err.rv, ck::CKR_MECHANISM_PARAM_INVALID);
        assert_eq!(
            r.get(ck::CKM_SHA256).expect("registered").info().flags,
            ck::CKF_DIGEST
        );
        r.run_self_tests().expect("self-test");
    }
}
