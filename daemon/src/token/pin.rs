//! PINs are stored only as Argon2id hashes with a random salt (PHC string
//! format) and compared in constant time by the argon2 crate's verifier.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use pkcs11_sys as ck;

use crate::error::{Error, Result};

pub const MIN_PIN_LEN: usize = 4;
pub const MAX_PIN_LEN: usize = 255;

/// Argon2id with 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation).
fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::general(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub fn check_len(pin: &[u8]) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(Error::new(
            ck::CKR_PIN_LEN_RANGE,
            format!("PIN must be {MIN_PIN_LEN}..{MAX_PIN_LEN} bytes"),
        ))
    }
}

pub fn hash(pin: &[u8]) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::general(format!("getrandom: {e}")))?;
    let h: PasswordHash = hasher()?
        .hash_password_with_salt(pin, &salt)
        .map_err(|e| Error::general(format!("argon2: {e}")))?;
    Ok(h.to_string())
}

pub fn verify(phc: &str, pin: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    hasher()
        .map(|h| h.verify_password(pin, &parsed).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash(b"1234").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, b"1234"));
        assert!(!verify(&h, b"1235"));
        assert_ne!(h, hash(b"1234").expect("hash"), "salted");
    }
}
