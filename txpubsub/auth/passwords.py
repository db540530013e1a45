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

# n = 2**14, r = 8: 16 MiB and roughly 50 ms per check on one core (OWASP's
# scrypt minimum is n = 2**17 at r = 8, p = 1; we take a lower cost because the
# server checks on a thread of a shared pool; an operator may raise it).
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
    return hashlib.scrypt(password, salt=salt, n=1 << ln, r=r, p=p,
                          maxmem=min(MAX_MEMORY, 256 * r * (1 << ln) + (1 << 20)), dklen=size)


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
