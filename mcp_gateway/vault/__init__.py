"""The credential vault: per-identity upstream credentials (headers, OAuth tokens, OAuth client
registrations), encrypted at rest with AES-256-GCM under a data key that is itself wrapped by a
master key kept outside the database (`MCPGW_MASTER_KEY`, or a 0600 key file).

At start-up: `vault = await open_vault(store)`. Listing and revoking need no master key
(`list_credentials`, `delete_credential(s)`); `rotate` re-encrypts everything under a new one, and
`rotate_master_key` wraps it in the crash-safe steps that also put the new key in place.
"""

from mcp_gateway.vault.crypto import MASTER_KEY_ENV, MasterKey
from mcp_gateway.vault.errors import CredentialUnreadable, MasterKeyError, RotationFailed, VaultError, WrongMasterKey
from mcp_gateway.vault.keyfile import KEY_FILE_ENV, default_key_file, pending_key_file
from mcp_gateway.vault.lifecycle import load_master_key, open_vault, rotate
from mcp_gateway.vault.rotation import Rotation, finish_interrupted_rotation, rotate_master_key
from mcp_gateway.vault.vault import (
    Credential,
    CredentialInfo,
    CredentialKind,
    CredentialState,
    Vault,
    delete_credential,
    delete_credentials,
    list_credentials,
)

__all__ = [
    "KEY_FILE_ENV",
    "MASTER_KEY_ENV",
    "Credential",
    "CredentialInfo",
    "CredentialKind",
    "CredentialState",
    "CredentialUnreadable",
    "MasterKey",
    "MasterKeyError",
    "Rotation",
    "RotationFailed",
    "Vault",
    "VaultError",
    "WrongMasterKey",
    "default_key_file",
    "delete_credential",
    "delete_credentials",
    "finish_interrupted_rotation",
    "list_credentials",
    "load_master_key",
    "open_vault",
    "pending_key_file",
    "rotate",
    "rotate_master_key",
]
