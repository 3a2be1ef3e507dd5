"""`mcpgw usage`: what model traffic through the LLM gateway cost, by virtual key, model or provider.

Straight on the store, like `audit` (see `_state`): the usage rows every gateway on that database
writes. Costs come from `llm.prices` at the time each request was recorded.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Column, Table

from mcp_gateway.cli._output import JsonOption, console, fail, print_json
from mcp_gateway.cli._state import StoreConfigOption, with_store

if TYPE_CHECKING:
    from mcp_gateway.store import LlmUsageTotal, Store

_SPAN = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_BY_HELP = "Group by virtual key, provider/model or provider."


def usage(
    by: Annotated[
        Literal["vk", "model", "provider"],
        typer.Option("--by", help="Group by virtual key, provider/model or provider."),
    ] = "vk",
    since: Annotated[
        str, typer.Option("--since", help="A span back from now (30m, 24h, 7d) or a date (2026-12-01).")
    ] = "24h",
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Requests, tokens and cost of model traffic (/anthropic, /openai), most expensive first."""
    start = _parse_since(since)

    async def read(store: Store) -> tuple[list[LlmUsageTotal], dict[str, str]]:
        totals = await store.llm_usage_totals(by=by, since=start)
        names = {k.id: k.name for k in await store.list_virtual_keys(limit=100_000)} if by == "vk" else {}
        return totals, names

    totals, names = with_store(config, read)
    if as_json:
        print_json({"since": start.isoformat(), "by": by, "rows": [asdict(t) for t in totals]})
        return
    table = Table(
        Column(by, overflow="fold"),
        Column("requests", justify="right"),
        Column("input", justify="right"),
        Column("output", justify="right"),
        Column("cache read", justify="right"),
        Column("cost USD", justify="right"),
        Column("failed", justify="right"),
        Column("fallbacks", justify="right"),
    )
    for total in totals:
        label = total.key or "-"
        if by == "vk" and total.key in names:
            label = f"{names[total.key]} ({total.key[:8]})"
        table.add_row(
            escape(label),
            str(total.requests),
            f"{total.input_tokens:,}",
            f"{total.output_tokens:,}",
            f"{total.cache_read_tokens:,}",
            f"{total.cost_usd:.4f}",
            str(total.failed),
            str(total.fallbacks),
        )
    console.print(table)
    console.print(f"since {start:%Y-%m-%d %H:%M} UTC: {sum(t.requests for t in totals)} requests")


def _parse_since(value: str) -> datetime:
    now = datetime.now(UTC)
    span = _SPAN.match(value.strip())
    if span is not None:
        return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--since {value!r}: give a span (30m, 24h, 7d) or a date (2026-12-01)", 2)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
