"""`mcpgw route`: the LLM gateway's routing rules and aliases — see, change, explain.

`list`, `set`, `delete` and `alias` work on the store (see `_state`), like `vk`: what they make
overlays the `llm:` section of gateway.yaml (same name: theirs wins) and every gateway on the
database applies it within a few seconds, without a restart. Entries of the file are changed in
the file.

`explain` reads gateway.yaml and the store's entries and asks the gateway's own router, so the
answer is exactly what a request with that model, those headers and that virtual key gets.
`--vk` looks the key up in the store by name or id (rules scoped to keys match either).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape

from mcp_gateway.cli._output import JsonOption, console, fail, print_json
from mcp_gateway.cli._state import ConfigOption, read_config, with_store

if TYPE_CHECKING:
    from mcp_gateway.config_llm import LlmSettings, RoutingRule
    from mcp_gateway.store import LlmSettingRecord, Store, VirtualKeyRecord

app = typer.Typer(no_args_is_help=True, help="Model routing of /anthropic and /openai: rules, aliases, explain.")


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
    from mcp_gateway.identity import key_grant, key_identity

    headers: dict[str, str] = {}
    for item in header or ():
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            fail(f"--header {item!r}: write it as 'name: value'", 2)
        headers[name.strip().lower()] = value.strip()

    async def read(store: Store) -> tuple[list[LlmSettingRecord], VirtualKeyRecord | None]:
        record = await store.get_virtual_key_by_id_or_name(vk) if vk is not None else None
        return await store.list_llm_settings(), record

    rows, record = with_store(_store_config(config), read)  # one store session for both
    if vk is not None and record is None:
        fail(f"no virtual key named or with id {vk!r} (see `mcpgw vk list`)", 1)
    settings, _ = _overlaid(config, rows)
    identity = key_identity(key_grant(record)) if record is not None else None
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


@app.command("list")
def route_list(config: ConfigOption = Path("gateway.yaml"), as_json: JsonOption = False) -> None:
    """Routing rules (in the order they are tried) and aliases, from gateway.yaml and the store."""
    settings, made = _effective_with_sources(config)
    if as_json:
        print_json(
            {
                "routing_rules": [
                    {"source": _source(made, "rule", r.name)} | r.model_dump(exclude_none=True)
                    for r in settings.routing_rules
                ],
                "aliases": {n: {"target": t, "source": _source(made, "alias", n)} for n, t in settings.aliases.items()},
            }
        )
        return
    ordered = sorted(settings.routing_rules, key=lambda r: (r.scope != "virtual_key", -r.priority))
    for rule in ordered:
        targets = rule.target or ", ".join(f"{t.target} (weight {t.weight:g})" for t in rule.targets)
        then = f" then {', '.join(rule.fallbacks)}" if rule.fallbacks else ""
        state = "" if rule.enabled else " (disabled)"
        console.print(
            f"rule {rule.name} [{_source(made, 'rule', rule.name)}, {rule.scope}, priority {rule.priority}]"
            f"{state}: {_describe_when(rule)} → {targets}{then}",
            highlight=False,
            markup=False,
        )
    for name, target in settings.aliases.items():
        console.print(f"alias {name} [{_source(made, 'alias', name)}] → {target}", highlight=False, markup=False)
    if not settings.routing_rules and not settings.aliases:
        console.print("no routing rules or aliases: model names are used as given")


@app.command("set")
def route_set(
    name: Annotated[str, typer.Argument(help="The rule's name.")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="The rule as YAML (the fields of one routing_rules entry).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Match this model name exactly.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="'name: value' exactly, or 'name: prefix*' (starts with); repeatable."),
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="provider/model to send matching requests to.")] = None,
    fallback: Annotated[list[str] | None, typer.Option("--fallback", help="provider/model, repeatable.")] = None,
    priority: Annotated[int, typer.Option("--priority", help="Higher wins.")] = 0,
    config: ConfigOption = Path("gateway.yaml"),
) -> None:
    """Add or replace a routing rule (applied by running gateways within seconds)."""
    import yaml

    from mcp_gateway.config_llm import RoutingRule

    if file is not None:
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            fail(f"{file}: {exc}", 2)
        if not isinstance(raw, dict):
            fail(f"{file}: expected the fields of one rule (a mapping)", 2)
    else:
        when: dict[str, Any] = {}
        if model is not None:
            when["model"] = model
        headers: dict[str, Any] = {}
        for item in header or ():
            key, colon, value = item.partition(":")
            if not colon:
                fail(f"--header {item!r}: write it as 'name: value'", 2)
            value = value.strip()
            headers[key.strip().lower()] = {"starts_with": value[:-1]} if value.endswith("*") else value
        if headers:
            when["headers"] = headers
        raw = {"when": when, "target": target, "fallbacks": fallback or [], "priority": priority}
    try:
        rule = RoutingRule.model_validate({**raw, "name": name})
    except ValueError as exc:
        fail(f"invalid rule: {str(exc).splitlines()[-1].strip() or exc}", 2)
    with_store(
        _store_config(config), lambda store: store.put_llm_setting("rule", name, rule.model_dump(exclude_none=True))
    )
    console.print(f"rule {escape(name)}: {escape(_describe_when(rule))} → {escape(rule.target or 'weighted targets')}")


@app.command("delete")
def route_delete(name: str, config: ConfigOption = Path("gateway.yaml")) -> None:
    """Remove a routing rule made with `mcpgw route set` or the admin API."""
    if not with_store(_store_config(config), lambda store: store.delete_llm_setting("rule", name)):
        fail(f"no rule named {name!r} in the store (rules of gateway.yaml are removed from the file)", 1)
    console.print(f"removed rule {escape(name)}")


@app.command("alias")
def route_alias(
    name: str,
    target: Annotated[str | None, typer.Argument(help="provider/model the name stands for.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    config: ConfigOption = Path("gateway.yaml"),
) -> None:
    """Make a model name stand for a provider/model (or remove that with --delete)."""
    from mcp_gateway.config_llm import AliasTarget

    if delete:
        if not with_store(_store_config(config), lambda store: store.delete_llm_setting("alias", name)):
            fail(f"no alias named {name!r} in the store", 1)
        console.print(f"removed alias {escape(name)}")
        return
    if target is None:
        fail("give the target (provider/model), or --delete", 2)
    try:
        checked = AliasTarget(target=target)
    except ValueError:
        fail(f"{target!r}: write the target as provider/model", 2)
    with_store(_store_config(config), lambda store: store.put_llm_setting("alias", name, checked.model_dump()))
    console.print(f"alias {escape(name)} → {escape(target)}")


def _store_config(config: Path) -> Path | None:
    return config if config.exists() else None


def _effective_with_sources(config: Path) -> tuple[LlmSettings, set[tuple[str, str]]]:
    """gateway.yaml's `llm:` (unexpanded) with the store's entries over it, and which entries came from the store."""
    return _overlaid(config, with_store(_store_config(config), lambda store: store.list_llm_settings()))


def _overlaid(config: Path, rows: list[LlmSettingRecord]) -> tuple[LlmSettings, set[tuple[str, str]]]:
    from mcp_gateway.config import GatewayConfig
    from mcp_gateway.config_llm import overlay

    settings = read_config(config, expand=False).llm if config.exists() else GatewayConfig().llm
    merged, _ = overlay(settings, [(r.kind, r.name, dict(r.config)) for r in rows])
    return merged, {(r.kind, r.name) for r in rows}


def _source(made: set[tuple[str, str]], kind: str, name: str) -> str:
    return "store" if (kind, name) in made else "gateway.yaml"


def _describe_when(rule: RoutingRule) -> str:
    when = rule.when
    parts = []
    if when.model is not None:
        parts.append(
            f"model {when.model!r}"
            if isinstance(when.model, str)
            else f"model {when.model.model_dump(exclude_none=True)}"
        )
    for name, match in when.headers.items():
        parts.append(f"{name} {match!r}" if isinstance(match, str) else f"{name} {match.model_dump(exclude_none=True)}")
    if when.virtual_keys:
        parts.append(f"keys {', '.join(when.virtual_keys)}")
    if when.identity_modes:
        parts.append(f"modes {', '.join(when.identity_modes)}")
    return " and ".join(parts) or "every request"
