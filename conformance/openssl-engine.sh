#!/usr/bin/env bash
# OpenSSL 3 through the libp11 engine (libengine-pkcs11-openssl): RSA and EC
# keys made on the token by pkcs11-tool, signatures (PKCS#1 v1.5, PSS, ECDSA)
# and RSA decryption done by the engine and checked by OpenSSL in software,
# `openssl req -x509` self-signed certificates that `openssl verify` accepts,
# then the same engine without MODULE_PATH finding the module through a
# p11-kit module file.
. "$(dirname "$0")/lib.sh"

LABEL=engine-token
SO_PIN=87654321
PIN=123456
ENGINE_SO=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so

start_daemon || { fail "daemon starts"; finish; }
user() { p11 --token-label "$LABEL" --login --pin "$PIN" "$@"; }
if [ ! -f "$ENGINE_SO" ]; then
  fail "libp11 engine present" "missing $ENGINE_SO (package libengine-pkcs11-openssl)"
  finish
fi

# engine_conf FILE [MODULE]: an OpenSSL config loading the pkcs11 engine,
# with MODULE_PATH when a module is given (else libp11 uses p11-kit-proxy).
engine_conf() {
  {
    printf 'openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n'
    printf '[engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\n'
    printf 'engine_id = pkcs11\ndynamic_path = %s\n' "$ENGINE_SO"
    [ $# -gt 1 ] && printf 'MODULE_PATH = %s\n' "$2"
    printf 'init = 0\n'
    # The file replaces the default config: req needs these sections.
    printf '[req]\ndistinguished_name = req_dn\n[req_dn]\n'
  } >"$1"
}

section "token, keys (pkcs11-tool) and their public keys"
init_token "$LABEL" "$SO_PIN" "$PIN"
check "generate RSA-2048 key pair (id 10, label rsa)" user --keypairgen --key-type rsa:2048 --id 10 --label rsa
check "generate EC P-256 key pair (id 20, label ec)" user --keypairgen --key-type EC:prime256v1 --id 20 --label ec
for k in 10:rsa 20:ec; do
  p11 --token-label "$LABEL" --read-object --type pubkey --id "${k%%:*}" -o "$WORK/${k#*:}.der" >/dev/null 2>&1
  check "export ${k#*:} public key" openssl pkey -pubin -inform DER -in "$WORK/${k#*:}.der" -out "$WORK/${k#*:}.pem"
done

head -c 4000 /dev/urandom >"$WORK/data.bin"
printf 'x' | cat "$WORK/data.bin" - >"$WORK/data-tampered.bin"
RSA_URI="pkcs11:token=$LABEL;object=rsa;type=private;pin-value=$PIN"
EC_URI="pkcs11:token=$LABEL;object=ec;type=private;pin-value=$PIN"

section "engine with MODULE_PATH"
engine_conf "$WORK/engine.cnf" "$MODULE"
export OPENSSL_CONF=$WORK/engine.cnf
check "public key read through the engine (type=public)" \
  openssl pkey -engine pkcs11 -inform engine -pubin -in "pkcs11:token=$LABEL;object=rsa;type=public" -pubout -out "$WORK/rsa-engine.pem"
check_same "engine's RSA public key equals pkcs11-tool's" "$WORK/rsa-engine.pem" "$WORK/rsa.pem"

check "RSA SHA-256 signature (openssl dgst -engine pkcs11 -keyform engine -sign)" \
  openssl dgst -engine pkcs11 -keyform engine -sign "$RSA_URI" -sha256 -out "$WORK/rsa.sig" "$WORK/data.bin"
check "OpenSSL verifies it with the exported key" \
  env -u OPENSSL_CONF openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/data.bin"
CHECK_OUTPUT_RE='Verification failure' check_fails "and rejects it for other data" \
  env -u OPENSSL_CONF openssl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/data-tampered.bin"

check "RSA-PSS SHA-256 signature through the engine" \
  openssl dgst -engine pkcs11 -keyform engine -sign "$RSA_URI" -sha256 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -out "$WORK/pss.sig" "$WORK/data.bin"
check "OpenSSL verifies the PSS signature" \
  env -u OPENSSL_CONF openssl dgst -sha256 -verify "$WORK/rsa.pem" -sigopt rsa_padding_mode:pss \
  -sigopt rsa_pss_saltlen:32 -signature "$WORK/pss.sig" "$WORK/data.bin"

check "ECDSA SHA-256 signature through the engine" \
  openssl dgst -engine pkcs11 -keyform engine -sign "$EC_URI" -sha256 -out "$WORK/ec.sig" "$WORK/data.bin"
check "OpenSSL verifies it with the exported key" \
  env -u OPENSSL_CONF openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ec.sig" "$WORK/data.bin"
CHECK_OUTPUT_RE='Verification failure' check_fails "and rejects it for other data" \
  env -u OPENSSL_CONF openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ec.sig" "$WORK/data-tampered.bin"

head -c 64 /dev/urandom >"$WORK/pt.bin"
env -u OPENSSL_CONF openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/pt.bin" \
  -out "$WORK/ct-oaep.bin" -pkeyopt rsa_padding_mode:oaep
check "RSA-OAEP decryption through the engine" \
  openssl pkeyutl -decrypt -engine pkcs11 -keyform engine -inkey "$RSA_URI" \
  -pkeyopt rsa_padding_mode:oaep -in "$WORK/ct-oaep.bin" -out "$WORK/rt-oaep.bin"
check_same "OAEP plaintext matches" "$WORK/rt-oaep.bin" "$WORK/pt.bin"
env -u OPENSSL_CONF openssl pkeyutl -encrypt -pubin -inkey "$WORK/rsa.pem" -in "$WORK/pt.bin" -out "$WORK/ct-pkcs1.bin"
check "RSA PKCS#1 v1.5 decryption through the engine" \
  openssl pkeyutl -decrypt -engine pkcs11 -keyform engine -inkey "$RSA_URI" \
  -in "$WORK/ct-pkcs1.bin" -out "$WORK/rt-pkcs1.bin"
check_same "PKCS#1 v1.5 plaintext matches" "$WORK/rt-pkcs1.bin" "$WORK/pt.bin"

section "self-signed certificates with token keys (openssl req -x509)"
for k in rsa ec; do
  check "openssl req -new -x509 with the $k token key" \
    openssl req -new -x509 -engine pkcs11 -keyform engine \
    -key "pkcs11:token=$LABEL;object=$k;type=private" -passin "pass:$PIN" \
    -subj "/CN=p11kms engine $k" -days 30 -sha256 -out "$WORK/$k-cert.pem"
  check "openssl verify -CAfile accepts the $k certificate" \
    env -u OPENSSL_CONF openssl verify -CAfile "$WORK/$k-cert.pem" "$WORK/$k-cert.pem"
  env -u OPENSSL_CONF openssl x509 -in "$WORK/$k-cert.pem" -noout -pubkey >"$WORK/$k-cert-pub.pem" 2>/dev/null
  check_same "the $k certificate carries the token's public key" "$WORK/$k-cert-pub.pem" "$WORK/$k.pem"
done
# Pair the RSA certificate with its key on the token (same CKA_ID), as Java,
# NSS and systemd-cryptenroll expect, and read it back.
env -u OPENSSL_CONF openssl x509 -in "$WORK/rsa-cert.pem" -outform DER -out "$WORK/rsa-cert.der"
check "store the RSA certificate on the token (--write-object --type cert --id 10)" \
  user --write-object "$WORK/rsa-cert.der" --type cert --id 10 --label rsa
check "read it back (--read-object --type cert --id 10)" \
  p11 --token-label "$LABEL" --read-object --type cert --id 10 -o "$WORK/rsa-cert-read.der"
check_same "certificate on the token is the one written" "$WORK/rsa-cert-read.der" "$WORK/rsa-cert.der"

section "engine without MODULE_PATH: p11-kit module file"
if install_p11kit_module; then
  pass "p11-kit module file installed ($P11KIT_MODULE_FILE)"
else
  fail "p11-kit module file installed"
fi
p11-kit list-modules >"$WORK/p11kit.txt" 2>&1
check "p11-kit list-modules shows the module and its token" \
  awk -v m="$(basename "${P11KIT_MODULE_FILE:-x}" .module):" -v t="token: $LABEL" \
  '$1 == m { inb = 1; next } /^[^ ]/ { inb = 0 } inb && index($0, t) { f = 1 } END { exit !f }' "$WORK/p11kit.txt"
engine_conf "$WORK/engine-p11kit.cnf"
export OPENSSL_CONF=$WORK/engine-p11kit.cnf
check "ECDSA signature through -engine pkcs11 (no MODULE_PATH)" \
  openssl dgst -engine pkcs11 -keyform engine -sign "$EC_URI" -sha256 -out "$WORK/ec2.sig" "$WORK/data.bin"
check "OpenSSL verifies it" \
  env -u OPENSSL_CONF openssl dgst -sha256 -verify "$WORK/ec.pem" -signature "$WORK/ec2.sig" "$WORK/data.bin"
check "RSA signature through -engine pkcs11 (no MODULE_PATH)" \
  openssl dgst -engine pkcs11 -keyform engine -sign "$RSA_URI" -sha256 -out "$WORK/rsa2.sig" "$WORK/data.bin"
check_same "same PKCS#1 v1.5 signature as with MODULE_PATH" "$WORK/rsa2.sig" "$WORK/rsa.sig"
unset OPENSSL_CONF

finish
