"""Sign-ins of MCP clients through the gateway's OAuth server: `mcpgw grants list|revoke`.

Straight on the store (see `_state`): a revocation reaches every gateway on that database within
one store poll (~2 s), and the client's tokens stop working then.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from mcp_gateway.cli._output import JsonOption, console, fail, print_json, when
from mcp_gateway.cli._state import StoreConfigOption, with_store

app = typer.Typer(no_args_is_help=True, help="MCP clients people signed in with OAuth: list and revoke them.")


@app.command("list")
def grants_list(
    vk: Annotated[str | None, typer.Option("--vk", help="Only sign-ins made with this virtual key id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only sign-ins of this user id.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked ones too.")] = False,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign-ins, newest first: which client, for whom, when last refreshed."""
    records = with_store(
        config,
        lambda store: store.list_oauth_grants(virtual_key_id=vk, user_id=user, include_revoked=include_revoked),
    )
    if as_json:
        print_json([asdict(record) for record in records])
        return
    table = Table(
        Column("id", overflow="fold"),
        Column("client", overflow="fold"),
        Column("for", overflow="fold"),
        "signed in",
        "last refresh",
        Column("revoked", overflow="fold"),
    )
    for record in records:
        owner = {"vk": f"vk {record.virtual_key_id}", "user": f"user {record.user_id}"}.get(
            record.subject_kind, "anonymous session"
        )
        client = f"{record.client_name or '-'} ({record.redirect_host or '?'})"
        revoked = f"{when(record.revoked_at)} {record.revoked_reason or ''}" if record.revoked_at else "-"
        table.add_row(
            escape(record.id),
            escape(client),
            escape(owner),
            when(record.created_at),
            when(record.last_used_at),
            escape(revoked),
        )
    console.print(table)
    console.print(f"{len(records)} sign-ins")


@app.command("revoke")
def grants_revoke(
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="The sign-in's id (see `mcpgw grants list`).")],
    config: StoreConfigOption = None,
) -> None:
    """End a sign-in: its client's tokens stop working and it must sign in again."""
    record = with_store(config, lambda store: store.revoke_oauth_grant(grant_id, "revoked with mcpgw grants revoke"))
    if record is None:
        fail(f"no sign-in with id {grant_id} (see `mcpgw grants list`)", 1)
    console.print(f"revoked sign-in {grant_id}", highlight=False)
