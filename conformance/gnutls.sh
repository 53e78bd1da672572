#!/usr/bin/env bash
# GnuTLS (gnutls-bin): p11tool generates RSA-2048 and ECDSA P-256 keys on the
# token and --test-sign signs with each and verifies (three "ok" lines);
# certtool makes self-signed certificates with the token keys that OpenSSL
# verifies; p11tool stores a certificate next to its key; and, through a
# p11-kit module file, p11tool and certtool find the module with no --provider.
. "$(dirname "$0")/lib.sh"

LABEL=gnutls-token
SO_PIN=87654321
PIN=123456
export GNUTLS_PIN=$PIN

start_daemon || { fail "daemon starts"; finish; }
init_token "$LABEL" "$SO_PIN" "$PIN"
pt() { timeout 120 p11tool --provider "$MODULE" "$@" </dev/null; }
TOKEN="pkcs11:token=$LABEL"

section "p11tool --list-tokens"
pt --list-tokens >"$WORK/tokens.txt" 2>&1
check "p11tool --list-tokens shows the token" grep -q "Label: $LABEL" "$WORK/tokens.txt"

section "p11tool --generate-privkey and --test-sign"
check "generate RSA-2048 key (--generate-privkey RSA --bits 2048)" \
  pt --login --generate-privkey RSA --bits 2048 --label grsa --id 01 --outfile "$WORK/grsa.pub" "$TOKEN"
check "generate ECDSA P-256 key (--generate-privkey ECDSA --curve secp256r1)" \
  pt --login --generate-privkey ECDSA --curve secp256r1 --label gec --id 02 --outfile "$WORK/gec.pub" "$TOKEN"
pt --login --list-privkeys "$TOKEN" >"$WORK/privkeys.txt" 2>&1
check "listed as Private key (RSA-2048)" grep -q 'Type: Private key (RSA-2048)' "$WORK/privkeys.txt"
check "listed as Private key (EC/ECDSA-SECP256R1)" grep -q 'Type: Private key (EC/ECDSA-SECP256R1)' "$WORK/privkeys.txt"
for k in grsa gec; do
  pt --login --test-sign "$TOKEN;object=$k" >"$WORK/test-sign-$k.txt" 2>&1
  rc=$?
  check_eq "--test-sign $k: exit 0 and three 'ok' lines" "$rc $(grep -c '\.\.\. ok$' "$WORK/test-sign-$k.txt")" "0 3"
  [ "$rc" -eq 0 ] || sed 's/^/      | /' "$WORK/test-sign-$k.txt" | tail -n 10
  check "$k: exported public key (--export-pubkey) equals the one printed at generation" bash -c \
    "p11tool --provider '$MODULE' --login --export-pubkey '$TOKEN;object=$k' </dev/null 2>/dev/null |
     openssl pkey -pubin -outform DER | cmp -s - <(openssl pkey -pubin -in '$WORK/$k.pub' -outform DER)"
done

section "certtool: self-signed certificates with the token keys"
printf 'cn = p11kms gnutls\nca\ncert_signing_key\nsigning_key\nexpiration_days = 30\n' >"$WORK/tmpl"
for k in grsa gec; do
  check "certtool --generate-self-signed --load-privkey $k" \
    timeout 120 certtool --provider "$MODULE" --generate-self-signed --load-privkey "$TOKEN;object=$k;type=private" \
    --template "$WORK/tmpl" --outfile "$WORK/$k-cert.pem"
  check "openssl verify -CAfile accepts the $k certificate" openssl verify -CAfile "$WORK/$k-cert.pem" "$WORK/$k-cert.pem"
  check "the $k certificate carries the token key" bash -c \
    "openssl x509 -in '$WORK/$k-cert.pem' -noout -pubkey | openssl pkey -pubin -outform DER |
     cmp -s - <(openssl pkey -pubin -in '$WORK/$k.pub' -outform DER)"
done
check "p11tool --write the RSA certificate next to its key (--id 01)" \
  pt --login --write --load-certificate "$WORK/grsa-cert.pem" --label grsa --id 01 "$TOKEN"
check "p11tool --export reads the same certificate back" bash -c \
  "p11tool --provider '$MODULE' --export '$TOKEN;object=grsa;type=cert' </dev/null 2>/dev/null |
   openssl x509 -outform DER | cmp -s - <(openssl x509 -in '$WORK/grsa-cert.pem' -outform DER)"
check "pkcs11-tool sees the certificate under id 01" bash -c \
  "pkcs11-tool --module '$MODULE' --token-label '$LABEL' --read-object --type cert --id 01 -o '$WORK/c.der' >/dev/null 2>&1 &&
   openssl x509 -inform DER -in '$WORK/c.der' -noout -subject | grep -q 'p11kms gnutls'"

section "GnuTLS without --provider: p11-kit module file"
if install_p11kit_module; then pass "p11-kit module file installed ($P11KIT_MODULE_FILE)"; else fail "p11-kit module file installed"; fi
timeout 120 p11tool --list-tokens </dev/null >"$WORK/tokens2.txt" 2>&1
check "p11tool --list-tokens (no --provider) shows the token" grep -q "Label: $LABEL" "$WORK/tokens2.txt"
timeout 120 p11tool --login --test-sign "$TOKEN;object=gec" </dev/null >"$WORK/test-sign-kit.txt" 2>&1
check_eq "--test-sign (no --provider): three 'ok' lines" "$(grep -c '\.\.\. ok$' "$WORK/test-sign-kit.txt")" 3

finish
