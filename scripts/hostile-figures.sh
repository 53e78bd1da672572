#!/usr/bin/env bash
# Hostile-client figures for docs/reliability.md ("Hostile clients"): the
# daemon's peak RSS and thread count, and an honest client's
# C_GenerateRandom latency (p50/p99/max, through the real module), first
# without and then with 1,000 hostile connections held open (80 MiB length
# announcements sending 1 byte, silent connections and slow senders, before
# and after the handshake). Prints a markdown table.
#
#   scripts/hostile-figures.sh            # 20 s per phase
#   HOSTILE_SECS=60 HOSTILE_CONNECTIONS=2000 scripts/hostile-figures.sh
#
# Needs root (it raises its descriptor limit) and the release build
# (cargo build --release -p p11kmsd -p p11kms).
set -euo pipefail
cd "$(dirname "$0")/.."
export HOSTILE_SECS=${HOSTILE_SECS:-20}
export HOSTILE_CONNECTIONS=${HOSTILE_CONNECTIONS:-1000}
echo "host: $(nproc) CPUs, $(uname -r); $HOSTILE_CONNECTIONS hostile connections, $HOSTILE_SECS s per phase"
cargo test --release -q -p p11kms-e2e --test hostile -- --ignored hostile_figures --nocapture --test-threads=1 2>&1 |
  grep -E '^\||^\(opening|^host' || { echo "hostile_figures failed" >&2; exit 1; }
