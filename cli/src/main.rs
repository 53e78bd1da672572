//! `p11kms`: the admin command line. Talks to p11kmsd over the same socket
//! as the module, with the same wire protocol.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p11kms_protocol::{frame, DaemonStatus, Request, Response, PROTOCOL_VERSION};

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
enum Command {
    /// Show the daemon's instances, slots and tokens.
    Status,
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
        let mut stream =
            UnixStream::connect(path).map_err(|e| format!("cannot reach p11kmsd at {}: {e}", path.display()))?;
        let mut app_id = [0u8; 16];
        getrandom(&mut app_id)?;
        frame::write_frame(&mut stream, &Request::Hello { version: PROTOCOL_VERSION, app_id, pid: std::process::id() })
            .map_err(|e| format!("handshake: {e}"))?;
        match frame::read_frame(&mut stream).map_err(|e| format!("handshake: {e}"))? {
            Response::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(Client { stream }),
            Response::Hello { version, server } => {
                Err(format!("{server} speaks protocol {version}, this p11kms speaks {PROTOCOL_VERSION}"))
            }
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
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).map_err(|e| format!("random: {e}"))
}

fn print_status(s: &DaemonStatus) {
    println!("p11kmsd {} (protocol {}) on {}", s.version, s.protocol, s.socket);
    println!("data dir {}; up {}s; {} application(s), {} connection(s)", s.data_dir, s.uptime_secs, s.applications, s.connections);
    println!("{:<5} {:<16} {:<6} {:<10} {:<20} {:>8} {:>8}  state", "slot", "instance", "kind", "mode", "token label", "objects", "sessions");
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

fn run(cli: Cli) -> Result<(), String> {
    let path = socket_path(cli.socket);
    let mut client = Client::connect(&path)?;
    match cli.command {
        Command::Status => match client.call(&Request::Status)? {
            Response::Status(s) => {
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&status_json(&s)).map_err(|e| e.to_string())?);
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
