//! `p11kms-recover`: offline maintenance of a p11kms store, with the daemon
//! stopped (it takes the same lock as `p11kmsd` and refuses while a daemon
//! holds the store). Needs the instance's master key file (and passphrase
//! file, if configured), like the daemon.
//!
//! - `rotate-master-key`: re-seal every record of an instance under a new
//!   master key in one transaction. The new key is written (synced) to
//!   `<instance>.key.new` first, then the records and the manifest are
//!   re-sealed and committed, then `.key.new` is renamed over `.key`. A
//!   crash between the steps is resolved at the next start of the daemon
//!   (or of this tool): the key that opens the store's manifest wins.
//! - `reset-so-pin`: set a new SO PIN and clear its failure count (a
//!   locked SO PIN cannot be unlocked through PKCS#11). The PIN comes from
//!   `--pin-file`, `P11KMS_NEW_SO_PIN`, or the terminal — never argv.
//! - `change-passphrase`: re-wrap the master key (same key) under a new
//!   passphrase, atomically.
//! - `verify`: open and authenticate every record of the instance and check
//!   them against the integrity manifest.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

use p11kmsd::config::{Config, InstanceConfig};
use p11kmsd::storage::{self, masterkey, sqlite::SqliteStore, KeyFile, MasterKey, RawStore};

/// Offline maintenance of a p11kms store (stop p11kmsd first).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The daemon's configuration file (for data_dir and the instance's
    /// master_key_passphrase_file).
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// The data directory of a zero-config daemon (`p11kmsd --data-dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The instance to work on.
    #[arg(long, default_value = "default")]
    instance: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Re-seal every record of the instance under a new master key, then
    /// replace the key file. Back up the new key file afterwards: the old
    /// key no longer opens this store.
    RotateMasterKey,
    /// Set a new SO PIN and clear its failure count (unlocks a locked SO
    /// PIN). The PIN is read from --pin-file, else $P11KMS_NEW_SO_PIN, else
    /// the terminal (twice, without echo).
    ResetSoPin {
        /// File holding the new SO PIN (one trailing newline ignored);
        /// must be readable by its owner only.
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
    /// Open every record of the instance and check them against the
    /// integrity manifest; change nothing (except finishing an interrupted
    /// rotation, as the daemon would).
    Verify,
    /// Re-wrap the master key (the same key) under the passphrase in FILE,
    /// replacing the key file atomically. Then point the instance's
    /// master_key_passphrase_file at FILE (or move FILE over the old one).
    ChangePassphrase {
        /// The new passphrase (readable by its owner only, 8 bytes or more).
        #[arg(long)]
        new_passphrase_file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("P11KMS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("p11kms-recover: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The data directory and the instance's settings.
fn target(args: &Args) -> Result<(PathBuf, InstanceConfig), String> {
    let (data_dir, instances) = match (&args.config, &args.data_dir) {
        (Some(path), _) => {
            let c = Config::load(path)?;
            (c.data_dir, c.instances)
        }
        (None, Some(d)) => (d.clone(), vec![InstanceConfig::default_soft()]),
        (None, None) => return Err("give --config FILE or --data-dir DIR".into()),
    };
    let ic = instances
        .into_iter()
        .find(|i| i.name == args.instance)
        .ok_or_else(|| format!("no instance {:?} in the configuration", args.instance))?;
    Ok((data_dir, ic))
}

fn run(args: Args) -> Result<String, String> {
    let (data_dir, ic) = target(&args)?;
    let m = |e: p11kmsd::error::Error| e.msg;
    storage::datadir::prepare(&data_dir, false).map_err(m)?;
    // The lock first: nothing below may race a running daemon.
    let raw: Arc<Mutex<Box<dyn RawStore>>> = Arc::new(Mutex::new(Box::new(
        SqliteStore::open_existing(&data_dir.join("p11kms.db")).map_err(m)?,
    )));
    let kf = KeyFile::new(
        &data_dir,
        &ic.name,
        ic.master_key_passphrase_file.as_deref(),
    )
    .map_err(m)?;
    if !exists(&kf.path) && !exists(&kf.next_path()) {
        return Err(format!(
            "master key file {} does not exist; p11kms-recover never makes a key",
            kf.path.display()
        ));
    }
    let store = storage::open_instance(&raw, &kf).map_err(m)?;
    let records = store.load().map_err(m)?;
    match args.cmd {
        Cmd::Verify => Ok(format!(
            "instance {}: {} records open and match the integrity manifest",
            ic.name,
            records.len()
        )),
        Cmd::ChangePassphrase {
            new_passphrase_file,
        } => {
            let key = kf.read(&kf.path).map_err(m)?;
            let next = KeyFile {
                passphrase: Some(masterkey::read_passphrase(&new_passphrase_file).map_err(m)?),
                ..kf.clone()
            };
            next.write(&next.path, &key, true).map_err(m)?;
            Ok(format!(
                "instance {}: {} now holds the same master key wrapped under the passphrase in {}; \
                 set master_key_passphrase_file to it before the next start",
                ic.name,
                kf.path.display(),
                new_passphrase_file.display()
            ))
        }
        Cmd::ResetSoPin { pin_file } => {
            let pin = new_pin(pin_file.as_deref())?;
            p11kmsd::token::reset_so_pin(&ic.name, &store, &records, &pin).map_err(m)?;
            Ok(format!(
                "instance {}: SO PIN set and its failure count cleared",
                ic.name
            ))
        }
        Cmd::RotateMasterKey => {
            drop(records);
            let next = kf.next_path();
            let new = MasterKey::generate().map_err(m)?;
            // 1. the new key, durable, under its own name;
            kf.write(&next, &new, false).map_err(m)?;
            // 2. every record and the manifest under it, one transaction;
            let (_store, n) = store.reseal(new).map_err(m)?;
            // 3. the new key takes the old one's place.
            std::fs::rename(&next, &kf.path).map_err(|e| {
                format!(
                    "records re-sealed, but renaming {} to {} failed: {e}; the next start of p11kmsd \
                     finishes it",
                    next.display(),
                    kf.path.display()
                )
            })?;
            masterkey::sync_dir_of(&kf.path).map_err(m)?;
            // Old blobs out of free pages and the WAL (best effort).
            if let Err(e) = raw.lock().map_err(|_| "store lock".to_string())?.compact() {
                tracing::warn!(
                    "compacting the database after the rotation failed: {}",
                    e.msg
                );
            }
            Ok(format!(
                "instance {}: {n} records re-sealed under a new master key in {}. Back up the new key \
                 file; the old key opens only backups taken before the rotation",
                ic.name,
                kf.path.display()
            ))
        }
    }
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// The new SO PIN from a file (private to its owner), the environment, or
/// the terminal.
fn new_pin(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, String> {
    if let Some(f) = file {
        let mut p = masterkey::read_private_file(f, "PIN file", 4096).map_err(|e| e.msg)?;
        if p.last() == Some(&b'\n') {
            p.pop();
        }
        return Ok(p);
    }
    if let Some(v) = std::env::var_os("P11KMS_NEW_SO_PIN") {
        return Ok(Zeroizing::new(
            std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec(),
        ));
    }
    let first = Zeroizing::new(rpassword::prompt_password("New SO PIN: ").map_err(|e| {
        format!("cannot read the PIN from the terminal ({e}); use --pin-file or P11KMS_NEW_SO_PIN")
    })?);
    let again = Zeroizing::new(
        rpassword::prompt_password("New SO PIN again: ")
            .map_err(|e| format!("cannot read the PIN from the terminal: {e}"))?,
    );
    if *first != *again {
        return Err("the two PINs differ".into());
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}
