//! `p11kms key ...` commands.

use p11kms_protocol::{AdminCommand, AdminReply};

use crate::daemon::Daemon;

/// Run one admin command on an instance.
pub fn handle(_d: &Daemon, _instance: &str, _so_pin: &[u8], _cmd: AdminCommand) -> AdminReply {
    AdminReply::Failed { rv: pkcs11_sys::CKR_FUNCTION_NOT_SUPPORTED, message: "key administration is not implemented yet".into() }
}
