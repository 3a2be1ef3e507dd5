"""Virtual key material: how keys look and how the store recognises them without keeping them."""

from __future__ import annotations

import hashlib
import secrets

VIRTUAL_KEY_PREFIX = "sk-mcpgw-"
KEY_PREFIX_LENGTH = 12
"""Characters of a key kept in the clear (`key_prefix`) so people can tell their keys apart."""


def generate_virtual_key() -> str:
    """A new key: `sk-mcpgw-` followed by 32 random bytes (256 bits) in URL-safe base64."""
    return VIRTUAL_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_virtual_key(key: str) -> str:
    """The lookup form of a key: hex SHA-256 of the whole key, the only form the store keeps.

    A plain fast hash is the right tool here, unlike for passwords: a virtual key carries 256 bits
    of randomness, so no dictionary or brute-force search of the hash is feasible however fast the
    hash is, and a slow KDF (bcrypt, argon2) would only add its deliberate latency to every request
    that presents a key, without adding security. A hash that is deterministic is also what lets
    the request path find the key with one indexed equality lookup.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The first characters of a key, safe to store and show (`sk-mcpgw-` plus 3 random characters)."""
    return key[:KEY_PREFIX_LENGTH]
