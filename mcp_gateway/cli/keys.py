"""Virtual keys, the credentials MCP clients send: `mcpgw vk create|list|show|disable|enable|delete`.

Straight on the store, never through a gateway (see `_state`): a key created, disabled or deleted
here is picked up by every gateway on that database within a few seconds. The key itself is
printed once, by `create`; the store keeps only its hash, so no other command can show it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import anyio.to_thread
import typer
from rich.markup import escape
from rich.table import Column, Table

from mcp_gateway.cli._grants import ALLOW_SYNTAX, allow_summary, parse_allow
from mcp_gateway.cli._llm_policy import (
    LlmAutoExecuteOption,
    LlmInjectOption,
    LlmModelsOption,
    LlmRpmOption,
    LlmTpmOption,
    LlmUsdDayOption,
    LlmUsdMonthOption,
    describe_policy,
    llm_policy,
)
from mcp_gateway.cli._output import Failure, JsonOption, console, fail, print_json, record_json, when
from mcp_gateway.cli._state import StoreConfigOption, with_store

if TYPE_CHECKING:
    from mcp_gateway.store import Store, VirtualKeyRecord

app = typer.Typer(no_args_is_help=True, help="Create and manage virtual keys, the credentials MCP clients send.")

KeyIdArgument = Annotated[str, typer.Argument(metavar="ID", help="The key's id (see `mcpgw vk list`).")]


def _no_such_key(key_id: str) -> Failure:
    return Failure(f"no virtual key with id {key_id} (see `mcpgw vk list`)", 1)


@app.command("create")
def vk_create(
    name: Annotated[str, typer.Option("--name", help="A label people recognise, e.g. ci-bot.")],
    description: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Owner's user id (SSO subject), created if unknown; calls count as that user."),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help=f"Grant tools, repeatable: {ALLOW_SYNTAX}. Without it: global upstreams only."),
    ] = None,
    llm_models: LlmModelsOption = None,
    llm_rpm: LlmRpmOption = None,
    llm_tpm: LlmTpmOption = None,
    llm_usd_day: LlmUsdDayOption = None,
    llm_usd_month: LlmUsdMonthOption = None,
    llm_inject_tools: LlmInjectOption = None,
    llm_auto_execute: LlmAutoExecuteOption = None,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a virtual key; the key is printed once and cannot be shown again."""
    if not name.strip():
        fail("--name must not be empty", 2)
    try:
        configs = parse_allow(allow or [])
    except Failure as exc:
        fail(exc.message, exc.code)
    llm = llm_policy(
        llm_models,
        llm_rpm,
        llm_tpm,
        llm_usd_day,
        llm_usd_month,
        inject_tools=llm_inject_tools,
        auto_execute=llm_auto_execute,
    )

    async def create(store: Store) -> tuple[VirtualKeyRecord, str]:
        # Not `upsert_user`: that records a sign-in (last_seen_at); this user has never signed in.
        if user is not None and await store.get_user(user) is None:
            await store.set_user_mcp_configs(user, {})
        return await store.create_virtual_key(name, description=description, user_id=user, mcp_configs=configs, llm=llm)

    record, key = with_store(config, create)
    if as_json:
        print_json({"id": record.id, "key": key} | record_json(record))
        return
    console.print(f"created virtual key {escape(record.name)} (id {record.id})", highlight=False)
    console.print(key, markup=False, highlight=False)
    console.print(
        "[yellow]This key is shown only now and cannot be shown again: store it securely.[/yellow]", highlight=False
    )
    allows = allow_summary(record.mcp_configs, most=1_000)
    console.print(
        f"allows: {escape(allows)}" if record.mcp_configs else "allows: only upstreams with allow_on_all_virtual_keys",
        highlight=False,
    )
    if record.llm:
        console.print(f"models and budgets: {escape(describe_policy(record.llm))}", highlight=False)


@app.command("list")
def vk_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many keys, newest first.")] = 100,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Virtual keys, newest first (never the keys themselves)."""

    async def fetch(store: Store) -> tuple[list[VirtualKeyRecord], int]:
        return await store.list_virtual_keys(limit=limit), await store.count_virtual_keys()

    records, total = with_store(config, fetch)
    if as_json:
        print_json([record_json(record) for record in records])
        return
    table = Table(
        # An id is what the other vk commands take: never cut it short, even in an 80-column pipe.
        Column("id", no_wrap=True, min_width=32),
        Column("name", overflow="fold"),
        Column("prefix", no_wrap=True, min_width=13),  # its last characters are the ones that differ
        Column("user", overflow="fold"),
        "active",
        Column("allows", overflow="fold"),
        "last used",
    )
    for record in records:
        table.add_row(
            record.id,
            escape(record.name),
            escape(record.key_prefix) + "…",
            escape(record.user_id or "-"),
            "[green]yes[/green]" if record.active else "[red]no[/red]",
            escape(allow_summary(record.mcp_configs)),
            when(record.last_used_at),
        )
    console.print(table)
    console.print(f"{len(records)} of {total} virtual keys" + (" (raise --limit to see more)" if total > limit else ""))


