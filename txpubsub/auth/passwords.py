"""Password hashes for the users file: scrypt from the standard library.

The stored form is the PHC string passlib also writes,
``$scrypt$ln=<log2 n>,r=<r>,p=<p>$<salt>$<hash>`` (base64 without padding),
so the parameters travel with each hash and can be raised later without
breaking old lines.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct

# n = 2**14, r = 8: 16 MiB and about 0.1 s per check on one core with
# CPython (OWASP's scrypt minimum is n = 2**17 at r = 8, p = 1; we take a
# lower cost because every AUTH pays it on the server's shared thread pool;
# `txpubsub passwd --cost` raises it). On PyPy (Python scrypt) about 1 s.
DEFAULT_LN = 14
DEFAULT_R = 8
DEFAULT_P = 1
# What a users file may ask for: more would let one line of it take the
# server's memory or a long time per AUTH.
MAX_LN = 20
MAX_R = 32
MAX_P = 16
MAX_MEMORY = 1 << 30
SALT_BYTES = 16
HASH_BYTES = 32

_FORM = re.compile(
    r"\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,3}),p=([0-9]{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, ln: int = DEFAULT_LN, r: int = DEFAULT_R,
                  p: int = DEFAULT_P) -> str:
    """A salted scrypt hash of ``password`` in the PHC string form."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password.encode(), salt, ln, r, p, HASH_BYTES)
    return f"$scrypt$ln={ln},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def _scrypt(password: bytes, salt: bytes, ln: int, r: int, p: int, size: int) -> bytes:
    if _HAVE_SCRYPT:
        return hashlib.scrypt(password, salt=salt, n=1 << ln, r=r, p=p,
                              maxmem=min(MAX_MEMORY, 256 * r * (1 << ln) + (1 << 20)),
                              dklen=size)
    return scrypt_python(password, salt, 1 << ln, r, p, size)


# PyPy 3.9's hashlib has no scrypt (CPython's comes from OpenSSL): there, the
# same function (RFC 7914) in Python, which PyPy's JIT makes fast enough.
_HAVE_SCRYPT = hasattr(hashlib, "scrypt")
_M = 0xFFFFFFFF


def _salsa20_8(b: list[int]) -> list[int]:
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = b
    for _ in range(4):
        t = (x0 + x12) & _M
        x4 ^= ((t << 7) | (t >> 25)) & _M
        t = (x4 + x0) & _M
        x8 ^= ((t << 9) | (t >> 23)) & _M
        t = (x8 + x4) & _M
        x12 ^= ((t << 13) | (t >> 19)) & _M
        t = (x12 + x8) & _M
        x0 ^= ((t << 18) | (t >> 14)) & _M
        t = (x5 + x1) & _M
        x9 ^= ((t << 7) | (t >> 25)) & _M
        t = (x9 + x5) & _M
        x13 ^= ((t << 9) | (t >> 23)) & _M
        t = (x13 + x9) & _M
        x1 ^= ((t << 13) | (t >> 19)) & _M
        t = (x1 + x13) & _M
        x5 ^= ((t << 18) | (t >> 14)) & _M
        t = (x10 + x6) & _M
        x14 ^= ((t << 7) | (t >> 25)) & _M
        t = (x14 + x10) & _M
        x2 ^= ((t << 9) | (t >> 23)) & _M
        t = (x2 + x14) & _M
        x6 ^= ((t << 13) | (t >> 19)) & _M
        t = (x6 + x2) & _M
        x10 ^= ((t << 18) | (t >> 14)) & _M
        t = (x15 + x11) & _M
        x3 ^= ((t << 7) | (t >> 25)) & _M
        t = (x3 + x15) & _M
        x7 ^= ((t << 9) | (t >> 23)) & _M
        t = (x7 + x3) & _M
        x11 ^= ((t << 13) | (t >> 19)) & _M
        t = (x11 + x7) & _M
        x15 ^= ((t << 18) | (t >> 14)) & _M
        t = (x0 + x3) & _M
        x1 ^= ((t << 7) | (t >> 25)) & _M
        t = (x1 + x0) & _M
        x2 ^= ((t << 9) | (t >> 23)) & _M
        t = (x2 + x1) & _M
        x3 ^= ((t << 13) | (t >> 19)) & _M
        t = (x3 + x2) & _M
        x0 ^= ((t << 18) | (t >> 14)) & _M
        t = (x5 + x4) & _M
        x6 ^= ((t << 7) | (t >> 25)) & _M
        t = (x6 + x5) & _M
        x7 ^= ((t << 9) | (t >> 23)) & _M
        t = (x7 + x6) & _M
        x4 ^= ((t << 13) | (t >> 19)) & _M
        t = (x4 + x7) & _M
        x5 ^= ((t << 18) | (t >> 14)) & _M
        t = (x10 + x9) & _M
        x11 ^= ((t << 7) | (t >> 25)) & _M
        t = (x11 + x10) & _M
        x8 ^= ((t << 9) | (t >> 23)) & _M
        t = (x8 + x11) & _M
        x9 ^= ((t << 13) | (t >> 19)) & _M
        t = (x9 + x8) & _M
        x10 ^= ((t << 18) | (t >> 14)) & _M
        t = (x15 + x14) & _M
        x12 ^= ((t << 7) | (t >> 25)) & _M
        t = (x12 + x15) & _M
        x13 ^= ((t << 9) | (t >> 23)) & _M
        t = (x13 + x12) & _M
        x14 ^= ((t << 13) | (t >> 19)) & _M
        t = (x14 + x13) & _M
        x15 ^= ((t << 18) | (t >> 14)) & _M
    x = (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)
    return [(a + c) & _M for a, c in zip(b, x)]


