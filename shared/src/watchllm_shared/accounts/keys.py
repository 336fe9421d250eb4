"""WatchLLM API keys: ``lgw_`` + 43 URL-safe characters (32 random bytes).

A key is shown once, at creation. Postgres stores only its SHA-256 (a fast hash is
right here: the key is 256 random bits, not a password, so it cannot be brute-forced,
and the gateway hashes on every uncached lookup) and a short display prefix
(``lgw_AbCd1234``) so operators can tell keys apart in listings.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "lgw_"
_KEY_SHAPE = re.compile(r"^lgw_[A-Za-z0-9_\-]{43}$")
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(candidate: str) -> bool:
    """Cheap shape check before any hashing or lookup."""
    return _KEY_SHAPE.match(candidate) is not None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]
