//! mixed64: many client threads in several processes doing a mixed load,
//! against the best 2-thread figure of the same load (issue 6: "under 64
//! client threads in 8 processes doing a mixed load, total throughput stays
//! within 10% of the best 2-thread figure").
//!
//! The load, per thread, in rotation (each thread starts at a different
//! point of it): AES-256-GCM encrypt 4 KiB, ECDSA P-256 sign, C_GenerateRandom
//! 32 B, find by label (the AES key's label). Each is one operation exactly
//! as in its own case (`cases::op`).
//!
//! The bench re-executes itself (`current_exe`) with the hidden `--worker
//! mixed` as N child processes, started once per run. Each loads the module,
//! logs in to the token the parent initialized, finds the parent's keys by
//! label, and then, once per round: opens one session per thread, prints
//! `ready`, waits for `go` on stdin, runs the load for the round's duration
//! and prints `result <JSON>` (ops, wall time, every latency). `quit` or EOF
//! on stdin ends it. Each round the parent first runs the same load with 2
//! threads in its own process (the workers idle, blocked on stdin), then
//! starts all workers at once. Children are stopped by their `ChildGuard` on
//! every error path (and get SIGTERM if the bench dies, PR_SET_PDEATHSIG);
//! a worker also exits by itself after its time limit.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

use cryptoki::error::{Error, RvError};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki_sys::CKU_USER;
use serde::{Deserialize, Serialize};

use crate::cases::{self, classify, Id, Prep, Shared, Skip};
use crate::raw::{Handle, Sess};
use crate::setup::{self, ck, ChildGuard, Peer, Res};
use crate::stats::Sample;

/// The operations of the mixed load, in rotation.
pub const KINDS: [Id; 4] = [Id::Gcm4k, Id::EcdsaSign, Id::Random32, Id::Find1k];
pub const LOAD: &str =
    "AES-256-GCM encrypt 4 KiB, ECDSA P-256 sign, C_GenerateRandom 32 B, find by label, in rotation";

/// What the mixed load needs: one `Prep` per entry of `KINDS`.
pub struct Mix {
    preps: Vec<Prep>,
}

fn find_prep(aes: Handle) -> Prep {
    Prep {
        aes,
        labels: vec![setup::AES_LABEL.to_vec()],
        out_len: 64,
        ..Prep::default()
    }
}

/// Prepares the mixed load on the parent's main session (makes the P-256
/// key pair if no case made it yet), warming every operation up once.
pub fn prepare(peer: &Peer, main: &Sess, sh: &mut Shared) -> Result<Mix, Skip> {
    let gcm = cases::prepare(Id::Gcm4k, peer, main, sh, false)?;
    let ec = cases::prepare(Id::EcdsaSign, peer, main, sh, false)?;
    let rnd = cases::prepare(Id::Random32, peer, main, sh, false)?;
    let find = find_prep(sh.aes);
    let mut buf = [0u8; 64];
    cases::op(Id::Find1k, peer, main, &find, 0, u32::MAX, &mut buf)
        .map_err(|e| classify("find by label warm-up", &e))?;
    Ok(Mix {
        preps: vec![gcm, ec, rnd, find],
    })
}

fn find_one(main: &Sess, class: ObjectClass, label: &[u8]) -> Res<Handle> {
    let mut found = [0 as Handle; 4];
    let n = main
        .find(
            &[Attribute::Class(class), Attribute::Label(label.to_vec())],
            &mut found,
        )
        .map_err(|e| format!("find {:?}: {}", String::from_utf8_lossy(label), ck(&e)))?;
    if n == 1 {
        Ok(found[0])
    } else {
        Err(format!(
            "{n} objects of class {class} labelled {:?} (want 1; made by the parent)",
            String::from_utf8_lossy(label)
        ))
    }
}

