//! SM2/SM4 against OpenSSL 3 on this machine, measured in the same run.
//!
//! SoftHSMv2 and p11-kit have no SM algorithms, so the peer here is the
//! `openssl speed` of the system's OpenSSL (3.0 on Debian 12: table-driven
//! SM4, its own SM2):
//! - **engine**: the SM4 cipher the daemon runs (`p11kms-sm4`, AES-NI
//!   kernels where the CPU has them) in this process, 4 KiB per operation,
//!   against `openssl speed -evp sm4-* -bytes 4096`; plus the crate's
//!   portable fallback for reference;
//! - **module**: SM2 signatures and verifications through libp11kms.so and
//!   the daemon (the `sm2-sign`/`sm2-verify` cases of this run, 1 thread)
//!   against `openssl speed sm2` in-process — a comparison that charges
//!   p11kms its socket round trips.

use std::process::Command;
use std::time::{Duration, Instant};

use p11kms_sm4::Sm4;
use serde::Serialize;

use crate::report::Row;

/// One comparison.
#[derive(Serialize, Debug)]
pub struct SmRow {
    pub name: String,
    /// "MB/s" or "ops/s".
    pub unit: &'static str,
    /// What p11kms measured, and on which path.
    pub p11kms: Option<f64>,
    pub p11kms_path: String,
    /// What `openssl speed` measured, and the command.
    pub openssl: Option<f64>,
    pub openssl_command: String,
    /// p11kms ÷ OpenSSL.
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

const BYTES: usize = 4096;
const BLOCKS: usize = BYTES / 16;

#[derive(Clone, Copy)]
enum Mode {
    CbcEncrypt,
    CbcDecrypt,
    Ctr,
    Ecb,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::CbcEncrypt => "SM4-CBC encrypt 4 KiB",
            Mode::CbcDecrypt => "SM4-CBC decrypt 4 KiB",
            Mode::Ctr => "SM4-CTR 4 KiB",
            Mode::Ecb => "SM4-ECB encrypt 4 KiB",
        }
    }

    fn openssl_args(self) -> Vec<&'static str> {
        match self {
            Mode::CbcEncrypt => vec!["-evp", "sm4-cbc"],
            Mode::CbcDecrypt => vec!["-decrypt", "-evp", "sm4-cbc"],
            Mode::Ctr => vec!["-evp", "sm4-ctr"],
            Mode::Ecb => vec!["-evp", "sm4-ecb"],
        }
    }

    /// One 4 KiB operation over `buf` with the cipher `c`.
    fn run(self, c: &Sm4, buf: &mut [[u8; 16]; BLOCKS], scratch: &mut [[u8; 16]; BLOCKS]) {
        match self {
            Mode::CbcEncrypt => {
                let mut iv = [7u8; 16];
                c.encrypt_cbc(&mut iv, buf);
            }
            Mode::CbcDecrypt => {
                scratch.copy_from_slice(buf);
                c.decrypt_blocks(buf);
                let mut prev = [7u8; 16];
                for (b, ct) in buf.iter_mut().zip(scratch.iter()) {
                    for (x, p) in b.iter_mut().zip(prev) {
                        *x ^= p;
                    }
                    prev = *ct;
                }
            }
            Mode::Ctr => {
                for (i, s) in scratch.iter_mut().enumerate() {
                    *s = [0u8; 16];
                    s[8..].copy_from_slice(&(i as u64).to_be_bytes());
                }
                c.encrypt_blocks(scratch);
                for (b, k) in buf.iter_mut().zip(scratch.iter()) {
                    for (x, y) in b.iter_mut().zip(k) {
                        *x ^= y;
                    }
                }
            }
            Mode::Ecb => c.encrypt_blocks(buf),
        }
    }
}

/// MB/s of `mode` on `c` over `duration`.
fn engine_mb_s(c: &Sm4, mode: Mode, duration: Duration) -> f64 {
    let mut buf = [[0x5au8; 16]; BLOCKS];
    let mut scratch = [[0u8; 16]; BLOCKS];
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < duration {
        for _ in 0..16 {
            mode.run(c, &mut buf, &mut scratch);
        }
        ops += 16;
    }
    std::hint::black_box(&buf);
    (ops as f64 * BYTES as f64) / start.elapsed().as_secs_f64() / 1e6
}

