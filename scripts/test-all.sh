#!/usr/bin/env bash
# Runs every test of p11kms: unit tests, the end-to-end tests in tests/ (the
# built libp11kms.so through cryptoki against a daemon they start), and every
# consumer script in conformance/. Installs the Debian packages the consumer
# scripts need when some are missing (as root, or through sudo).
#
#   scripts/test-all.sh            # from anywhere; works in the repo root
#
# Ends with a line "N passed, N failed"; exits non-zero if anything failed.
# Environment: P11KMS_SKIP_INSTALL=1 skips the package step;
# P11KMS_CONFORMANCE="pkcs11-tool.sh ..." runs only those conformance scripts.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/p11kms-test-all.XXXXXX")
START=$(date +%s)
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
SUMMARY=()

PACKAGES=(opensc softhsm2 p11-kit libnss3-tools libengine-pkcs11-openssl gnutls-bin
          cryptsetup-bin python3-pykcs11 systemd)
# What building the workspace needs on a bare Debian 12 (C compiler for the
# bundled SQLite and aws-lc, curl for rustup when there is no cargo yet).
BUILD_PACKAGES=(build-essential pkg-config curl ca-certificates)

banner() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }

# record NAME PASSED FAILED SECONDS [SKIPPED]: a step that ran checks. A
# step with no passed and no failed check shows as "skip", never as "ok".
record() {
  TOTAL_PASSED=$((TOTAL_PASSED + $2))
  TOTAL_FAILED=$((TOTAL_FAILED + $3))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + ${5:-0}))
  local mark=ok extra=
  [ "$2" -eq 0 ] && [ "$3" -eq 0 ] && mark=skip
  [ "$3" -gt 0 ] && mark=FAIL
  [ "${5:-0}" -gt 0 ] && extra=", ${5} skipped"
  SUMMARY+=("$(printf '%-4s  %-34s %4d passed, %3d failed%s  (%ss)' "$mark" "$1" "$2" "$3" "$extra" "$4")")
}

# setup NAME OK SECONDS [NOTE]: a set-up step (packages, build). Shown in the
# summary, never counted as a passed check; a failed set-up counts as one
# failure so the run cannot end green.
setup() {
  local mark=done
  if [ "$2" -ne 0 ]; then mark=FAIL; TOTAL_FAILED=$((TOTAL_FAILED + 1)); fi
  SUMMARY+=("$(printf '%-4s  %-34s set-up%s  (%ss)' "$mark" "$1" "${4:+, $4}" "$3")")
}

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "need root (or sudo) for: $*" >&2; return 1
  fi
}

step_packages() {
  banner "Debian packages"
  local t0=$SECONDS missing=() p
  if [ "${P11KMS_SKIP_INSTALL:-0}" = 1 ] || ! command -v dpkg-query >/dev/null; then
    echo "skipped (P11KMS_SKIP_INSTALL=1 or not a Debian system)"
    setup "packages" 0 0 "not checked"
    return 0
  fi
  for p in "${PACKAGES[@]}"; do is_installed "$p" || missing+=("$p"); done
  if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    for p in "${BUILD_PACKAGES[@]}"; do is_installed "$p" || missing+=("$p"); done
  elif ! command -v cc >/dev/null; then
    missing+=(build-essential)
  fi
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all present: ${PACKAGES[*]}"
    setup "packages" 0 $((SECONDS - t0)) "all present"
    return 0
  fi
  echo "installing: ${missing[*]}"
  if as_root apt-get update -qq >"$LOGS/apt.log" 2>&1 &&
     as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       "${missing[@]}" >>"$LOGS/apt.log" 2>&1; then
    setup "packages" 0 $((SECONDS - t0)) "installed ${#missing[@]}"
  else
    tail -n 20 "$LOGS/apt.log"
    setup "packages" 1 $((SECONDS - t0))
  fi
}

