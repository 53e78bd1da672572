#!/usr/bin/env bash
# Customer master keys end to end: the admin CLI `p11kms key ...` changes a
# key's lifecycle and pkcs11-tool / PyKCS11, through the real module, see the
# effect; rotation keeps envelope ciphertext decryptable; key material
# wrapped by `openssl pkeyutl` with the import parameters imports, and the
# origin attributes tell imported from generated keys and cannot be forged.
. "$(dirname "$0")/lib.sh"

if [ "$TARGET" != p11kms ]; then
  skip "kms.sh" "the KMS layer is p11kms's own; nothing to compare with $TARGET"
  finish
fi

CLI=${P11KMS_CLI:-$ROOT/target/$PROFILE/p11kms}
SO=12345678
PIN=1234
export P11KMS_SO_PIN=$SO
PY=/usr/bin/python3

section "daemon and token"
start_daemon || { fail "start p11kmsd"; finish; }
init_token kms "$SO" "$PIN"
P=(p11 --token-label kms --login --pin "$PIN")
IV=000102030405060708090a0b0c0d0e0f
head -c 64 /dev/urandom >"$WORK/plain"

section "create, then the lifecycle as pkcs11-tool sees it"
check "p11kms key create --alias k1 --json" sh -c "'$CLI' key create --alias k1 --json >'$WORK/k1.json'"
KEY_ID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_id"])' "$WORK/k1.json" 2>/dev/null)
check_eq "key id looks like key-<uuid>" "$(echo "$KEY_ID" | grep -Ec '^key-[0-9a-f-]{36}$')" 1
check "pkcs11-tool finds an AES key labelled k1" sh -c "pkcs11-tool --module '$MODULE' --token-label kms --login --pin $PIN -O --type secrkey --label k1 2>/dev/null | grep -q 'AES length 32'"
# pkcs11-tool picks the key for --encrypt by --id (it ignores --label there);
# a key's CKA_ID is its key id.
id_hex() { printf %s "$1" | od -An -v -tx1 | tr -d ' \n'; }
K1_ID=$(id_hex "$KEY_ID")
encrypt() { "${P[@]}" --encrypt -m AES-CBC-PAD --iv $IV --id "$K1_ID" -i "$WORK/plain" -o "$WORK/ct"; }
check "encrypt with k1 while Enabled" encrypt
check "p11kms key disable k1" "$CLI" key disable k1
CHECK_OUTPUT_RE=KEY_FUNCTION_NOT_PERMITTED check_fails "encrypt refused while Disabled (CKR_KEY_FUNCTION_NOT_PERMITTED)" encrypt
check "p11kms key enable $KEY_ID" "$CLI" key enable "$KEY_ID"
check "encrypt works again after enable" encrypt
check "p11kms key schedule-deletion k1 --pending-days 7" "$CLI" key schedule-deletion k1 --pending-days 7
check "describe says PendingDeletion" sh -c "'$CLI' key describe k1 --json | grep -q '\"state\": \"PendingDeletion\"'"
CHECK_OUTPUT_RE=KEY_FUNCTION_NOT_PERMITTED check_fails "encrypt refused while PendingDeletion" encrypt
check "p11kms key cancel-deletion k1" "$CLI" key cancel-deletion k1
check "encrypt works after cancel-deletion" encrypt
check_fails "a 3-day window is refused (7..366)" "$CLI" key schedule-deletion k1 --pending-days 3
check_fails "a wrong SO PIN is refused" env P11KMS_SO_PIN=00000000 "$CLI" key list
# A PIN in argv is readable by every local user (/proc/PID/cmdline).
CHECK_OUTPUT_RE="so-pin is not accepted" check_fails "--so-pin on the command line is refused" "$CLI" key list --so-pin "$SO"
printf '%s\n' "$SO" >"$WORK/so.pin" && chmod 600 "$WORK/so.pin"
check "--so-pin-file reads the SO PIN from a private file" env -u P11KMS_SO_PIN "$CLI" key list --so-pin-file "$WORK/so.pin"

