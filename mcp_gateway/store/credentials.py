"""The credential vault's rows: wrapped data keys and encrypted credentials, as opaque bytes.

Nothing here encrypts or decrypts (that is `mcp_gateway.vault`), so no plaintext secret ever
reaches the database layer, its logs or its error messages. None of these writes bumps the store
revision: credentials are not policy.

Locking keeps a rotation from losing a credential written while it runs. A rotation (and the
creation of the first data key) holds the vault exclusively; a credential write first makes sure
the data key it encrypted under still exists and keeps it from going away until it commits. So a
write racing a rotation either lands before it (and is re-encrypted by it) or finds its key gone
(and the vault re-reads the keys), never under a deleted key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mcp_gateway.store.base import _completes
from mcp_gateway.store.models import StoredCredential, StoreRevision, VaultKey, new_id
from mcp_gateway.store.repository import Store

_CREDENTIAL_TABLE = cast(Table, StoredCredential.__table__)  # type: ignore[attr-defined]
# Any 64-bit constant, the same in every process sharing a database; distinct from the migration lock.
_VAULT_LOCK_KEY = 0x6D637067775F766B  # "mcpgw_vk"


@dataclass(frozen=True, slots=True)
class StoredDataKey:
    """A data key row: the key wrapped under the master key, never the key itself."""

    id: str
    wrapped_key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    key_check: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """A credential's metadata: everything but the ciphertext."""

    id: str
    identity_key: str
    upstream: str
    kind: str
    state: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class SealedCredential:
    """A credential as stored: metadata, and the ciphertext with the nonce and data key it needs."""

    row: CredentialRow
    ciphertext: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    key_id: str


@dataclass(frozen=True, slots=True)
class Reencrypted:
    """A credential's new ciphertext after rotation, under the new data key."""

    id: str
    ciphertext: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


Rewrap = Callable[[list[StoredDataKey], list[SealedCredential]], tuple[StoredDataKey, list[Reencrypted]]]
"""Given every data key and credential, the new data key and every credential re-encrypted under it."""


@_completes
async def load_data_keys(store: Store) -> list[StoredDataKey]:
    """Every data key, oldest first (normally exactly one, or none before the vault's first use)."""
    async with store._reading() as session:
        return [_data_key(row) for row in await session.exec(_data_keys_query())]


@_completes
async def ensure_data_key(store: Store, candidate: StoredDataKey) -> list[StoredDataKey]:
    """The data keys, after inserting `candidate` if there are none: concurrent first starts agree on one key."""
    async with store._writing(bump=False) as session:
        await _lock_vault(session, store.dialect)
        existing = [_data_key(row) for row in await session.exec(_data_keys_query())]
        if existing:
            await session.rollback()
            return existing
        session.add(_vault_key(candidate, store._clock()))
    return [candidate]


@_completes
async def put_sealed(
    store: Store,
    identity_key: str,
    upstream: str,
    kind: str,
    *,
    ciphertext: bytes,
    nonce: bytes,
    key_id: str,
    expires_at: datetime | None,
) -> CredentialRow | None:
    """Create or replace the credential, state "active"; None (nothing written) if data key `key_id` is gone."""
    now = store._clock()
    values: dict[str, Any] = {
        "id": new_id(),
        "identity_key": identity_key,
        "upstream": upstream,
        "kind": kind,
        "state": "active",
        "ciphertext": ciphertext,
        "nonce": nonce,
        "key_id": key_id,
        "created_at": now,
        "updated_at": now,
        "expires_at": expires_at,
        "last_used_at": None,
    }
    table = _CREDENTIAL_TABLE
    statement: postgresql.Insert | sqlite.Insert
    statement = (postgresql.insert if store.dialect == "postgresql" else sqlite.insert)(table).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.identity_key, table.c.upstream, table.c.kind],
        set_={
            name: statement.excluded[name]
            for name in ("state", "ciphertext", "nonce", "key_id", "updated_at", "expires_at")
        },
    )
    async with store._writing(bump=False) as session:
        if not await _hold_data_key(session, store.dialect, key_id):
            await session.rollback()
            return None
        row = (await session.exec(statement.returning(*table.c))).one()
    return _credential_row(row)


@_completes
async def get_sealed(store: Store, identity_key: str, upstream: str, kind: str) -> SealedCredential | None:
    async with store._reading() as session:
        row = (await session.exec(select(StoredCredential).where(*_owner(identity_key, upstream, kind)))).first()
        return None if row is None else _sealed(row)


@_completes
async def set_state(store: Store, identity_key: str, upstream: str, kind: str, state: str) -> bool:
    """Change a credential's state (not its secret or `updated_at`); False if there is none."""
    async with store._writing(bump=False) as session:
        result = await session.exec(
            update(StoredCredential).where(*_owner(identity_key, upstream, kind)).values(state=state)
        )
        return bool(result.rowcount)


@_completes
async def touch(store: Store, credential_id: str, *, at: datetime | None = None) -> None:
    """Set `last_used_at` (default: now)."""
    async with store._writing(bump=False) as session:
        await session.exec(
            update(StoredCredential)
            .where(col(StoredCredential.id) == credential_id)
            .values(last_used_at=at or store._clock())
        )


@_completes
async def delete_owned(store: Store, identity_key: str, upstream: str, kind: str | None = None) -> int:
    """Remove an identity's credentials for an upstream (one kind, or all); returns how many."""
    conditions = [col(StoredCredential.identity_key) == identity_key, col(StoredCredential.upstream) == upstream]
    if kind is not None:
        conditions.append(col(StoredCredential.kind) == kind)
    async with store._writing(bump=False) as session:
        result = await session.exec(delete(StoredCredential).where(*conditions))
        return int(result.rowcount)


