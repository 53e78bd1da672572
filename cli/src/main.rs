//! `p11kms`: the admin command line. Talks to p11kmsd over the same socket
//! as the module, with the same wire protocol.
//!
//! The SO PIN never comes from the command line (every local user can read
//! a process's arguments in /proc): it is read from `--so-pin-file`, else
//! `P11KMS_SO_PIN`, else the terminal without echo.

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p11kms_protocol::{
    frame, AdminCommand, AdminReply, DaemonStatus, KeyCreate, KeyMetadata, Request, Response,
    SecretBytes, PROTOCOL_VERSION,
};
use zeroize::Zeroizing;

/// Administer a p11kms daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Daemon socket (default: $P11KMS_SOCKET, else /run/p11kms/p11kms.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Command {
    /// Show the daemon's instances, slots and tokens.
    Status,
    /// Customer master keys: create, list, lifecycle, rotation, import.
    Key {
        /// Instance to administer.
        #[arg(long, global = true, default_value = "default")]
        instance: String,
        /// File holding the instance's SO PIN (one trailing newline ignored;
        /// must not be readable by group or others). Without it:
        /// $P11KMS_SO_PIN, else the terminal.
        #[arg(long, global = true)]
        so_pin_file: Option<PathBuf>,
        /// Refused: a PIN in the arguments is visible to every local user.
        #[arg(long = "so-pin", hide = true, global = true, num_args = 0..=1)]
        so_pin_argv: Option<Option<String>>,
        #[command(subcommand)]
        cmd: KeyCmd,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Create a key (generated inside, or --origin EXTERNAL for imported material).
    Create {
        /// AES_256 (default), AES_128, RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P384.
        #[arg(long)]
        spec: Option<String>,
        /// ENCRYPT/DECRYPT or SIGN/VERIFY.
        #[arg(long)]
        usage: Option<String>,
        /// KMS (default) or EXTERNAL.
        #[arg(long)]
        origin: Option<String>,
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// k=v, repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Automatic rotation every N days (7..365, symmetric keys only).
        #[arg(long)]
        rotation_interval: Option<u32>,
        /// Make a service key owned by this integrated service.
        #[arg(long)]
        service: Option<String>,
    },
    /// List keys.
    List,
    /// Show one key (KEY = key id or alias).
    Describe {
        key: String,
    },
    Enable {
        key: String,
    },
    Disable {
        key: String,
    },
    /// Schedule deletion after a pending window.
    ScheduleDeletion {
        key: String,
        #[arg(long)]
        pending_days: u32,
    },
    CancelDeletion {
        key: String,
    },
    /// Rotate now: new primary version; old versions keep decrypting.
    Rotate {
        key: String,
    },
    /// Set (or with no --days, stop) automatic rotation.
    SetRotation {
        key: String,
        #[arg(long)]
        days: Option<u32>,
    },
    Versions {
        key: String,
    },
    /// Aliases: add KEY ALIAS | remove ALIAS.
    Alias {
        #[command(subcommand)]
        cmd: AliasCmd,
    },
    /// Set tags (k=v) and remove tags (--remove k).
    Tag {
        key: String,
        set: Vec<String>,
        #[arg(long)]
        remove: Vec<String>,
    },
    /// Get the wrapping public key (PEM) and an import token valid 24 hours.
    ImportParams {
        key: String,
        /// RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256.
        #[arg(long)]
        wrapping_algorithm: String,
        /// RSA_2048 or RSA_3072.
        #[arg(long)]
        wrapping_key_spec: String,
        /// Write the public key here (default: print).
        #[arg(long)]
        public_key_out: Option<PathBuf>,
        /// Write the import token here (default: print).
        #[arg(long)]
        token_out: Option<PathBuf>,
    },
    /// Import wrapped key material.
    Import {
        key: String,
        #[arg(long)]
        import_token: PathBuf,
        #[arg(long)]
        material: PathBuf,
        /// Material expiry, RFC 3339 UTC (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum AliasCmd {
    Add { key: String, alias: String },
    Remove { alias: String },
}

fn socket_path(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| std::env::var_os("P11KMS_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/run/p11kms/p11kms.sock"))
}

/// A connection that has completed the handshake.
struct Client {
    stream: UnixStream,
}

