#!/usr/bin/env bash
# pkcs11-tool (OpenSC 0.23) with asymmetric keys: RSA-2048, EC P-256 and
# Ed25519 (EC:edwards25519, new in OpenSC 0.23) key pairs generated on the token,
# an always-authenticate P-521 key, an RSA key limited to PSS with
# --allowed-mechanisms, `pkcs11-tool --test`, and every
# signature / decryption cross-checked by OpenSSL with the public key that
# pkcs11-tool exports (--read-object --type pubkey).
. "$(dirname "$0")/lib.sh"

LABEL=asym-token
SO_PIN=87654321
PIN=123456

start_daemon || { fail "daemon starts"; finish; }
user() { p11 --token-label "$LABEL" --login --pin "$PIN" "$@"; }

# export_pub ID NAME: public key of ID as PEM in $WORK/NAME.pem (pkcs11-tool
# writes DER for RSA/EC and PEM for EdDSA; openssl pkey reads either).
export_pub() {
  p11 --token-label "$LABEL" --read-object --type pubkey --id "$1" -o "$WORK/$2.raw" >"$WORK/last.out" 2>&1 &&
    openssl pkey -pubin -in "$WORK/$2.raw" -out "$WORK/$2.pem" >>"$WORK/last.out" 2>&1
}

# p11_verify ARGS...: pkcs11-tool --verify exits 0 even on "Invalid
# signature"; succeed only on "Signature is valid".
p11_verify() { user --verify "$@" 2>&1 | tee /dev/stderr | grep -q '^Signature is valid'; }
# p11_rejects ARGS...: succeed only if pkcs11-tool says "Invalid signature".
p11_rejects() { user --verify "$@" 2>&1 | tee /dev/stderr | grep -q '^Invalid signature'; }

section "token and key pairs"
init_token "$LABEL" "$SO_PIN" "$PIN"
check "generate RSA-2048 key pair (id 10)" user --keypairgen --key-type rsa:2048 --id 10 --label rsa2048
check "generate EC P-256 key pair (id 20)" user --keypairgen --key-type EC:prime256v1 --id 20 --label ecp256
check "export RSA public key (--read-object --type pubkey --id 10)" export_pub 10 rsa
check "export EC public key (--read-object --type pubkey --id 20)" export_pub 20 ec
openssl pkey -pubin -in "$WORK/rsa.pem" -text -noout >"$WORK/rsa.txt" 2>&1
openssl pkey -pubin -in "$WORK/ec.pem" -text -noout >"$WORK/ec.txt" 2>&1
check "exported RSA key is 2048-bit with e=65537" \
  bash -c "grep -q 'Public-Key: (2048 bit)' '$WORK/rsa.txt' && grep -q 'Exponent: 65537' '$WORK/rsa.txt'"
check "exported EC key is on prime256v1" grep -q 'NIST CURVE: P-256\|ASN1 OID: prime256v1' "$WORK/ec.txt"

section "pkcs11-tool --test (logged in, RSA and EC keys present)"
user --test >"$WORK/test.out" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && ! grep -q 'error:\|ERR' "$WORK/test.out"; then
  pass "pkcs11-tool --test exits 0 without errors"
elif [ "$TARGET" = softhsm ] && grep -q 'RSA-PKCS-OAEP' "$WORK/test.out" &&
     grep -q 'C_DecryptInit failed: rv = CKR_ARGUMENTS_BAD' "$WORK/test.out"; then
  skip "pkcs11-tool --test" "SoftHSMv2 2.6.1 has no RSA-OAEP with SHA-256 (known; p11kms must pass)"
else
  fail "pkcs11-tool --test exits 0 without errors" "exit: $rc"
  sed 's/^/      | /' "$WORK/test.out" | tail -n 25
fi
if [ "$rc" -eq 0 ]; then
  # "RSA-PKCS-OAEP: mgf not set, defaulting to MGF1-SHA256" then "OK" on the next line
  check_eq "--test decrypted with RSA-PKCS-OAEP (SHA-256), with and without a label" \
    "$(grep -A1 'RSA-PKCS-OAEP:' "$WORK/test.out" | grep -c '^OK$')" 2
  check "--test ends with 'No errors'" grep -q '^No errors' "$WORK/test.out"
fi

