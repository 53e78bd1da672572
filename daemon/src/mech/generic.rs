//! `CKM_GENERIC_SECRET_KEY_GEN` (PKCS#11 3.0 current mechanisms §2.43.2):
//! `CKA_VALUE_LEN` random bytes from the operating system, 1 to 512, as a
//! `CKK_GENERIC_SECRET` key (HMAC keys, derivation bases).

use p11kms_protocol::{MechParam, MechanismInfo};
use pkcs11_sys as ck;

use super::aes::{no_param, random};
use super::{GeneratedKey, Mechanism, Registry};
use crate::error::{Error, Result};

/// Shortest generic secret generated, in bytes.
pub const MIN_KEY_BYTES: u64 = 1;
/// Longest generic secret generated, in bytes.
pub const MAX_KEY_BYTES: u64 = 512;

/// Register the generator and its self-test.
pub fn register(r: &mut Registry) {
    r.add(GenericSecretKeyGen);
    r.add_self_test("generic secret generation", self_test);
}

/// `CKM_GENERIC_SECRET_KEY_GEN`.
struct GenericSecretKeyGen;

impl Mechanism for GenericSecretKeyGen {
    fn mech(&self) -> u64 {
        ck::CKM_GENERIC_SECRET_KEY_GEN
    }
    fn info(&self) -> MechanismInfo {
        MechanismInfo {
            min_key_size: MIN_KEY_BYTES,
            max_key_size: MAX_KEY_BYTES,
            flags: ck::CKF_GENERATE,
        }
    }
    fn generate_key(&self, param: &MechParam, value_len: Option<usize>) -> Result<GeneratedKey> {
        no_param(param)?;
        let len = value_len.ok_or_else(|| {
            Error::new(
                ck::CKR_TEMPLATE_INCOMPLETE,
                "generic secret generation needs CKA_VALUE_LEN",
            )
        })?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&(len as u64)) {
            return Err(Error::attribute_value_invalid(format!(
                "generic secret length {len} not in 1..=512"
            )));
        }
        Ok(GeneratedKey {
            key_type: ck::CKK_GENERIC_SECRET,
            value: random(len)?,
        })
    }
}

/// The generator answers, and two 32-byte outputs differ (a stuck source
/// would repeat itself).
fn self_test() -> Result<()> {
    let a = GenericSecretKeyGen.generate_key(&MechParam::None, Some(32))?;
    let b = GenericSecretKeyGen.generate_key(&MechParam::None, Some(32))?;
    if a.value.len() != 32 || a.value == b.value {
        return Err(Error::general("random generator repeated itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_errors() {
        let mut r = Registry::default();
        register(&mut r);
        let m = r.get(ck::CKM_GENERIC_SECRET_KEY_GEN).expect("registered");
        for len in [1, 16, 64, 512] {
            let k = m.generate_key(&MechParam::None, Some(len)).expect("gen");
            assert_eq!((k.key_type, k.value.len()), (ck::CKK_GENERIC_SECRET, len));
        }
        assert_eq!(
            m.generate_key(&MechParam::None, None)
                .err()
                .expect("missing")
                .rv,
            ck::CKR_TEMPLATE_INCOMPLETE
        );
        for len in [0, 513] {
            assert_eq!(
                m.generate_key(&MechParam::None, Some(len))
                    .err()
                    .expect("len")
                    .rv,
                ck::CKR_ATTRIBUTE_VALUE_INVALID
            );
        }
        assert_eq!(
            m.generate_key(&MechParam::Ulong(1), Some(16))
                .err()
                .expect("param")
                .rv,
            ck::CKR_MECHANISM_PARAM_INVALID
        );
        let i = m.info();
        assert_eq!(
            (i.min_key_size, i.max_key_size, i.flags),
            (1, 512, ck::CKF_GENERATE)
        );
        r.run_self_tests().expect("self-test");
    }
}
