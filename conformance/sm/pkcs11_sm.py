#!/usr/bin/python3
"""PKCS#11 side of conformance/sm.sh: SM2/SM3/SM4 through libp11kms.so with
PyKCS11 (Debian's /usr/bin/python3, python3-pykcs11), vendor codes from
include/p11kms.h. Each subcommand does one thing and writes its result to a
file; sm.sh compares the results with OpenSSL's.

    pkcs11_sm.py MODULE init SLOT LABEL
    pkcs11_sm.py MODULE sm3 SLOT IN OUT                 digest
    pkcs11_sm.py MODULE sm4-cbc-pad SLOT KEYHEX IVHEX IN OUT
    pkcs11_sm.py MODULE sm2-gen SLOT LABEL SPKI_OUT     key pair, SPKI DER of the public key
    pkcs11_sm.py MODULE sm2-sign SLOT LABEL IN SIG_DER_OUT   CKM_SM3_SM2DSA, default ID, as DER
    pkcs11_sm.py MODULE import-pub SLOT LABEL POINTHEX  SM2 public key object from 04|x|y
    pkcs11_sm.py MODULE sm2-verify SLOT LABEL IN SIG_DER     OpenSSL's DER signature
    pkcs11_sm.py MODULE sm2-decrypt SLOT LABEL CT OUT         OpenSSL's DER ciphertext
    pkcs11_sm.py MODULE mechs SLOT OUT                   mechanism list, one hex code a line
    pkcs11_sm.py MODULE refuse SLOT OUT                  CK_RV names of AES/RSA attempts

User PIN "1234", SO PIN "12345678". Exit status 0 on success.
"""

import sys

import PyKCS11
from PyKCS11 import LowLevel

CKK_SM4 = 0x80000015
CKK_SM2 = 0x80000016
CKM_SM3 = 0x80000B01
CKM_SM4_CBC_PAD = 0x80000B13
CKM_SM2_KEY_PAIR_GEN = 0x80000B20
CKM_SM3_SM2DSA = 0x80000B22
CKM_SM2_ENCRYPT = 0x8E110010
SM2_PARAMS = bytes.fromhex("06082a811ccf5501822d")
USER_PIN = "1234"
SO_PIN = "12345678"


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der_int(v):
    v = v.lstrip(b"\0") or b"\0"
    if v[0] & 0x80:
        v = b"\0" + v
    return b"\x02" + der_len(len(v)) + v


def rs_to_der(sig):
    body = der_int(sig[:32]) + der_int(sig[32:])
    return b"\x30" + der_len(len(body)) + body


