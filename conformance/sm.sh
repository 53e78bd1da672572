#!/usr/bin/env bash
# SM2/SM3/SM4 interoperability with OpenSSL 3, and the gm compliance mode.
#
#   cargo build --release && conformance/sm.sh
#
# A daemon with two instances (slot 0 "standard", slot 1 mode = "gm") is
# driven through libp11kms.so by PyKCS11 (conformance/sm/pkcs11_sm.py) and the
# results are checked against OpenSSL:
#   - SM3 digest = `openssl dgst -sm3`
#   - SM4-CBC-PAD ciphertext = `openssl enc -sm4-cbc`
#   - an SM2 signature from the module (CKM_SM3_SM2DSA, default ID) verifies
#     with `openssl pkeyutl -verify` on the exported public key
#   - an OpenSSL SM2 signature verifies in the module
#   - an OpenSSL SM2 ciphertext (DER) decrypts in the module
#   - the gm instance lists no AES/RSA/SHA-2 mechanism and refuses them with
#     CKR_MECHANISM_INVALID, while the SM checks above pass on it
# OpenSSL 3.0's SM2 default distinguishing ID is empty; the standard's
# "1234567812345678" is passed explicitly (-pkeyopt distid:...).
. "$(dirname "$0")/lib.sh"

if [ "$TARGET" != p11kms ]; then
  skip "SM algorithms" "SoftHSMv2 has no SM2/SM3/SM4"
  finish
fi
PY=/usr/bin/python3
if ! $PY -c 'import PyKCS11' 2>/dev/null; then
  skip "SM interop" "python3-pykcs11 is not installed"
  finish
fi
if ! openssl list -digest-algorithms 2>/dev/null | grep -qi sm3 || ! openssl list -cipher-algorithms 2>/dev/null | grep -qi sm4-cbc; then
  skip "SM interop" "this OpenSSL has no SM3/SM4"
  finish
fi
H="$PY $CONF_DIR/sm/pkcs11_sm.py $MODULE"
ID=distid:1234567812345678

# Two instances: lib.sh's start_daemon only knows --data-dir/--socket.
cat >"$WORK/p11kmsd.toml" <<EOF
data_dir = "$DATA_DIR"
socket = "$SOCKET"

[[instance]]
name = "standard"

