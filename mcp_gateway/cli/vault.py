"""The credential vault: `mcpgw creds list|revoke` (stored upstream credentials) and `mcpgw vault rotate|reset`.

Straight on the store (see `_state`). `creds` commands only read and delete rows, never decrypt,
so they need no master key: revoking must work wherever the database is reachable. `vault
rotate` needs the current key, found the way the gateway finds it (MCPGW_MASTER_KEY, else the
key file); its crash-safe steps are `mcp_gateway.vault.rotate_master_key`, and this module only
picks where the new key goes and prints. `vault reset` is for a lost master key.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Column, Table

from mcp_gateway.cli._output import Failure, JsonOption, console, fail, print_json, when
from mcp_gateway.cli._state import StoreConfigOption, database_url, with_store, with_vault_store
from mcp_gateway.errors import ConfigError

if TYPE_CHECKING:
    from mcp_gateway.store import Store
    from mcp_gateway.vault import CredentialInfo

vault_app = typer.Typer(no_args_is_help=True, help="The credential vault: upstream credentials, encrypted at rest.")
creds_app = typer.Typer(
    no_args_is_help=True, help="Stored per-user upstream credentials: list and revoke them (secrets are never shown)."
)

CredentialKindChoice = Literal["headers", "oauth", "oauth_client", "signing_key"]
"""`vault.CredentialKind`, spelled out so that typer can read it without importing the vault."""
_STATE_COLORS = {"active": "green", "needs_reauth": "yellow"}
IdentityOption = Annotated[
    str | None,
    typer.Option("--identity", help="An identity key: user:SUBJECT, vk:ID, session:HASH, shared or gateway."),
]


def _credential_json(info: CredentialInfo) -> dict[str, Any]:
    """A credential's metadata; `CredentialInfo` has no secret to leak."""
    return asdict(info)


