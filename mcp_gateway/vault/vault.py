"""`Vault`: per-identity upstream credentials, encrypted at rest, decrypted only when asked for.

A credential belongs to an (identity key, upstream, kind) triple. Identity keys are opaque and
secret-free ("vk:<id>", "user:<sub>", "session:<hash>", "shared", "gateway"), so they, upstream
names, kinds and ids may appear in logs and messages; a secret never does.

The unwrapped data key is kept in memory for the process's lifetime and every `get` decrypts
afresh (microseconds), so no plaintext is cached. A `Vault` is safe to share between tasks: its
key ring is replaced whole, never mutated, and re-reading it after another process rotated the
vault happens once, under a lock.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import anyio

from mcp_gateway.store import Store
from mcp_gateway.store import credentials as rows
from mcp_gateway.vault.crypto import DataKey, MasterKey, WrappedKey, credential_context
from mcp_gateway.vault.errors import CredentialUnreadable, VaultError

logger = logging.getLogger(__name__)


class CredentialState(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    """The upstream refused it: the owner has to supply it again (a new `put` makes it active)."""


class CredentialKind(StrEnum):
    HEADERS = "headers"
    """Header values a caller typed into the gateway's form."""
    OAUTH = "oauth"
    """An OAuth token set (access, refresh, expiry)."""
    OAUTH_CLIENT = "oauth_client"
    """The gateway's own client registration at an upstream's authorization server (owner "gateway")."""
    SIGNING_KEY = "signing_key"
    """The keys of the gateway's own OAuth server for `/mcp` (owner "gateway", upstream "mcpgw-oauth")."""


_KINDS = frozenset(CredentialKind)


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What is known about a stored credential without decrypting it: safe to list, log and show."""

    id: str
    identity_key: str
    upstream: str
    kind: str
    state: CredentialState
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    """For display, e.g. when an access token runs out; the vault does not act on it."""
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Credential(CredentialInfo):
    """A credential with its plaintext; the secret is left out of repr and str so it cannot be logged by accident."""

    secret: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class _KeyRing:
    current: DataKey
    by_id: Mapping[str, DataKey]


class Vault:
    """Stores, reads and forgets credentials; build one with `Vault.open` (or `open_vault` at start-up)."""

    def __init__(self, store: Store, master_key: MasterKey, ring: _KeyRing) -> None:
        self._store = store
        self._master = master_key
        self._ring = ring
        self._reload_lock = anyio.Lock()

    @classmethod
    async def open(cls, store: Store, master_key: MasterKey) -> Vault:
        """Unlock the vault's data key with `master_key`, creating the data key on the vault's first use.

        Raises:
            WrongMasterKey: the vault's data key is wrapped under another master key.
            VaultError: the data key is damaged.
            StoreError: the database failed.
        """
        stored = await rows.load_data_keys(store)
        if not stored:
            fresh = DataKey.generate()
            stored = await rows.ensure_data_key(store, _stored(fresh, fresh.wrap(master_key)))
        return cls(store, master_key, _unwrap_all(stored, master_key))

    async def put(
        self,
        identity_key: str,
        upstream: str,
        kind: str,
        secret: Mapping[str, Any],
        *,
        expires_at: datetime | None = None,
    ) -> CredentialInfo:
        """Store (or replace) a credential, encrypted; its state becomes active again.

        Raises:
            ValueError: an empty name, an unknown kind, or a naive `expires_at`.
            VaultError: `secret` is not a JSON object.
            WrongMasterKey: the vault was rotated to another master key since this process started.
        """
        _check_owner(identity_key, upstream, kind)
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (UTC)")
        plaintext = _encode(secret, kind)
        context = credential_context(identity_key, upstream, kind)
        for _ in range(2):
            key = self._ring.current
            nonce, ciphertext = key.seal(plaintext, context)
            row = await rows.put_sealed(
                self._store,
                identity_key,
                upstream,
                kind,
                ciphertext=ciphertext,
                nonce=nonce,
                key_id=key.id,
                expires_at=expires_at,
            )
            if row is not None:
                logger.debug("stored the %s credential of %s for %s", kind, identity_key, upstream)
                return _info(row)
            await self._reload(stale=key.id)  # rotated by another process: re-read the data key, then retry
        raise VaultError("the vault's data key keeps changing (concurrent rotations?); try again")

    async def get(self, identity_key: str, upstream: str, kind: str) -> Credential | None:
        """The credential with its plaintext, in whatever state it is; None if there is none.

        Raises:
            CredentialUnreadable: the stored ciphertext was not written for this triple, or is damaged.
            WrongMasterKey: the vault was rotated to another master key since this process started.
        """
        sealed = await rows.get_sealed(self._store, identity_key, upstream, kind)
        if sealed is None:
            return None
        key = await self._data_key(sealed.key_id)
        plaintext = key.open(sealed.nonce, sealed.ciphertext, credential_context(identity_key, upstream, kind))
        if plaintext is None:
            raise _unreadable(sealed.row)
        try:
            secret = json.loads(plaintext)
        except ValueError:
            secret = None
        if not isinstance(secret, dict):
            raise _unreadable(sealed.row)
        return Credential(**_fields(sealed.row), secret=secret)

    async def mark_needs_reauth(self, identity_key: str, upstream: str, kind: str) -> None:
        """The upstream refused the credential: keep it (for display) but flag that its owner must act."""
        await rows.set_state(self._store, identity_key, upstream, kind, CredentialState.NEEDS_REAUTH.value)

    async def record_use(self, credential_id: str, *, at: datetime | None = None) -> None:
        """Set the credential's `last_used_at` (a write: call it once per upstream session, not per request)."""
        await rows.touch(self._store, credential_id, at=at)

    async def delete(self, identity_key: str, upstream: str, kind: str | None = None) -> int:
        """Forget an identity's credentials for an upstream (one kind, or every kind); returns how many."""
        return await delete_credentials(self._store, identity_key, upstream, kind)

    async def delete_by_id(self, credential_id: str) -> CredentialInfo | None:
        """Forget one credential; what it was, or None if there was none."""
        return await delete_credential(self._store, credential_id)

    async def _data_key(self, key_id: str) -> DataKey:
        key = self._ring.by_id.get(key_id)
        if key is None:
            await self._reload(wanted=key_id)
            key = self._ring.by_id.get(key_id)
        if key is None:
            raise VaultError(f"data key {key_id} is not in the vault (was it restored from a backup of another vault?)")
        return key

    async def _reload(self, *, stale: str | None = None, wanted: str | None = None) -> None:
        """Re-read the data keys, unless another task already did: the current key is no longer `stale`,
        or key `wanted` is now known. Many tasks noticing one rotation cause one reload.
        """
        async with self._reload_lock:
            if stale is not None and self._ring.current.id != stale:
                return
            if wanted is not None and wanted in self._ring.by_id:
                return
            stored = await rows.load_data_keys(self._store)
            if not stored:
                raise VaultError("the vault has no data key any more (its vault_key table was emptied)")
            self._ring = _unwrap_all(stored, self._master)
            logger.info("the vault's data key changed (rotated by another process); using the new one")

    async def list(
        self, *, upstream: str | None = None, identity_key: str | None = None
    ) -> builtins.list[CredentialInfo]:
        """Credentials' metadata (never secrets), by upstream, identity and kind."""
        return await list_credentials(self._store, upstream=upstream, identity_key=identity_key)


