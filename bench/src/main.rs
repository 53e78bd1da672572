//! p11kms-bench: p11kms against SoftHSMv2 (in-process) and p11-kit's RPC
//! forwarding (`p11-kit server` + `p11-kit-client.so`), side by side, in
//! alternating rounds, with the floors (bare socket round trip, in-process
//! crypto) measured in the same run. See docs/performance.md.

mod cases;
mod floors;
mod mixed;
mod raw;
mod report;
mod setup;
mod sm;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::Parser;

use cases::{CaseDef, Prep, Shared, Skip};
use raw::Sess;
use report::{BigReport, FloorRow, MixedReport, PeerInfo, Report, Row};
use setup::{ck, ChildGuard, Daemon, Peer, Res};
use stats::Sample;

#[derive(Parser, Debug)]
#[command(
    name = "p11kms-bench",
    about = "Measures p11kms against SoftHSMv2 in-process and p11-kit remote, side by side",
    after_help = "Cases: session random32 find1k find100k(--big) gcm64 gcm4k gcm1m cbcpad4k ecb4k \
                  stream-cbc stream-ecb rsa-pkcs-sign rsa-pss-sign rsa-pkcs-verify rsa-pss-verify \
                  rsa-oaep-decrypt ecdsa-sign ecdsa-verify aes-keygen ec-keygen wrap unwrap mixed64"
)]
struct Cli {
    /// Peers besides p11kms: softhsm (SoftHSMv2 in-process), p11kit (p11-kit
    /// server in front of a SoftHSMv2 token); "none" for p11kms alone.
    #[arg(long, default_value = "softhsm,p11kit")]
    peers: String,
    /// Duration of one round of one case on one peer.
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Rounds per case; peers alternate within each round.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Thread counts to run each case with (each thread has its own session).
    #[arg(long, default_value = "1,2")]
    threads: String,
    /// Comma-separated case names (default: all; find100k needs --big).
    #[arg(long)]
    cases: Option<String>,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Every case for ~50 ms, 1 thread, 1 round: proves the tool runs. Exits
    /// non-zero only on a setup failure or a case failing unexpectedly.
    #[arg(long)]
    smoke: bool,
    /// Also the slow cases: find among 100,000 token keys, daemon RSS and
    /// restart time with them (creating them takes minutes).
    #[arg(long)]
    big: bool,
    /// p11kmsd to start (default: next to this executable).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// libp11kms.so to load (default: next to this executable).
    #[arg(long)]
    module: Option<PathBuf>,
    /// SoftHSMv2 module.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    softhsm: PathBuf,
    /// p11-kit's RPC client module.
    #[arg(
        long,
        default_value = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
    )]
    p11kit_client: PathBuf,
    /// mixed64: worker processes (each loads the module and logs in itself).
    #[arg(long, default_value_t = 8)]
    mixed_procs: usize,
    /// mixed64: threads (sessions) per worker process.
    #[arg(long, default_value_t = 8)]
    mixed_threads: usize,
    /// Internal: run as a mixed64 worker process (the bench starts these).
    #[arg(long, hide = true)]
    worker: Option<String>,
    /// Internal: token label a worker looks for.
    #[arg(long, hide = true, default_value = setup::LABEL)]
    worker_label: String,
    /// Internal: keeps the GCM IVs of worker processes apart.
    #[arg(long, hide = true, default_value_t = 0)]
    worker_tag: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(kind) = &cli.worker {
        if kind != "mixed" {
            eprintln!("p11kms-bench: --worker {kind:?}: unknown worker kind");
            return ExitCode::from(2);
        }
        let Some(module) = &cli.module else {
            eprintln!("p11kms-bench: --worker needs --module");
            return ExitCode::from(2);
        };
        return mixed::worker_main(
            module,
            &cli.worker_label,
            cli.mixed_threads.max(1),
            Duration::from_millis(cli.duration_ms.max(1)),
            cli.rounds.max(1),
            cli.worker_tag,
        );
    }
    match run(&cli) {
        Ok(rep) => {
            let table = report::table(&rep);
            if cli.json {
                eprint!("{table}");
                match serde_json::to_string_pretty(&rep) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("p11kms-bench: JSON: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{table}");
            }
            if rep.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "p11kms-bench: {} case(s) failed unexpectedly:",
                    rep.errors.len()
                );
                for e in &rep.errors {
                    eprintln!("  {e}");
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("p11kms-bench: setup failed: {e}");
            ExitCode::from(2)
        }
    }
}