@_completes
async def delete_by_id(store: Store, credential_id: str) -> CredentialRow | None:
    """Remove one credential; what it was, or None if there was none."""
    async with store._writing(bump=False) as session:
        row = await session.get(StoredCredential, credential_id)
        if row is None:
            await session.rollback()
            return None
        removed = _credential_row(row)
        await session.delete(row)
    return removed


@_completes
async def list_rows(
    store: Store, *, upstream: str | None = None, identity_key: str | None = None
) -> list[CredentialRow]:
    """Credentials' metadata, by upstream, then identity, then kind."""
    statement = select(StoredCredential).order_by(
        col(StoredCredential.upstream), col(StoredCredential.identity_key), col(StoredCredential.kind)
    )
    if upstream is not None:
        statement = statement.where(col(StoredCredential.upstream) == upstream)
    if identity_key is not None:
        statement = statement.where(col(StoredCredential.identity_key) == identity_key)
    async with store._reading() as session:
        return [_credential_row(row) for row in await session.exec(statement)]


@_completes
async def replace_data_key(store: Store, rewrap: Rewrap) -> int:
    """Swap in a new data key and re-encrypt every credential, all in one transaction; returns how many.

    `rewrap` runs inside the transaction, with the vault locked, so no credential can be written
    in between; if it raises, nothing changes. A crash at any point leaves the old state or the new.
    """
    async with store._writing(bump=False) as session:
        await _lock_vault(session, store.dialect)
        keys = [_data_key(row) for row in await session.exec(_data_keys_query())]
        sealed = [_sealed(row) for row in await session.exec(select(StoredCredential))]
        new_key, updates = rewrap(keys, sealed)
        session.add(_vault_key(new_key, store._clock()))
        await session.flush()
        if updates:
            # Core executemany, not ORM bulk update: a row deleted meanwhile is skipped, not an error.
            table = _CREDENTIAL_TABLE
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values(ciphertext=bindparam("new_ciphertext"), nonce=bindparam("new_nonce"), key_id=new_key.id)
            )
            rows = [{"row_id": u.id, "new_ciphertext": u.ciphertext, "new_nonce": u.nonce} for u in updates]
            await session.exec(statement, params=rows)
        await session.exec(delete(VaultKey).where(col(VaultKey.id) != new_key.id))
    return len(updates)


async def erase_vault(store: Store) -> int:
    """Delete every credential and data key (the master key was lost); returns the credentials deleted."""
    async with store._writing(bump=False) as session:
        await _lock_vault(session, store.dialect)
        count = len(list(await session.exec(select(StoredCredential.id))))
        await session.exec(delete(StoredCredential))
        await session.exec(delete(VaultKey))
    return count


# --- helpers ---------------------------------------------------------------------------------------


async def _lock_vault(session: AsyncSession, dialect: str) -> None:
    """Hold the vault exclusively until the transaction ends.

    PostgreSQL: an advisory lock (so two first starts on an empty table serialise too), then the
    data key rows, which every credential write holds shared. SQLite: a no-op write, which takes
    the database's single write lock up front (a read-then-write transaction could otherwise fail
    to upgrade its lock when another writer got in between).
    """
    if dialect == "postgresql":
        await session.exec(select(func.pg_advisory_xact_lock(_VAULT_LOCK_KEY)))
        await session.exec(select(VaultKey.id).with_for_update())
    else:
        await session.exec(
            update(StoreRevision).where(col(StoreRevision.id) == 1).values(revision=col(StoreRevision.revision))
        )


async def _hold_data_key(session: AsyncSession, dialect: str, key_id: str) -> bool:
    """Whether data key `key_id` exists, kept from being deleted (rotated away) until this transaction ends."""
    if dialect == "postgresql":
        found = await session.exec(select(VaultKey.id).where(col(VaultKey.id) == key_id).with_for_update(read=True))
        return found.first() is not None
    # SQLite: a no-op write takes the write lock first, and its row count answers the question.
    result = await session.exec(
        update(VaultKey).where(col(VaultKey.id) == key_id).values(created_at=col(VaultKey.created_at))
    )
    return bool(result.rowcount)


def _data_keys_query() -> Any:
    return select(VaultKey).order_by(col(VaultKey.created_at), col(VaultKey.id))


def _owner(identity_key: str, upstream: str, kind: str) -> Sequence[Any]:
    return (
        col(StoredCredential.identity_key) == identity_key,
        col(StoredCredential.upstream) == upstream,
        col(StoredCredential.kind) == kind,
    )


def _data_key(row: VaultKey) -> StoredDataKey:
    return StoredDataKey(id=row.id, wrapped_key=row.wrapped_key, nonce=row.nonce, key_check=row.key_check)


def _vault_key(key: StoredDataKey, now: datetime) -> VaultKey:
    return VaultKey(id=key.id, wrapped_key=key.wrapped_key, nonce=key.nonce, key_check=key.key_check, created_at=now)


def _credential_row(row: Any) -> CredentialRow:
    return CredentialRow(
        id=row.id,
        identity_key=row.identity_key,
        upstream=row.upstream,
        kind=row.kind,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def _sealed(row: StoredCredential) -> SealedCredential:
    return SealedCredential(row=_credential_row(row), ciphertext=row.ciphertext, nonce=row.nonce, key_id=row.key_id)