@creds_app.command("list")
def creds_list(
    upstream: Annotated[str | None, typer.Option("--upstream", help="Only credentials for this upstream.")] = None,
    identity: IdentityOption = None,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stored upstream credentials: whose, for which upstream, and whether they still work (never the secrets)."""
    from datetime import UTC

    from mcp_gateway.vault import list_credentials

    async def fetch(store: Store) -> list[CredentialInfo]:
        return await list_credentials(store, upstream=upstream, identity_key=identity)

    infos = with_vault_store(config, fetch)
    if as_json:
        print_json([_credential_json(info) for info in infos])
        return
    if not infos:
        console.print("no stored credentials" + (" match" if upstream or identity else " yet"), highlight=False)
        return
    now = datetime.now(UTC)
    table = Table(
        Column("id", no_wrap=True, min_width=32),  # what `creds revoke` takes: never cut short
        Column("identity", overflow="fold", min_width=10),
        Column("upstream", overflow="fold", min_width=8),
        Column("kind", overflow="fold", min_width=5),
        Column("state", overflow="fold", min_width=6),
        Column("updated", overflow="fold", min_width=10),  # a narrow pipe wraps it after the date
        Column("expires", overflow="fold", min_width=10),
    )
    for info in infos:
        color = _STATE_COLORS.get(info.state, "red")
        expires = when(info.expires_at, "-")
        if info.expires_at is not None and info.expires_at <= now:
            expires = f"[dim]{expires} (past)[/dim]"
        table.add_row(
            info.id,
            escape(info.identity_key),
            escape(info.upstream),
            escape(info.kind),
            f"[{color}]{escape(info.state)}[/{color}]",
            when(info.updated_at),
            expires,
        )
    console.print(table)
    console.print(f"{len(infos)} credential(s); times in UTC", highlight=False)


@creds_app.command("revoke")
def creds_revoke(
    credential_id: Annotated[
        str | None,
        typer.Argument(metavar="ID", help="The credential's id (see `mcpgw creds list`).", show_default=False),
    ] = None,
    identity: IdentityOption = None,
    upstream: Annotated[str | None, typer.Option("--upstream", help="With --identity: the upstream.")] = None,
    kind: Annotated[
        CredentialKindChoice | None, typer.Option("--kind", help="With --identity: only this kind (default: all).")
    ] = None,
    config: StoreConfigOption = None,
) -> None:
    """Delete stored credentials: one by ID, or an identity's for an upstream (--identity with --upstream).

    Nothing is decrypted, so no master key is needed. The gateway asks the owner for it again when next needed.
    """
    from mcp_gateway.vault import delete_credential, delete_credentials

    if credential_id is not None and (identity is not None or upstream is not None or kind is not None):
        fail("give either a credential ID or --identity with --upstream, not both", 2)
    if credential_id is None and (identity is None or upstream is None):
        fail("say what to revoke: a credential ID, or --identity KEY with --upstream NAME (see `mcpgw creds list`)", 2)

    async def by_id(store: Store, wanted: str) -> str:
        info = await delete_credential(store, wanted)
        if info is None:
            raise Failure(f"no credential with id {wanted} (see `mcpgw creds list`)", 1)
        return f"revoked the {info.kind} credential of {info.identity_key} for {info.upstream} (id {info.id})"

    async def by_owner(store: Store, owner: str, target: str) -> str:
        count = await delete_credentials(store, owner, target, kind)
        if count == 0:
            what = f"{kind} credential" if kind else "credentials"
            raise Failure(f"no {what} of {owner} for {target} (see `mcpgw creds list`)", 1)
        return f"revoked {count} credential(s) of {owner} for {target}"

    if credential_id is not None:
        wanted = credential_id
        message = with_vault_store(config, lambda store: by_id(store, wanted))
    else:
        assert identity is not None and upstream is not None
        owner, target = identity, upstream
        message = with_vault_store(config, lambda store: by_owner(store, owner, target))
    console.print(escape(message), highlight=False)


_ROTATE_HELP = "\n\n".join(
    (
        "Re-encrypt every stored credential under a new random master key (and a fresh data key).",
        "The current key is found as the gateway finds it: MCPGW_MASTER_KEY, else the key file "
        "(MCPGW_MASTER_KEY_FILE, else master.key next to the SQLite database, else ./.mcpgw/master.key). "
        "All credentials are re-encrypted in one database transaction: a failure or crash leaves the vault "
        "as it was, or fully rotated.",
        "With a key file: the new key is first written to KEYFILE.new (mode 0600), then the database is "
        "re-encrypted, then KEYFILE.new atomically replaces KEYFILE. If the command is stopped between the last "
        "two steps, KEYFILE.new holds the working key (the gateway says so): run the command again to finish.",
        "With MCPGW_MASTER_KEY: the new key is printed once on stdout, before the database changes, and stored "
        "nowhere: set MCPGW_MASTER_KEY to it wherever gateways run.",
        "Running gateways keep the old key in memory: restart them afterwards.",
    )
)


@vault_app.command("rotate", help=_ROTATE_HELP)
def vault_rotate(
    config: StoreConfigOption = None,
    new_key_file: Annotated[
        Path | None,
        typer.Option(
            "--new-key-file",
            help="Write the new master key to this new file (mode 0600) instead: the current key file is left "
            "alone, and with MCPGW_MASTER_KEY nothing is printed.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Re-encrypt every stored credential under a new random master key (and a fresh data key)."""
    from mcp_gateway.vault import MASTER_KEY_ENV, default_key_file, rotate_master_key

    url = database_url(config)
    try:
        key_file = default_key_file(url)
    except ConfigError as exc:
        fail(exc.message, 2)
    from_environment = MASTER_KEY_ENV in os.environ
    target = new_key_file if new_key_file is not None else (None if from_environment else key_file)
    if new_key_file is not None and new_key_file.resolve() == key_file.resolve():
        target = key_file  # the default, spelled out
    elif new_key_file is not None and new_key_file.exists():
        fail(f"{new_key_file} already exists: --new-key-file must name a new file", 2)

    def reveal(key: str) -> None:  # before the database changes: the key is stored nowhere else
        console.print("New master key (shown only now; it unlocks the vault once this command succeeds):")
        console.print(key, markup=False, highlight=False)
        sys.stdout.flush()

    rotation = with_vault_store(config, lambda store: rotate_master_key(store, key_file, target, reveal=reveal))
    console.print(escape(rotation.summary), highlight=False)


@vault_app.command("reset")
def vault_reset(
    config: StoreConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete every stored credential.")] = False,
) -> None:
    """For a lost master key: delete every stored credential and the vault's data key.

    People are asked for their credentials again on their next call; shared OAuth upstreams need
    `mcpgw upstream authorize` again. The next start creates a new data key under the current
    master key (MCPGW_MASTER_KEY, or a new key file). Stop the gateway first.
    """
    from mcp_gateway.store.credentials import erase_vault

    if not yes:
        fail("this deletes every stored credential; run again with --yes if the master key is lost", 2)
    count = with_store(config, erase_vault)
    console.print(f"deleted {count} credential(s) and the vault's data key; the next start makes a new one")
