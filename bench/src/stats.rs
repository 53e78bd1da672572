//! Samples and their summary (ops/s, p50/p99, MB/s).

use std::time::Duration;

use serde::Serialize;

/// One timed run (or several merged): operation count, wall time (the
/// slowest thread's), and every operation's latency.
#[derive(Default)]
pub struct Sample {
    pub ops: u64,
    pub wall: Duration,
    pub lat_ns: Vec<u64>,
}

impl Sample {
    pub fn merge(&mut self, other: Sample) {
        self.ops += other.ops;
        self.wall += other.wall;
        self.lat_ns.extend(other.lat_ns);
    }

    pub fn summary(&mut self, bytes_per_op: u64) -> Summary {
        let ops_per_s = if self.wall.is_zero() {
            0.0
        } else {
            self.ops as f64 / self.wall.as_secs_f64()
        };
        self.lat_ns.sort_unstable();
        let pct = |q: f64| -> f64 {
            if self.lat_ns.is_empty() {
                return 0.0;
            }
            let idx = ((self.lat_ns.len() as f64 - 1.0) * q).round() as usize;
            self.lat_ns[idx.min(self.lat_ns.len() - 1)] as f64 / 1000.0
        };
        Summary {
            ops: self.ops,
            seconds: self.wall.as_secs_f64(),
            ops_per_s,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            mb_per_s: (bytes_per_op > 0).then(|| ops_per_s * bytes_per_op as f64 / 1e6),
        }
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Summary {
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
}

/// 1234567.8 → "1.23M", 12345 → "12.3k", 123.4 → "123".
pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Latency in µs with 3 significant-ish digits.
pub fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}", v)
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