section "service keys"
check "create a service key" "$CLI" key create --alias svc --service rds
check_fails "a service key cannot be disabled" "$CLI" key disable svc
check_fails "a service key cannot be rotated" "$CLI" key rotate svc
check_fails "a service key cannot be deleted" "$CLI" key schedule-deletion svc --pending-days 7
check "the default key exists (AES_256, flagged default)" sh -c "'$CLI' key list --json | $PY -c 'import json,sys; ks=[k for k in json.load(sys.stdin) if k[\"default_key\"]]; sys.exit(0 if len(ks)==1 and ks[0][\"spec\"]==\"AES_256\" else 1)'"

section "import of key material (openssl pkeyutl wraps it)"
check "create --origin EXTERNAL" "$CLI" key create --alias byok --origin EXTERNAL
check "state PendingImport" sh -c "'$CLI' key describe byok --json | grep -q '\"state\": \"PendingImport\"'"
check "import-params RSAES_OAEP_SHA_256 / RSA_2048" "$CLI" key import-params byok --wrapping-algorithm RSAES_OAEP_SHA_256 \
  --wrapping-key-spec RSA_2048 --public-key-out "$WORK/wrap.pem" --token-out "$WORK/import.token"
head -c 32 /dev/urandom >"$WORK/material"
check "openssl pkeyutl wraps 32 bytes with OAEP-SHA256" openssl pkeyutl -encrypt -pubin -inkey "$WORK/wrap.pem" \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$WORK/material" -out "$WORK/material.enc"
check "p11kms key import" "$CLI" key import byok --import-token "$WORK/import.token" --material "$WORK/material.enc"
check_fails "the same import token is refused the second time" "$CLI" key import byok --import-token "$WORK/import.token" --material "$WORK/material.enc"
check "imported key is Enabled" sh -c "'$CLI' key describe byok --json | grep -q '\"state\": \"Enabled\"'"
# The imported material is the one that encrypts: compare with openssl enc.
MAT_HEX=$(hex_of "$WORK/material")
BYOK_ID=$(id_hex "$("$CLI" key describe byok --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')")
check "pkcs11-tool encrypts with the imported key" "${P[@]}" --encrypt -m AES-CBC-PAD --iv $IV --id "$BYOK_ID" -i "$WORK/plain" -o "$WORK/byok.ct"
openssl enc -aes-256-cbc -K "$MAT_HEX" -iv $IV -in "$WORK/plain" -out "$WORK/byok.expected" 2>/dev/null
check_same "ciphertext equals openssl enc with the imported material" "$WORK/byok.ct" "$WORK/byok.expected"

section "origin attributes, envelope encryption across rotation (PyKCS11)"
cat >"$WORK/kms.py" <<'PY'
import sys
import PyKCS11
from PyKCS11.LowLevel import CKA_LOCAL

CKA_P11KMS_ORIGIN = 0x8E110001
CKA_P11KMS_KEY_VERSION = 0x8E110003
CKM_P11KMS_AES_GCM_ENVELOPE = 0x8E110001
mod, pin, phase = sys.argv[1], sys.argv[2], sys.argv[3]
lib = PyKCS11.PyKCS11Lib()
lib.load(mod)
slot = lib.getSlotList(tokenPresent=True)[0]
s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
s.login(pin)
ok = True

def check(what, cond):
    global ok
    print(("PASS  " if cond else "FAIL  ") + what)
    ok = ok and cond

def key(label):
    found = s.findObjects([(PyKCS11.CKA_LABEL, label), (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY)])
    return found[0]

def attr_ulong(o, t):
    return s.getAttributeValue(o, [t], allAsBinary=True)[0]

def env(key_handle, data, decrypt=False):
    m = PyKCS11.Mechanism(CKM_P11KMS_AES_GCM_ENVELOPE, b"table=orders")
    f = s.decrypt if decrypt else s.encrypt
    return bytes(f(key_handle, data, m))