fn beside_exe(name: &str) -> Res<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    Ok(dir.join(name))
}

fn existing(p: PathBuf, what: &str) -> Res<PathBuf> {
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{what} not found at {} (cargo build --release -p p11kmsd -p p11kms, or pass its path)",
            p.display()
        ))
    }
}

fn run(cli: &Cli) -> Res<Report> {
    let duration = Duration::from_millis(if cli.smoke {
        50
    } else {
        cli.duration_ms.max(1)
    });
    let rounds = if cli.smoke { 1 } else { cli.rounds.max(1) };
    let threads: Vec<usize> = if cli.smoke {
        vec![1]
    } else {
        cli.threads
            .split(',')
            .map(|t| {
                t.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("--threads {t:?}: {e}"))
            })
            .collect::<Res<Vec<_>>>()?
    };
    if threads.contains(&0) {
        return Err("--threads: 0 is not a thread count".into());
    }
    if cli.mixed_procs == 0 || cli.mixed_threads == 0 {
        return Err("--mixed-procs and --mixed-threads must be at least 1".into());
    }
    let mut want_softhsm = false;
    let mut want_p11kit = false;
    for p in cli
        .peers
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match p {
            "softhsm" => want_softhsm = true,
            "p11kit" => want_p11kit = true,
            "none" | "p11kms" => {}
            other => {
                return Err(format!(
                    "--peers: unknown peer {other:?} (softhsm, p11kit, none)"
                ))
            }
        }
    }
    let all = cases::all();
    let selected: Vec<&CaseDef> = match &cli.cases {
        Some(list) => {
            let mut v = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let d = all
                    .iter()
                    .find(|d| d.name == name)
                    .ok_or_else(|| format!("--cases: unknown case {name:?}"))?;
                v.push(d);
            }
            v
        }
        None => all.iter().filter(|d| cli.big || !d.big).collect(),
    };

    let daemon_exe = existing(
        match &cli.daemon {
            Some(p) => p.clone(),
            None => beside_exe("p11kmsd")?,
        },
        "p11kmsd",
    )?;
    let module = existing(
        match &cli.module {
            Some(p) => p.clone(),
            None => beside_exe("libp11kms.so")?,
        },
        "libp11kms.so",
    )?;
    if want_softhsm || want_p11kit {
        existing(
            cli.softhsm.clone(),
            "SoftHSMv2 module (apt-get install softhsm2)",
        )?;
    }
    if want_p11kit {
        existing(
            cli.p11kit_client.clone(),
            "p11-kit-client.so (apt-get install p11-kit)",
        )?;
    }

    let dir = tempfile::Builder::new()
        .prefix("p11kms-bench.")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    eprintln!("p11kms-bench: set-up in {}", dir.path().display());

    // Children first, so that they are dropped (stopped) after the modules.
    let mut daemon = Daemon::new(daemon_exe.clone(), dir.path())?;
    let start_empty = daemon.start()?;
    let mut p11kit_guard: Option<ChildGuard> = None;
    let mut p11kit_sock = None;
    let mut softhsm_conf = None;
    if want_softhsm {
        softhsm_conf = Some(setup::softhsm_token(dir.path(), "softhsm", setup::LABEL)?);
    }
    if want_p11kit {
        let conf = setup::softhsm_token(dir.path(), "softhsm-remote", setup::REMOTE_LABEL)?;
        let (g, sock) = setup::p11kit_server(dir.path(), &cli.softhsm, &conf)?;
        p11kit_guard = Some(g);
        p11kit_sock = Some(sock);
    }

    // Process-wide variables that the modules read at C_Initialize: set them
    // now, before any module is initialized and before any thread starts.
    std::env::set_var("P11KMS_SOCKET", &daemon.socket);
    if let Some(c) = &softhsm_conf {
        std::env::set_var("SOFTHSM2_CONF", c);
    }
    if let Some(s) = &p11kit_sock {
        std::env::set_var(
            "P11_KIT_SERVER_ADDRESS",
            format!("unix:path={}", s.display()),
        );
    }

    let mut peers: Vec<Peer> = vec![setup::open_peer("p11kms", &module, setup::LABEL, true)?];
    if want_softhsm {
        peers.push(setup::open_peer(
            "softhsm",
            &cli.softhsm,
            setup::LABEL,
            false,
        )?);
    }
    if want_p11kit {
        peers.push(setup::open_peer(
            "p11kit",
            &cli.p11kit_client,
            setup::REMOTE_LABEL,
            false,
        )?);
    }
    let mut rep = Report::new(cli_line(), duration, rounds, &threads, cli.smoke);
    for p in &peers {
        rep.peers.push(PeerInfo {
            name: p.name.to_string(),
            module: p.module.display().to_string(),
            library: p.version.clone(),
            mechanisms: p.mechs.len(),
        });
    }
    rep.daemon_start_empty_s = start_empty.as_secs_f64();
    let (rows, errors, big) = measure(
        cli,
        &peers,
        &selected,
        &threads,
        rounds,
        duration,
        &mut daemon,
        &mut rep,
    )?;
    rep.sm = sm::engine_rows(duration, cli.smoke);
    rep.sm.extend(sm::sm2_rows(&rows, duration));
    rep.results = rows;
    rep.errors = errors;
    rep.big = big;

    rep.finish();
    // Modules before children: finalize while the daemons are still up.
    drop(peers);
    drop(p11kit_guard);
    daemon.stop();
    Ok(rep)
}

