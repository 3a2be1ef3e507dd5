"""The audit log of tool calls: `mcpgw audit tail [--follow]`.

Read straight from the store (see `_state`), so it works with the gateways stopped and shows
what every gateway on that database recorded. `--follow` polls the store: a table cannot grow
once printed, so followed events are printed one per line.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import typer
from rich.markup import escape
from rich.table import Column, Table

from mcp_gateway.cli._output import console, json_default, print_json, record_json, when
from mcp_gateway.cli._state import StoreConfigOption, with_store

if TYPE_CHECKING:
    from mcp_gateway.store import AuditEventRecord, Store

app = typer.Typer(no_args_is_help=True, help="Read the audit log of tool calls.")

AUDIT_FOLLOW_POLL_SECONDS = 1.0
_AUDIT_PAGE = 500
AuditOutcomeChoice = Literal["ok", "tool_error", "error", "denied"]
"""`store.AuditOutcome`, spelled out so that typer can read it without importing the store."""
_OUTCOME_COLORS = {"ok": "green", "tool_error": "yellow", "error": "red", "denied": "magenta"}


@app.command("tail")
def audit_tail(
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="How many of the newest events to show.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (checked every second) until Ctrl-C.")
    ] = False,
    upstream: Annotated[str | None, typer.Option(help="Only events for this upstream.")] = None,
    vk: Annotated[str | None, typer.Option("--vk", help="Only events made with this virtual key id.")] = None,
    outcome: Annotated[AuditOutcomeChoice | None, typer.Option(help="Only events with this outcome.")] = None,
    llm_request: Annotated[
        str | None,
        typer.Option("--llm-request", help="Only the tool calls run for this model request (its X-Request-Id)."),
    ] = None,
    config: StoreConfigOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON array; with --follow, one JSON object per line.")
    ] = False,
) -> None:
    """The newest audit events, oldest first (like tail); --follow keeps printing new ones."""
    filters: dict[str, Any] = {
        "upstream": upstream,
        "virtual_key_id": vk,
        "outcome": outcome,
        "llm_request_id": llm_request,
    }

    def emit(events: Sequence[AuditEventRecord], first: bool) -> None:
        if as_json and not follow:
            print_json([record_json(event) for event in events])
        elif as_json:
            for event in events:
                print(json.dumps(record_json(event), default=json_default), flush=True)
        elif follow:
            for event in events:
                console.print(_audit_line(event), highlight=False)
        elif events:
            console.print(_audit_table(events))
        elif first:
            console.print("no audit events" + (" match" if any(filters.values()) else " yet"), highlight=False)

    async def tail(store: Store) -> None:
        recent = await store.list_audit(limit=limit, **filters) if limit else []
        emit(recent[::-1], True)
        if not follow:
            return
        newest = await store.list_audit(limit=1)
        seen = newest[0].id if newest else 0
        while True:
            await anyio.sleep(AUDIT_FOLLOW_POLL_SECONDS)
            # Anchor on the newest id of any event, so a narrow filter never rescans the whole log.
            newest = await store.list_audit(limit=1)
            top = newest[0].id if newest else seen
            if top > seen:
                emit(await _audit_between(store, seen, top + 1, filters), False)
                seen = top

    if follow:
        # Ctrl-C is how --follow ends, also when started with SIGINT ignored (e.g. as a background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with_store(config, tail)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _caller(event: AuditEventRecord) -> str:
    caller = f"{event.identity_mode} {event.subject}" if event.subject else event.identity_mode
    if event.virtual_key_id and event.virtual_key_id != event.subject:
        caller += f" via vk {event.virtual_key_id}"
    if event.llm_request_id:
        caller += f" for model request {event.llm_request_id}"
    return caller


def _target(event: AuditEventRecord) -> str:
    return "/".join(part for part in (event.upstream, event.tool) if part) or "-"


def _outcome(event: AuditEventRecord) -> str:
    color = _OUTCOME_COLORS.get(event.outcome, "white")
    return f"[{color}]{event.outcome}[/{color}]"


def _audit_table(events: Sequence[AuditEventRecord]) -> Table:
    table = Table(
        "id",
        Column("time (UTC)", no_wrap=True, min_width=19),
        Column("caller", overflow="fold"),
        Column("method", no_wrap=True),
        Column("upstream/tool", overflow="fold"),
        "outcome",
        Column("ms", justify="right"),
        Column("detail", overflow="fold"),
    )
    for event in events:
        table.add_row(
            str(event.id),
            when(event.ts),
            escape(_caller(event)),
            escape(event.method),
            escape(_target(event)),
            _outcome(event),
            f"{event.duration_ms:.1f}",
            escape(event.detail or ""),
        )
    return table


def _audit_line(event: AuditEventRecord) -> str:
    """One event as one line, for --follow (a table cannot grow once printed)."""
    detail = f"  {escape(event.detail)}" if event.detail else ""
    return (
        f"{event.id:>6}  {when(event.ts)}  {_outcome(event)}  {escape(_caller(event))}  {escape(event.method)} "
        f"{escape(_target(event))}  {event.duration_ms:.1f} ms{detail}"
    )


async def _audit_between(
    store: Store, after_id: int, before_id: int | None, filters: Mapping[str, Any]
) -> list[AuditEventRecord]:
    """Every matching event with after_id < id < before_id, oldest first, however many there are."""
    found: list[AuditEventRecord] = []
    while True:
        page = await store.list_audit(limit=_AUDIT_PAGE, after_id=after_id, before_id=before_id, **filters)
        found.extend(page)
        if len(page) < _AUDIT_PAGE:
            return found[::-1]
        before_id = page[-1].id
