//! Runs `p11kms-bench --smoke` once so that the benchmark cannot rot: every
//! case for ~50 ms on one thread. Performance is not judged here (no timing
//! assertions); the run fails only on a set-up failure or a case failing
//! unexpectedly. Needs p11kmsd and libp11kms.so next to the bench binary
//! (`cargo build --release --workspace` before `cargo test --release`), and
//! SoftHSMv2 + p11-kit for the peers (without them, p11kms alone is run).

use std::path::Path;
use std::process::Command;

#[test]
fn smoke_run_of_every_case() {
    let exe = Path::new(env!("CARGO_BIN_EXE_p11kms-bench"));
    let dir = exe.parent().expect("bench binary has a parent directory");
    for f in ["p11kmsd", "libp11kms.so"] {
        assert!(
            dir.join(f).exists(),
            "{} missing: build the workspace (cargo build --release --workspace) first",
            dir.join(f).display()
        );
    }
    let softhsm = Path::new("/usr/lib/softhsm/libsofthsm2.so").exists();
    let p11kit =
        softhsm && Path::new("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so").exists();
    let peers = match (softhsm, p11kit) {
        (true, true) => "softhsm,p11kit",
        (true, false) => "softhsm",
        _ => "none",
    };
    let out = Command::new(exe)
        .args(["--smoke", "--json", "--peers", peers])
        .output()
        .expect("run p11kms-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "p11kms-bench --smoke failed ({}):\n{stderr}",
        out.status
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints JSON on stdout");
    let results = json["results"].as_array().expect("results array");
    // every default case appears for every peer, as ok or n/a with a reason
    // (25 cases with one row each, mixed64 with two: 2 threads and 64)
    let npeers = 1 + peers.split(',').filter(|p| *p != "none").count();
    assert_eq!(
        results.len(),
        27 * npeers,
        "one row per case and peer:\n{stderr}"
    );
    for r in results {
        let status = r["status"].as_str().unwrap_or("");
        assert!(status == "ok" || status == "n/a", "unexpected row {r}");
        if status == "n/a" {
            assert!(
                r["reason"].as_str().is_some_and(|s| !s.is_empty()),
                "n/a without reason: {r}"
            );
        }
    }
    // p11kms itself runs at least the basic per-call cases
    for case in [
        "session",
        "random32",
        "find1k",
        "gcm4k",
        "ecb4k",
        "aes-keygen",
        "wrap",
        "sm2-sign",
        "sm2-verify",
        "sm4-cbc4k",
        "envelope4k",
        "mixed64",
    ] {
        assert!(
            results
                .iter()
                .any(|r| r["case"] == case && r["peer"] == "p11kms" && r["status"] == "ok"),
            "{case} did not run on p11kms:\n{stderr}"
        );
    }
    // mixed64 ran in 8 worker processes x 8 threads and was reported
    assert!(
        results
            .iter()
            .any(|r| r["case"] == "mixed64" && r["threads"] == 64 && r["status"] == "ok"),
        "mixed64 with 64 threads did not run:\n{stderr}"
    );
    assert_eq!(
        json["mixed"]["processes"], 8,
        "mixed report: {}",
        json["mixed"]
    );
    assert!(
        json["mixed"]["many"]["ops"].as_u64().unwrap_or(0) > 0,
        "mixed report: {}",
        json["mixed"]
    );
}