head -c 1000 /dev/urandom >"$WORK/data.bin"
printf 'x' | cat "$WORK/data.bin" - >"$WORK/data-tampered.bin"
openssl dgst -sha256 -binary "$WORK/data.bin" >"$WORK/data.sha256"

section "RSA signatures, verified by OpenSSL"
check "sign with SHA256-RSA-PKCS" user --sign -m SHA256-RSA-PKCS --id 10 -i "$WORK/data.bin" -o "$WORK/sig-pkcs1.bin"
check_eq "signature is 256 bytes" "$(stat -c %s "$WORK/sig-pkcs1.bin" 2>/dev/null)" 256
check "openssl dgst -sha256 -verify accepts it" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/sig-pkcs1.bin" "$WORK/data.bin"
CHECK_OUTPUT_RE='Verification failure' check_fails "openssl rejects it for other data" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/sig-pkcs1.bin" "$WORK/data-tampered.bin"
check "token verifies its own signature (--verify)" \
  p11_verify -m SHA256-RSA-PKCS --id 10 -i "$WORK/data.bin" --signature-file "$WORK/sig-pkcs1.bin"
check "token rejects the signature for other data (CKR_SIGNATURE_INVALID)" \
  p11_rejects -m SHA256-RSA-PKCS --id 10 -i "$WORK/data-tampered.bin" --signature-file "$WORK/sig-pkcs1.bin"

check "sign the SHA-256 hash with RSA-PKCS-PSS (SHA256, MGF1-SHA256)" \
  user --sign -m RSA-PKCS-PSS --hash-algorithm SHA256 --mgf MGF1-SHA256 --id 10 \
  -i "$WORK/data.sha256" -o "$WORK/sig-pss.bin"
check "openssl pkeyutl -verify (PSS, salt 32) accepts it" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/rsa.pem" -in "$WORK/data.sha256" -sigfile "$WORK/sig-pss.bin" \
  -pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 -pkeyopt rsa_mgf1_md:sha256 -pkeyopt rsa_pss_saltlen:32
check "openssl dgst -verify (PSS) accepts it on the data" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -signature "$WORK/sig-pss.bin" "$WORK/data.bin"
check "sign the data with SHA256-RSA-PKCS-PSS" \
  user --sign -m SHA256-RSA-PKCS-PSS --mgf MGF1-SHA256 --id 10 -i "$WORK/data.bin" -o "$WORK/sig-pss2.bin"
check "openssl dgst -verify (PSS) accepts that one too" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -signature "$WORK/sig-pss2.bin" "$WORK/data.bin"
check_differ "two PSS signatures of the same data differ (random salt)" "$WORK/sig-pss.bin" "$WORK/sig-pss2.bin"

section "ECDSA P-256, verified by OpenSSL"
check "sign the SHA-256 hash with ECDSA (--signature-format openssl)" \
  user --sign -m ECDSA --id 20 --signature-format openssl -i "$WORK/data.sha256" -o "$WORK/sig-ec.der"
check "openssl dgst -sha256 -verify accepts it" \
  openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/sig-ec.der" "$WORK/data.bin"
check "openssl pkeyutl -verify accepts it on the hash" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ec.pem" -in "$WORK/data.sha256" -sigfile "$WORK/sig-ec.der"
CHECK_OUTPUT_RE='Verification failure' check_fails "openssl rejects it for other data" \
  openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/sig-ec.der" "$WORK/data-tampered.bin"
rc=0
user --sign -m ECDSA-SHA256 --id 20 -i "$WORK/data.bin" -o "$WORK/sig-ec-raw.bin" >"$WORK/last.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] && [ "$TARGET" = softhsm ] && grep -q CKR_MECHANISM_INVALID "$WORK/last.out"; then
  skip "ECDSA-SHA256" "SoftHSMv2 2.6.1 has no CKM_ECDSA_SHA256 (known; p11kms must pass)"
