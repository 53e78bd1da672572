//! `p11kmsd.toml`: data directory, socket, instances.
//!
//! ```toml
//! data_dir = "/var/lib/p11kms"
//! socket = "/run/p11kms/p11kms.sock"
//! socket_mode = "0660"
//! allowed_uids = [1000]  # who may connect besides this daemon's uid and root
//! admin_uids = []        # who may administer besides this daemon's uid and root
//!
//! [limits]               # every field optional; see docs/configuration.md
//! idle_timeout_secs = 60
//!
//! [[instance]]
//! name = "default"
//! kind = "soft"          # "soft" (software token); "hsm" later
//! mode = "standard"      # or "gm": SM2/SM3/SM4 only (docs/sm.md)
//! max_pin_failures = 10
//! allow_import = true    # keys may come in from outside
//! min_pending_days = 7   # shortest scheduled-deletion window
//! master_key_passphrase_file = "/etc/p11kms/default.pass"  # optional: wrap the key file
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// Octal permission bits of the socket file.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Microseconds a connection thread polls for the next request before
    /// sleeping (0 disables). See `p11kms_protocol::poll`.
    #[serde(default = "default_spin_us")]
    pub spin_us: u64,
    /// Seconds between runs of the KMS sweeper (scheduled deletions,
    /// material expiry, automatic rotation).
    #[serde(default = "default_sweep_secs")]
    pub kms_sweep_secs: u64,
    /// Uids that may connect, besides this daemon's own uid and root.
    /// Checked on `SO_PEERCRED` at accept (docs/security.md).
    #[serde(default)]
    pub allowed_uids: Option<Vec<u32>>,
    /// Gids that may connect (the peer's effective or a supplementary
    /// group). Unset: the socket file's group.
    #[serde(default)]
    pub allowed_gids: Option<Vec<u32>>,
    /// Uids that may administer (admin commands, `C_InitToken`,
    /// `C_Login(CKU_SO)`, daemon status), besides this daemon's uid and root.
    #[serde(default)]
    pub admin_uids: Vec<u32>,
    /// Gids whose members may administer. Empty by default.
    #[serde(default)]
    pub admin_gids: Vec<u32>,
    /// Resource bounds per connection, uid, application and instance.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "default_instances", rename = "instance")]
    pub instances: Vec<InstanceConfig>,
}

/// What one client may hold, and how long the daemon waits for it. Every
/// field has a default sized so that the consumers and the benchmark never
/// meet it (docs/configuration.md, `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Handshaken connections (each has a serving thread), all uids.
    pub max_connections: usize,
    /// Handshaken connections of one uid.
    pub max_connections_per_uid: usize,
    /// Connections still in their handshake, all uids.
    pub max_handshakes: usize,
    /// Connections of one uid still in their handshake.
    pub max_handshakes_per_uid: usize,
    /// Time a new connection has to complete its handshake.
    pub handshake_timeout_ms: u64,
    /// A connection with no request for this long is closed (0 = never).
    /// The module reconnects transparently; login state survives
    /// (docs/security.md, "Hostile clients").
    pub idle_timeout_secs: u64,
    /// Time a request frame has to arrive once its first byte came, and a
    /// response to be taken by the client.
    pub request_timeout_secs: u64,
    /// Bytes of requests above 1 MiB being received or served at once, all
    /// connections together (one uid at most half while others wait); a
    /// request that finds no room waits, up to its request timeout.
    pub max_request_bytes_in_flight: u64,
    /// Application contexts (one per `C_Initialize` of one process) of one uid.
    pub max_apps_per_uid: usize,
    /// Open sessions of one application (`CKR_SESSION_COUNT` beyond).
    pub max_sessions_per_app: usize,
    /// Session objects of one application (`CKR_DEVICE_MEMORY` beyond).
    pub max_session_objects_per_app: usize,
    /// Bytes of session objects of one application.
    pub max_session_object_bytes_per_app: u64,
    /// Session objects of all applications on one instance.
    pub max_session_objects_per_instance: usize,
    /// Bytes of session objects of all applications on one instance.
    pub max_session_object_bytes_per_instance: u64,
    /// Token objects of one instance (`CKR_DEVICE_MEMORY` beyond).
    pub max_token_objects: usize,
    /// Bytes of token objects of one instance.
    pub max_token_object_bytes: u64,
    /// Input one multi-part operation may buffer until its final call
    /// (GCM, key wrap as a cipher); `CKR_DATA_LEN_RANGE` /
    /// `CKR_ENCRYPTED_DATA_LEN_RANGE` beyond.
    pub max_multipart_bytes: usize,
    /// Input buffered by all multi-part operations of the daemon together
    /// (`CKR_DEVICE_MEMORY` beyond).
    pub max_multipart_bytes_total: u64,
    /// Delay after the first wrong admin SO PIN of a uid; doubles with
    /// every further failure up to `admin_backoff_max_ms`.
    pub admin_backoff_ms: u64,
    pub admin_backoff_max_ms: u64,
}