def der_to_rs(der):
    """SEQUENCE { INTEGER r, INTEGER s } -> r||s (short-form lengths only,
    which every SM2 signature has)."""
    if der[0] != 0x30 or der[1] != len(der) - 2:
        raise ValueError("not a DER signature")
    out, i = b"", 2
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not an INTEGER")
        n = der[i + 1]
        v = der[i + 2 : i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def session(lib, slot, login=True):
    slots = lib.getSlotList()
    s = lib.openSession(slots[int(slot)], PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    if login:
        s.login(USER_PIN)
    return s


def find(s, label, cls):
    objs = s.findObjects([(PyKCS11.CKA_LABEL, label), (PyKCS11.CKA_CLASS, cls)])
    if len(objs) != 1:
        raise SystemExit(f"expected one object labelled {label}, found {len(objs)}")
    return objs[0]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(bytes(data))


def main():
    module, cmd, slot, *args = sys.argv[1:]
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    if cmd == "init":
        (label,) = args
        lib.initToken(lib.getSlotList()[int(slot)], SO_PIN, label)
        s = session(lib, slot, login=False)
        s.login(SO_PIN, PyKCS11.CKU_SO)
        s.initPin(USER_PIN)
        s.logout()
    elif cmd == "sm3":
        src, out = args
        s = session(lib, slot)
        write(out, s.digest(read(src), PyKCS11.Mechanism(CKM_SM3)))
    elif cmd == "sm4-cbc-pad":
        keyhex, ivhex, src, out = args
        s = session(lib, slot)
        key = s.createObject([
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
            (PyKCS11.CKA_KEY_TYPE, CKK_SM4),
            (PyKCS11.CKA_VALUE, bytes.fromhex(keyhex)),
            (PyKCS11.CKA_ENCRYPT, True),
            (PyKCS11.CKA_TOKEN, False),
        ])
        write(out, s.encrypt(key, read(src), PyKCS11.Mechanism(CKM_SM4_CBC_PAD, bytes.fromhex(ivhex))))
    elif cmd == "sm2-gen":
        label, out = args
        s = session(lib, slot)
        pub, _ = s.generateKeyPair(
            [
                (PyKCS11.CKA_TOKEN, True),
                (PyKCS11.CKA_LABEL, label),
                (PyKCS11.CKA_EC_PARAMS, SM2_PARAMS),
                (PyKCS11.CKA_VERIFY, True),
                (PyKCS11.CKA_ENCRYPT, True),
            ],
            [
                (PyKCS11.CKA_TOKEN, True),
                (PyKCS11.CKA_LABEL, label),
                (PyKCS11.CKA_SIGN, True),
                (PyKCS11.CKA_DECRYPT, True),
                (PyKCS11.CKA_PRIVATE, True),
            ],
            PyKCS11.Mechanism(CKM_SM2_KEY_PAIR_GEN),
        )
        (spki,) = s.getAttributeValue(pub, [PyKCS11.CKA_PUBLIC_KEY_INFO])
        (kt,) = s.getAttributeValue(pub, [PyKCS11.CKA_KEY_TYPE])
        if kt != CKK_SM2:
            raise SystemExit(f"key type 0x{kt:x}")
        write(out, spki)
    elif cmd == "sm2-sign":
        label, src, out = args
        s = session(lib, slot)
        key = find(s, label, PyKCS11.CKO_PRIVATE_KEY)
        sig = bytes(s.sign(key, read(src), PyKCS11.Mechanism(CKM_SM3_SM2DSA)))
        if len(sig) != 64:
            raise SystemExit(f"signature of {len(sig)} bytes")
        write(out, rs_to_der(sig))
    elif cmd == "import-pub":
        label, point = args
        s = session(lib, slot)
        s.createObject([
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
            (PyKCS11.CKA_KEY_TYPE, CKK_SM2),
            (PyKCS11.CKA_TOKEN, True),
            (PyKCS11.CKA_LABEL, label),
            (PyKCS11.CKA_EC_PARAMS, SM2_PARAMS),
            (PyKCS11.CKA_EC_POINT, bytes.fromhex(point)),
            (PyKCS11.CKA_VERIFY, True),
        ])
    elif cmd == "sm2-verify":
        label, src, sigfile = args
        s = session(lib, slot)
        key = find(s, label, PyKCS11.CKO_PUBLIC_KEY)
        sig = der_to_rs(read(sigfile))
        if not s.verify(key, read(src), sig, PyKCS11.Mechanism(CKM_SM3_SM2DSA)):
            raise SystemExit("signature did not verify")
        bad = bytearray(sig)
        bad[5] ^= 1
        if s.verify(key, read(src), bytes(bad), PyKCS11.Mechanism(CKM_SM3_SM2DSA)):
            raise SystemExit("a flipped signature verified")
    elif cmd == "sm2-decrypt":
        label, ct, out = args
        s = session(lib, slot)
        key = find(s, label, PyKCS11.CKO_PRIVATE_KEY)
        write(out, s.decrypt(key, read(ct), PyKCS11.Mechanism(CKM_SM2_ENCRYPT)))
    elif cmd == "mechs":
        (out,) = args
        mechs = lib.getMechanismList(lib.getSlotList()[int(slot)])
        codes = []
        for m in mechs:
            # PyKCS11 names known codes and leaves vendor codes as strings.
            code = PyKCS11.CKM.get(m, m) if isinstance(m, str) else m
            codes.append(code if isinstance(code, int) else int(str(code).split("_")[-1], 16))
        write(out, "".join(f"0x{c:x}\n" for c in sorted(codes)).encode())
    elif cmd == "refuse":
        (out,) = args
        s = session(lib, slot)
        results = []
        for what, call in [
            ("AES_KEY_GEN", lambda: s.generateKey(
                [(PyKCS11.CKA_VALUE_LEN, 32), (PyKCS11.CKA_TOKEN, False)],
                PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN))),
            ("RSA_PKCS_KEY_PAIR_GEN", lambda: s.generateKeyPair(
                [(PyKCS11.CKA_MODULUS_BITS, 2048), (PyKCS11.CKA_TOKEN, False)],
                [(PyKCS11.CKA_TOKEN, False)],
                PyKCS11.Mechanism(PyKCS11.CKM_RSA_PKCS_KEY_PAIR_GEN))),
            ("SHA256", lambda: s.digest(b"abc", PyKCS11.Mechanism(PyKCS11.CKM_SHA256))),
        ]:
            try:
                call()
                results.append(f"{what} CKR_OK")
            except PyKCS11.PyKCS11Error as e:
                results.append(f"{what} {PyKCS11.CKR.get(e.value, hex(e.value))}")
        write(out, ("\n".join(results) + "\n").encode())
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
