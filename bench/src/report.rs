//! The report: rows per case × threads × peer, the floors, the targets of
//! issue 6 checked against this run, the table and the JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cases::CaseDef;
use crate::stats::{si, us, Summary};

#[derive(Serialize)]
pub struct PeerInfo {
    pub name: String,
    pub module: String,
    pub library: String,
    pub mechanisms: usize,
}

#[derive(Serialize)]
pub struct FloorRow {
    pub name: String,
    pub title: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Serialize)]
pub struct Row {
    pub case: String,
    pub title: String,
    pub threads: usize,
    pub peer: String,
    /// "ok", "n/a" or "error".
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// p11kms ops/s divided by this peer's ops/s (peers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_p11kms_over_peer: Option<f64>,
    #[serde(skip)]
    pub ratio: Option<f64>,
}

impl Row {
    pub fn new(def: &CaseDef, threads: usize, peer: &str) -> Row {
        Row {
            case: def.name.into(),
            title: def.title.into(),
            threads,
            peer: peer.into(),
            status: String::new(),
            reason: None,
            summary: None,
            ratio_p11kms_over_peer: None,
            ratio: None,
        }
    }
    pub fn na(&mut self, why: &str) {
        self.status = "n/a".into();
        self.reason = Some(why.into());
    }
    pub fn error(&mut self, why: &str) {
        self.status = "error".into();
        self.reason = Some(why.into());
    }
    pub fn ok(&mut self, s: Summary) {
        self.status = "ok".into();
        self.summary = Some(s);
        self.ratio_p11kms_over_peer = self.ratio;
    }
}

#[derive(Serialize, Default)]
pub struct BigReport {
    pub objects: u64,
    /// Time to make the 99,000 token keys beyond the find1k ones, seconds.
    pub prepare_s: f64,
    pub rss_kib: Option<u64>,
    /// SIGTERM, start again, time until the socket is served.
    pub restart_s: Option<f64>,
    pub rss_after_restart_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// mixed64: the mixed load with 2 threads in this process against many
/// threads in several worker processes, rounds alternating.
#[derive(Serialize, Default)]
pub struct MixedReport {
    pub load: String,
    pub processes: usize,
    pub threads_per_process: usize,
    /// ops/s of each 2-thread round (in this process).
    pub two_thread_rounds_ops_per_s: Vec<f64>,
    pub best_two_thread_ops_per_s: f64,
    /// ops/s of each many-thread round (all processes together).
    pub many_rounds_ops_per_s: Vec<f64>,
    /// All many-thread rounds merged: ops/s, p50/p99 over every operation.
    pub many: Summary,
    /// Each process's ops/s, all rounds merged.
    pub per_process_ops_per_s: Vec<f64>,
    /// many.ops_per_s ÷ best_two_thread_ops_per_s.
    pub ratio_to_best_two_thread: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Target {
    pub target: String,
    /// "met", "missed" or "not measured".
    pub status: String,
    pub measured: String,
}

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

#[derive(Serialize)]
pub struct Report {
    pub tool: String,
    pub command: String,
    pub smoke: bool,
    pub duration_ms: u64,
    pub rounds: u32,
    pub threads: Vec<usize>,
    pub machine: Machine,
    pub peers: Vec<PeerInfo>,
    pub daemon_start_empty_s: f64,
    pub floors: Vec<FloorRow>,
    pub results: Vec<Row>,
    /// SM2/SM4 against OpenSSL 3 (`sm.rs`).
    pub sm: Vec<crate::sm::SmRow>,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub big: Option<BigReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixed: Option<MixedReport>,
    pub errors: Vec<String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Report {
    pub fn new(
        command: String,
        duration: Duration,
        rounds: u32,
        threads: &[usize],
        smoke: bool,
    ) -> Report {
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("")
            .trim()
            .to_string();
        Report {
            tool: format!("p11kms-bench {}", env!("CARGO_PKG_VERSION")),
            command,
            smoke,
            duration_ms: duration.as_millis() as u64,
            rounds,
            threads: threads.to_vec(),
            machine: Machine {
                cpus: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0),
                cpu_model,
                kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
                loadavg_start: loadavg(),
                loadavg_end: String::new(),
            },
            peers: Vec::new(),
            daemon_start_empty_s: 0.0,
            floors: Vec::new(),
            results: Vec::new(),
            sm: Vec::new(),
            targets: Vec::new(),
            big: None,
            mixed: None,
            errors: Vec::new(),
        }
    }

