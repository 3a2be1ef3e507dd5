"""Rotating the master key so that the key which unlocks the vault always exists somewhere.

`lifecycle.rotate` re-encrypts the database in one transaction, and the new master key has to
live somewhere outside it. `rotate_master_key` orders the steps around that transaction (it is
what `mcpgw vault rotate` runs):

1. Load the current key (MCPGW_MASTER_KEY, else the key file) and check that it opens the vault.
2. Put the new key somewhere durable before the database depends on it: staged as TARGET.new
   (mode 0600) when it goes to a file, else handed to the caller's `reveal`, which shows it to
   the operator before it returns.
3. Re-encrypt every credential (all or nothing).
4. Atomically rename TARGET.new over TARGET.

A crash between 3 and 4 leaves TARGET.new holding the only key that works. Start-up says so
(`open_vault`), and rotating again finds that the current key no longer fits but TARGET.new
does, and only finishes step 4 (`finish_interrupted_rotation`).

Nothing here prints. A run returns a `Rotation`, whose `summary` tells the operator what to do
next; a failure raises a `VaultError` (`RotationFailed` once a new key exists) whose message
says which key unlocks the vault now and where it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from mcp_gateway.store import Store, StoreError
from mcp_gateway.vault.crypto import MASTER_KEY_ENV, MasterKey
from mcp_gateway.vault.errors import RotationFailed, VaultError, WrongMasterKey
from mcp_gateway.vault.keyfile import pending_key_file, read_key_file, replace_key_file, write_key_file
from mcp_gateway.vault.lifecycle import load_master_key, rotate
from mcp_gateway.vault.vault import Vault


@dataclass(frozen=True)
class Rotation:
    """What `rotate_master_key` did; `summary` is the sentence for the operator (never the key)."""

    count: int
    """How many credentials were re-encrypted (0 when `resumed`)."""
    key_file: Path
    """Where the current key was read from when MCPGW_MASTER_KEY is unset."""
    target: Path | None
    """The file that now holds the new key; None: it is in no file, only `reveal` was given it."""
    resumed: bool
    """An interrupted rotation was finished: TARGET.new moved into place, nothing re-encrypted now."""
    key_in_environment: bool
    """MCPGW_MASTER_KEY is set: gateways read the key from there, not from `target`."""

    @property
    def summary(self) -> str:
        """What happened and what the operator must do next."""
        if self.resumed:
            return (
                f"finished an interrupted rotation: {self.target} now holds the master key that unlocks the vault "
                "(nothing was re-encrypted now); restart running gateways"
            )
        rotated = _rotated(self.count)
        if self.target is None:
            return (
                f"{rotated}. Set {MASTER_KEY_ENV} to the new key printed above wherever gateways run, then restart "
                "them; the old key no longer unlocks the vault"
            )
        if self.key_in_environment:
            return (
                f"{rotated}. The new key is in {self.target} (mode 0600): set {MASTER_KEY_ENV} to its contents "
                "wherever gateways run, then restart them"
            )
        if self.target != self.key_file:
            return (
                f"{rotated}. The new key is in {self.target} (mode 0600); {self.key_file} still holds the old key, "
                f"which no longer unlocks the vault: set MCPGW_MASTER_KEY_FILE={self.target} (or move it there) and "
                "restart gateways"
            )
        return f"{rotated}. The new key replaced the one in {self.target}; restart running gateways to load it"


async def rotate_master_key(
    store: Store,
    key_file: Path,
    target: Path | None,
    *,
    reveal: Callable[[str], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Rotation:
    """Re-encrypt every credential under a new random master key, which ends up in `target`.

    Args:
        key_file: the key file the current key is read from when MCPGW_MASTER_KEY is unset
            (`default_key_file`); it is never created here.
        target: the file the new key goes to (staged as TARGET.new first; it may be `key_file`).
            None: to no file; then `reveal` must be given.
        reveal: called with the new key, encoded, before the database depends on it, when
            `target` is None. When it returns, the operator must have the key: it is stored
            nowhere else.
        environ: where MCPGW_MASTER_KEY is looked up; default `os.environ`.

    Raises:
        MasterKeyError: there is no usable current key.
        WrongMasterKey: the current key does not unlock the vault, and no TARGET.new left by an
            interrupted rotation does.
        RotationFailed: the new key could not be staged, or re-encryption failed (the vault was
            not rotated), or the database was rotated but TARGET.new could not be moved into place;
            the message says which.
    """
    if target is None and reveal is None:
        raise ValueError("a new master key that goes to no file must be revealed: pass `reveal`")
    environ = os.environ if environ is None else environ
    key_in_environment = bool(environ.get(MASTER_KEY_ENV))
    old = await load_master_key(environ, key_file, create=False)
    try:
        await Vault.open(store, old)
    except WrongMasterKey:
        if target is not None and await finish_interrupted_rotation(store, target):
            return Rotation(
                count=0, key_file=key_file, target=target, resumed=True, key_in_environment=key_in_environment
            )
        raise
    new = MasterKey.generate()
    staged = None if target is None else pending_key_file(target)
    if staged is None:
        assert reveal is not None  # checked above
        reveal(new.encode())
    else:
        try:
            await anyio.to_thread.run_sync(write_key_file, staged, new.encode())
        except OSError as exc:
            raise RotationFailed(
                f"cannot write the new master key to {staged}: {exc.strerror}; nothing changed"
            ) from None
    try:
        count = await rotate(store, old, new)
    except VaultError as exc:  # raised before anything was written: the transaction rolled back
        if staged is not None:
            await anyio.Path(staged).unlink(missing_ok=True)
        raise RotationFailed(f"{exc.message}; the vault was not rotated") from None
    except StoreError as exc:
        unused = f"the key printed above is unused, keep {MASTER_KEY_ENV}" if staged is None else f"{staged} is unused"
        raise RotationFailed(
            f"{exc.message}; the vault was not rotated ({unused}; if the old key no longer unlocks the vault, "
            "the database committed just before the error: then use the new key)"
        ) from None
    rotation = Rotation(
        count=count, key_file=key_file, target=target, resumed=False, key_in_environment=key_in_environment
    )
    if staged is None or target is None:
        return rotation
    try:
        await anyio.to_thread.run_sync(replace_key_file, staged, target)
    except OSError as exc:
        raise RotationFailed(
            f"{_rotated(count)}, but {staged} could not be moved to {target} ({exc.strerror}): move it yourself, it "
            "holds the only key that unlocks the vault"
        ) from None
    return rotation


async def finish_interrupted_rotation(store: Store, target: Path) -> bool:
    """True if TARGET.new is what unlocks the vault (the database was rotated, the file not yet moved): move it.

    False, with nothing changed, when there is no TARGET.new or its key does not unlock the vault.

    Raises:
        MasterKeyError: TARGET.new is unsafe (group/others may read it), unreadable, or not a key.
        OSError: TARGET.new unlocks the vault but could not be moved over `target`.
    """
    staged = pending_key_file(target)
    text = await anyio.to_thread.run_sync(read_key_file, staged)
    if text is None:
        return False
    try:
        await Vault.open(store, MasterKey.decode(text, source=f"master key file {staged}"))
    except WrongMasterKey:
        return False
    await anyio.to_thread.run_sync(replace_key_file, staged, target)
    return True


def _rotated(count: int) -> str:
    return f"rotated the vault: {count} credential(s) re-encrypted under a new master key"
