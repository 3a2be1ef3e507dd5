"""Exceptions raised by the credential vault.

Hierarchy::

    GatewayError
    └── VaultError                 the vault cannot do what was asked
        ├── MasterKeyError             the master key is missing or malformed, or its key file is unsafe
        ├── WrongMasterKey             the master key does not unlock this vault's data key
        ├── CredentialUnreadable       a stored credential does not decrypt (copied between rows, or damaged)
        └── RotationFailed             a master key rotation stopped: the message says which key works now

Messages name identity keys, upstreams, kinds, ids and file paths, which are not secret, and
never a key or a credential: they are safe to log and to show an operator.
"""

from __future__ import annotations

from mcp_gateway.errors import GatewayError


class VaultError(GatewayError):
    """Raised when the vault cannot store or read a credential; `message` is safe to log."""


class MasterKeyError(VaultError):
    """Raised when MCPGW_MASTER_KEY or the key file cannot supply a usable 32-byte master key."""


class WrongMasterKey(VaultError):
    """Raised when the master key is well formed but is not the one this vault's data key is wrapped under."""


class CredentialUnreadable(VaultError):
    """Raised when a stored credential fails authentication on decryption.

    Its ciphertext was written for another (identity, upstream, kind), or the row was altered: the
    vault refuses it rather than hand one caller's secret to another.
    """


class RotationFailed(VaultError):
    """Raised when `rotate_master_key` stops once a new key exists.

    The message says what state it left: nothing changed (the new key is unused), or the database
    was rotated but the staged key file could not be moved into place (it holds the only key
    that unlocks the vault). It names files, never a key.
    """