    fn get(&self, case: &str, threads: usize, peer: &str) -> Result<&Summary, String> {
        let row = self
            .results
            .iter()
            .find(|r| r.case == case && r.threads == threads && r.peer == peer)
            .ok_or_else(|| format!("{case} with {threads} thread(s) on {peer} not run"))?;
        row.summary.as_ref().ok_or_else(|| {
            format!(
                "{case} on {peer}: {} ({})",
                row.status,
                row.reason.as_deref().unwrap_or("")
            )
        })
    }

    fn floor(&self, name: &str) -> Result<&Summary, String> {
        self.floors
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.summary)
            .ok_or_else(|| format!("floor {name} not run"))
    }

    fn push(&mut self, target: String, r: Result<(bool, String), String>) {
        let (status, measured) = match r {
            Ok((true, m)) => ("met", m),
            Ok((false, m)) => ("missed", m),
            Err(m) => ("not measured", m),
        };
        self.targets.push(Target {
            target,
            status: status.into(),
            measured,
        });
    }

    /// p11kms ops/s ≥ `min` × `peer` ops/s for `case` with `threads`.
    fn ratio_target(&mut self, what: &str, case: &str, threads: usize, peer: &str, min: f64) {
        let peer_name = if peer == "softhsm" {
            "SoftHSMv2"
        } else {
            "p11-kit"
        };
        let r = (|| {
            let a = self.get(case, threads, "p11kms")?;
            let b = self.get(case, threads, peer)?;
            let ratio = a.ops_per_s / b.ops_per_s;
            Ok((
                ratio >= min,
                format!(
                    "{ratio:.2}× ({} vs {} ops/s)",
                    si(a.ops_per_s),
                    si(b.ops_per_s)
                ),
            ))
        })();
        self.push(
            format!("{what}, {threads} thread(s): ≥ {min}× {peer_name}"),
            r,
        );
    }