/// The same preparations in a worker, on keys the parent made.
fn worker_mix(main: &Sess) -> Res<Mix> {
    let aes = find_one(main, ObjectClass::SECRET_KEY, setup::AES_LABEL)?;
    let ec = find_one(main, ObjectClass::PRIVATE_KEY, cases::EC_LABEL)?;
    let gcm = Prep {
        aes,
        data: vec![0x5a; 4096],
        out_len: 4096 + 16,
        ..Prep::default()
    };
    let sign = Prep {
        aes,
        key: Some(ec),
        data: (0..32u8).collect(),
        out_len: 64,
        ..Prep::default()
    };
    let rnd = Prep {
        aes,
        out_len: 32,
        ..Prep::default()
    };
    Ok(Mix {
        preps: vec![gcm, sign, rnd, find_prep(aes)],
    })
}

/// Runs the mixed load with `threads` threads, each on its own session.
/// `at_start` runs once every session is open, just before the clock
/// starts (a worker reports `ready` and waits for `go` there); if it fails,
/// the threads stop without running and its error is returned. `tag` keeps
/// the GCM IVs of different processes apart.
pub fn run_threads(
    peer: &Peer,
    mix: &Mix,
    threads: usize,
    dur: Duration,
    tag: u32,
    at_start: &mut dyn FnMut() -> Res<()>,
) -> Res<Sample> {
    let barrier = Barrier::new(threads + 1);
    let abort = AtomicBool::new(false);
    let (started, results): (Res<()>, Vec<Res<Sample>>) = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let abort = &abort;
                sc.spawn(move || -> Res<Sample> {
                    let s = peer.raw.open(peer.slot);
                    barrier.wait(); // every session is open
                    barrier.wait(); // go
                    let s = s.map_err(|e| format!("C_OpenSession: {}", ck(&e)))?;
                    if abort.load(Ordering::SeqCst) {
                        return Err("not started".into());
                    }
                    let mut buf = vec![0u8; 4096 + 64];
                    let mut lat = Vec::with_capacity(1 << 14);
                    let start = Instant::now();
                    let deadline = start + dur;
                    let mut i = 0u64;
                    loop {
                        let k = (i as usize + t) % KINDS.len();
                        let t0 = Instant::now();
                        cases::op(
                            KINDS[k],
                            peer,
                            &s,
                            &mix.preps[k],
                            i,
                            tag.wrapping_add(t as u32),
                            &mut buf,
                        )
                        .map_err(|e| format!("operation {i} ({:?}): {}", KINDS[k], ck(&e)))?;
                        let t1 = Instant::now();
                        lat.push((t1 - t0).as_nanos() as u64);
                        i += 1;
                        if t1 >= deadline {
                            break;
                        }
                    }
                    let wall = start.elapsed();
                    drop(s);
                    Ok(Sample {
                        ops: i,
                        wall,
                        lat_ns: lat,
                    })
                })
            })
            .collect();
        barrier.wait();
        let started = at_start();
        if started.is_err() {
            abort.store(true, Ordering::SeqCst);
        }
        barrier.wait();
        let results = hs
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("worker thread panicked".into()))
            })
            .collect();
        (started, results)
    });
    started?;
    let mut total = Sample::default();
    for r in results {
        let s = r?;
        total.wall = total.wall.max(s.wall);
        total.ops += s.ops;
        total.lat_ns.extend(s.lat_ns);
    }
    Ok(total)
}

// --- the worker process ----------------------------------------------------------

/// One round's result of one worker, as printed on its stdout.
#[derive(Serialize, Deserialize)]
struct WorkerResult {
    ops: u64,
    wall_ns: u64,
    lat_ns: Vec<u64>,
}

const QUIT: &str = "quit";

/// `p11kms-bench --worker mixed`: see the module comment. Exits 0 after
/// `quit`/EOF, 1 on an error (reported as `error <text>` on stdout).
pub fn worker_main(
    module: &Path,
    label: &str,
    threads: usize,
    dur: Duration,
    rounds: u32,
    tag: u32,
) -> ExitCode {
    // Bounded in time whatever the parent does: each round takes the
    // parent's 2-thread run plus ours (2 x `dur`) and some slack; past that
    // something is stuck.
    let limit = (dur * 2 + Duration::from_secs(60)) * rounds + Duration::from_secs(300);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("mixed64 worker: time limit ({limit:?}) reached, exiting");
        std::process::exit(3);
    });
    match worker(module, label, threads, dur, tag) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mixed64 worker: {e}");
            println!("error {}", e.replace('\n', " | "));
            let _ = std::io::stdout().flush();
            ExitCode::from(1)
        }
    }
}

