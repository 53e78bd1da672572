//! The AES block cipher as every AES-based mechanism sees it: one key
//! schedule per key, built once through [`Key::cached`] and shared by ECB,
//! CBC, CTR, GCM, CMAC and key wrap.
//!
//! [`AesBlock`] hides the key size behind one type so that each mode (a
//! RustCrypto generic over its cipher) is instantiated once rather than once
//! per key size; the dispatch costs one `match` per batch of blocks.

use std::sync::Arc;

use aes::{Aes128, Aes192, Aes256};
use cipher::consts::U16;
use cipher::{
    BlockCipherDecClosure, BlockCipherDecrypt, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockSizeUser, KeyInit,
};
use pkcs11_sys as ck;

use crate::error::{Error, Result};
use crate::mech::Key;

/// `C_GetMechanismInfo` key sizes of every AES mechanism, in bytes.
pub const MIN_KEY_BYTES: u64 = 16;
/// See [`MIN_KEY_BYTES`].
pub const MAX_KEY_BYTES: u64 = 32;

/// The expanded key of one AES key size.
enum Schedule {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Schedule {
    fn new(value: &[u8]) -> Result<Self> {
        let bad = |_| Error::key_size_range();
        Ok(match value.len() {
            16 => Schedule::A128(Aes128::new_from_slice(value).map_err(bad)?),
            24 => Schedule::A192(Aes192::new_from_slice(value).map_err(bad)?),
            32 => Schedule::A256(Aes256::new_from_slice(value).map_err(bad)?),
            _ => return Err(Error::key_size_range()),
        })
    }
}

/// A shared AES key schedule usable as a RustCrypto block cipher.
/// Cloning only bumps a reference count.
#[derive(Clone)]
pub struct AesBlock(Arc<Schedule>);

impl AesBlock {
    /// The cached schedule of `key`, after checking that it is an AES secret
    /// key of 16, 24 or 32 bytes (`CKR_KEY_TYPE_INCONSISTENT` /
    /// `CKR_KEY_SIZE_RANGE` otherwise, PKCS#11 3.0 §5.8).
    pub fn for_key(key: &Key) -> Result<Self> {
        check_key(key)?;
        Ok(AesBlock(key.cached(Schedule::new)?))
    }

    /// A schedule straight from raw key bytes, for self-tests.
    pub fn from_raw(value: &[u8]) -> Result<Self> {
        Ok(AesBlock(Arc::new(Schedule::new(value)?)))
    }
}

/// Class and type must say AES secret key, the value 16, 24 or 32 bytes.
pub fn check_key(key: &Key) -> Result<()> {
    if key.class != ck::CKO_SECRET_KEY || key.key_type != ck::CKK_AES {
        return Err(Error::key_type_inconsistent());
    }
    if !matches!(key.value.len(), 16 | 24 | 32) {
        return Err(Error::key_size_range());
    }
    Ok(())
}

impl BlockSizeUser for AesBlock {
    type BlockSize = U16;
}

impl BlockCipherEncrypt for AesBlock {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = U16>) {
        match &*self.0 {
            Schedule::A128(c) => c.encrypt_with_backend(f),
            Schedule::A192(c) => c.encrypt_with_backend(f),
            Schedule::A256(c) => c.encrypt_with_backend(f),
        }
    }
}

impl BlockCipherDecrypt for AesBlock {
    fn decrypt_with_backend(&self, f: impl BlockCipherDecClosure<BlockSize = U16>) {
        match &*self.0 {
            Schedule::A128(c) => c.decrypt_with_backend(f),
            Schedule::A192(c) => c.decrypt_with_backend(f),
            Schedule::A256(c) => c.decrypt_with_backend(f),
        }
    }
}