/// Name, title, bytes per operation, and the measuring function of a floor.
type FloorRun = (&'static str, &'static str, u64, fn(Duration) -> Res<Sample>);

type Measured = (Vec<Row>, Vec<String>, Option<BigReport>);

/// Floors, cases and the --big measurements, on peers set up by `run`.
#[allow(clippy::too_many_arguments)]
fn measure(
    cli: &Cli,
    peers: &[Peer],
    selected: &[&CaseDef],
    threads: &[usize],
    rounds: u32,
    duration: Duration,
    daemon: &mut Daemon,
    rep: &mut Report,
) -> Res<Measured> {
    let mut mains = Vec::new();
    let mut shared = Vec::new();
    for p in peers {
        let (m, aes) = setup::main_session(p)?;
        mains.push(m);
        shared.push(Shared::new(
            aes,
            if cli.smoke { 100 } else { cases::FIND_SMALL },
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();

    // Floors.
    eprintln!("p11kms-bench: floors");
    let floor_runs: [FloorRun; 4] = [
        (
            "socket-rtt",
            "unix socket round trip, 64 B, blocking echo thread",
            0,
            floors::socket_rtt,
        ),
        (
            "aes-gcm-4k",
            "AES-256-GCM 4 KiB in-process (aes-gcm 0.11)",
            4096,
            |d| floors::gcm_inproc(d, 4096),
        ),
        (
            "aes-gcm-64",
            "AES-256-GCM 64 B in-process (aes-gcm 0.11)",
            64,
            |d| floors::gcm_inproc(d, 64),
        ),
        (
            "sha256-4k",
            "SHA-256 4 KiB in-process (sha2 0.11)",
            4096,
            |d| floors::sha256_inproc(d, 4096),
        ),
    ];
    for (name, title, bytes, f) in floor_runs {
        let mut agg = Sample::default();
        for _ in 0..rounds {
            agg.merge(f(duration)?);
        }
        rep.floors.push(FloorRow {
            name: name.into(),
            title: title.into(),
            summary: agg.summary(bytes),
        });
    }

    // Cases.
    for def in selected {
        eprintln!("p11kms-bench: {} — {}", def.name, def.title);
        if def.id == cases::Id::Mixed64 {
            let (r, e, m) = measure_mixed(
                cli,
                peers,
                &mains,
                &mut shared,
                def,
                rounds,
                duration,
                daemon,
            );
            rows.extend(r);
            errors.extend(e);
            rep.mixed = Some(m);
            continue;
        }
        let mut preps: Vec<Result<Prep, Skip>> = Vec::new();
        for (pi, p) in peers.iter().enumerate() {
            let t0 = Instant::now();
            let r = cases::prepare(def.id, p, &mains[pi], &mut shared[pi], p.name == "p11kms");
            if t0.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "  {}: prepared in {:.1} s",
                    p.name,
                    t0.elapsed().as_secs_f64()
                );
            }
            preps.push(r);
        }
        for &t in threads {
            let n = peers.len();
            let mut samples: Vec<Sample> = (0..n).map(|_| Sample::default()).collect();
            let mut failed: Vec<Option<String>> = vec![None; n];
            for r in 0..rounds as usize {
                for k in 0..n {
                    let pi = (k + r) % n;
                    let Ok(prep) = &preps[pi] else { continue };
                    if failed[pi].is_some() {
                        continue;
                    }
                    match run_threads(&peers[pi], def, prep, t, duration) {
                        Ok(s) => samples[pi].merge(s),
                        Err(e) => failed[pi] = Some(e),
                    }
                }
            }
            let p11kms_ops = match (&preps[0], &failed[0]) {
                (Ok(_), None) => {
                    Some(samples[0].ops as f64 / samples[0].wall.as_secs_f64().max(1e-12))
                }
                _ => None,
            };
            for (pi, sample) in samples.iter_mut().enumerate() {
                let peer = peers[pi].name;
                let mut row = Row::new(def, t, peer);
                match (&preps[pi], &failed[pi]) {
                    (Err(Skip::Na(why)), _) => row.na(why),
                    (Err(Skip::Fail(why)), _) => {
                        errors.push(format!("{} / {peer}: {why}", def.name));
                        row.error(why)
                    }
                    (Ok(_), Some(why)) => {
                        errors.push(format!("{} / {peer} / {t} thread(s): {why}", def.name));
                        row.error(why)
                    }
                    (Ok(_), None) => {
                        let s = sample.summary(def.bytes);
                        if pi > 0 {
                            if let Some(base) = p11kms_ops {
                                if s.ops_per_s > 0.0 {
                                    row.ratio = Some(base / s.ops_per_s);
                                }
                            }
                        }
                        row.ok(s)
                    }
                }
                rows.push(row);
            }
        }
    }

    // Memory and start-up with 100,000 token keys.
    let mut big_rep = None;
    if cli.big {
        eprintln!("p11kms-bench: daemon memory and restart with 100,000 token keys");
        big_rep = Some(big(&peers[0], &mains[0], &mut shared[0], daemon));
    }
    Ok((rows, errors, big_rep))
}

/// mixed64 on p11kms (the peers show n/a: the target compares p11kms with
/// itself): rounds of the mixed load with 2 threads here, then with
/// `--mixed-procs` x `--mixed-threads` in worker processes. Rows for 2 and
/// for all threads, and the details for the report.
#[allow(clippy::too_many_arguments)]
fn measure_mixed(
    cli: &Cli,
    peers: &[Peer],
    mains: &[Sess],
    shared: &mut [Shared],
    def: &CaseDef,
    rounds: u32,
    duration: Duration,
    daemon: &Daemon,
) -> (Vec<Row>, Vec<String>, MixedReport) {
    let many = cli.mixed_procs * cli.mixed_threads;
    let mut m = MixedReport {
        load: mixed::LOAD.into(),
        processes: cli.mixed_procs,
        threads_per_process: cli.mixed_threads,
        ..MixedReport::default()
    };
    let mut two = Sample::default();
    let mut all = Sample::default();
    let r = run_mixed(
        cli,
        &peers[0],
        &mains[0],
        &mut shared[0],
        rounds,
        duration,
        daemon,
        &mut m,
        &mut two,
        &mut all,
    );
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (pi, p) in peers.iter().enumerate() {
        for t in [2, many] {
            let mut row = Row::new(def, t, p.name);
            if pi > 0 {
                row.na("run on p11kms only (the target compares p11kms with itself)");
            } else {
                match &r {
                    Ok(()) => row.ok(if t == 2 {
                        two.summary(0)
                    } else {
                        all.summary(0)
                    }),
                    Err(Skip::Na(why)) => row.na(why),
                    Err(Skip::Fail(why)) => row.error(why),
                }
            }
            rows.push(row);
        }
    }
    match r {
        Ok(()) => {
            m.many = all.summary(0);
            if m.best_two_thread_ops_per_s > 0.0 {
                m.ratio_to_best_two_thread = m.many.ops_per_s / m.best_two_thread_ops_per_s;
            }
        }
        Err(Skip::Na(why)) => m.error = Some(why),
        Err(Skip::Fail(why)) => {
            errors.push(format!("{} / p11kms: {why}", def.name));
            m.error = Some(why);
        }
    }
    (rows, errors, m)
}

#[allow(clippy::too_many_arguments)]
fn run_mixed(
    cli: &Cli,
    peer: &Peer,
    main: &Sess,
    shared: &mut Shared,
    rounds: u32,
    duration: Duration,
    daemon: &Daemon,
    m: &mut MixedReport,
    two: &mut Sample,
    all: &mut Sample,
) -> Result<(), Skip> {
    let mix = mixed::prepare(peer, main, shared)?;
    let dir = daemon
        .socket
        .parent()
        .ok_or_else(|| Skip::Fail("daemon socket has no directory".into()))?;
    let cfg = mixed::WorkerCfg {
        module: &peer.module,
        socket: &daemon.socket,
        label: setup::LABEL,
        dir,
        procs: cli.mixed_procs,
        threads: cli.mixed_threads,
        dur: duration,
        rounds,
    };
    let t0 = Instant::now();
    // dropped on any error below: the guards stop every worker
    let mut workers = mixed::Workers::start(&cfg).map_err(Skip::Fail)?;
    eprintln!(
        "  {} worker processes ready in {:.1} s",
        cli.mixed_procs,
        t0.elapsed().as_secs_f64()
    );
    let mut per = vec![0.0; cli.mixed_procs];
    let rate = |s: &Sample| s.ops as f64 / s.wall.as_secs_f64().max(1e-12);
    for _ in 0..rounds {
        let s = mixed::run_threads(peer, &mix, 2, duration, 0, &mut || -> Res<()> { Ok(()) })
            .map_err(|e| Skip::Fail(format!("2 threads: {e}")))?;
        m.two_thread_rounds_ops_per_s.push(rate(&s));
        two.merge(s);
        let (s, p) = workers.round(duration).map_err(Skip::Fail)?;
        m.many_rounds_ops_per_s.push(rate(&s));
        all.merge(s);
        for (a, b) in per.iter_mut().zip(p) {
            *a += b / rounds as f64;
        }
    }
    workers.quit();
    m.per_process_ops_per_s = per;
    m.best_two_thread_ops_per_s = m
        .two_thread_rounds_ops_per_s
        .iter()
        .copied()
        .fold(0.0, f64::max);
    Ok(())
}

fn cli_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut v = vec!["p11kms-bench".to_string()];
    v.extend(args.into_iter().skip(1));
    v.join(" ")
}