[[instance]]
name = "gm"
mode = "gm"
EOF
mkdir -p "$DATA_DIR"
"$DAEMON" --config "$WORK/p11kmsd.toml" >>"$DAEMON_LOG" 2>&1 &
DAEMON_PID=$!
export P11KMS_SOCKET=$SOCKET
for _ in $(seq 1 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
check "daemon with a standard and a gm instance" test -S "$SOCKET"

head -c 100000 /dev/urandom >"$WORK/input"
printf 'message signed with SM2' >"$WORK/msg"
KEY=0123456789abcdeffedcba9876543210
IV=000102030405060708090a0b0c0d0e0f

for slot in 0 1; do
  name=$([ $slot = 0 ] && echo standard || echo gm)
  section "SM on the $name instance (slot $slot)"
  check "$name: init token" $H init $slot "sm-$name"

  check "$name: SM3 digest" $H sm3 $slot "$WORK/input" "$WORK/sm3.$slot"
  check_eq "$name: SM3 = openssl dgst -sm3" "$(hex_of "$WORK/sm3.$slot")" \
    "$(openssl dgst -sm3 -binary "$WORK/input" | od -An -v -tx1 | tr -d ' \n')"

  check "$name: SM4-CBC-PAD encrypt" $H sm4-cbc-pad $slot $KEY $IV "$WORK/input" "$WORK/sm4.$slot"
  openssl enc -sm4-cbc -K $KEY -iv $IV -in "$WORK/input" -out "$WORK/sm4.openssl.$slot"
  check_same "$name: SM4-CBC = openssl enc -sm4-cbc" "$WORK/sm4.$slot" "$WORK/sm4.openssl.$slot"

  check "$name: SM2 key pair" $H sm2-gen $slot sm2 "$WORK/spki.$slot.der"
  check "$name: public key is an SM2 key to OpenSSL" \
    sh -c "openssl pkey -pubin -inform DER -in '$WORK/spki.$slot.der' -text -noout | grep -q 'ASN1 OID: SM2'"
  openssl pkey -pubin -inform DER -in "$WORK/spki.$slot.der" -out "$WORK/pub.$slot.pem" 2>/dev/null

  check "$name: SM2 sign (CKM_SM3_SM2DSA, default ID)" $H sm2-sign $slot sm2 "$WORK/msg" "$WORK/sig.$slot"
  check "$name: module signature verifies with openssl pkeyutl" \
    openssl pkeyutl -verify -pubin -inkey "$WORK/pub.$slot.pem" -rawin -digest sm3 -pkeyopt $ID \
    -in "$WORK/msg" -sigfile "$WORK/sig.$slot"
  check_fails "$name: ... and not with another ID" \
    openssl pkeyutl -verify -pubin -inkey "$WORK/pub.$slot.pem" -rawin -digest sm3 -pkeyopt distid:other \
    -in "$WORK/msg" -sigfile "$WORK/sig.$slot"

  # OpenSSL encrypts to the module's public key, and signs with a key of
  # its own whose public point the module imports (C_CreateObject).
  openssl genpkey -algorithm SM2 -out "$WORK/ossl.$slot.pem" 2>/dev/null
  openssl pkeyutl -sign -inkey "$WORK/ossl.$slot.pem" -rawin -digest sm3 -pkeyopt $ID \
    -in "$WORK/msg" -out "$WORK/ossl.sig.$slot"
  openssl pkeyutl -encrypt -pubin -inkey "$WORK/pub.$slot.pem" -in "$WORK/msg" -out "$WORK/ossl.ct.$slot"
  check "$name: OpenSSL ciphertext (DER C1C3C2) decrypts in the module" \
    $H sm2-decrypt $slot sm2 "$WORK/ossl.ct.$slot" "$WORK/ossl.pt.$slot"
  check_same "$name: ... to the plaintext" "$WORK/ossl.pt.$slot" "$WORK/msg"
  check "$name: import OpenSSL's SM2 public key" \
    $PY "$CONF_DIR/sm/pkcs11_sm.py" "$MODULE" import-pub $slot ossl \
    "$(openssl pkey -in "$WORK/ossl.$slot.pem" -pubout -outform DER | tail -c 65 | od -An -v -tx1 | tr -d ' \n')"
  check "$name: OpenSSL signature verifies in the module" $H sm2-verify $slot ossl "$WORK/msg" "$WORK/ossl.sig.$slot"
done

section "gm refuses everything else"
check "mechanism list of the gm instance" $H mechs 1 "$WORK/mechs.gm"
check "mechanism list of the standard instance" $H mechs 0 "$WORK/mechs.std"
for m in 0x1082 0x1085 0x1 0x250; do  # AES_CBC, AES_CBC_PAD, RSA_PKCS, SHA256
  check_fails "gm does not list $m" grep -qx "$m" "$WORK/mechs.gm"
  check "standard lists $m" grep -qx "$m" "$WORK/mechs.std"
done
for m in 0x80000b01 0x80000b12 0x80000b22 0x8e110010 0x8e110012 0x8e110001; do  # ... envelope (SM4-GCM under SM4 keys)
  check "gm lists $m" grep -qx "$m" "$WORK/mechs.gm"
done
check "gm: AES, RSA and SHA-256 attempts" $H refuse 1 "$WORK/refused"
check_eq "gm: every attempt is CKR_MECHANISM_INVALID" "$(cut -d' ' -f2 "$WORK/refused" | sort -u)" "CKR_MECHANISM_INVALID"
check "token model shows the mode" sh -c "pkcs11-tool --module '$MODULE' -L 2>/dev/null | grep -q 'p11kms soft gm'"

finish
