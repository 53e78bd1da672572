//! p11kmsd: the daemon behind libp11kms.so.
//!
//! Layers, top to bottom (arrows point down only):
//! `server` (connections, peer credentials) → `dispatch` → `access`
//! (application contexts, login state) → `kms` / `token` (sessions, objects,
//! mechanisms) → `storage` (encrypted records over SQLite).
#![forbid(unsafe_code)]

pub mod error;
pub mod mech;