impl Client {
    fn connect(path: &PathBuf) -> Result<Self, String> {
        let mut stream = UnixStream::connect(path)
            .map_err(|e| format!("cannot reach p11kmsd at {}: {e}", path.display()))?;
        let mut app_id = [0u8; 16];
        getrandom(&mut app_id)?;
        frame::write_frame(
            &mut stream,
            &Request::Hello {
                version: PROTOCOL_VERSION,
                app_id,
                pid: std::process::id(),
            },
        )
        .map_err(|e| format!("handshake: {e}"))?;
        match frame::read_frame(&mut stream).map_err(|e| format!("handshake: {e}"))? {
            Response::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(Client { stream }),
            Response::Hello { version, server } => Err(format!(
                "{server} speaks protocol {version}, this p11kms speaks {PROTOCOL_VERSION}"
            )),
            other => Err(format!("unexpected handshake reply {other:?}")),
        }
    }

    fn call(&mut self, req: &Request) -> Result<Response, String> {
        frame::write_frame(&mut self.stream, req).map_err(|e| format!("send: {e}"))?;
        frame::read_frame(&mut self.stream).map_err(|e| format!("receive: {e}"))
    }
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("random: {e}"))
}

fn print_status(s: &DaemonStatus) {
    println!(
        "p11kmsd {} (protocol {}) on {}",
        s.version, s.protocol, s.socket
    );
    println!(
        "data dir {}; up {}s; {} application(s), {} connection(s)",
        s.data_dir, s.uptime_secs, s.applications, s.connections
    );
    println!(
        "{:<5} {:<16} {:<6} {:<10} {:<20} {:>8} {:>8}  state",
        "slot", "instance", "kind", "mode", "token label", "objects", "sessions"
    );
    for i in &s.instances {
        let state = match (i.serving, i.token_initialized, i.user_pin_initialized) {
            (false, _, _) => "not serving",
            (true, false, _) => "uninitialized",
            (true, true, false) => "initialized, no user PIN",
            (true, true, true) => "ready",
        };
        println!(
            "{:<5} {:<16} {:<6} {:<10} {:<20} {:>8} {:>8}  {state}",
            i.slot, i.name, i.kind, i.mode, i.token_label, i.objects, i.sessions
        );
    }
}

/// The SO PIN from `--so-pin-file`, `P11KMS_SO_PIN`, or the terminal.
fn so_pin(file: Option<&Path>) -> Result<SecretBytes, String> {
    if let Some(f) = file {
        let meta = std::fs::metadata(f).map_err(|e| format!("SO PIN file {}: {e}", f.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "SO PIN file {} has mode {:04o}; it must not be readable by group or others: chmod 600 {}",
                f.display(),
                meta.permissions().mode() & 0o7777,
                f.display()
            ));
        }
        let mut pin = Zeroizing::new(
            std::fs::read(f)
                .map_err(|e| format!("cannot read SO PIN file {}: {e}", f.display()))?,
        );
        if pin.last() == Some(&b'\n') {
            pin.pop();
            if pin.last() == Some(&b'\r') {
                pin.pop();
            }
        }
        return Ok(SecretBytes::from(&pin[..]));
    }
    if let Some(v) = std::env::var_os("P11KMS_SO_PIN") {
        return Ok(SecretBytes::from(v.into_vec()));
    }
    let typed = rpassword::prompt_password("SO PIN: ").map_err(|e| {
        format!("the SO PIN is needed: --so-pin-file FILE, P11KMS_SO_PIN, or a terminal to type it ({e})")
    })?;
    Ok(SecretBytes::from(typed.into_bytes()))
}

fn run(cli: Cli) -> Result<(), String> {
    if let Command::Key {
        so_pin_argv: Some(_),
        ..
    } = &cli.command
    {
        return Err(
            "--so-pin is not accepted: a PIN in the arguments is visible to every local user \
             (/proc/PID/cmdline). Use --so-pin-file FILE, P11KMS_SO_PIN, or type it when asked"
                .into(),
        );
    }
    let path = socket_path(cli.socket);
    let mut client = Client::connect(&path)?;
    match cli.command {
        Command::Key {
            instance,
            so_pin_file,
            cmd,
            ..
        } => {
            let so_pin = so_pin(so_pin_file.as_deref())?;
            key_command(&mut client, instance, so_pin, cmd, cli.json)
        }
        Command::Status => match client.call(&Request::Status)? {
            Response::Status(s) => {
                if cli.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&status_json(&s)).map_err(|e| e.to_string())?
                    );
                } else {
                    print_status(&s);
                }
                Ok(())
            }
            Response::Error(rv) => Err(format!("daemon refused: CK_RV 0x{rv:x}")),
            other => Err(format!("unexpected reply {other:?}")),
        },
    }
}

