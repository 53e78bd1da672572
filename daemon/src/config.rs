//! `p11kmsd.toml`: data directory, socket, instances.
//!
//! ```toml
//! data_dir = "/var/lib/p11kms"
//! socket = "/run/p11kms/p11kms.sock"
//! socket_mode = "0660"
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
    /// sleeping (0 disables). See `server::spin_until_readable`.
    #[serde(default = "default_spin_us")]
    pub spin_us: u64,
    /// Seconds between runs of the KMS sweeper (scheduled deletions,
    /// material expiry, automatic rotation).
    #[serde(default = "default_sweep_secs")]
    pub kms_sweep_secs: u64,
    #[serde(default = "default_instances", rename = "instance")]
    pub instances: Vec<InstanceConfig>,
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
}