# --- without a master key: what an operator needs to see and revoke credentials ----------------------


async def list_credentials(
    store: Store, *, upstream: str | None = None, identity_key: str | None = None
) -> list[CredentialInfo]:
    """Credentials' metadata; needs no master key, so `mcpgw creds list` works wherever the database is reachable.

    The gateway's own OAuth-server keys are not upstream credentials: they are left out (deleting
    them would sign every MCP client out at the next restart).
    """
    listed = await rows.list_rows(store, upstream=upstream, identity_key=identity_key)
    return [_info(row) for row in listed if row.kind != CredentialKind.SIGNING_KEY]


async def delete_credentials(store: Store, identity_key: str, upstream: str, kind: str | None = None) -> int:
    """Forget an identity's credentials for an upstream; needs no master key (revoking must always be possible)."""
    if kind is not None:
        _check_kind(kind)
    return await rows.delete_owned(store, identity_key, upstream, kind)


async def delete_credential(store: Store, credential_id: str) -> CredentialInfo | None:
    """Forget one credential by id; needs no master key."""
    row = await rows.delete_by_id(store, credential_id)
    return None if row is None else _info(row)


# --- helpers ---------------------------------------------------------------------------------------


def _check_owner(identity_key: str, upstream: str, kind: str) -> None:
    if not identity_key or not upstream:
        raise ValueError("identity_key and upstream must not be empty")
    _check_kind(kind)


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"unknown credential kind {kind!r}; expected one of {sorted(_KINDS)}")


def _encode(secret: Mapping[str, Any], kind: str) -> bytes:
    if not isinstance(secret, Mapping):
        raise VaultError(f"a {kind} credential must be a JSON object, got {type(secret).__name__}")
    try:
        return json.dumps(dict(secret), separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        # The message names a type ("Object of type bytes ..."), never a value; nothing is chained.
        raise VaultError(f"a {kind} credential must be JSON-serialisable: {exc}") from None


def _unreadable(row: rows.CredentialRow, *, during_rotation: bool = False) -> CredentialUnreadable:
    what = f"the stored {row.kind} credential of {row.identity_key} for {row.upstream} (id {row.id})"
    outcome = "rotation stopped and nothing changed" if during_rotation else "it is refused"
    return CredentialUnreadable(
        f"{what} does not decrypt: it was not written for this identity, upstream and kind, or it was altered; "
        f"{outcome}. Revoke it (`mcpgw creds revoke {row.id}`) so its owner can supply it again"
    )


def _unwrap_all(stored: builtins.list[rows.StoredDataKey], master: MasterKey) -> _KeyRing:
    by_id = {key.id: DataKey.unwrap(key.id, _wrapped(key), master) for key in stored}
    return _KeyRing(current=by_id[stored[-1].id], by_id=by_id)


def _wrapped(key: rows.StoredDataKey) -> WrappedKey:
    return WrappedKey(wrapped_key=key.wrapped_key, nonce=key.nonce, key_check=key.key_check)


def _stored(key: DataKey, wrapped: WrappedKey) -> rows.StoredDataKey:
    return rows.StoredDataKey(
        id=key.id, wrapped_key=wrapped.wrapped_key, nonce=wrapped.nonce, key_check=wrapped.key_check
    )


def _fields(row: rows.CredentialRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "identity_key": row.identity_key,
        "upstream": row.upstream,
        "kind": row.kind,
        "state": CredentialState(row.state),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
    }


def _info(row: rows.CredentialRow) -> CredentialInfo:
    return CredentialInfo(**_fields(row))
