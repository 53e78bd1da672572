#!/usr/bin/env bash
# LUKS2 disk encryption through systemd-cryptenroll (package systemd) and
# cryptsetup's systemd-pkcs11 token plugin, on an image file (no device
# mapper: only --test-passphrase). The token holds an RSA-2048 key pair and a
# certificate for it under the same CKA_ID; systemd-cryptenroll finds the
# module through a p11-kit module file, encrypts a fresh volume secret to the
# certificate's key and stores it in the LUKS2 header; cryptsetup then
# unlocks with the token and the PIN alone. The stored blob is also decrypted
# with pkcs11-tool and its secret opens the key slot directly.
. "$(dirname "$0")/lib.sh"

LABEL=luks-token
SO_PIN=87654321
PIN=123456
IMG=$WORK/luks.img

for t in cryptsetup systemd-cryptenroll; do
  command -v "$t" >/dev/null ||
    { fail "$t on PATH" "install cryptsetup-bin and systemd (systemd-cryptenroll, cryptsetup token plugin)"; finish; }
done
PLUGIN=$(ls /usr/lib/*/cryptsetup/libcryptsetup-token-systemd-pkcs11.so /usr/lib/cryptsetup/libcryptsetup-token-systemd-pkcs11.so 2>/dev/null | head -n 1)
[ -n "$PLUGIN" ] || { fail "cryptsetup systemd-pkcs11 token plugin present" "install systemd"; finish; }

start_daemon || { fail "daemon starts"; finish; }
init_token "$LABEL" "$SO_PIN" "$PIN"
user() { p11 --token-label "$LABEL" --login --pin "$PIN" "$@"; }

section "RSA key and its certificate on the token"
check "generate RSA-2048 key pair (id 10)" user --keypairgen --key-type rsa:2048 --id 10 --label luks
check "export its public key" bash -c \
  "pkcs11-tool --module '$MODULE' --token-label '$LABEL' --read-object --type pubkey --id 10 -o '$WORK/pub.der' &&
   openssl pkey -pubin -inform DER -in '$WORK/pub.der' -out '$WORK/pub.pem'"
# A certificate for the token's public key, issued by a throwaway software CA
# (openssl x509 -force_pubkey): what an enterprise CA would hand back.
openssl req -new -x509 -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -subj "/CN=p11kms test CA" \
  -days 30 -out "$WORK/ca.pem" >/dev/null 2>&1
check "certificate for the token key (openssl x509 -req -force_pubkey)" bash -c \
  "openssl req -new -key '$WORK/ca.key' -subj '/CN=p11kms luks' -out '$WORK/tmp.csr' &&
   openssl x509 -req -in '$WORK/tmp.csr' -CA '$WORK/ca.pem' -CAkey '$WORK/ca.key' -CAcreateserial \
     -force_pubkey '$WORK/pub.pem' -days 30 -outform DER -out '$WORK/cert.der'"
check "write it next to the key (--write-object --type cert --id 10)" \
  user --write-object "$WORK/cert.der" --type cert --id 10 --label luks
check "read back equal" bash -c \
  "pkcs11-tool --module '$MODULE' --token-label '$LABEL' --read-object --type cert --id 10 -o '$WORK/cert-read.der' >/dev/null 2>&1 &&
   cmp -s '$WORK/cert-read.der' '$WORK/cert.der'"

section "p11-kit module file"
if install_p11kit_module; then pass "p11-kit module file installed ($P11KIT_MODULE_FILE)"; else fail "p11-kit module file installed"; fi
p11-kit list-modules >"$WORK/p11kit.txt" 2>&1
check "p11-kit sees the token" grep -q "token: $LABEL" "$WORK/p11kit.txt"

section "LUKS2 image and systemd-cryptenroll --pkcs11-token-uri"
truncate -s 40M "$IMG"
printf 'initial passphrase %s' "$RANDOM$RANDOM" >"$WORK/pass"
check "cryptsetup luksFormat (LUKS2, image file)" \
  cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file "$WORK/pass" "$IMG"
URI="pkcs11:token=$LABEL;id=%10"
check "systemd-cryptenroll --pkcs11-token-uri='$URI'" \
  env PASSWORD="$(cat "$WORK/pass")" PIN="$PIN" timeout 120 systemd-cryptenroll --pkcs11-token-uri="$URI" "$IMG"
cryptsetup token export --token-id 0 "$IMG" >"$WORK/token.json" 2>&1
check "LUKS2 header has a systemd-pkcs11 token with our URI" bash -c \
  "grep -q '\"type\":\"systemd-pkcs11\"' '$WORK/token.json' && grep -qF '\"pkcs11-uri\":\"$URI\"' '$WORK/token.json'"
KEYSLOT=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keyslots"][0])' "$WORK/token.json" 2>/dev/null)

section "unlock with the token"
check "cryptsetup open --test-passphrase --token-only (PIN on stdin)" bash -c \
  "printf %s '$PIN' | timeout 120 cryptsetup open --test-passphrase --token-only --token-type systemd-pkcs11 -v '$IMG'"
cp "$WORK/last.out" "$WORK/unlock.out"
check "it unlocked the enrolled key slot ($KEYSLOT)" grep -q "Key slot $KEYSLOT unlocked" "$WORK/unlock.out"
# The blob is the volume secret encrypted (RSA PKCS#1 v1.5) to the
# certificate's key; systemd uses base64(secret) as the slot's passphrase.
/usr/bin/python3 -c 'import json,sys,base64; sys.stdout.buffer.write(base64.b64decode(json.load(open(sys.argv[1]))["pkcs11-key"]))' \
  "$WORK/token.json" >"$WORK/blob.bin" 2>/dev/null
check_eq "encrypted secret is one RSA-2048 block (256 bytes)" "$(stat -c %s "$WORK/blob.bin")" 256
check "pkcs11-tool --decrypt -m RSA-PKCS of the stored blob" \
  user --decrypt -m RSA-PKCS --id 10 -i "$WORK/blob.bin" -o "$WORK/secret.bin"
base64 -w0 "$WORK/secret.bin" >"$WORK/secret.b64"
check "base64 of that secret opens key slot $KEYSLOT directly" \
  cryptsetup open --test-passphrase --key-slot "$KEYSLOT" --key-file "$WORK/secret.b64" "$IMG"
check "the initial passphrase still opens key slot 0" \
  cryptsetup open --test-passphrase --key-slot 0 --key-file "$WORK/pass" "$IMG"

if [ "$TARGET" = p11kms ]; then
  section "after a daemon restart"
  if restart_daemon; then pass "daemon restarted on the same data dir"; else fail "daemon restarts"; finish; fi
  check "token unlock still works" bash -c \
    "printf %s '$PIN' | timeout 120 cryptsetup open --test-passphrase --token-only --token-type systemd-pkcs11 -v '$IMG'"
fi

section "wrong PIN"
CHECK_OUTPUT_RE='No token could be unlocked|incorrect' check_fails "a wrong PIN does not unlock" \
  bash -c "printf %s 000000 | timeout 120 cryptsetup open --test-passphrase --token-only --token-type systemd-pkcs11 -v '$IMG'"
check "the right PIN works again afterwards" bash -c \
  "printf %s '$PIN' | timeout 120 cryptsetup open --test-passphrase --token-only --token-type systemd-pkcs11 -v '$IMG'"

finish
