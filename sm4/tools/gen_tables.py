#!/usr/bin/env python3
"""Derive the constants of p11kms-sm4's AES-NI kernels (src/tables.rs).

SM4's S-box is an inversion in GF(2^8) mod x^8+x^7+x^6+x^5+x^4+x^2+1 between
two copies of the affine map A (rows 0xE5 ... 0xCB, constant 0xD3). AES's
S-box is an inversion mod x^8+x^4+x^3+x+1 followed by its own affine map.
The fields are isomorphic, so S_sm4 = B2 . S_aes . B1 for two affine maps
B1, B2 that this script finds and checks against the S-box table of the
standard (GB/T 32907-2016). Every table it prints is checked again by the
crate's tests; run it only to regenerate src/tables.rs:

    python3 sm4/tools/gen_tables.py > sm4/src/tables.rs
"""

SBOX = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
]

SM4_POLY, AES_POLY = 0x1F5, 0x11B


def gmul(a, b, p):
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= p
    return r


def ginv(x, p):
    return 0 if x == 0 else next(y for y in range(1, 256) if gmul(x, y, p) == 1)


def parity(x):
    return bin(x).count("1") & 1


def sm4_affine(x):
    # Output bit i is row i; a row's most significant bit weighs input bit 0.
    rows = [0xE5, 0xF2, 0x79, 0xBC, 0x5E, 0x2F, 0x97, 0xCB]
    rev = lambda b: int(f"{b:08b}"[::-1], 2)
    return sum(parity(rev(r) & x) << i for i, r in enumerate(rows))


def rotl8(x, n):
    return ((x << n) | (x >> (8 - n))) & 0xFF


AES_SBOX = [0] * 256
for _x in range(256):
    _b = ginv(_x, AES_POLY)
    AES_SBOX[_x] = _b ^ rotl8(_b, 1) ^ rotl8(_b, 2) ^ rotl8(_b, 3) ^ rotl8(_b, 4) ^ 0x63
AES_INV = [AES_SBOX.index(y) for y in range(256)]

assert all(sm4_affine(ginv(sm4_affine(x) ^ 0xD3, SM4_POLY)) ^ 0xD3 == SBOX[x] for x in range(256))

# The isomorphism phi: GF(2^8)/SM4_POLY -> GF(2^8)/AES_POLY maps x to a root
# beta of SM4_POLY in the AES field.
def poly_eval(beta):
    acc, power = 0, 1
    for i in range(9):
        if SM4_POLY >> i & 1:
            acc ^= power
        power = gmul(power, beta, AES_POLY)
    return acc


beta = next(b for b in range(2, 256) if poly_eval(b) == 0)
powers = [1]
for _ in range(7):
    powers.append(gmul(powers[-1], beta, AES_POLY))


def phi(x):
    r = 0
    for i in range(8):
        if x >> i & 1:
            r ^= powers[i]
    return r


def b1(x):
    return phi(sm4_affine(x) ^ 0xD3)


B1_INV = {b1(x): x for x in range(256)}
assert len(B1_INV) == 256


def b2(y):
    return SBOX[B1_INV[AES_INV[y]]]


def is_affine(f):
    c = f(0)
    return all(f(a ^ b) ^ c == f(a) ^ f(b) for a in range(256) for b in (1, 2, 4, 8, 16, 32, 64, 128))


assert is_affine(b1) and is_affine(b2)
assert all(b2(AES_SBOX[b1(x)]) == SBOX[x] for x in range(256))


def b1lin(x):
    return b1(x) ^ b1(0)


def b1lin_inv(v):
    return B1_INV[v ^ b1(0)]


def rotl32(v, n):
    return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF


def el(v):
    return v ^ rotl32(v, 2) ^ rotl32(v, 10) ^ rotl32(v, 18) ^ rotl32(v, 24)


def lam(d, s):
    """Byte d (0 = most significant) of L(B2(s) << 24), in the B1-linear domain."""
    return b1lin((el(b2(s) << 24) >> (24 - 8 * d)) & 0xFF)


def nibbles(f):
    """(lo, hi) with f(x) == lo[x & 15] ^ hi[x >> 4] for an affine f."""
    lo = [f(n) for n in range(16)]
    hi = [f(n << 4) ^ f(0) for n in range(16)]
    assert all(lo[x & 15] ^ hi[x >> 4] == f(x) for x in range(256))
    return lo, hi


def emit(name, doc, values):
    body = ", ".join(f"0x{v:02x}" for v in values)
    print(f"/// {doc}")
    print(f"pub const {name}: [u8; 16] = [{body}];")


print("//! Constants of the AES-NI kernels, generated by `tools/gen_tables.py`")
print("//! (which derives and checks them); the crate's tests check them again.")
print("//! Each affine byte map f is split as f(x) = LO[x & 15] ^ HI[x >> 4].")
print()
for name, f, doc in [
    ("B1", b1, "B1: SM4 input byte to the AES S-box input (S_sm4 = B2 . S_aes . B1)."),
    ("B2", b2, "B2: AES S-box output byte to the SM4 S-box output."),
    ("B1_LIN", b1lin, "The linear part of B1 (B1 without its constant): into the single-block domain."),
    ("B1_LIN_INV", b1lin_inv, "The inverse of `B1_LIN`: out of the single-block domain."),
]:
    lo, hi = nibbles(f)
    emit(f"{name}_LO", doc + " Low nibble.", lo)
    emit(f"{name}_HI", doc + " High nibble.", hi)
# L(v << 24) for a byte v is (v ^ (v << 2), v ^ (v >> 6), rotl8(v, 2),
# rotl8(v, 2)) by byte: bytes 2 and 3 are the same map, and byte 1 is the
# XOR of bytes 0 and 2. The kernel needs only F0 and G = F2 = F3.
assert all(lam(2, x) == lam(3, x) and lam(1, x) == lam(0, x) ^ lam(2, x) for x in range(256))
lo, hi = nibbles(lambda s: lam(0, s))
doc = "F0: AES S-box output byte s to byte 0 of L(B2(s) << 24), B1-linear domain."
emit("F0_LO", doc + " Low nibble.", lo)
emit("F0_HI", doc + " High nibble.", hi)
lo, hi = nibbles(lambda s: lam(2, s))
doc = "G: the same for bytes 2 and 3 (byte 1 is F0 ^ G)."
emit("G_LO", doc + " Low nibble.", lo)
emit("G_HI", doc + " High nibble.", hi)
print(f"/// The constant of B1 (B1(0)), added once per round in the single-block domain.")
print(f"pub const B1_CONST: u8 = 0x{b1(0):02x};")