/// Runs `openssl speed` and returns its output, or why it could not.
fn openssl_speed(args: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .arg("speed")
        .args(args)
        .output()
        .map_err(|e| format!("openssl speed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last line of `openssl speed -evp ...`: "SM4-CBC  104855.54k"
/// (thousands of bytes per second) as MB/s.
fn parse_cipher(out: &str) -> Option<f64> {
    let last = out.lines().rev().find(|l| !l.trim().is_empty())?;
    let v = last.split_whitespace().last()?.strip_suffix('k')?;
    v.parse::<f64>().ok().map(|k| k / 1000.0)
}

/// "256 bits SM2 (CurveSM2)   0.0004s   0.0004s   2392.9   2806.1" as
/// (sign/s, verify/s).
fn parse_sm2(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().find(|l| l.contains("SM2"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let n = f.len();
    Some((
        f.get(n.checked_sub(2)?)?.parse().ok()?,
        f.get(n - 1)?.parse().ok()?,
    ))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The SM4 engine rows; `smoke` keeps to CBC encryption (one `openssl
/// speed` second).
pub fn engine_rows(duration: Duration, smoke: bool) -> Vec<SmRow> {
    let key = [0x42u8; 16];
    let fast = Sm4::new(&key);
    let portable = Sm4::portable(&key);
    let secs = if smoke {
        "1".to_string()
    } else {
        duration.as_secs().max(1).to_string()
    };
    let modes: &[Mode] = if smoke {
        &[Mode::CbcEncrypt]
    } else {
        &[Mode::CbcEncrypt, Mode::CbcDecrypt, Mode::Ctr, Mode::Ecb]
    };
    let mut rows = Vec::new();
    for &mode in modes {
        let mut args = vec!["-seconds", secs.as_str(), "-bytes", "4096"];
        args.extend(mode.openssl_args());
        let (openssl, note) = match openssl_speed(&args) {
            Ok(out) => match parse_cipher(&out) {
                Some(v) => (Some(v), None),
                None => (None, Some(format!("unparsed openssl output: {out:?}"))),
            },
            Err(e) => (None, Some(e)),
        };
        let ours = engine_mb_s(&fast, mode, duration);
        rows.push(SmRow {
            name: mode.name().to_string(),
            unit: "MB/s",
            p11kms: Some(ours),
            p11kms_path: format!("p11kms-sm4 {} in-process", fast.implementation()),
            openssl,
            openssl_command: format!("openssl speed {}", args.join(" ")),
            ratio: ratio(Some(ours), openssl),
            note,
        });
        if matches!(mode, Mode::CbcEncrypt | Mode::Ecb) {
            let p = engine_mb_s(&portable, mode, duration);
            rows.push(SmRow {
                name: format!("{} (portable fallback)", mode.name()),
                unit: "MB/s",
                p11kms: Some(p),
                p11kms_path: "p11kms-sm4 portable in-process".into(),
                openssl,
                openssl_command: format!("openssl speed {}", args.join(" ")),
                ratio: ratio(Some(p), openssl),
                note: None,
            });
        }
    }
    rows
}

/// SM2 through the module (this run's 1-thread `sm2-sign`/`sm2-verify`
/// rows) against `openssl speed sm2`; nothing if neither case ran.
pub fn sm2_rows(results: &[Row], duration: Duration) -> Vec<SmRow> {
    let find = |case: &str| {
        results
            .iter()
            .find(|r| r.case == case && r.peer == "p11kms" && r.threads == 1)
            .and_then(|r| r.summary.as_ref())
            .map(|s| s.ops_per_s)
    };
    let (sign, verify) = (find("sm2-sign"), find("sm2-verify"));
    if sign.is_none() && verify.is_none() {
        return Vec::new();
    }
    let secs = duration.as_secs().max(1).to_string();
    let args = ["-seconds", secs.as_str(), "sm2"];
    let (theirs, note) = match openssl_speed(&args) {
        Ok(out) => match parse_sm2(&out) {
            Some(v) => (Some(v), None),
            None => (None, Some(format!("unparsed openssl output: {out:?}"))),
        },
        Err(e) => (None, Some(e)),
    };
    let mut rows = Vec::new();
    for (name, ours, theirs) in [
        ("SM2 sign (CKM_SM3_SM2DSA)", sign, theirs.map(|t| t.0)),
        ("SM2 verify (CKM_SM3_SM2DSA)", verify, theirs.map(|t| t.1)),
    ] {
        rows.push(SmRow {
            name: name.into(),
            unit: "ops/s",
            p11kms: ours,
            p11kms_path: "libp11kms.so -> p11kmsd, 1 thread".into(),
            openssl: theirs,
            openssl_command: format!("openssl speed {}", args.join(" ")),
            ratio: ratio(ours, theirs),
            note: note.clone(),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssl_speed() {
        let cbc = "CPUINFO: x\nThe 'numbers' are in 1000s of bytes per second processed.\ntype           4096 bytes\nSM4-CBC         104855.54k\n";
        let mb = parse_cipher(cbc).expect("parsed");
        assert!((mb - 104.85554).abs() < 1e-9, "{mb}");
        let sm2 = "                              sign    verify    sign/s verify/s\n 256 bits SM2 (CurveSM2)   0.0004s   0.0004s   2392.9   2806.1\n";
        assert_eq!(parse_sm2(sm2), Some((2392.9, 2806.1)));
        assert_eq!(parse_cipher("garbage"), None);
    }

    #[test]
    fn engine_modes_round_trip() {
        // CBC decryption of CBC encryption, and CTR twice, give the input
        // back: the bench measures real work.
        let c = Sm4::new(&[1; 16]);
        let mut buf = [[3u8; 16]; BLOCKS];
        let mut scratch = [[0u8; 16]; BLOCKS];
        Mode::CbcEncrypt.run(&c, &mut buf, &mut scratch);
        assert_ne!(buf, [[3u8; 16]; BLOCKS]);
        Mode::CbcDecrypt.run(&c, &mut buf, &mut scratch);
        assert_eq!(buf, [[3u8; 16]; BLOCKS]);
        Mode::Ctr.run(&c, &mut buf, &mut scratch);
        Mode::Ctr.run(&c, &mut buf, &mut scratch);
        assert_eq!(buf, [[3u8; 16]; BLOCKS]);
    }
}
