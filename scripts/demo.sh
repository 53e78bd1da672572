#!/usr/bin/env bash
# The five-minute demo: build p11kms, start the daemon with its embedded
# software instance in a temp dir, and let pkcs11-tool (OpenSC), an unmodified
# PKCS#11 consumer, use it through the real module libp11kms.so.
#
#   scripts/demo.sh        # needs cargo, pkcs11-tool (opensc) and openssl
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\n\033[1m> %s\033[0m\n' "$*"; }

for tool in cargo pkcs11-tool openssl; do
  command -v "$tool" >/dev/null || { echo "demo.sh needs $tool (Debian: apt-get install opensc openssl; Rust via rustup)"; exit 1; }
done

say "Building p11kms (cargo build --release)"
cargo build --release --quiet
MODULE=$ROOT/target/release/libp11kms.so
DAEMON=$ROOT/target/release/p11kmsd
CLI=$ROOT/target/release/p11kms

WORK=$(mktemp -d "${TMPDIR:-/tmp}/p11kms-demo.XXXXXX")
export P11KMS_SOCKET=$WORK/p11kms.sock
DAEMON_PID=
cleanup() {
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
    echo "Stopped the daemon (SIGTERM)."
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "Starting p11kmsd: data in $WORK/data, socket $P11KMS_SOCKET"
"$DAEMON" --data-dir "$WORK/data" --socket "$P11KMS_SOCKET" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 100); do [ -S "$P11KMS_SOCKET" ] && break; sleep 0.1; done
[ -S "$P11KMS_SOCKET" ] || { echo "the daemon did not come up:"; cat "$WORK/daemon.log"; exit 1; }
echo "Daemon running (pid $DAEMON_PID). Every PKCS#11 call below goes module -> socket -> daemon."
if [ -x "$CLI" ]; then
  say "p11kms status"
  "$CLI" status --socket "$P11KMS_SOCKET" || true
fi

p11() { pkcs11-tool --module "$MODULE" "$@"; }
# pkcs11-tool warns each time it tries to print a sensitive key's value; that
# refusal is the point, so keep it out of the demo's output.
p11_quiet() { p11 "$@" 2>&1 | grep -v -e 'CKR_ATTRIBUTE_SENSITIVE' -e '^$'; }
LABEL=demo SO_PIN=12345678 PIN=1234

say "Initializing the token in slot 0 with label '$LABEL' and an SO PIN"
p11 --init-token --slot-index 0 --label "$LABEL" --so-pin "$SO_PIN"
say "Setting the user PIN (logged in as SO)"
p11 --token-label "$LABEL" --login --login-type so --so-pin "$SO_PIN" --init-pin --pin "$PIN"
p11 --list-token-slots

say "Generating an AES-256 key 'demo-key' (id 01) inside the daemon; it is private (only the logged-in user sees it) and sensitive (its value never leaves)"
p11_quiet --token-label "$LABEL" --login --pin "$PIN" --keygen --key-type AES:32 --label demo-key --id 01 --sensitive --private

printf 'Hello from p11kms! This file was encrypted by a key that lives in p11kmsd.\n' >"$WORK/hello.txt"
IV=00112233445566778899aabbccddeeff
say "Encrypting $(stat -c %s "$WORK/hello.txt") bytes with AES-CBC-PAD (IV $IV)"
p11 --token-label "$LABEL" --login --pin "$PIN" --encrypt -m AES-CBC-PAD --id 01 --iv "$IV" \
  -i "$WORK/hello.txt" -o "$WORK/hello.enc" 2>/dev/null
echo "Ciphertext ($(stat -c %s "$WORK/hello.enc") bytes):"
od -An -tx1 "$WORK/hello.enc" | head -n 3
say "Decrypting it again on the token"
p11 --token-label "$LABEL" --login --pin "$PIN" --decrypt -m AES-CBC-PAD --id 01 --iv "$IV" \
  -i "$WORK/hello.enc" -o "$WORK/hello.dec" 2>/dev/null
if cmp -s "$WORK/hello.txt" "$WORK/hello.dec"; then
  echo "Round trip OK: $(cat "$WORK/hello.dec")"
else
  echo "Round trip FAILED: decrypted text differs"; exit 1
fi

say "Storing a data object 'demo-note' on the token and reading it back"
printf 'a secret note kept by p11kms\n' >"$WORK/note.txt"
p11 --token-label "$LABEL" --login --pin "$PIN" --write-object "$WORK/note.txt" --type data --label demo-note --private
p11 --token-label "$LABEL" --login --pin "$PIN" --read-object --type data --label demo-note -o "$WORK/note.out"
if cmp -s "$WORK/note.txt" "$WORK/note.out"; then
  echo "Data object reads back: $(cat "$WORK/note.out")"
else
  echo "Data object FAILED to read back"; exit 1
fi

say "Objects on the token now"
p11_quiet --token-label "$LABEL" --login --pin "$PIN" --list-objects

say "Done. The daemon stops now; its data dir (encrypted SQLite) is removed with the temp dir."
