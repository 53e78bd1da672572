#!/usr/bin/env bash
# Shared helpers for the conformance scripts. Source it, do not run it.
#
#   . "$(dirname "$0")/lib.sh"
#   start_daemon            # p11kmsd in a fresh temp dir, P11KMS_SOCKET exported
#   check "what" cmd args   # PASS/FAIL line from the command's exit status
#   check_eq "what" A B     # PASS/FAIL line from comparing two strings
#   check_same "what" F1 F2 # PASS/FAIL line from comparing two files
#   restart_daemon          # SIGTERM, wait, start again on the same data dir
#   finish                  # "N passed, N failed", exit status 1 on failure
#   skip "what" "reason"    # SKIP line (not counted): a genuine environment limit
#   at_exit cmd args        # run at exit, before the temp dir goes (LIFO)
#   install_p11kit_module   # p11-kit module file for $MODULE, removed at exit
#   init_token L SO PIN     # token and user PIN set-up with pkcs11-tool
#
# Environment:
#   TARGET       p11kms (default) or softhsm: the module under test. softhsm
#                runs the same script against SoftHSMv2, the reference module,
#                which has no daemon (start/stop/restart only set up its
#                token directory; a "restart" is a fresh process anyway).
#   P11KMS_PROFILE  release (default) or debug: which target/ dir to use.
#   MODULE, P11KMS_DAEMON  override the module / daemon path.
#   KEEP_WORK=1  keep the temp dir (daemon log, files) after the run.

set -uo pipefail

CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CONF_DIR/.." && pwd)
TARGET=${TARGET:-p11kms}
PROFILE=${P11KMS_PROFILE:-release}

case "$TARGET" in
  p11kms)
    MODULE=${MODULE:-${P11KMS_MODULE:-$ROOT/target/$PROFILE/libp11kms.so}}
    DAEMON=${P11KMS_DAEMON:-$ROOT/target/$PROFILE/p11kmsd}
    ;;
  softhsm)
    MODULE=${MODULE:-/usr/lib/softhsm/libsofthsm2.so}
    DAEMON=
    ;;
  *) echo "lib.sh: unknown TARGET=$TARGET (p11kms or softhsm)" >&2; exit 2 ;;
esac
export MODULE TARGET

WORK=$(mktemp -d "${TMPDIR:-/tmp}/p11kms-conf.XXXXXX")
DATA_DIR=$WORK/data
SOCKET=$WORK/p11kms.sock
DAEMON_LOG=$WORK/daemon.log
DAEMON_PID=
PASSED=0
FAILED=0
SCRIPT_NAME=$(basename "$0")

# --- output -----------------------------------------------------------------

