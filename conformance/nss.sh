#!/usr/bin/env bash
# NSS (certutil/modutil from libnss3-tools) with the module added to an NSS
# database in the temp dir: the token and its keys listed, RSA and EC key
# pairs generated on the token by `certutil -R` with requests that OpenSSL
# verifies (and whose public keys are the token's), a self-signed CA
# certificate made on the token by `certutil -S -x`, and a request signed by
# that CA with `certutil -C`, verified by OpenSSL.
. "$(dirname "$0")/lib.sh"

LABEL=nss-token
SO_PIN=87654321
PIN=123456
DB=sql:$WORK/nssdb

start_daemon || { fail "daemon starts"; finish; }
init_token "$LABEL" "$SO_PIN" "$PIN"
printf '%s\n' "$PIN" >"$WORK/pin.txt"
head -c 256 /dev/urandom >"$WORK/noise"
# certutil never waits at a terminal here: stdin closed (cu_in passes it on)
# and a time limit, since NSS falls back to a PIN prompt when it needs one.
cu() { timeout 60 certutil -d "$DB" "$@" </dev/null; }
cu_in() { timeout 60 certutil -d "$DB" "$@"; }

# token_pub_of_id HEXID OUT: the token's public key with that CKA_ID, as PEM.
token_pub_of_id() {
  p11 --token-label "$LABEL" --read-object --type pubkey --id "$1" -o "$2.der" >/dev/null 2>&1 &&
    openssl pkey -pubin -inform DER -in "$2.der" -out "$2"
}

section "NSS database and module"
mkdir -p "$WORK/nssdb"
check "certutil -N (new database, empty password)" cu -N --empty-password
check "modutil -add the module" bash -c "echo | timeout 60 modutil -dbdir '$DB' -add p11kms -libfile '$MODULE' -force"
check "modutil -list shows it" bash -c "modutil -dbdir '$DB' -list p11kms | grep -q 'Token Name: $LABEL'"
cu -U >"$WORK/tokens.txt" 2>&1
check "certutil -U lists the token" grep -q "token: $LABEL" "$WORK/tokens.txt"
check "certutil -K on the empty token (login with the PIN file)" bash -c \
  "certutil -d '$DB' -K -h '$LABEL' -f '$WORK/pin.txt' 2>&1 | grep -q 'no keys found\|Checking token'"

section "certutil -R: key pairs generated on the token, requests verified by OpenSSL"
check "RSA-2048 key and request (certutil -R -k rsa -g 2048)" \
  cu -R -h "$LABEL" -f "$WORK/pin.txt" -s "CN=p11kms nss rsa,O=p11kms" -k rsa -g 2048 -z "$WORK/noise" -a -o "$WORK/rsa.csr"
check "EC P-256 key and request (certutil -R -k ec -q nistp256)" \
  cu -R -h "$LABEL" -f "$WORK/pin.txt" -s "CN=p11kms nss ec,O=p11kms" -k ec -q nistp256 -z "$WORK/noise" -a -o "$WORK/ec.csr"
for k in rsa ec; do
  check "openssl req -verify accepts the $k request" openssl req -verify -noout -in "$WORK/$k.csr"
  check "$k request has the requested subject" bash -c \
    "openssl req -in '$WORK/$k.csr' -noout -subject | grep -q 'CN *= *p11kms nss $k'"
done
cu -K -h "$LABEL" -f "$WORK/pin.txt" >"$WORK/keys.txt" 2>&1
check_eq "certutil -K lists two keys (rsa, ec) on the token" \
  "$(grep -Ec '^< *[0-9]+> (rsa|ec) ' "$WORK/keys.txt")" 2