/// Runs `def` on `peer` with `threads` threads for `dur`, each thread on its
/// own session, all starting together.
fn run_threads(
    peer: &Peer,
    def: &CaseDef,
    prep: &Prep,
    threads: usize,
    dur: Duration,
) -> Res<Sample> {
    let barrier = Barrier::new(threads);
    let results: Vec<Res<Sample>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                sc.spawn(move || -> Res<Sample> {
                    let s = peer.raw.open(peer.slot);
                    barrier.wait();
                    let s = s.map_err(|e| format!("C_OpenSession: {}", ck(&e)))?;
                    let mut buf = vec![0u8; prep.out_len.max(64)];
                    let mut lat = Vec::with_capacity(1 << 14);
                    let start = Instant::now();
                    let deadline = start + dur;
                    let mut i = 0u64;
                    loop {
                        let t0 = Instant::now();
                        cases::op(def.id, peer, &s, prep, i, t as u32, &mut buf)
                            .map_err(|e| format!("operation {i}: {}", ck(&e)))?;
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
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("worker thread panicked".into()))
            })
            .collect()
    });
    let mut total = Sample::default();
    let mut wall = Duration::ZERO;
    for r in results {
        let s = r?;
        wall = wall.max(s.wall);
        total.ops += s.ops;
        total.lat_ns.extend(s.lat_ns);
    }
    total.wall = wall;
    Ok(total)
}

/// RSS of the daemon holding 100,000 token keys, and its restart time.
fn big(peer: &Peer, main: &Sess, shared: &mut Shared, daemon: &mut Daemon) -> BigReport {
    let mut b = BigReport::default();
    let made = cases::prepare(cases::Id::Find100k, peer, main, shared, true);
    if let Err(Skip::Na(e) | Skip::Fail(e)) = made {
        b.error = Some(format!("making 100,000 token keys: {e}"));
        return b;
    }
    b.objects = cases::FIND_BIG as u64;
    b.prepare_s = shared.find_big_secs;
    b.rss_kib = daemon.pid().and_then(setup::rss_kib);
    daemon.stop();
    match daemon.start() {
        Ok(took) => {
            b.restart_s = Some(took.as_secs_f64());
            // let it settle, then read RSS of the freshly loaded daemon
            std::thread::sleep(Duration::from_millis(200));
            b.rss_after_restart_kib = daemon.pid().and_then(setup::rss_kib);
        }
        Err(e) => b.error = Some(format!("restart: {e}")),
    }
    b
}
