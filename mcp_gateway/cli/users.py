"""SSO users and owners of virtual keys: `mcpgw user list|grant|disable|enable`.

Straight on the store, never through a gateway (see `_state`): grants and disabling reach every
gateway on that database within a few seconds. A user can be granted tools before their first
sign-in (the row is created), so access is ready when they arrive.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from mcp_gateway.cli._grants import ALLOW_SYNTAX, allow_summary, parse_allow
from mcp_gateway.cli._output import Failure, JsonOption, console, fail, print_json, when
from mcp_gateway.cli._state import StoreConfigOption, with_store

if TYPE_CHECKING:
    from mcp_gateway.store import Store, UserRecord

app = typer.Typer(no_args_is_help=True, help="SSO users and key owners: their grants, disable and enable.")

UserIdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The user's id, their SSO subject (see `mcpgw user list`).")
]


def _no_such_user(user_id: str) -> Failure:
    return Failure(f"no user with id {user_id} (see `mcpgw user list`)", 1)


@app.command("list")
def user_list(config: StoreConfigOption = None, as_json: JsonOption = False) -> None:
    """SSO users and owners of virtual keys, oldest first, with their grants."""
    records = with_store(config, lambda store: store.list_users())
    if as_json:
        print_json([asdict(record) for record in records])
        return
    table = Table(
        Column("id", overflow="fold"),
        Column("email", overflow="fold"),
        "active",
        Column("allows", overflow="fold"),
        "last seen",
    )
    for record in records:
        table.add_row(
            escape(record.id),
            escape(record.email or "-"),
            "[green]yes[/green]" if record.active else "[red]no[/red]",
            escape(allow_summary(record.mcp_configs)),
            when(record.last_seen_at),
        )
    console.print(table)
    console.print(f"{len(records)} users")


@app.command("grant")
def user_grant(
    user_id: UserIdArgument,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help=f"Repeatable: {ALLOW_SYNTAX}. Replaces the user's grants; none: global only."),
    ] = None,
    config: StoreConfigOption = None,
) -> None:
    """Set which tools a user may use (created if they have not signed in yet)."""
    try:
        configs = parse_allow(allow or [])
    except Failure as exc:
        fail(exc.message, exc.code)
    record = with_store(config, lambda store: store.set_user_mcp_configs(user_id, configs))
    console.print(
        f"user {escape(record.id)} now allows {escape(allow_summary(record.mcp_configs))}; "
        "running gateways apply this within a few seconds",
        highlight=False,
    )


def _set_user_active(user_id: str, active: bool, config: Path | None) -> None:
    async def update(store: Store) -> UserRecord:
        record = await store.set_user_active(user_id, active)
        if record is None:
            raise _no_such_user(user_id)
        return record

    record = with_store(config, update)
    console.print(
        f"{'enabled' if active else 'disabled'} user {escape(record.id)}; running gateways apply this within a "
        "few seconds" + ("" if active else " (their open sessions are ended, their keys refused)"),
        highlight=False,
    )


@app.command("disable")
def user_disable(user_id: UserIdArgument, config: StoreConfigOption = None) -> None:
    """Refuse a user's SSO tokens and every virtual key they own, and end their open sessions."""
    _set_user_active(user_id, False, config)


@app.command("enable")
def user_enable(user_id: UserIdArgument, config: StoreConfigOption = None) -> None:
    """Accept a disabled user again."""
    _set_user_active(user_id, True, config)