say() { printf '%s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }

pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$1"; }
fail() {
  FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$1"
  shift
  [ $# -gt 0 ] && printf '      %s\n' "$@"
  return 0
}

# check "description" command [args...]: runs the command, output to
# $WORK/last.out; PASS if it exits 0. On FAIL the output tail is shown.
check() {
  local what=$1; shift
  if "$@" >"$WORK/last.out" 2>&1; then
    pass "$what"
  else
    local rc=$?
    fail "$what" "command: $*" "exit: $rc"
    sed 's/^/      | /' "$WORK/last.out" | tail -n 15
  fi
}

# check_fails "description" command...: PASS if the command exits non-zero
# (for operations that must be refused). Optional: CHECK_OUTPUT_RE=regex must
# match its output too (e.g. the CKR name).
check_fails() {
  local what=$1; shift
  if "$@" >"$WORK/last.out" 2>&1; then
    fail "$what" "command unexpectedly succeeded: $*"
    sed 's/^/      | /' "$WORK/last.out" | tail -n 15
  elif [ -n "${CHECK_OUTPUT_RE:-}" ] && ! grep -Eq "$CHECK_OUTPUT_RE" "$WORK/last.out"; then
    fail "$what" "failed, but output does not match /$CHECK_OUTPUT_RE/"
    sed 's/^/      | /' "$WORK/last.out" | tail -n 15
  else
    pass "$what"
  fi
}

# skip "what" "reason": a SKIP line, counted neither as PASS nor FAIL. Only
# for genuine limits of the environment or of the reference module.
skip() { printf 'SKIP  %s\n' "$1"; [ $# -gt 1 ] && printf '      %s\n' "${@:2}"; return 0; }

check_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $3" "got:      $2"; fi
}

check_same() {
  if [ -f "$2" ] && [ -f "$3" ] && cmp -s "$2" "$3"; then
    pass "$1"
  else
    fail "$1" "files differ: $2 ($(stat -c %s "$2" 2>/dev/null || echo missing) bytes) vs $3 ($(stat -c %s "$3" 2>/dev/null || echo missing) bytes)"
  fi
}

check_differ() {
  if [ -f "$2" ] && [ -f "$3" ] && ! cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "files are equal or missing: $2 $3"; fi
}

# --- daemon -------------------------------------------------------------------

start_daemon() {
  if [ "$TARGET" = softhsm ]; then
    mkdir -p "$WORK/softhsm/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
      "$WORK/softhsm/tokens" >"$WORK/softhsm/softhsm2.conf"
    export SOFTHSM2_CONF=$WORK/softhsm/softhsm2.conf
    return 0
  fi
  if [ ! -x "$DAEMON" ]; then
    echo "lib.sh: daemon binary not found: $DAEMON (run cargo build --release)" >&2
    return 1
  fi
  mkdir -p "$DATA_DIR"
  echo "--- start $(date +%T)" >>"$DAEMON_LOG"
  "$DAEMON" --data-dir "$DATA_DIR" --socket "$SOCKET" >>"$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  export P11KMS_SOCKET=$SOCKET
  local i
  for i in $(seq 1 100); do
    if [ -S "$SOCKET" ]; then return 0; fi
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      echo "lib.sh: p11kmsd exited during start-up; log:" >&2
      tail -n 20 "$DAEMON_LOG" >&2
      DAEMON_PID=
      return 1
    fi
    sleep 0.1
  done
  echo "lib.sh: socket $SOCKET did not appear within 10 s; log:" >&2
  tail -n 20 "$DAEMON_LOG" >&2
  return 1
}

# stop_daemon [SIGNAL]: default TERM (clean); KILL for crash tests.
stop_daemon() {
  local sig=${1:-TERM}
  [ "$TARGET" = softhsm ] && return 0
  [ -n "$DAEMON_PID" ] || return 0
  kill -"$sig" "$DAEMON_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$DAEMON_PID" 2>/dev/null; then
    echo "lib.sh: p11kmsd did not stop within 10 s of SIG$sig; killing it" >&2
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
  fi
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=
  # After SIGKILL the socket file stays behind; the next start must cope, but
  # do not hide a clean-shutdown bug: only remove it for KILL.
  [ "$sig" = KILL ] && rm -f "$SOCKET"
  return 0
}

restart_daemon() {
  stop_daemon "${1:-TERM}"
  start_daemon
}

# at_exit CMD ARGS...: run CMD at exit (last registered runs first).
AT_EXIT=()
at_exit() { AT_EXIT+=("$(printf '%q ' "$@")"); }
run_at_exit() {
  local i
  for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do eval "${AT_EXIT[$i]}" || true; done
  AT_EXIT=()
}

cleanup() {
  run_at_exit
  stop_daemon
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$FAILED" -gt 0 ]; then
    echo "(work dir kept: $WORK)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# finish: summary line and exit status.
finish() {
  if [ "$FAILED" -gt 0 ] && [ -s "$DAEMON_LOG" ]; then
    echo "--- daemon log tail ($DAEMON_LOG)"
    tail -n 30 "$DAEMON_LOG" | sed 's/^/      | /'
  fi
  echo
  echo "$SCRIPT_NAME: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit $?
}

# --- consumers ----------------------------------------------------------------

# install_p11kit_module: a p11-kit module file pointing at $MODULE, so that
# p11-kit-aware consumers (libp11's engine without MODULE_PATH, GnuTLS,
# systemd-cryptenroll) find the module by themselves. p11-kit ignores user
# config (~/.config/pkcs11/modules) when running as root, so as root the file
# goes to /etc/pkcs11/modules (the admin directory, created if missing) under
# a per-run name; otherwise HOME is pointed at $WORK/home and the file is
# user config there. Either way it is removed at exit. Sets P11KIT_MODULE_FILE.
install_p11kit_module() {
  local dir name="p11kms-conformance-$$"
  if [ "$(id -u)" -eq 0 ]; then
    dir=/etc/pkcs11/modules
    if [ ! -d /etc/pkcs11 ]; then
      mkdir -p "$dir" || return 1
      at_exit rmdir "$dir" /etc/pkcs11
    elif [ ! -d "$dir" ]; then
      mkdir "$dir" || return 1
      at_exit rmdir "$dir"
    fi
  else
    export HOME=$WORK/home
    dir=$HOME/.config/pkcs11/modules
    mkdir -p "$dir" || return 1
  fi
  P11KIT_MODULE_FILE=$dir/$name.module
  printf 'module: %s\n' "$MODULE" >"$P11KIT_MODULE_FILE" || return 1
  at_exit rm -f "$P11KIT_MODULE_FILE"
  export P11KIT_MODULE_FILE
}

# p11 ARGS...: pkcs11-tool against the module under test.
p11() { pkcs11-tool --module "$MODULE" "$@"; }

# init_token LABEL SO_PIN PIN: initialise the first slot's token and its user
# PIN with pkcs11-tool (PASS/FAIL lines).
init_token() {
  check "init token $1" p11 --init-token --slot-index 0 --label "$1" --so-pin "$2"
  check "init user PIN of $1" p11 --token-label "$1" --login --login-type so --so-pin "$2" --init-pin --pin "$3"
}

hex_of() { od -An -v -tx1 "$1" | tr -d ' \n'; }