else
  if [ "$rc" -eq 0 ]; then pass "sign the data with ECDSA-SHA256 (raw r||s)"
  else fail "sign the data with ECDSA-SHA256 (raw r||s)" "exit: $rc"; sed 's/^/      | /' "$WORK/last.out" | tail -n 10; fi
  check_eq "raw P-256 signature is 64 bytes" "$(stat -c %s "$WORK/sig-ec-raw.bin" 2>/dev/null)" 64
  check "token verifies the raw signature (--verify -m ECDSA-SHA256)" \
    p11_verify -m ECDSA-SHA256 --id 20 -i "$WORK/data.bin" --signature-file "$WORK/sig-ec-raw.bin"
  check "token rejects it for other data (CKR_SIGNATURE_INVALID)" \
    p11_rejects -m ECDSA-SHA256 --id 20 -i "$WORK/data-tampered.bin" --signature-file "$WORK/sig-ec-raw.bin"
  check "sign the data with ECDSA-SHA256 (--signature-format openssl)" \
    user --sign -m ECDSA-SHA256 --id 20 --signature-format openssl -i "$WORK/data.bin" -o "$WORK/sig-ec2.der"
  check "openssl dgst -sha256 -verify accepts it" \
    openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/sig-ec2.der" "$WORK/data.bin"
fi

section "RSA decryption on the token of OpenSSL ciphertexts"
head -c 190 /dev/urandom >"$WORK/pt.bin"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/pt.bin" -out "$WORK/ct-oaep256.bin" \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
rc=0
user --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 --id 10 \
  -i "$WORK/ct-oaep256.bin" -o "$WORK/rt-oaep256.bin" >"$WORK/last.out" 2>&1 || rc=$?
if [ "$rc" -eq 0 ]; then
  pass "decrypt OAEP-SHA256 ciphertext (190 bytes, the maximum for SHA-256)"
  check_same "OAEP-SHA256 plaintext matches" "$WORK/rt-oaep256.bin" "$WORK/pt.bin"
elif [ "$TARGET" = softhsm ] && grep -q CKR_ARGUMENTS_BAD "$WORK/last.out"; then
  skip "decrypt OAEP-SHA256" "SoftHSMv2 2.6.1 has no RSA-OAEP with SHA-256 (known; p11kms must pass)"
else
  fail "decrypt OAEP-SHA256 ciphertext" "exit: $rc"; sed 's/^/      | /' "$WORK/last.out" | tail -n 10
fi
head -c 100 /dev/urandom >"$WORK/pt1.bin"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/pt1.bin" -out "$WORK/ct-oaep1.bin" \
  -pkeyopt rsa_padding_mode:oaep
check "decrypt OAEP-SHA1 ciphertext" user --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA-1 --mgf MGF1-SHA1 --id 10 \
  -i "$WORK/ct-oaep1.bin" -o "$WORK/rt-oaep1.bin"
check_same "OAEP-SHA1 plaintext matches" "$WORK/rt-oaep1.bin" "$WORK/pt1.bin"
openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/pt1.bin" -out "$WORK/ct-pkcs1.bin"
check "decrypt PKCS#1 v1.5 ciphertext" user --decrypt -m RSA-PKCS --id 10 -i "$WORK/ct-pkcs1.bin" -o "$WORK/rt-pkcs1.bin"
check_same "PKCS#1 v1.5 plaintext matches" "$WORK/rt-pkcs1.bin" "$WORK/pt1.bin"
# A ciphertext for another padding must not decrypt to anything.
CHECK_OUTPUT_RE='CKR_' check_fails "OAEP-SHA1 ciphertext refused under OAEP-SHA256 parameters" \
  user --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 --id 10 \
  -i "$WORK/ct-oaep1.bin" -o "$WORK/rt-wrong.bin"

section "Ed25519"
check "generate Ed25519 key pair (id 30, EC:edwards25519)" user --keypairgen --key-type EC:edwards25519 --id 30 --label ed25519
check "export Ed25519 public key" export_pub 30 ed
check "exported key is an ED25519 key" bash -c "openssl pkey -pubin -in '$WORK/ed.pem' -text -noout | grep -q 'ED25519 Public-Key'"
check "sign with EDDSA" user --sign -m EDDSA --id 30 -i "$WORK/data.bin" -o "$WORK/sig-ed.bin"
check_eq "Ed25519 signature is 64 bytes" "$(stat -c %s "$WORK/sig-ed.bin" 2>/dev/null)" 64
check "openssl pkeyutl -verify -rawin accepts it" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ed.pem" -rawin -in "$WORK/data.bin" -sigfile "$WORK/sig-ed.bin"
CHECK_OUTPUT_RE='[Ff]ailure' check_fails "openssl rejects it for other data" \
  openssl pkeyutl -verify -pubin -inkey "$WORK/ed.pem" -rawin -in "$WORK/data-tampered.bin" -sigfile "$WORK/sig-ed.bin"