const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 2048,
            max_connections_per_uid: 512,
            max_handshakes: 256,
            max_handshakes_per_uid: 32,
            handshake_timeout_ms: 3_000,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            max_request_bytes_in_flight: 512 * MIB,
            max_apps_per_uid: 1024,
            max_sessions_per_app: 1024,
            max_session_objects_per_app: 100_000,
            max_session_object_bytes_per_app: 256 * MIB,
            max_session_objects_per_instance: 1_000_000,
            max_session_object_bytes_per_instance: 1024 * MIB,
            max_token_objects: 1_000_000,
            max_token_object_bytes: 1024 * MIB,
            max_multipart_bytes: p11kms_protocol::MAX_DATA,
            max_multipart_bytes_total: 1024 * MIB,
            admin_backoff_ms: 1_000,
            admin_backoff_max_ms: 60_000,
        }
    }
}

/// One KMS instance (one slot + token).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Wrong PINs in a row before the PIN locks (0 = never).
    #[serde(default = "default_max_pin_failures")]
    pub max_pin_failures: u32,
    /// Whether keys may be imported (C_CreateObject with material,
    /// C_UnwrapKey, `p11kms key import`). Default true.
    #[serde(default = "default_true")]
    pub allow_import: bool,
    /// Shortest pending window of a scheduled deletion, in days (7 in
    /// production; tests may lower it, even to 0).
    #[serde(default = "default_min_pending_days")]
    pub min_pending_days: u32,
    /// A file holding a passphrase (mode 0600, owned by the daemon's user):
    /// the key file then holds the master key wrapped under a key derived
    /// from it with Argon2id. Unset: the key file holds the key itself.
    #[serde(default)]
    pub master_key_passphrase_file: Option<PathBuf>,
}

fn default_socket_mode() -> String {
    "0660".into()
}
fn default_kind() -> String {
    "soft".into()
}
fn default_mode() -> String {
    "standard".into()
}
fn default_max_pin_failures() -> u32 {
    10
}
fn default_true() -> bool {
    true
}
fn default_min_pending_days() -> u32 {
    7
}
fn default_spin_us() -> u64 {
    50
}
fn default_sweep_secs() -> u64 {
    60
}
fn default_instances() -> Vec<InstanceConfig> {
    vec![InstanceConfig::default_soft()]
}

impl InstanceConfig {
    /// The zero-config instance: a software token named `default`.
    pub fn default_soft() -> Self {
        InstanceConfig {
            name: "default".into(),
            kind: default_kind(),
            mode: default_mode(),
            max_pin_failures: default_max_pin_failures(),
            allow_import: true,
            min_pending_days: default_min_pending_days(),
            master_key_passphrase_file: None,
        }
    }
}

impl Config {
    /// Zero-config: one software instance `default`.
    pub fn zero(data_dir: PathBuf, socket: PathBuf) -> Self {
        Config {
            data_dir,
            socket,
            socket_mode: default_socket_mode(),
            kms_sweep_secs: default_sweep_secs(),
            spin_us: default_spin_us(),
            allowed_uids: None,
            allowed_gids: None,
            admin_uids: Vec::new(),
            admin_gids: Vec::new(),
            limits: Limits::default(),
            instances: default_instances(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.instances.is_empty() {
            return Err("at least one [[instance]] is required".into());
        }
        let mut names = std::collections::HashSet::new();
        for i in &self.instances {
            if i.name.is_empty()
                || !i
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "instance name {:?} must be non-empty [A-Za-z0-9_-]",
                    i.name
                ));
            }
            if !names.insert(&i.name) {
                return Err(format!("instance {:?} is defined twice", i.name));
            }
            if i.kind != "soft" {
                return Err(format!(
                    "instance {:?}: kind {:?} is not supported yet (only \"soft\")",
                    i.name, i.kind
                ));
            }
            if i.mode != "standard" && i.mode != "gm" {
                return Err(format!(
                    "instance {:?}: mode {:?} is not \"standard\" or \"gm\"",
                    i.name, i.mode
                ));
            }
        }
        self.socket_mode_bits()?;
        self.check_socket_mode()?;
        let l = &self.limits;
        for (name, v) in [
            ("max_connections", l.max_connections),
            ("max_connections_per_uid", l.max_connections_per_uid),
            ("max_handshakes", l.max_handshakes),
            ("max_handshakes_per_uid", l.max_handshakes_per_uid),
            ("max_apps_per_uid", l.max_apps_per_uid),
            ("max_sessions_per_app", l.max_sessions_per_app),
        ] {
            if v == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        if l.handshake_timeout_ms == 0 || l.request_timeout_secs == 0 {
            return Err(
                "limits.handshake_timeout_ms and limits.request_timeout_secs must be at least 1"
                    .into(),
            );
        }
        if l.max_multipart_bytes < p11kms_protocol::MAX_DATA {
            tracing::warn!(
                "limits.max_multipart_bytes = {} is below one call's maximum ({}): multi-part \
                 GCM and key-wrap input beyond it is refused",
                l.max_multipart_bytes,
                p11kms_protocol::MAX_DATA
            );
        }
        Ok(())
    }

