//! The KMS layer: customer master keys (CMK) on top of token objects — key
//! ids, aliases, origin, lifecycle, versions and rotation, default and
//! service keys, import of key material, envelope encryption.

pub mod admin;