fn pairs(items: &[String]) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or(format!("tag {t:?} is not k=v"))
        })
        .collect()
}

/// Parse `YYYY-MM-DDTHH:MM:SSZ` (UTC) into Unix seconds.
fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 UTC time like 2027-01-01T00:00:00Z");
    let s = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3
        || t.len() != 3
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || t[0] > 23
        || t[1] > 59
        || t[2] > 60
    {
        return Err(bad());
    }
    // days from civil (proleptic Gregorian)
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]).map_err(|_| bad())
}

fn print_key(k: &KeyMetadata) {
    println!("key id      {}", k.key_id);
    println!("aliases     {}", k.aliases.join(", "));
    println!(
        "spec        {}   usage {}   origin {}   protection {}",
        k.spec, k.usage, k.origin, k.protection_level
    );
    println!("state       {}", k.state);
    println!(
        "version     {} (of {})",
        k.primary_version,
        k.versions.len()
    );
    if !k.description.is_empty() {
        println!("description {}", k.description);
    }
    if !k.tags.is_empty() {
        println!(
            "tags        {}",
            k.tags
                .iter()
                .map(|(a, b)| format!("{a}={b}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(d) = k.rotation_interval_days {
        println!(
            "rotation    every {d} days, next at {}",
            k.next_rotation_unix.unwrap_or(0)
        );
    }
    if let Some(t) = k.deletion_unix {
        println!("deletion    at {t} (unix time)");
    }
    if let Some(t) = k.material_expires_unix {
        println!("material    expires at {t} (unix time)");
    }
    if let Some(s) = &k.service {
        println!("service     {s} (service key: cannot be changed or deleted)");
    }
    if k.default_key {
        println!("default     yes");
    }
    println!("CKA_ID      {}", k.cka_id_hex);
}

fn key_json(k: &KeyMetadata) -> serde_json::Value {
    serde_json::json!({
        "key_id": k.key_id, "aliases": k.aliases, "description": k.description,
        "tags": k.tags.iter().map(|(a, b)| (a.clone(), serde_json::Value::String(b.clone()))).collect::<serde_json::Map<_, _>>(),
        "spec": k.spec, "usage": k.usage, "origin": k.origin, "protection_level": k.protection_level,
        "created_unix": k.created_unix, "state": k.state, "primary_version": k.primary_version,
        "versions": k.versions.iter().map(|v| serde_json::json!({"version": v.version, "created_unix": v.created_unix, "primary": v.primary})).collect::<Vec<_>>(),
        "rotation_interval_days": k.rotation_interval_days, "next_rotation_unix": k.next_rotation_unix,
        "deletion_unix": k.deletion_unix, "material_expires_unix": k.material_expires_unix,
        "service": k.service, "default_key": k.default_key, "cka_id_hex": k.cka_id_hex,
    })
}

fn key_command(
    client: &mut Client,
    instance: String,
    so_pin: SecretBytes,
    cmd: KeyCmd,
    json: bool,
) -> Result<(), String> {
    let mut outputs: Vec<(PathBuf, String)> = Vec::new();
    let admin = match cmd {
        KeyCmd::Create {
            spec,
            usage,
            origin,
            alias,
            description,
            tags,
            rotation_interval,
            service,
        } => AdminCommand::KeyCreate(KeyCreate {
            spec,
            usage,
            origin,
            alias,
            description,
            tags: pairs(&tags)?,
            rotation_interval_days: rotation_interval,
            service,
        }),
        KeyCmd::List => AdminCommand::KeyList,
        KeyCmd::Describe { key } => AdminCommand::KeyDescribe { key },
        KeyCmd::Enable { key } => AdminCommand::KeyEnable { key },
        KeyCmd::Disable { key } => AdminCommand::KeyDisable { key },
        KeyCmd::ScheduleDeletion { key, pending_days } => {
            AdminCommand::KeyScheduleDeletion { key, pending_days }
        }
        KeyCmd::CancelDeletion { key } => AdminCommand::KeyCancelDeletion { key },
        KeyCmd::Rotate { key } => AdminCommand::KeyRotate { key },
        KeyCmd::SetRotation { key, days } => AdminCommand::KeySetRotation {
            key,
            interval_days: days,
        },
        KeyCmd::Versions { key } => AdminCommand::KeyVersions { key },
        KeyCmd::Alias {
            cmd: AliasCmd::Add { key, alias },
        } => AdminCommand::AliasAdd { key, alias },
        KeyCmd::Alias {
            cmd: AliasCmd::Remove { alias },
        } => AdminCommand::AliasRemove { alias },
        KeyCmd::Tag { key, set, remove } => AdminCommand::KeyTag {
            key,
            set: pairs(&set)?,
            remove,
        },
        KeyCmd::ImportParams {
            key,
            wrapping_algorithm,
            wrapping_key_spec,
            public_key_out,
            token_out,
        } => {
            if let Some(p) = public_key_out {
                outputs.push((p, "public_key_pem".into()));
            }
            if let Some(p) = token_out {
                outputs.push((p, "import_token".into()));
            }
            AdminCommand::ImportParams {
                key,
                wrapping_algorithm,
                wrapping_key_spec,
            }
        }
        KeyCmd::Import {
            key,
            import_token,
            material,
            expires,
        } => {
            let token = std::fs::read_to_string(&import_token)
                .map_err(|e| format!("cannot read {}: {e}", import_token.display()))?
                .trim()
                .to_string();
            let material = SecretBytes::new(
                std::fs::read(&material)
                    .map_err(|e| format!("cannot read {}: {e}", material.display()))?,
            );
            let expires_unix = expires.as_deref().map(parse_rfc3339).transpose()?;
            AdminCommand::Import {
                key,
                import_token: token,
                material,
                expires_unix,
            }
        }
    };
    let reply = match client.call(&Request::Admin {
        instance,
        so_pin,
        cmd: admin,
    })? {
        Response::Admin(r) => r,
        Response::Error(rv) => return Err(format!("daemon refused: CK_RV 0x{rv:x}")),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    match reply {
        AdminReply::Failed { rv, message } => Err(format!("{message} (CK_RV 0x{rv:x})")),
        AdminReply::Done => Ok(()),
        AdminReply::Key(k) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&key_json(&k)).map_err(|e| e.to_string())?
                );
            } else {
                print_key(&k);
            }
            Ok(())
        }
        AdminReply::Keys(ks) => {
            if json {
                let v: Vec<_> = ks.iter().map(key_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                println!(
                    "{:<42} {:<10} {:<16} {:<9} {:>7}  aliases",
                    "key id", "spec", "state", "origin", "version"
                );
                for k in &ks {
                    println!(
                        "{:<42} {:<10} {:<16} {:<9} {:>7}  {}",
                        k.key_id,
                        k.spec,
                        k.state,
                        k.origin,
                        k.primary_version,
                        k.aliases.join(",")
                    );
                }
            }
            Ok(())
        }
        AdminReply::Versions(vs) => {
            if json {
                let v: Vec<_> = vs.iter().map(|v| serde_json::json!({"version": v.version, "created_unix": v.created_unix, "primary": v.primary})).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                for v in &vs {
                    println!(
                        "v{}  created {}{}",
                        v.version,
                        v.created_unix,
                        if v.primary { "  (primary)" } else { "" }
                    );
                }
            }
            Ok(())
        }
        AdminReply::ImportParams(p) => {
            for (path, what) in &outputs {
                let text = if what == "public_key_pem" {
                    p.public_key_pem.clone()
                } else {
                    format!("{}\n", p.import_token)
                };
                std::fs::write(path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            if json {
                let v = serde_json::json!({
                    "key_id": p.key_id, "public_key_pem": p.public_key_pem, "import_token": p.import_token,
                    "expires_unix": p.expires_unix, "wrapping_algorithm": p.wrapping_algorithm, "wrapping_key_spec": p.wrapping_key_spec,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else if outputs.is_empty() {
                print!("{}", p.public_key_pem);
                println!("import token {}", p.import_token);
                println!("expires at {} (unix time)", p.expires_unix);
            } else {
                println!(
                    "import parameters for {} written; they expire at {} (unix time)",
                    p.key_id, p.expires_unix
                );
            }
            Ok(())
        }
    }
}

fn status_json(s: &DaemonStatus) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "protocol": s.protocol,
        "socket": s.socket,
        "data_dir": s.data_dir,
        "uptime_secs": s.uptime_secs,
        "applications": s.applications,
        "connections": s.connections,
        "instances": s.instances.iter().map(|i| serde_json::json!({
            "name": i.name, "kind": i.kind, "mode": i.mode, "slot": i.slot,
            "token_label": i.token_label, "token_initialized": i.token_initialized,
            "user_pin_initialized": i.user_pin_initialized, "objects": i.objects,
            "sessions": i.sessions, "serving": i.serving,
        })).collect::<Vec<_>>(),
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p11kms: {e}");
            ExitCode::FAILURE
        }
    }
}