@app.command("show")
def vk_show(
    key_id: KeyIdArgument,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One virtual key in full (never the key itself)."""

    async def fetch(store: Store) -> VirtualKeyRecord:
        record = await store.get_virtual_key(key_id)
        if record is None:
            raise _no_such_key(key_id)
        return record

    record = with_store(config, fetch)
    if as_json:
        print_json(record_json(record))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    allows = "\n".join(f"{up}: {', '.join(tools) or '(nothing)'}" for up, tools in record.mcp_configs.items())
    for label, value in (
        ("id", record.id),
        ("name", escape(record.name)),
        ("description", escape(record.description or "-")),
        ("prefix", escape(record.key_prefix) + "…"),
        ("user", escape(record.user_id or "-")),
        ("active", "[green]yes[/green]" if record.active else "[red]no[/red]"),
        ("allows", escape(allows) or "only upstreams with allow_on_all_virtual_keys"),
        ("models", escape(describe_policy(record.llm)) if record.llm else "every configured model, no budgets"),
        ("created", when(record.created_at)),
        ("updated", when(record.updated_at)),
        ("last used", when(record.last_used_at)),
    ):
        grid.add_row(label, value)
    console.print(grid, highlight=False)


def _set_active(key_id: str, active: bool, config: Path | None) -> None:
    async def update(store: Store) -> VirtualKeyRecord:
        record = await store.update_virtual_key(key_id, active=active)
        if record is None:
            raise _no_such_key(key_id)
        return record

    record = with_store(config, update)
    console.print(
        f"{'enabled' if active else 'disabled'} virtual key {escape(record.name)} (id {record.id}); "
        f"running gateways apply this within a few seconds",
        highlight=False,
    )


@app.command("disable")
def vk_disable(key_id: KeyIdArgument, config: StoreConfigOption = None) -> None:
    """Refuse a virtual key from now on (it can be enabled again)."""
    _set_active(key_id, False, config)


@app.command("enable")
def vk_enable(key_id: KeyIdArgument, config: StoreConfigOption = None) -> None:
    """Accept a disabled virtual key again."""
    _set_active(key_id, True, config)


@app.command("delete")
def vk_delete(
    key_id: KeyIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: StoreConfigOption = None,
) -> None:
    """Delete a virtual key and its grants for good; clients using it are refused."""

    async def delete(store: Store) -> VirtualKeyRecord:
        record = await store.get_virtual_key(key_id)
        if record is None:
            raise _no_such_key(key_id)
        if not yes:
            if not sys.stdin.isatty():
                raise Failure("not deleting without confirmation: pass --yes", 2)
            question = f"Delete virtual key {record.name} (id {record.id})?"
            if not await anyio.to_thread.run_sync(lambda: typer.confirm(question, default=False)):
                raise Failure("not deleted", 1)
        if not await store.delete_virtual_key(key_id):
            raise _no_such_key(key_id)
        return record

    record = with_store(config, delete)
    console.print(f"deleted virtual key {escape(record.name)} (id {record.id})", highlight=False)


@app.command("llm")
def vk_llm(
    key_id: KeyIdArgument,
    llm_models: LlmModelsOption = None,
    llm_rpm: LlmRpmOption = None,
    llm_tpm: LlmTpmOption = None,
    llm_usd_day: LlmUsdDayOption = None,
    llm_usd_month: LlmUsdMonthOption = None,
    llm_inject_tools: LlmInjectOption = None,
    llm_auto_execute: LlmAutoExecuteOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every model restriction and budget.")] = False,
    config: StoreConfigOption = None,
) -> None:
    """Set which models a key may use on /anthropic and /openai, and its budgets (replaces what it had)."""
    llm = (
        None
        if clear
        else llm_policy(
            llm_models,
            llm_rpm,
            llm_tpm,
            llm_usd_day,
            llm_usd_month,
            inject_tools=llm_inject_tools,
            auto_execute=llm_auto_execute,
        )
    )
    if llm is None and not clear:
        fail("give --llm-models and/or a budget (--llm-rpm, --llm-tpm, --llm-usd-day, --llm-usd-month), or --clear", 2)

    async def change(store: Store) -> VirtualKeyRecord:
        record = await store.update_virtual_key(key_id, llm=llm)
        if record is None:
            raise _no_such_key(key_id)
        return record

    record = with_store(config, change)
    shown = describe_policy(record.llm) if record.llm else "no restrictions"
    console.print(f"virtual key {escape(record.name)}: {escape(shown)}", highlight=False)
