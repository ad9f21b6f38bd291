"""API keys for published models: `pk_live_` + 32 random bytes (URL-safe base64).

The store keeps a salted SHA-256 of each key and a short lookup id taken from the key's random part, so a
key is found in O(1) and compared in constant time, and the store never holds anything a caller could
present. (A slow hash buys nothing here: the key has 256 bits of entropy, nothing to guess.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "pk_live_"
LOOKUP_CHARS = 16  # 96 bits: unique enough to index, far too few to call with


@dataclass(frozen=True)
class StoredKey:
    """What the store keeps of a key."""

    lookup_id: str
    salt: str
    key_hash: str
    masked: str


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def generate() -> tuple[str, StoredKey]:
    """A new key (shown once) and what to store of it."""
    random_part = secrets.token_urlsafe(32)
    key = PREFIX + random_part
    salt = secrets.token_hex(16)
    return key, StoredKey(random_part[:LOOKUP_CHARS], salt, _digest(salt, key), mask(key))


def mask(key: str) -> str:
    return f"{PREFIX}{key[len(PREFIX) : len(PREFIX) + 4]}…"


def lookup_id(key: str) -> str | None:
    """The index of a presented key, or None when it cannot be one of ours."""
    if not key.startswith(PREFIX) or len(key) < len(PREFIX) + LOOKUP_CHARS + 8 or len(key) > 128:
        return None
    return key[len(PREFIX) : len(PREFIX) + LOOKUP_CHARS]


def matches(key: str, salt: str, key_hash: str) -> bool:
    return hmac.compare_digest(_digest(salt, key), key_hash)