    /// Checks the targets of issue 6 against this run and notes the load.
    pub fn finish(&mut self) {
        self.machine.loadavg_end = loadavg();
        let r = (|| {
            let a = self.get("random32", 1, "p11kms")?;
            let f = self.floor("socket-rtt")?;
            let q = a.p50_us / f.p50_us;
            Ok((
                q <= 1.5,
                format!(
                    "p50 {} µs = {q:.2}× the bare round trip ({} µs)",
                    us(a.p50_us),
                    us(f.p50_us)
                ),
            ))
        })();
        self.push(
            "C_GenerateRandom p50 ≤ 1.5× bare socket round trip".into(),
            r,
        );
        self.ratio_target("C_GenerateRandom 32 B", "random32", 1, "p11kit", 1.5);
        self.ratio_target("Session open+close", "session", 1, "p11kit", 2.0);
        self.ratio_target("AES-256-GCM 4 KiB", "gcm4k", 1, "softhsm", 1.0);
        let r = (|| {
            let one = self.get("gcm4k", 1, "p11kms")?;
            let two = self.get("gcm4k", 2, "p11kms")?;
            let q = two.ops_per_s / one.ops_per_s;
            Ok((
                q >= 1.6,
                format!(
                    "{q:.2}× ({} vs {} ops/s)",
                    si(two.ops_per_s),
                    si(one.ops_per_s)
                ),
            ))
        })();
        self.push(
            "AES-256-GCM 4 KiB, 2 threads ≥ 1.6× p11kms 1 thread".into(),
            r,
        );
        self.ratio_target("AES-256-GCM 64 B", "gcm64", 1, "softhsm", 0.8);
        self.ratio_target("Streaming 64 MiB CBC", "stream-cbc", 1, "softhsm", 0.8);
        self.ratio_target("Streaming 64 MiB ECB", "stream-ecb", 1, "softhsm", 0.8);
        self.ratio_target("Streaming 64 MiB ECB", "stream-ecb", 1, "p11kit", 3.0);
        for t in [1, 2] {
            self.ratio_target("RSA-2048 PKCS#1 sign", "rsa-pkcs-sign", t, "softhsm", 2.5);
            self.ratio_target("RSA-2048 PSS sign", "rsa-pss-sign", t, "softhsm", 2.5);
            self.ratio_target("P-256 ECDSA sign", "ecdsa-sign", t, "softhsm", 2.5);
        }
        self.ratio_target(
            "RSA-2048 PKCS#1 verify",
            "rsa-pkcs-verify",
            1,
            "softhsm",
            1.2,
        );
        self.ratio_target("RSA-2048 PSS verify", "rsa-pss-verify", 1, "softhsm", 1.2);
        self.ratio_target("P-256 ECDSA verify", "ecdsa-verify", 1, "softhsm", 1.2);
        self.ratio_target("Find by label among 1,000", "find1k", 1, "softhsm", 100.0);
        let r = (|| {
            let small = self.get("find1k", 1, "p11kms")?;
            let big = self.get("find100k", 1, "p11kms")?;
            let q = big.p50_us / small.p50_us;
            Ok((
                q <= 2.0,
                format!(
                    "p50 {} µs vs {} µs = {q:.2}×",
                    us(big.p50_us),
                    us(small.p50_us)
                ),
            ))
        })();
        self.push(
            "Find among 100,000 p50 ≤ 2× find among 1,000 (--big)".into(),
            r,
        );
        self.ratio_target("AES-256 key generation", "aes-keygen", 1, "softhsm", 1.0);
        self.ratio_target("P-256 key generation", "ec-keygen", 1, "softhsm", 2.0);
        let r = match &self.mixed {
            None => Err("mixed64 not run (--cases mixed64)".to_string()),
            Some(m) if m.error.is_some() => Err(m.error.clone().unwrap_or_default()),
            Some(m) if m.processes != 8 || m.processes * m.threads_per_process != 64 => Err(format!(
                "run with {} x {} threads; the target is for 8 x 8 (--mixed-procs 8 --mixed-threads 8)",
                m.processes, m.threads_per_process
            )),
            Some(m) => Ok((
                m.ratio_to_best_two_thread >= 0.9,
                format!(
                    "{:.3}× ({} ops/s with 64 threads, p50 {} µs, p99 {} µs; best 2-thread round {} ops/s)",
                    m.ratio_to_best_two_thread,
                    si(m.many.ops_per_s),
                    us(m.many.p50_us),
                    us(m.many.p99_us),
                    si(m.best_two_thread_ops_per_s)
                ),
            )),
        };
        self.push(
            "64 client threads in 8 processes, mixed load: ≥ 0.9× the best 2-thread figure".into(),
            r,
        );
        let big = self
            .big
            .as_ref()
            .map(|b| (b.objects, b.rss_kib, b.restart_s, b.error.clone()));
        let r = match &big {
            None => Err("run with --big".to_string()),
            Some((objects, rss, _, err)) => match rss {
                Some(k) => Ok((
                    *k <= 256 * 1024,
                    format!("{:.1} MiB with {objects} token keys", *k as f64 / 1024.0),
                )),
                None => Err(err.clone().unwrap_or_else(|| "no RSS".into())),
            },
        };
        self.push("Daemon RSS with 100,000 token keys ≤ 256 MiB".into(), r);
        let r = match &big {
            None => Err("run with --big".to_string()),
            Some((objects, _, restart, err)) => match restart {
                Some(s) => Ok((
                    *s <= 2.0,
                    format!("{s:.2} s to serve again with {objects} token keys"),
                )),
                None => Err(err.clone().unwrap_or_else(|| "no restart".into())),
            },
        };
        self.push("Daemon start-up with 100,000 token keys ≤ 2 s".into(), r);
    }
}

/// The human-readable report.
pub fn table(rep: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\n{}  ({})", rep.tool, rep.command);
    let _ = writeln!(
        o,
        "{} CPU(s) {}; kernel {}; load average {} at start, {} at end",
        rep.machine.cpus,
        rep.machine.cpu_model,
        rep.machine.kernel,
        rep.machine.loadavg_start,
        rep.machine.loadavg_end
    );
    let _ = writeln!(
        o,
        "{} round(s) x {} ms per case and peer, peers alternating; threads {:?}{}",
        rep.rounds,
        rep.duration_ms,
        rep.threads,
        if rep.smoke {
            "; SMOKE MODE (figures meaningless)"
        } else {
            ""
        }
    );
    for p in &rep.peers {
        let _ = writeln!(
            o,
            "  {:<8} {} ({}, {} mechanisms)",
            p.name, p.library, p.module, p.mechanisms
        );
    }
    let _ = writeln!(o, "\nFloors (in this process):");
    let _ = writeln!(
        o,
        "  {:<12} {:>10} {:>9} {:>9} {:>9}  what",
        "floor", "ops/s", "p50 µs", "p99 µs", "MB/s"
    );
    for f in &rep.floors {
        let s = &f.summary;
        let _ = writeln!(
            o,
            "  {:<12} {:>10} {:>9} {:>9} {:>9}  {}",
            f.name,
            si(s.ops_per_s),
            us(s.p50_us),
            us(s.p99_us),
            s.mb_per_s.map(si).unwrap_or_else(|| "-".into()),
            f.title
        );
    }
    if !rep.sm.is_empty() {
        let _ = writeln!(
            o,
            "\nSM algorithms against OpenSSL 3 (same run; ratio = p11kms ÷ openssl):"
        );
        let _ = writeln!(
            o,
            "  {:<40} {:>10} {:>10} {:>6} {:>7}  p11kms path",
            "what", "p11kms", "openssl", "unit", "ratio"
        );
        for r in &rep.sm {
            let num = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "  {:<40} {:>10} {:>10} {:>6} {:>7}  {}",
                r.name,
                num(r.p11kms),
                num(r.openssl),
                r.unit,
                r.ratio
                    .map(|v| format!("{v:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                r.p11kms_path
            );
            if let Some(n) = &r.note {
                let _ = writeln!(o, "  {:<40} note: {n}", "");
            }
        }
    }
    let _ = writeln!(o, "\nCases (ratio = p11kms ops/s ÷ peer ops/s):");
    let _ = writeln!(
        o,
        "  {:<17} {:>3} {:<8} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "case", "thr", "peer", "ops/s", "p50 µs", "p99 µs", "MB/s", "ratio"
    );
    let mut last_case = String::new();
    for r in &rep.results {
        let case = if r.case != last_case {
            if !last_case.is_empty() {
                let _ = writeln!(o);
            }
            last_case = r.case.clone();
            let _ = writeln!(o, "  {}: {}", r.case, r.title);
            r.case.as_str()
        } else {
            ""
        };
        let _ = case;
        match &r.summary {
            Some(s) => {
                let _ = writeln!(
                    o,
                    "  {:<17} {:>3} {:<8} {:>10} {:>9} {:>9} {:>9} {:>8}",
                    "",
                    r.threads,
                    r.peer,
                    si(s.ops_per_s),
                    us(s.p50_us),
                    us(s.p99_us),
                    s.mb_per_s.map(si).unwrap_or_else(|| "-".into()),
                    r.ratio.map(|q| format!("{q:.2}×")).unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "  {:<17} {:>3} {:<8} {} ({})",
                    "",
                    r.threads,
                    r.peer,
                    if r.status == "error" { "ERROR" } else { "n/a" },
                    r.reason.as_deref().unwrap_or("")
                );
            }
        }
    }
    if let Some(b) = &rep.big {
        let _ = writeln!(o, "\nDaemon with {} token keys:", b.objects);
        let kib = |k: Option<u64>| {
            k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            o,
            "  99,000 of them made in {:.1} s (4 sessions); daemon RSS {}",
            b.prepare_s,
            kib(b.rss_kib)
        );
        let _ = writeln!(
            o,
            "  restart (SIGTERM, start, socket served): {}; RSS after restart {}",
            b.restart_s
                .map(|s| format!("{s:.2} s"))
                .unwrap_or_else(|| "-".into()),
            kib(b.rss_after_restart_kib)
        );
        if let Some(e) = &b.error {
            let _ = writeln!(o, "  error: {e}");
        }
    }
    if let Some(m) = &rep.mixed {
        let _ = writeln!(
            o,
            "\nMixed load ({}), {} processes x {} threads vs 2 threads in this process:",
            m.load, m.processes, m.threads_per_process
        );
        let list = |v: &[f64]| v.iter().map(|x| si(*x)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            o,
            "  2 threads, per round: {} ops/s (best {})",
            list(&m.two_thread_rounds_ops_per_s),
            si(m.best_two_thread_ops_per_s)
        );
        let _ = writeln!(
            o,
            "  {} threads, per round: {} ops/s; all rounds {} ops/s, p50 {} µs, p99 {} µs = {:.3}× the best 2-thread round",
            m.processes * m.threads_per_process,
            list(&m.many_rounds_ops_per_s),
            si(m.many.ops_per_s),
            us(m.many.p50_us),
            us(m.many.p99_us),
            m.ratio_to_best_two_thread
        );
        let _ = writeln!(o, "  per process: {} ops/s", list(&m.per_process_ops_per_s));
        if let Some(e) = &m.error {
            let _ = writeln!(o, "  error: {e}");
        }
    }
    let _ = writeln!(o, "\nTargets (issue 6):");
    for t in &rep.targets {
        let _ = writeln!(o, "  {:<13} {}: {}", t.status, t.target, t.measured);
    }
    if !rep.errors.is_empty() {
        let _ = writeln!(o, "\nUnexpected failures:");
        for e in &rep.errors {
            let _ = writeln!(o, "  {e}");
        }
    }
    o
}