if phase == "origin":
    gen, imp = key("k1"), key("byok")
    def origin(o):
        return int.from_bytes(bytes(attr_ulong(o, CKA_P11KMS_ORIGIN)), "little")
    def local(o):
        return bytes(attr_ulong(o, CKA_LOCAL)) == b"\x01"
    check("generated key: CKA_P11KMS_ORIGIN = KMS (1)", origin(gen) == 1)
    check("generated key: CKA_LOCAL = TRUE", local(gen))
    check("imported key: CKA_P11KMS_ORIGIN = EXTERNAL (2)", origin(imp) == 2)
    check("imported key: CKA_LOCAL = FALSE", not local(imp))
    for name, template in [("CKA_LOCAL", [(CKA_LOCAL, PyKCS11.CK_TRUE)]), ("CKA_P11KMS_ORIGIN", [(CKA_P11KMS_ORIGIN, (1).to_bytes(8, "little"))])]:
        try:
            s.setAttributeValue(imp, template)
            check("setting %s is refused" % name, False)
        except PyKCS11.PyKCS11Error as e:
            # A KMS-managed key changes only through the lifecycle commands:
            # PKCS#11 gets CKR_ACTION_PROHIBITED for any attribute (a plain
            # PKCS#11 key would answer CKR_ATTRIBUTE_READ_ONLY).
            check("setting %s fails with CKR_ACTION_PROHIBITED" % name, e.value == 0x1B)  # CKR_ACTION_PROHIBITED (PyKCS11 has no name for it)
    ct = env(gen, b"row 1 before rotation")
    open(sys.argv[4], "wb").write(ct)
    n = ct[5]
    check("envelope ciphertext names key id and version 1",
          ct[:4] == b"P11E" and ct[6:6 + n].startswith(b"key-") and int.from_bytes(ct[6 + n:10 + n], "big") == 1)
elif phase == "after-rotation":
    gen = key("k1")
    old = open(sys.argv[4], "rb").read()
    check("ciphertext from before the rotation still decrypts",
          env(gen, old, decrypt=True) == b"row 1 before rotation")
    ct = env(gen, b"row 2")
    n = ct[5]
    check("new ciphertext names version 2", int.from_bytes(ct[6 + n:10 + n], "big") == 2)
    check("new ciphertext decrypts", env(gen, ct, decrypt=True) == b"row 2")
    v1 = s.findObjects([(PyKCS11.CKA_LABEL, "k1#v1")])
    check("version 1 is its own object with CKA_P11KMS_KEY_VERSION = 1",
          len(v1) == 1 and int.from_bytes(bytes(attr_ulong(v1[0], CKA_P11KMS_KEY_VERSION)), "little") == 1)
    bad = bytearray(old)
    bad[-1] ^= 1
    try:
        env(gen, bytes(bad), decrypt=True)
        check("tampered envelope is refused", False)
    except PyKCS11.PyKCS11Error as e:
        check("tampered envelope fails with CKR_ENCRYPTED_DATA_INVALID", e.value == PyKCS11.CKR_ENCRYPTED_DATA_INVALID)
s.logout()
sys.exit(0 if ok else 1)
PY
run_py() { "$PY" "$WORK/kms.py" "$MODULE" "$PIN" "$1" "$WORK/env.ct" >"$WORK/py.out" 2>&1; local rc=$?; cat "$WORK/py.out"; cp "$WORK/py.out" "$WORK/py-$1.out"; return $rc; }
count_py() {
  local p f
  p=$(grep -c '^PASS' "$WORK/py.out"); f=$(grep -c '^FAIL' "$WORK/py.out")
  PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
  if [ "$1" -ne 0 ] && [ "$f" -eq 0 ]; then fail "PyKCS11 phase $2 crashed"; sed 's/^/      | /' "$WORK/py.out" | tail -n 10; fi
}
run_py origin; count_py $? origin
check "p11kms key rotate k1" "$CLI" key rotate k1
check "versions lists v1 and v2 (primary)" sh -c "'$CLI' key versions k1 | grep -q 'v2.*primary'"
restart_daemon || fail "restart p11kmsd"
run_py after-rotation; count_py $? after-rotation

finish