step_toolchain() {
  if command -v cargo >/dev/null; then return 0; fi
  if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; return 0; fi
  banner "Rust toolchain (rustup, stable, minimal profile)"
  # Debian 12's rustc (1.63) is older than the workspace's rust-version.
  if curl -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal >"$LOGS/rustup.log" 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    tail -n 20 "$LOGS/rustup.log"
  fi
}

step_build() {
  banner "cargo build --release --workspace"
  local t0=$SECONDS
  if cargo build --release --workspace 2>&1 | tee "$LOGS/build.log" | grep -E '^(error|warning: unused)|Finished|Compiling p11kms'; then :; fi
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then
    setup "cargo build --release" 0 $((SECONDS - t0))
    return 0
  fi
  grep -E -A 12 '^error' "$LOGS/build.log" | head -n 80
  setup "cargo build --release" 1 $((SECONDS - t0))
  return 1
}

step_cargo_test() {
  banner "cargo test --release --workspace --no-fail-fast (unit + end-to-end)"
  local t0=$SECONDS rc p f i
  export P11KMS_MODULE="$ROOT/target/release/libp11kms.so"
  export P11KMS_DAEMON="$ROOT/target/release/p11kmsd"
  export P11KMS_CLI="$ROOT/target/release/p11kms"
  timeout 1200 cargo test --release --workspace --no-fail-fast 2>&1 | tee "$LOGS/cargo-test.log" |
    grep -E '^(test |     Running|failures:|---- )|test result:|panicked|error(\[|:)'
  rc=${PIPESTATUS[0]}
  read -r p f i < <(awk '/^test result:/ { for (i = 1; i < NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i
      if ($(i+1) ~ /^ignored/) g += $i } }
      END { print p + 0, f + 0, g + 0 }' "$LOGS/cargo-test.log")
  p=${p:-0}; f=${f:-0}; i=${i:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "cargo test exited $rc (build failure, crash or timeout; see $LOGS/cargo-test.log)"
    f=1
  fi
  record "cargo test" "$p" "$f" $((SECONDS - t0)) "$i"
}

# run_conformance NAME COMMAND...: the script prints PASS/FAIL lines and ends
# with "NAME: N passed, N failed".
run_conformance() {
  local name=$1; shift
  banner "conformance/$name"
  local t0=$SECONDS rc p f s log="$LOGS/conformance-$name.log"
  timeout 900 "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(sed -n 's/.*: \([0-9]\+\) passed, \([0-9]\+\) failed$/\1/p' "$log" | tail -n 1)
  f=$(sed -n 's/.*: \([0-9]\+\) passed, \([0-9]\+\) failed$/\2/p' "$log" | tail -n 1)
  p=${p:-0}; f=${f:-0}
  s=$(grep -c '^SKIP ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "$name exited $rc without reporting a failure (crash or timeout)"
    f=1
  fi
  record "conformance/$name" "$p" "$f" $((SECONDS - t0)) "$s"
}

step_packages
step_toolchain
if step_build; then
  step_cargo_test
  for s in conformance/*.sh; do
    n=$(basename "$s")
    [ "$n" = lib.sh ] && continue
    if [ -n "${P11KMS_CONFORMANCE:-}" ] && [[ " $P11KMS_CONFORMANCE " != *" $n "* ]]; then continue; fi
    run_conformance "$n" bash "$s"
  done
  for s in conformance/*.py; do
    [ -e "$s" ] || continue
    n=$(basename "$s")
    if [ -n "${P11KMS_CONFORMANCE:-}" ] && [[ " $P11KMS_CONFORMANCE " != *" $n "* ]]; then continue; fi
    # Debian's interpreter, where python3-pykcs11 lives (not a pyenv/venv python).
    run_conformance "$n" /usr/bin/python3 "$s"
  done
fi

banner "summary ($(( $(date +%s) - START ))s, logs in $LOGS)"
for line in "${SUMMARY[@]}"; do echo "$line"; done
echo
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
[ "$TOTAL_FAILED" -eq 0 ]
