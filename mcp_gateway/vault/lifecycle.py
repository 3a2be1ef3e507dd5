"""Getting a vault going at start-up, and rotating its master key.

Start-up looks for the master key where an operator put it (MCPGW_MASTER_KEY, else the key file)
and, when the key does not fit, says why it might not: a rotation stopped before its key file was
moved into place, or a key file that was just created for a vault that already had one.

Rotation re-encrypts every credential under a fresh data key wrapped by the new master key, in one
transaction: a crash leaves the vault entirely on the old key or entirely on the new one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.to_thread

from mcp_gateway.store import Store
from mcp_gateway.store import credentials as rows
from mcp_gateway.vault.crypto import DataKey, MasterKey, credential_context
from mcp_gateway.vault.errors import WrongMasterKey
from mcp_gateway.vault.keyfile import default_key_file, pending_key_file
from mcp_gateway.vault.vault import Vault, _stored, _unreadable, _wrapped

logger = logging.getLogger(__name__)


async def load_master_key(environ: Mapping[str, str], key_file: Path, *, create: bool = True) -> MasterKey:
    """`MasterKey.from_environment`, with its file I/O off the event loop."""
    return await anyio.to_thread.run_sync(lambda: MasterKey.from_environment(environ, key_file, create=create))


async def open_vault(store: Store, *, environ: Mapping[str, str] | None = None, key_file: Path | None = None) -> Vault:
    """The gateway's start-up path: the master key from `$MCPGW_MASTER_KEY` or the key file, then the vault.

    The key file defaults to `default_key_file(store.url)`: `$MCPGW_MASTER_KEY_FILE`, else
    `master.key` beside a SQLite database, else `./.mcpgw/master.key`; it is created (0600) on the
    first start.

    Raises:
        MasterKeyError: the key is malformed or its file is unsafe.
        WrongMasterKey: the key does not unlock the vault (with a hint when a rotation was interrupted).
    """
    environ = os.environ if environ is None else environ
    path = key_file or default_key_file(store.url, environ)
    master = await load_master_key(environ, path)
    try:
        return await Vault.open(store, master)
    except WrongMasterKey as exc:
        hint = await _wrong_key_hint(master)
        if master.created and master.path is not None:
            # Created a moment ago by this call and useless: keep the next start from trusting it.
            await anyio.Path(master.path).unlink(missing_ok=True)
        if not hint:
            raise
        raise WrongMasterKey(f"{exc.message}. {hint}") from None


async def rotate(store: Store, old: MasterKey, new: MasterKey) -> int:
    """Re-encrypt every credential under a fresh data key wrapped under `new`, in one transaction.

    Returns how many credentials were re-encrypted. Afterwards only `new` opens the vault; vaults
    open in other processes fail with `WrongMasterKey` until restarted with `new`.

    Raises:
        WrongMasterKey: `old` does not unlock the vault (nothing changed).
        CredentialUnreadable: a credential does not decrypt (nothing changed; revoke it and retry).
    """
    fresh = DataKey.generate()
    wrapped = fresh.wrap(new)

    def rewrap(
        keys: list[rows.StoredDataKey], sealed: list[rows.SealedCredential]
    ) -> tuple[rows.StoredDataKey, list[rows.Reencrypted]]:
        ring = {key.id: DataKey.unwrap(key.id, _wrapped(key), old) for key in keys}
        updated = []
        for item in sealed:
            key = ring.get(item.key_id)
            context = credential_context(item.row.identity_key, item.row.upstream, item.row.kind)
            plaintext = None if key is None else key.open(item.nonce, item.ciphertext, context)
            if plaintext is None:
                raise _unreadable(item.row, during_rotation=True)
            nonce, ciphertext = fresh.seal(plaintext, context)
            updated.append(rows.Reencrypted(id=item.row.id, ciphertext=ciphertext, nonce=nonce))
        return _stored(fresh, wrapped), updated

    count = await rows.replace_data_key(store, rewrap)
    logger.info("vault rotated: %d credential(s) re-encrypted under a new data key and master key", count)
    return count


async def _wrong_key_hint(master: MasterKey) -> str:
    """Why a key file's key may not fit: it was just created, or a rotation stopped before swapping files."""
    if master.path is None:
        return ""
    if await anyio.Path(pending_key_file(master.path)).exists():
        return (
            f"A rotation was interrupted: {pending_key_file(master.path)} may hold the current key; run "
            f"`mcpgw vault rotate` again to finish it"
        )
    if master.created:
        return (
            f"{master.path} did not exist and was just created with a new key: restore the original key file "
            f"or set MCPGW_MASTER_KEY"
        )
    return ""