fn worker(module: &Path, label: &str, threads: usize, dur: Duration, tag: u32) -> Res<()> {
    let peer = setup::open_peer("p11kms", module, label, false)?;
    let main = peer
        .raw
        .open(peer.slot)
        .map_err(|e| format!("C_OpenSession: {}", ck(&e)))?;
    match main.login(CKU_USER, setup::USER_PIN) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(format!("C_Login(USER): {}", ck(&e))),
    }
    let mix = worker_mix(&main)?;
    let stdin = std::io::stdin();
    loop {
        let mut at_start = || -> Res<()> {
            let mut out = std::io::stdout().lock();
            writeln!(out, "ready")
                .and_then(|()| out.flush())
                .map_err(|e| format!("stdout: {e}"))?;
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("stdin: {e}"))?;
            match line.trim() {
                "go" => Ok(()),
                // EOF: the parent is gone or done
                "" | QUIT => Err(QUIT.into()),
                other => Err(format!("unexpected command {other:?} on stdin")),
            }
        };
        match run_threads(&peer, &mix, threads, dur, tag, &mut at_start) {
            Ok(s) => {
                let r = WorkerResult {
                    ops: s.ops,
                    wall_ns: s.wall.as_nanos() as u64,
                    lat_ns: s.lat_ns,
                };
                let j = serde_json::to_string(&r).map_err(|e| format!("JSON: {e}"))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "result {j}")
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("stdout: {e}"))?;
            }
            Err(e) if e == QUIT => break,
            Err(e) => return Err(e),
        }
    }
    drop(main);
    drop(peer);
    Ok(())
}

// --- the parent's side ------------------------------------------------------------

/// The worker processes of one run, started once and driven round by round.
pub struct Workers {
    // dropped first: a worker waiting for `go` sees EOF and exits
    stdins: Vec<ChildStdin>,
    guards: Vec<ChildGuard>,
    rx: mpsc::Receiver<(usize, Option<String>)>,
    /// Per worker: lines received early, for a later `wait_all`.
    pending: Vec<VecDeque<String>>,
    logs: Vec<PathBuf>,
}

/// Where the workers find the daemon and what they run.
pub struct WorkerCfg<'a> {
    pub module: &'a Path,
    pub socket: &'a Path,
    pub label: &'a str,
    pub dir: &'a Path,
    pub procs: usize,
    pub threads: usize,
    pub dur: Duration,
    pub rounds: u32,
}