    /// A socket others may connect to (`o+w`) with the default allow lists
    /// would let the file mode promise what `SO_PEERCRED` then refuses, or,
    /// read the other way, suggests the operator meant "everyone": make
    /// them say whom they mean.
    pub fn check_socket_mode(&self) -> Result<(), String> {
        let mode = self.socket_mode_bits()?;
        if mode & 0o002 != 0 && self.allowed_uids.is_none() && self.allowed_gids.is_none() {
            return Err(format!(
                "socket_mode {:04o} lets every local user connect, but allowed_uids/allowed_gids are \
                 not set (the default allows only this daemon's uid, root and the socket's group): \
                 name the uids or gids you mean, or use socket_mode 0660",
                mode
            ));
        }
        Ok(())
    }

    pub fn socket_mode_bits(&self) -> Result<u32, String> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("socket_mode {:?} is not an octal mode", self.socket_mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_validate() {
        let c: Config = toml::from_str(
            "data_dir = \"/d\"\nsocket = \"/s\"\n[[instance]]\nname = \"a\"\n[[instance]]\nname = \"b\"\nmax_pin_failures = 3\n",
        )
        .expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.instances.len(), 2);
        assert_eq!(c.instances[1].max_pin_failures, 3);
        let dup: Config = toml::from_str("data_dir = \"/d\"\nsocket = \"/s\"\n[[instance]]\nname = \"a\"\n[[instance]]\nname = \"a\"\n").expect("parse");
        assert!(dup.validate().is_err());
        assert!(
            toml::from_str::<Config>("data_dir = \"/d\"\nsocket = \"/s\"\nbogus = 1\n").is_err()
        );
        let modes: Config = toml::from_str(
            "data_dir = \"/d\"\nsocket = \"/s\"\n[[instance]]\nname = \"a\"\n[[instance]]\nname = \"b\"\nmode = \"gm\"\n",
        )
        .expect("parse");
        modes.validate().expect("gm is a mode");
        let pass: Config = toml::from_str(
            "data_dir = \"/d\"\nsocket = \"/s\"\n[[instance]]\nname = \"a\"\nmaster_key_passphrase_file = \"/etc/p\"\n",
        )
        .expect("parse");
        assert_eq!(
            pass.instances[0].master_key_passphrase_file.as_deref(),
            Some(Path::new("/etc/p"))
        );
        let bad: Config = toml::from_str(
            "data_dir = \"/d\"\nsocket = \"/s\"\n[[instance]]\nname = \"a\"\nmode = \"fips\"\n",
        )
        .expect("parse");
        assert!(bad.validate().is_err());
    }

    #[test]
    fn access_lists_and_limits_parse() {
        let c: Config = toml::from_str(
            "data_dir = \"/d\"\nsocket = \"/s\"\nallowed_uids = [1000, 1001]\nadmin_gids = [50]\n\
             [limits]\nidle_timeout_secs = 5\nmax_connections_per_uid = 8\n",
        )
        .expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.allowed_uids.as_deref(), Some(&[1000, 1001][..]));
        assert_eq!(c.allowed_gids, None);
        assert_eq!(c.admin_gids, vec![50]);
        assert_eq!(c.limits.idle_timeout_secs, 5);
        assert_eq!(c.limits.max_connections_per_uid, 8);
        assert_eq!(c.limits.max_connections, Limits::default().max_connections);
        assert!(toml::from_str::<Config>(
            "data_dir = \"/d\"\nsocket = \"/s\"\n[limits]\nmax_bogus = 1\n"
        )
        .is_err());
        let zero: Config =
            toml::from_str("data_dir = \"/d\"\nsocket = \"/s\"\n[limits]\nmax_connections = 0\n")
                .expect("parse");
        assert!(zero.validate().is_err());
    }

    #[test]
    fn world_connectable_socket_needs_named_uids() {
        let mut c = Config::zero("/d".into(), "/s".into());
        c.validate().expect("0660 with defaults");
        c.socket_mode = "0666".into();
        let e = c.validate().expect_err("0666 with default allow lists");
        assert!(e.contains("allowed_uids"), "{e}");
        c.socket_mode = "0664".into();
        c.validate().expect("others may read but not connect");
        c.socket_mode = "0666".into();
        c.allowed_uids = Some(vec![1000]);
        c.validate().expect("0666 with named uids");
        c.allowed_uids = None;
        c.allowed_gids = Some(vec![100]);
        c.validate().expect("0666 with named gids");
    }
}