def _blockmix(b: list[int], r: int) -> list[int]:
    x = b[-16:]
    even: list[int] = []
    odd: list[int] = []
    for i in range(2 * r):
        x = _salsa20_8([a ^ c for a, c in zip(x, b[16 * i:16 * i + 16])])
        (odd if i & 1 else even).extend(x)
    return even + odd


def scrypt_python(password: bytes, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    """scrypt (RFC 7914) in Python, for interpreters whose hashlib has none."""
    words = 32 * r
    data = hashlib.pbkdf2_hmac("sha256", password, salt, 1, p * 128 * r)
    mixed = []
    for k in range(p):
        x = list(struct.unpack(f"<{words}I", data[k * 128 * r:(k + 1) * 128 * r]))
        v = []
        for _ in range(n):
            v.append(x)
            x = _blockmix(x, r)
        last = words - 16
        for _ in range(n):
            j = x[last] & (n - 1)
            x = _blockmix([a ^ c for a, c in zip(x, v[j])], r)
        mixed.append(struct.pack(f"<{words}I", *x))
    return hashlib.pbkdf2_hmac("sha256", password, b"".join(mixed), 1, size)


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """(ln, r, p, salt, digest) of a stored hash; ValueError saying what is wrong."""
    found = _FORM.fullmatch(stored)
    if found is None:
        raise ValueError("not a txpubsub passwd line ($scrypt$ln=..,r=..,p=..$salt$hash)")
    ln, r, p = int(found[1]), int(found[2]), int(found[3])
    if not (1 <= ln <= MAX_LN and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise ValueError(f"scrypt parameters out of range (ln 1-{MAX_LN}, r 1-{MAX_R}, "
                         f"p 1-{MAX_P})")
    if 128 * r * (1 << ln) > MAX_MEMORY:
        raise ValueError("scrypt parameters would need more than 1 GiB per check")
    try:
        salt, digest = _unb64(found[4]), _unb64(found[5])
    except ValueError:
        raise ValueError("salt or hash is not base64") from None
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return ln, r, p, salt, digest


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time compare)."""
    try:
        ln, r, p, salt, digest = parse_hash(stored)
    except ValueError:
        return False
    candidate = _scrypt(password.encode(), salt, ln, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)