impl Workers {
    /// Starts the workers and waits until each is ready for its first round.
    pub fn start(cfg: &WorkerCfg) -> Res<Workers> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let mut w = Workers {
            guards: Vec::new(),
            stdins: Vec::new(),
            rx,
            pending: (0..cfg.procs).map(|_| VecDeque::new()).collect(),
            logs: Vec::new(),
        };
        for k in 0..cfg.procs {
            let mut cmd = Command::new(&exe);
            cmd.arg("--worker")
                .arg("mixed")
                .arg("--module")
                .arg(cfg.module)
                .arg("--worker-label")
                .arg(cfg.label)
                .arg("--mixed-threads")
                .arg(cfg.threads.to_string())
                .arg("--worker-tag")
                .arg(((k as u32 + 1) * 1000).to_string())
                .arg("--duration-ms")
                .arg(cfg.dur.as_millis().max(1).to_string())
                .arg("--rounds")
                .arg(cfg.rounds.to_string())
                .env("P11KMS_SOCKET", cfg.socket);
            let log = cfg.dir.join(format!("mixed64-worker-{k}.log"));
            let (g, stdin, stdout) =
                ChildGuard::spawn_piped(&format!("mixed64 worker {k}"), cmd, log.clone())?;
            w.guards.push(g);
            w.stdins.push(stdin);
            w.logs.push(log);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((k, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((k, None));
            });
        }
        // module load, C_Initialize, C_Login (a PIN hash each) in 8 processes
        w.wait_all("ready", Duration::from_secs(120))?;
        Ok(w)
    }

    fn fail(&self, k: usize, what: &str) -> String {
        format!(
            "mixed64 worker {k}: {what}; its log:\n{}",
            setup::tail(&self.logs[k])
        )
    }

    /// Waits for one line starting with `want` from every worker; returns
    /// the rest of each line. Protocol lines that belong to a later wait (a
    /// fast worker's next `ready` while others still run) are kept for it.
    fn wait_all(&mut self, want: &str, timeout: Duration) -> Res<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let n = self.guards.len();
        let mut got: Vec<Option<String>> = vec![None; n];
        for k in 0..n {
            for line in std::mem::take(&mut self.pending[k]) {
                self.take_line(k, line, want, &mut got)?;
            }
        }
        while got.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (k, line) = match self.rx.recv_timeout(left) {
                Ok(m) => m,
                Err(_) => {
                    let k = got.iter().position(Option::is_none).unwrap_or(0);
                    return Err(self.fail(k, &format!("no {want:?} within {timeout:?}")));
                }
            };
            let Some(line) = line else {
                return Err(self.fail(k, &format!("exited before {want:?}")));
            };
            self.take_line(k, line, want, &mut got)?;
        }
        Ok(got.into_iter().flatten().collect())
    }

    fn take_line(
        &mut self,
        k: usize,
        line: String,
        want: &str,
        got: &mut [Option<String>],
    ) -> Res<()> {
        if let Some(e) = line.strip_prefix("error ") {
            return Err(self.fail(k, e));
        }
        match line.strip_prefix(want) {
            Some(rest) if got[k].is_none() => got[k] = Some(rest.trim_start().to_string()),
            _ if line.starts_with("ready") || line.starts_with("result ") => {
                self.pending[k].push_back(line)
            }
            // anything else on a worker's stdout (a module's chatter) is ignored
            _ => {}
        }
        Ok(())
    }

    /// One round: every worker starts at once; waits for all results.
    /// Returns the merged sample (ops summed, wall = the slowest thread's)
    /// and each process's ops/s. Leaves the workers ready for the next round.
    pub fn round(&mut self, dur: Duration) -> Res<(Sample, Vec<f64>)> {
        for (k, i) in self.stdins.iter_mut().enumerate() {
            i.write_all(b"go\n")
                .and_then(|()| i.flush())
                .map_err(|e| format!("mixed64 worker {k}: stdin: {e}"))?;
        }
        let lines = self.wait_all("result", dur + Duration::from_secs(120))?;
        let mut total = Sample::default();
        let mut per = Vec::new();
        for (k, l) in lines.iter().enumerate() {
            let r: WorkerResult = serde_json::from_str(l)
                .map_err(|e| self.fail(k, &format!("result is not JSON: {e}")))?;
            let wall = Duration::from_nanos(r.wall_ns);
            per.push(r.ops as f64 / wall.as_secs_f64().max(1e-12));
            total.ops += r.ops;
            total.wall = total.wall.max(wall);
            total.lat_ns.extend(r.lat_ns);
        }
        // and ready again (sessions re-opened) before the parent goes on
        self.wait_all("ready", Duration::from_secs(60))?;
        Ok((total, per))
    }

    /// Tells the workers to finish and waits briefly for them; whatever is
    /// left is stopped by the guards.
    pub fn quit(mut self) {
        for i in &mut self.stdins {
            let _ = i.write_all(b"quit\n").and_then(|()| i.flush());
        }
        self.stdins.clear();
        for g in &mut self.guards {
            g.wait_exit(Duration::from_secs(5));
        }
    }
}
