"""Envelope encryption for the vault: AES-256-GCM under a data key, the data key wrapped under the master key.

Two layers so the master key (in an environment variable or a file outside the database) never
encrypts bulk data, and the database alone (a dump, a backup) holds nothing readable. Every
encryption takes a fresh random 96-bit nonce; one data key stays far below the 2^32 encryptions
after which random GCM nonces would risk repeating, since it is replaced on every rotation.

Associated data binds each ciphertext to what it belongs to: a wrapped data key to its id, a
credential to its (identity, upstream, kind). Authentication fails, rather than decrypting to
someone else's secret, when bytes are moved between rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_gateway.vault.errors import MasterKeyError, VaultError, WrongMasterKey
from mcp_gateway.vault.keyfile import create_key_file, read_key_file

MASTER_KEY_ENV = "MCPGW_MASTER_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12

_KEY_CHECK_LABEL = b"mcpgw vault key check v1"
_DATA_KEY_CONTEXT = b"mcpgw vault data key v1\x00"
_CREDENTIAL_CONTEXT = b"mcpgw vault credential v1\x00"
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_KEY_FORMAT = (
    f"the base64 (or base64url) encoding of exactly {KEY_BYTES} random bytes, e.g. from `openssl rand -base64 32`"
)


class MasterKey:
    """The 32-byte key that wraps the vault's data keys. Its bytes never appear in a repr, str or message.

    `source` says where it came from ("MCPGW_MASTER_KEY", a key file path, ...), for error messages;
    `created` is True when the key file was created just now, which is worth saying when it then
    does not unlock an existing vault.
    """

    __slots__ = ("_key", "created", "path", "source")

    def __init__(
        self, key: bytes, *, source: str = "generated", path: Path | None = None, created: bool = False
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)
        self.source = source
        self.path = path
        self.created = created

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MasterKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]  # equal keys must not be usable as dict keys by accident

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def decode(cls, text: str, *, source: str, path: Path | None = None) -> MasterKey:
        """Parse base64 or base64url (padding optional, surrounding whitespace ignored).

        Raises:
            MasterKeyError: naming `source` and the expected format, never the text itself.
        """
        value = text.strip()
        if not _BASE64.fullmatch(value):
            raise MasterKeyError(f"{source} must hold {_KEY_FORMAT}; it is not base64")
        value = value.rstrip("=").replace("-", "+").replace("_", "/")
        try:
            key = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"{source} must hold {_KEY_FORMAT}; it is not base64") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"{source} must hold {_KEY_FORMAT}; it decodes to {len(key)} bytes")
        return cls(key, source=source, path=path)

    def encode(self) -> str:
        """base64url with padding: 44 characters, safe in a file, an environment variable or a URL."""
        return base64.urlsafe_b64encode(self._key).decode("ascii")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], key_file: Path, *, create: bool = True) -> MasterKey:
        """`$MCPGW_MASTER_KEY` when set, else the key file, which is created (mode 0600) when missing and `create`.

        Blocking file I/O on a tiny file: from the event loop, use `load_master_key`.

        Raises:
            MasterKeyError: the variable or the file is malformed, the file is accessible to group or
                others, or (with `create=False`) there is no key at all.
        """
        value = environ.get(MASTER_KEY_ENV)
        if value is not None:
            if not value.strip():
                raise MasterKeyError(f"{MASTER_KEY_ENV} is set but empty: unset it or set it to {_KEY_FORMAT}")
            return cls.decode(value, source=MASTER_KEY_ENV)
        text = read_key_file(key_file)
        if text is None:
            if not create:
                raise MasterKeyError(f"no master key: {MASTER_KEY_ENV} is not set and {key_file} does not exist")
            key = cls.generate()
            if create_key_file(key_file, key.encode()):
                return cls(key._key, source=f"key file {key_file}", path=key_file, created=True)
            text = read_key_file(key_file)  # another process created it first: use theirs
            if text is None:
                raise MasterKeyError(f"the master key file {key_file} vanished while it was being created")
        return cls.decode(text, source=f"master key file {key_file}", path=key_file)

    def key_check(self) -> bytes:
        """A one-way fingerprint stored beside each wrapped data key, to tell "wrong key" from "damaged data"."""
        return hmac.new(self._key, _KEY_CHECK_LABEL, hashlib.sha256).digest()[:16]

    def _aead(self) -> AESGCM:
        return AESGCM(self._key)


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as stored: ciphertext under the master key, its nonce, and the master key's check value."""

    wrapped_key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    key_check: bytes = field(repr=False)


class DataKey:
    """An unwrapped data key: encrypts and decrypts credentials. It only ever exists in memory.

    AESGCM objects are safe to share between tasks and threads, so one instance serves every caller.
    """

    __slots__ = ("_aead", "_key", "id")

    def __init__(self, id: str, key: bytes) -> None:
        self.id = id
        self._key = bytes(key)
        self._aead = AESGCM(self._key)

    def __repr__(self) -> str:
        return f"DataKey(id={self.id!r})"

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_hex(16), AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def wrap(self, master: MasterKey) -> WrappedKey:
        nonce = os.urandom(NONCE_BYTES)
        wrapped = master._aead().encrypt(nonce, self._key, _DATA_KEY_CONTEXT + self.id.encode())
        return WrappedKey(wrapped_key=wrapped, nonce=nonce, key_check=master.key_check())

    @classmethod
    def unwrap(cls, id: str, stored: WrappedKey, master: MasterKey) -> DataKey:
        """Raises `WrongMasterKey` for another master key, `VaultError` for a damaged wrapped key."""
        if not hmac.compare_digest(stored.key_check, master.key_check()):
            raise WrongMasterKey(
                f"the master key ({master.source}) does not unlock this vault's data key; was it rotated? "
                "Use the key from the last `mcpgw vault rotate` (it writes the key file, or prints the key "
                f"when {MASTER_KEY_ENV} is used)"
            )
        try:
            key = master._aead().decrypt(stored.nonce, stored.wrapped_key, _DATA_KEY_CONTEXT + id.encode())
        except InvalidTag:
            raise VaultError(
                f"the vault's data key {id} is damaged: it does not authenticate under the master key it was "
                "wrapped with; restore the vault_key table from a backup"
            ) from None
        return cls(id, key)

    def seal(self, plaintext: bytes, context: bytes) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) for `plaintext`, bound to `context`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, context)

    def open(self, nonce: bytes, ciphertext: bytes, context: bytes) -> bytes | None:
        """The plaintext, or None when the ciphertext does not authenticate under this key and `context`."""
        try:
            return self._aead.decrypt(nonce, ciphertext, context)
        except InvalidTag:
            return None


def credential_context(identity_key: str, upstream: str, kind: str) -> bytes:
    """Associated data for a credential: a JSON array, so no choice of names can make two triples collide."""
    return _CREDENTIAL_CONTEXT + json.dumps([identity_key, upstream, kind], ensure_ascii=False).encode()
