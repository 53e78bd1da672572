#!/usr/bin/env bash
# pkcs11-tool (OpenSC) driving the module: token and PIN set-up, AES-256 keys,
# AES-CBC-PAD checked against `openssl enc`, AES key wrap checked against
# `openssl enc -id-aes256-wrap`, data objects, sensitive keys, and everything
# again after the daemon restarts.
. "$(dirname "$0")/lib.sh"

LABEL=conf-token
SO_PIN=87654321
PIN=123456
IV=000102030405060708090a0b0c0d0e0f
IV2=f0e0d0c0b0a090807060504030201000

start_daemon || { fail "daemon starts"; finish; }
user() { p11 --token-label "$LABEL" --login --pin "$PIN" "$@"; }

section "token and PIN set-up"
check "init token" p11 --init-token --slot-index 0 --label "$LABEL" --so-pin "$SO_PIN"
check "init user PIN (SO login)" p11 --token-label "$LABEL" --login --login-type so --so-pin "$SO_PIN" --init-pin --pin "$PIN"
p11 --list-token-slots >"$WORK/slots.txt" 2>&1
if grep -q "token label *: *$LABEL" "$WORK/slots.txt" && grep -q "PIN initialized" "$WORK/slots.txt"; then
  pass "token listed with its label and PIN initialized"
else
  fail "token listed with its label and PIN initialized"; sed 's/^/      | /' "$WORK/slots.txt"
fi
CHECK_OUTPUT_RE='CKR_PIN_INCORRECT' check_fails "wrong user PIN refused with CKR_PIN_INCORRECT" \
  p11 --token-label "$LABEL" --login --pin 000000 --list-objects
check "user login with the right PIN" user --list-objects
check "change user PIN and back" bash -c "
  pkcs11-tool --module '$MODULE' --token-label '$LABEL' --login --pin '$PIN' --change-pin --new-pin 654321 &&
  pkcs11-tool --module '$MODULE' --token-label '$LABEL' --login --pin 654321 --change-pin --new-pin '$PIN'"

section "AES-256 keys"
check "generate extractable AES-256 key (id 01)" user --keygen --key-type AES:32 --label aes-ext --id 01 --extractable
check "generate sensitive AES-256 key (id 02)" user --keygen --key-type AES:32 --label aes-sens --id 02 --sensitive
check "read value of extractable key" user --read-object --type secrkey --id 01 -o "$WORK/k01.bin"
check_eq "extractable key value is 32 bytes" "$(stat -c %s "$WORK/k01.bin" 2>/dev/null)" 32
CHECK_OUTPUT_RE='CKR_ATTRIBUTE_SENSITIVE|get CKA_VALUE failed' check_fails \
  "reading the sensitive key's value is refused (CKR_ATTRIBUTE_SENSITIVE)" \
  user --read-object --type secrkey --id 02 -o "$WORK/k02.bin"
if [ -s "$WORK/k02.bin" ]; then fail "no key bytes written for the sensitive key"; else pass "no key bytes written for the sensitive key"; fi
K01=$(hex_of "$WORK/k01.bin")

section "AES-CBC-PAD against openssl enc"
head -c 1000 /dev/urandom >"$WORK/pt.bin"
check "encrypt 1000 bytes with AES-CBC-PAD on the token" \
  user --encrypt -m AES-CBC-PAD --id 01 --iv "$IV" -i "$WORK/pt.bin" -o "$WORK/ct.bin"
openssl enc -aes-256-cbc -K "$K01" -iv "$IV" -in "$WORK/pt.bin" -out "$WORK/ct-openssl.bin"
check_same "token ciphertext equals openssl enc -aes-256-cbc" "$WORK/ct.bin" "$WORK/ct-openssl.bin"
check "decrypt on the token" user --decrypt -m AES-CBC-PAD --id 01 --iv "$IV" -i "$WORK/ct.bin" -o "$WORK/rt.bin"
check_same "round trip gives the plaintext back" "$WORK/rt.bin" "$WORK/pt.bin"
# openssl encrypts, the token decrypts: a different IV and an odd length
head -c 77 /dev/urandom >"$WORK/pt2.bin"
openssl enc -aes-256-cbc -K "$K01" -iv "$IV2" -in "$WORK/pt2.bin" -out "$WORK/ct2.bin"
check "token decrypts openssl's ciphertext" user --decrypt -m AES-CBC-PAD --id 01 --iv "$IV2" -i "$WORK/ct2.bin" -o "$WORK/rt2.bin"
check_same "openssl -> token plaintext matches" "$WORK/rt2.bin" "$WORK/pt2.bin"
check "sensitive key encrypts" user --encrypt -m AES-CBC-PAD --id 02 --iv "$IV" -i "$WORK/pt.bin" -o "$WORK/ct-sens.bin"
check "sensitive key decrypts" user --decrypt -m AES-CBC-PAD --id 02 --iv "$IV" -i "$WORK/ct-sens.bin" -o "$WORK/rt-sens.bin"
check_same "sensitive key round trip" "$WORK/rt-sens.bin" "$WORK/pt.bin"
check_differ "different keys give different ciphertexts" "$WORK/ct.bin" "$WORK/ct-sens.bin"