check "token verifies it (--verify -m EDDSA)" p11_verify -m EDDSA --id 30 -i "$WORK/data.bin" --signature-file "$WORK/sig-ed.bin"

section "always-authenticate key (--always-auth, a PIN per signature)"
check "generate EC P-521 key pair with CKA_ALWAYS_AUTHENTICATE (id 40)" \
  user --keypairgen --key-type EC:secp521r1 --always-auth --id 40 --label aa521
check "export its public key" export_pub 40 aa521
check "the private key reports CKA_ALWAYS_AUTHENTICATE" \
  bash -c "pkcs11-tool --module '$MODULE' --token-label '$LABEL' --login --pin '$PIN' --list-objects --type privkey --id 40 2>&1 | grep -qi 'always authenticate'"
# pkcs11-tool sees CKA_ALWAYS_AUTHENTICATE and calls C_Login(CKU_CONTEXT_SPECIFIC)
# between C_SignInit and C_Sign.
check "sign with it (pkcs11-tool logs in per operation)" \
  user --sign -m ECDSA --signature-format openssl --id 40 -i "$WORK/data.sha256" -o "$WORK/sig-aa.der"
check "and OpenSSL verifies it" \
  openssl dgst -sha256 -verify "$WORK/aa521.pem" -signature "$WORK/sig-aa.der" "$WORK/data.bin"

section "RSA key limited to PSS (--allowed-mechanisms, CKA_ALLOWED_MECHANISMS)"
check "generate RSA-2048 key pair allowing RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS only (id 11)" \
  user --keypairgen --key-type rsa:2048 --id 11 --label rsa-pss-only \
  --allowed-mechanisms RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS
user --list-objects --type privkey --id 11 >"$WORK/pss-only.txt" 2>&1
check "the private key lists exactly those mechanisms (--list-objects)" \
  grep -q 'Allowed mechanisms: *RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS$' "$WORK/pss-only.txt"
check "export its public key" export_pub 11 rsa-pss-only
check "sign the data with SHA256-RSA-PKCS-PSS" \
  user --sign -m SHA256-RSA-PKCS-PSS --mgf MGF1-SHA256 --id 11 -i "$WORK/data.bin" -o "$WORK/sig-pss-only.bin"
check "openssl dgst -verify (PSS, salt 32) accepts it" \
  openssl dgst -sha256 -verify "$WORK/rsa-pss-only.pem" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -signature "$WORK/sig-pss-only.bin" "$WORK/data.bin"
CHECK_OUTPUT_RE='CKR_MECHANISM_INVALID' check_fails "the key refuses SHA256-RSA-PKCS (PKCS#1 v1.5)" \
  user --sign -m SHA256-RSA-PKCS --id 11 -i "$WORK/data.bin" -o "$WORK/sig-refused.bin"
CHECK_OUTPUT_RE='CKR_MECHANISM_INVALID' check_fails "the key refuses RSA-PKCS on the hash" \
  user --sign -m RSA-PKCS --id 11 -i "$WORK/data.sha256" -o "$WORK/sig-refused2.bin"

section "after a daemon restart"
if [ "$TARGET" = p11kms ]; then
  if restart_daemon; then pass "daemon restarted on the same data dir"; else fail "daemon restarts"; finish; fi
else
  say "(softhsm: no daemon; each pkcs11-tool run is a fresh process anyway)"
fi
check "RSA key still signs" user --sign -m SHA256-RSA-PKCS --id 10 -i "$WORK/data.bin" -o "$WORK/sig-after.bin"
check "and OpenSSL verifies it with the key exported before" \
  openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/sig-after.bin" "$WORK/data.bin"
check_same "PKCS#1 v1.5 signatures are deterministic: same as before the restart" "$WORK/sig-after.bin" "$WORK/sig-pkcs1.bin"
CHECK_OUTPUT_RE='CKR_MECHANISM_INVALID' check_fails "the PSS-only key still refuses SHA256-RSA-PKCS" \
  user --sign -m SHA256-RSA-PKCS --id 11 -i "$WORK/data.bin" -o "$WORK/sig-refused-after.bin"
check "EC key still signs" user --sign -m ECDSA --id 20 --signature-format openssl -i "$WORK/data.sha256" -o "$WORK/sig-ec-after.der"
check "and OpenSSL verifies it" \
  openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/sig-ec-after.der" "$WORK/data.bin"

finish
