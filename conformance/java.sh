#!/usr/bin/env bash
# Java 17 SunPKCS11: keytool lists the token, generates RSA and EC key pairs
# (each with a self-signed certificate stored next to it) and an AES-256 key
# on it; then conformance/java/P11Check.java uses them: AES/GCM/NoPadding with
# AAD (tampered tag and other AAD rejected, ciphertext equal to SunJCE's),
# SHA256withRSA, SHA256withECDSA and RSASSA-PSS verified by SunRsaSign/SunEC,
# RSA decryption of a SunJCE ciphertext. Its PASS/FAIL lines are counted here.
. "$(dirname "$0")/lib.sh"

LABEL=java-token
SO_PIN=87654321
PIN=123456

for t in java javac keytool; do
  command -v "$t" >/dev/null || { fail "$t on PATH (Java 17 JDK)"; finish; }
done
start_daemon || { fail "daemon starts"; finish; }
init_token "$LABEL" "$SO_PIN" "$PIN"

CFG=$WORK/sunpkcs11.cfg
cat >"$CFG" <<EOF
name = p11kms
library = $MODULE
slotListIndex = 0
EOF
kt() {
  timeout 120 keytool -keystore NONE -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 \
    -providerArg "$CFG" -storepass "$PIN" "$@" </dev/null
}

section "keytool"
check "keytool -list on the empty token" kt -list
check "keytool -genkeypair -keyalg RSA -keysize 2048 (alias rsa)" \
  kt -genkeypair -alias rsa -keyalg RSA -keysize 2048 -sigalg SHA256withRSA -dname "CN=p11kms java rsa" -validity 30
check "keytool -genkeypair -keyalg EC -groupname secp256r1 (alias ec)" \
  kt -genkeypair -alias ec -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA -dname "CN=p11kms java ec" -validity 30
check "keytool -genseckey -keyalg AES -keysize 256 (alias aes)" \
  kt -genseckey -alias aes -keyalg AES -keysize 256
kt -list >"$WORK/list.txt" 2>&1
check "keytool -list shows rsa and ec as PrivateKeyEntry" bash -c \
  "grep -q '^rsa, PrivateKeyEntry' '$WORK/list.txt' && grep -q '^ec, PrivateKeyEntry' '$WORK/list.txt'"
check "keytool -list shows aes as SecretKeyEntry" grep -q '^aes, SecretKeyEntry' "$WORK/list.txt"
check_eq "keytool -list counts 3 entries" "$(sed -n 's/^Your keystore contains \([0-9]*\) entr.*/\1/p' "$WORK/list.txt")" 3
# keytool's self-signed certificates, signed on the token: OpenSSL checks them.
for a in rsa ec; do
  if kt -exportcert -rfc -alias "$a" -file "$WORK/$a.pem" >"$WORK/last.out" 2>&1; then
    check "openssl verify accepts keytool's self-signed $a certificate (signed on the token)" \
      openssl verify -CAfile "$WORK/$a.pem" "$WORK/$a.pem"
  else
    fail "keytool -exportcert -alias $a"; sed 's/^/      | /' "$WORK/last.out" | tail -n 10
  fi
done
# The certificate object sits next to the key under the same CKA_ID, which is
# what makes Java list a PrivateKeyEntry at all.
p11 --token-label "$LABEL" --login --pin "$PIN" --list-objects >"$WORK/objects.txt" 2>&1
# (SunPKCS11 keeps the public key as a session object: none on the token.)
check_eq "token holds 2 certificates, 2 private keys, 1 secret key (pkcs11-tool --list-objects)" \
  "$(grep -c '^Certificate Object' "$WORK/objects.txt") $(grep -c '^Private Key Object' "$WORK/objects.txt") $(grep -c '^Secret Key Object' "$WORK/objects.txt")" \
  "2 2 1"
ids() { awk -v t="$1" '/^[A-Z]/ { cur = index($0, t) == 1 } cur && $1 == "ID:" { print $2 }' "$WORK/objects.txt" | sort | tr '\n' ' '; }
CERT_IDS=$(ids 'Certificate Object')
check_eq "each certificate has the CKA_ID of a private key ($CERT_IDS)" "$CERT_IDS" "$(ids 'Private Key Object')"
check_eq "two distinct certificate ids" "$(printf '%s\n' $CERT_IDS | sort -u | wc -l)" 2

section "keys made by pkcs11-tool, certificates attached (pkcs11-tool --write-object --type cert)"
# Java lists a private key only with a certificate under the same CKA_ID.
openssl req -new -x509 -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -subj "/CN=p11kms test CA" \
  -days 30 -out "$WORK/ca.pem" >/dev/null 2>&1
for k in 31:p11tool-rsa:rsa:2048 32:p11tool-ec:EC:prime256v1; do
  IFS=: read -r id alias kt_type kt_size <<<"$k"
  check "pkcs11-tool --keypairgen $kt_type:$kt_size --id $id --label $alias" \
    p11 --token-label "$LABEL" --login --pin "$PIN" --keypairgen --key-type "$kt_type:$kt_size" --id "$id" --label "$alias"
  check "certificate for it (openssl x509 -force_pubkey), written with --id $id" bash -c "
    pkcs11-tool --module '$MODULE' --token-label '$LABEL' --read-object --type pubkey --id $id -o '$WORK/$alias.pub.der' &&
    openssl pkey -pubin -inform DER -in '$WORK/$alias.pub.der' -out '$WORK/$alias.pub.pem' &&
    openssl req -new -key '$WORK/ca.key' -subj '/CN=$alias' -out '$WORK/$alias.csr' &&
    openssl x509 -req -in '$WORK/$alias.csr' -CA '$WORK/ca.pem' -CAkey '$WORK/ca.key' -CAcreateserial \
      -force_pubkey '$WORK/$alias.pub.pem' -days 30 -outform DER -out '$WORK/$alias.cert.der' &&
    pkcs11-tool --module '$MODULE' --token-label '$LABEL' --login --pin '$PIN' \
      --write-object '$WORK/$alias.cert.der' --type cert --id $id --label $alias"
done
kt -list >"$WORK/list2.txt" 2>&1
check "keytool -list shows p11tool-rsa and p11tool-ec as PrivateKeyEntry" bash -c \
  "grep -q '^p11tool-rsa, PrivateKeyEntry' '$WORK/list2.txt' && grep -q '^p11tool-ec, PrivateKeyEntry' '$WORK/list2.txt'"

section "P11Check.java"
mkdir -p "$WORK/classes"
if javac -d "$WORK/classes" "$CONF_DIR/java/P11Check.java" >"$WORK/javac.out" 2>&1; then
  pass "javac P11Check.java"
  timeout 300 java -cp "$WORK/classes" P11Check "$CFG" "$PIN" >"$WORK/java.out" 2>&1
  rc=$?
  cat "$WORK/java.out"
  jp=$(grep -c '^PASS' "$WORK/java.out")
  jf=$(grep -c '^FAIL' "$WORK/java.out")
  PASSED=$((PASSED + jp))
  FAILED=$((FAILED + jf))
  if [ "$rc" -ne 0 ] && [ "$jf" -eq 0 ]; then
    fail "P11Check exits 0" "exit: $rc (exception or crash, see above)"
  elif [ "$jp" -lt 20 ] && [ "$jf" -eq 0 ]; then
    fail "P11Check ran all its checks" "only $jp PASS lines"
  fi
else
  fail "javac P11Check.java"; sed 's/^/      | /' "$WORK/javac.out" | tail -n 20
fi

finish
