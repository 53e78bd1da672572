//! p11kmsd: the daemon behind libp11kms.so.
//!
//! Layers, top to bottom (arrows point down only):
//! [`server`] (connections, peer credentials, handshake) → [`dispatch`]
//! (one file per PKCS#11 chapter) → [`access`] (application contexts and
//! login state) → [`session`] / [`token`] (sessions, objects, attribute
//! rules) → [`mech`] (algorithms) → [`storage`] (sealed records over SQLite).
#![forbid(unsafe_code)]

pub mod access;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod error;
pub mod kms;
pub mod mech;
pub mod server;
pub mod session;
pub mod storage;
pub mod token;