section "AES key wrap (RFC 3394)"
check "wrap key 01 under the sensitive key 02" \
  user --wrap -m AES-KEY-WRAP --id 02 --application-id 01 -o "$WORK/wrapped-by-02.bin"
check_eq "wrapped AES-256 key is 40 bytes" "$(stat -c %s "$WORK/wrapped-by-02.bin" 2>/dev/null)" 40
check "unwrap it as a new token key (id 03)" \
  user --unwrap -m AES-KEY-WRAP --id 02 -i "$WORK/wrapped-by-02.bin" --key-type AES: \
  --application-id 03 --application-label aes-unwrapped --extractable
check "read value of the unwrapped key" user --read-object --type secrkey --id 03 -o "$WORK/k03.bin"
check_same "unwrapped key has the original value" "$WORK/k03.bin" "$WORK/k01.bin"
check "unwrapped key encrypts" user --encrypt -m AES-CBC-PAD --id 03 --iv "$IV" -i "$WORK/pt.bin" -o "$WORK/ct03.bin"
check_same "unwrapped key encrypts like the original" "$WORK/ct03.bin" "$WORK/ct.bin"
# Known KEK: wrap key 01 under itself and unwrap with openssl.
check "wrap key 01 under itself" user --wrap -m AES-KEY-WRAP --id 01 --application-id 01 -o "$WORK/wrapped-by-01.bin"
if openssl enc -d -id-aes256-wrap -K "$K01" -iv A6A6A6A6A6A6A6A6 \
     -in "$WORK/wrapped-by-01.bin" -out "$WORK/k01-openssl.bin" 2>"$WORK/openssl.err"; then
  check_same "openssl unwraps the token's RFC 3394 output to the key value" "$WORK/k01-openssl.bin" "$WORK/k01.bin"
else
  fail "openssl unwraps the token's RFC 3394 output" "$(cat "$WORK/openssl.err")"
fi

section "data objects"
printf 'p11kms data object %s\n' "$(date +%s%N)" >"$WORK/data.txt"
head -c 3000 /dev/urandom >>"$WORK/data.txt"
check "write data object" user --write-object "$WORK/data.txt" --type data --label conf-data
check "read data object back" user --read-object --type data --label conf-data -o "$WORK/data-read.txt"
check_same "data object content matches" "$WORK/data-read.txt" "$WORK/data.txt"

section "after a daemon restart"
if [ "$TARGET" = p11kms ]; then
  if restart_daemon; then pass "daemon stopped (SIGTERM) and started again on the same data dir"; else fail "daemon restarts"; finish; fi
else
  say "(softhsm: no daemon; each pkcs11-tool run is a fresh process anyway)"
fi
p11 --list-token-slots >"$WORK/slots2.txt" 2>&1
if grep -q "token label *: *$LABEL" "$WORK/slots2.txt"; then pass "token label survives"; else fail "token label survives"; sed 's/^/      | /' "$WORK/slots2.txt"; fi
check "user PIN still valid" user --list-objects
check "decrypt the earlier ciphertext with key 01" user --decrypt -m AES-CBC-PAD --id 01 --iv "$IV" -i "$WORK/ct.bin" -o "$WORK/rt-after.bin"
check_same "same plaintext after restart" "$WORK/rt-after.bin" "$WORK/pt.bin"
check "decrypt with the sensitive key 02" user --decrypt -m AES-CBC-PAD --id 02 --iv "$IV" -i "$WORK/ct-sens.bin" -o "$WORK/rt-sens-after.bin"
check_same "sensitive key plaintext after restart" "$WORK/rt-sens-after.bin" "$WORK/pt.bin"
check "unwrapped key 03 decrypts" user --decrypt -m AES-CBC-PAD --id 03 --iv "$IV" -i "$WORK/ct.bin" -o "$WORK/rt03-after.bin"
check_same "unwrapped key plaintext after restart" "$WORK/rt03-after.bin" "$WORK/pt.bin"
check "read the data object" user --read-object --type data --label conf-data -o "$WORK/data-after.txt"
check_same "data object content after restart" "$WORK/data-after.txt" "$WORK/data.txt"
CHECK_OUTPUT_RE='CKR_ATTRIBUTE_SENSITIVE|get CKA_VALUE failed' check_fails \
  "sensitive key still unreadable after restart" user --read-object --type secrkey --id 02 -o "$WORK/k02b.bin"
check "read key 01 after restart" user --read-object --type secrkey --id 01 -o "$WORK/k01-after.bin"
check_same "key 01 value unchanged" "$WORK/k01-after.bin" "$WORK/k01.bin"

finish