# NSS sets CKA_ID to a hash of the public key; the request must carry the
# public key of the token object with that id.
key_id() { sed -n "s/^< *[0-9]*> $1 *\([0-9a-f]*\) .*/\1/p" "$2" | head -n 1; }
RSA_ID=$(key_id rsa "$WORK/keys.txt")
EC_ID=$(key_id ec "$WORK/keys.txt")
for k in rsa:$RSA_ID ec:$EC_ID; do
  name=${k%%:*} id=${k#*:}
  openssl req -in "$WORK/$name.csr" -noout -pubkey >"$WORK/$name-csr-pub.pem" 2>/dev/null
  if [ -n "$id" ] && token_pub_of_id "$id" "$WORK/$name-token-pub.pem"; then
    check_same "$name request carries the public key of token object id $id" "$WORK/$name-csr-pub.pem" "$WORK/$name-token-pub.pem"
  else
    fail "$name public key on the token under the CKA_ID NSS set" "id: '${id}'"; sed 's/^/      | /' "$WORK/keys.txt"
  fi
done

section "certutil -S -x: self-signed CA certificate on the token"
check "certutil -S -x (new RSA-2048 key on the token, self-signed)" \
  cu_in -S -h "$LABEL" -f "$WORK/pin.txt" -n "p11kms-ca" -s "CN=p11kms nss CA" -x -t "CT,C,C" \
  -k rsa -g 2048 -z "$WORK/noise" -v 12 -2 <<<$'y\n-1\ny\n'
cu -L -h "$LABEL" -f "$WORK/pin.txt" >"$WORK/certs.txt" 2>&1
check "certutil -L -h token lists the certificate" grep -q "$LABEL:p11kms-ca" "$WORK/certs.txt"
cu -K -h "$LABEL" -f "$WORK/pin.txt" >"$WORK/keys2.txt" 2>&1
check "certutil -K pairs the CA key with its certificate" grep -Eq "^< *[0-9]+> rsa .*$LABEL:p11kms-ca" "$WORK/keys2.txt"
check "export the certificate (certutil -L -n -a)" \
  bash -c "certutil -d '$DB' -L -h '$LABEL' -f '$WORK/pin.txt' -n '$LABEL:p11kms-ca' -a >'$WORK/ca.pem'"
check "openssl verify -CAfile accepts the self-signed certificate" openssl verify -CAfile "$WORK/ca.pem" "$WORK/ca.pem"
check "it is a CA certificate" bash -c "openssl x509 -in '$WORK/ca.pem' -noout -text | grep -q 'CA:TRUE'"
check "the certificate object is on the token (pkcs11-tool --list-objects --type cert)" bash -c \
  "pkcs11-tool --module '$MODULE' --token-label '$LABEL' --list-objects --type cert 2>/dev/null | grep -q 'CN=p11kms nss CA'"

section "certutil -C: the token CA signs the RSA request"
# certutil -C looks the issuer up without the PIN file and would prompt for a
# login; marking the module FRIENDLY (certificates readable without login,
# as on most HSMs) is how NSS users avoid that.
check "modutil -default -mechanisms FRIENDLY" bash -c \
  "echo | modutil -dbdir '$DB' -default p11kms -mechanisms FRIENDLY -force"
openssl req -in "$WORK/rsa.csr" -outform DER -out "$WORK/rsa.csr.der" 2>/dev/null
check "certutil -C -c p11kms-ca issues a certificate" \
  cu -C -c "$LABEL:p11kms-ca" -f "$WORK/pin.txt" -i "$WORK/rsa.csr.der" -o "$WORK/rsa-cert.der" -m 4242 -v 12
check "openssl verify -CAfile ca.pem accepts the issued certificate" \
  bash -c "openssl x509 -inform DER -in '$WORK/rsa-cert.der' -out '$WORK/rsa-cert.pem' && openssl verify -CAfile '$WORK/ca.pem' '$WORK/rsa-cert.pem'"
openssl x509 -in "$WORK/rsa-cert.pem" -noout -pubkey >"$WORK/rsa-cert-pub.pem" 2>/dev/null
check_same "issued certificate carries the token's RSA public key" "$WORK/rsa-cert-pub.pem" "$WORK/rsa-token-pub.pem"
check "import it onto the token next to its key (certutil -A -h token)" \
  cu -A -h "$LABEL" -f "$WORK/pin.txt" -n "p11kms-rsa" -t ",," -i "$WORK/rsa-cert.der"
cu -K -h "$LABEL" -f "$WORK/pin.txt" >"$WORK/keys3.txt" 2>&1
check "certutil -K now pairs the RSA key with it (no longer an orphan)" \
  grep -Eq "^< *[0-9]+> rsa +$RSA_ID +$LABEL:p11kms-rsa" "$WORK/keys3.txt"

if [ "$TARGET" = p11kms ]; then
  section "after a daemon restart"
  if restart_daemon; then pass "daemon restarted on the same data dir"; else fail "daemon restarts"; finish; fi
  cu -L -h "$LABEL" -f "$WORK/pin.txt" >"$WORK/certs2.txt" 2>&1
  check "certificates still listed" bash -c "grep -q '$LABEL:p11kms-ca' '$WORK/certs2.txt' && grep -q '$LABEL:p11kms-rsa' '$WORK/certs2.txt'"
  check "the CA signs again" \
    cu -C -c "$LABEL:p11kms-ca" -f "$WORK/pin.txt" -i "$WORK/rsa.csr.der" -o "$WORK/rsa-cert2.der" -m 4243 -v 12
  check "and OpenSSL verifies that certificate" \
    bash -c "openssl x509 -inform DER -in '$WORK/rsa-cert2.der' -out '$WORK/rsa-cert2.pem' && openssl verify -CAfile '$WORK/ca.pem' '$WORK/rsa-cert2.pem'"
fi

finish
