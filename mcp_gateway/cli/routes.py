"""`mcpgw route explain`: which provider and model a model request would go to, and why.

Reads the routing rules, aliases and providers from gateway.yaml (the same `llm:` section
`serve` uses) and asks the gateway's own router, so the answer is exactly what a request with
that model, those headers and that virtual key gets. `--vk` looks the key up in the store by
name or id (rules scoped to keys match either).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from mcp_gateway.cli._output import JsonOption, console, fail, print_json
from mcp_gateway.cli._state import ConfigOption, read_config, with_store

if TYPE_CHECKING:
    from mcp_gateway.identity import Identity
    from mcp_gateway.store import Store

app = typer.Typer(no_args_is_help=True, help="Model routing: see where a model request would go.")


@app.command("explain")
def explain(
    model: Annotated[str, typer.Option("--model", "-m", help="The model name the client sends.")],
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A request header, 'name: value' (repeatable), e.g. the user-agent."),
    ] = None,
    vk: Annotated[str | None, typer.Option("--vk", help="The virtual key (name or id) the request carries.")] = None,
    api: Annotated[
        Literal["anthropic", "openai"], typer.Option("--api", help="Which endpoint: /anthropic or /openai.")
    ] = "anthropic",
    config: ConfigOption = Path("gateway.yaml"),
    as_json: JsonOption = False,
) -> None:
    """Print which routing rule matches (and why the others do not) and the final target with its fallbacks."""
    from llm_gateway.routing import RequestFacts, Router
    from llm_gateway.service import DEFAULT_PROVIDER

    settings = read_config(config, expand=False).llm
    headers: dict[str, str] = {}
    for item in header or ():
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            fail(f"--header {item!r}: write it as 'name: value'", 2)
        headers[name.strip().lower()] = value.strip()
    identity = _identity_of_key(config, vk) if vk is not None else None
    router = Router(settings)
    explanation = router.explain(RequestFacts(model, headers, identity, DEFAULT_PROVIDER[api]))
    route = explanation.route
    if as_json:
        print_json(
            {
                "model": model,
                "api": api,
                "rule": route.rule if route else None,
                "alias": route.alias if route else None,
                "targets": [str(t) for t in route.targets] if route else [],
                "reasons": explanation.lines,
                "error": explanation.error,
            }
        )
    else:
        who = f", virtual key {escape(vk)}" if vk else ""
        console.print(f"model [bold]{escape(model)}[/bold] on /{api}{who}")
        for line in explanation.lines:
            console.print(f"  {escape(line)}")
        if route is not None:
            first, *fallbacks = route.targets
            then = f" (then {', '.join(str(t) for t in fallbacks)})" if fallbacks else ""
            console.print(f"→ [bold]{escape(str(first))}[/bold]{escape(then)}")
    if explanation.error is not None:
        fail(explanation.error, 1)


def _identity_of_key(config: Path, key: str) -> Identity:
    from mcp_gateway.identity import Identity, IdentityMode, KeyGrant

    async def find(store: Store) -> Identity:
        records = await store.list_virtual_keys(limit=100_000)
        record = next((r for r in records if key in (r.id, r.name)), None)
        if record is None:
            fail(f"no virtual key named or with id {key!r} (see `mcpgw vk list`)", 1)
        grant = KeyGrant(
            id=record.id,
            name=record.name,
            active=record.active,
            user_id=record.user_id,
            mcp_configs=dict(record.mcp_configs),
        )
        mode = IdentityMode.USER if record.user_id else IdentityMode.VK
        return Identity(mode, record.user_id or record.id, virtual_key=grant, user_id=record.user_id)

    return with_store(config if config.exists() else None, find)
