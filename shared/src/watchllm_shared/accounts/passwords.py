"""Password hashes for dashboard users: scrypt from the standard library.

Parameters follow OWASP's password storage guidance for scrypt (N=2^17, r=8, p=1:
128 MiB and ~0.6 s on a 2-core development machine per hash), with a 16-byte random
salt and a 32-byte result. The stored form carries its parameters,
``$scrypt$ln=17,r=8,p=1$<salt>$<hash>`` (unpadded base64), so stronger parameters can
be adopted later: ``needs_rehash`` tells the sign-in path to store a new hash.

Unlike API keys (256 random bits, a fast hash is right), passwords are guessable, so
the hash must be slow and memory-hard. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

MIN_LENGTH = 12
MAX_LENGTH = 1024  # scrypt cost does not depend on it, but nobody needs more
_FORMAT = re.compile(r"^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")


@dataclass(frozen=True, slots=True)
class ScryptParams:
    log2_n: int = 17
    r: int = 8
    p: int = 1

    @property
    def max_memory(self) -> int:
        return 2 * 128 * self.r * (1 << self.log2_n) * self.p


CURRENT = ScryptParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=1 << params.log2_n, r=params.r, p=params.p,
        maxmem=params.max_memory, dklen=32,
    )  # fmt: skip


def check_strength(password: str) -> str | None:
    """Why this password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    return None


def hash_password(password: str, params: ScryptParams = CURRENT) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, params)
    return f"$scrypt$ln={params.log2_n},r={params.r},p={params.p}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[ScryptParams, bytes, bytes] | None:
    match = _FORMAT.match(stored)
    if match is None:
        return None
    log2_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not (10 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    return ScryptParams(log2_n, r, p), _unb64(match.group(4)), _unb64(match.group(5))


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    params, salt, expected = parsed
    return hmac.compare_digest(_derive(password, salt, params), expected)


def needs_rehash(stored: str) -> bool:
    parsed = _parse(stored)
    return parsed is None or parsed[0] != CURRENT


# Verified against when the username is unknown, so both cases take the same time.
DUMMY_HASH = "$scrypt$ln=17,r=8,p=1$" + _b64(b"\0" * 16) + "$" + _b64(b"\0" * 32)
