//! [`SecretBytes`]: PINs and key material as they cross the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Bytes that must not outlive their use: wiped when dropped, never shown
/// by `Debug`. On the wire a postcard byte string, exactly like a
/// `serde_bytes` `Vec<u8>` (so changing a field to this type changes no
/// frame).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Take ownership of `v` (no copy is left behind).
    pub fn new(v: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(v))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes::new(v)
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(v: &[u8]) -> Self {
        SecretBytes::new(v.to_vec())
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Straight from the input into the zeroizing vector (no
        // intermediate copy left unwiped).
        serde_bytes::ByteBuf::deserialize(d).map(|b| SecretBytes::new(b.into_vec()))
    }
}

/// Frames up to this size are wiped after use whatever they carry: every
/// frame with a PIN, a key template or admin material is far smaller, and
/// wiping a small buffer costs less than deciding. Larger frames (bulk
/// data) are wiped only when the request [carries secrets](crate::Request::carries_secrets).
pub const WIPE_ALWAYS_MAX: usize = 1024 * 1024;

/// Overwrite a frame buffer with zeros after its request (or response) was
/// handled: always up to [`WIPE_ALWAYS_MAX`] bytes, beyond that when
/// `secret`. Pass only the part in use (`&mut buf[..len]`): the rest of a
/// reused buffer was wiped after the frame that last filled it.
pub fn wipe(buf: &mut [u8], secret: bool) {
    if secret || buf.len() <= WIPE_ALWAYS_MAX {
        zeroize::Zeroize::zeroize(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_small_always_large_when_secret() {
        let mut small = vec![7u8; 100];
        wipe(&mut small, false);
        assert!(small.iter().all(|b| *b == 0));
        let mut large = vec![7u8; WIPE_ALWAYS_MAX + 1];
        wipe(&mut large, false);
        assert!(large.iter().all(|b| *b == 7), "bulk data is left alone");
        wipe(&mut large, true);
        assert!(large.iter().all(|b| *b == 0));
    }

    #[test]
    fn debug_hides_the_bytes() {
        let s = SecretBytes::from(b"1234".to_vec());
        assert_eq!(format!("{s:?}"), "SecretBytes(4 bytes)");
        assert_eq!(&*s, b"1234");
    }

    #[test]
    fn same_wire_form_as_bytes() {
        let s = SecretBytes::from(vec![1u8, 2, 3]);
        let a = postcard::to_stdvec(&s).expect("encode");
        let b = postcard::to_stdvec(&serde_bytes::Bytes::new(&[1, 2, 3])).expect("encode");
        assert_eq!(a, b);
        let back: SecretBytes = postcard::from_bytes(&a).expect("decode");
        assert_eq!(back, s);
    }
}
