"""The LLM gateway in the admin API: providers, routing rules, aliases and prices, changed without a restart.

What is made here is stored (`store/llm_settings.py`) and overlays the `llm:` section of
gateway.yaml: same name, this one wins; entries from the file can be overridden but not deleted
here (edit the file). Every change is applied by every gateway on the database within a poll
(at once on this one). Provider secrets are accepted only as `${VAR}` references to the
gateway's environment, so no provider key is ever written to the database; answers show them as
the references they are, and file secrets as `***`.

`POST /api/llm/explain` answers what `mcpgw route explain` prints: which rule matches a request
with that model, headers and key, why the others do not, and the final target.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from mcp_gateway.config import expand_llm_environment
from mcp_gateway.config_llm import (
    PROVIDER_NAME_PATTERN,
    AliasTarget,
    LlmSettings,
    ModelPrice,
    ProviderConfig,
    RoutingRule,
    overlay,
    secret_references_only,
)
from mcp_gateway.errors import ConfigError
from mcp_gateway.http.api.errors import CONFLICT, NOT_FOUND, invalid
from mcp_gateway.identity import key_grant, key_identity

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway

logger = logging.getLogger(__name__)

REDACTED = "***"
_SECRET_FIELDS = ("api_key", "secret_access_key", "session_token")
Kind = Literal["provider", "rule", "alias", "price"]


class LlmEntry(BaseModel):
    name: str
    source: Literal["config", "api"] = Field(description="`config`: gateway.yaml; `api`: made here or by the CLI.")
    config: dict[str, Any]


class LlmSettingsOut(BaseModel):
    enabled: bool
    providers: list[LlmEntry]
    routing_rules: list[LlmEntry] = Field(description="In the order they are tried on equal priority.")
    aliases: list[LlmEntry]
    prices: list[LlmEntry]
    not_applied: dict[str, str] = Field(description="Stored entries that could not be applied, and why.")


class ExplainIn(BaseModel):
    model: str
    headers: dict[str, str] = Field(default_factory=dict)
    virtual_key: str | None = Field(default=None, description="Name or id of the key the request carries.")
    api: Literal["anthropic", "openai"] = "anthropic"


class ExplainOut(BaseModel):
    rule: str | None
    alias: str | None
    targets: list[str] = Field(description="The target, then its fallbacks.")
    reasons: list[str]
    error: str | None


def llm_routes(gateway: Gateway, router: APIRouter) -> None:
    """Adds the `/llm` endpoints to `router` (which carries the admin-token check)."""
    store = gateway.running_store

    async def settings_out() -> LlmSettingsOut:
        rows = await store().list_llm_settings()
        made = {(r.kind, r.name) for r in rows}
        # Shown as written (file and store keep `${VAR}` references), never as the running values.
        current, _ = overlay(gateway.config.llm, [(r.kind, r.name, dict(r.config)) for r in rows])

        def entry(kind: Kind, name: str, config: dict[str, Any]) -> LlmEntry:
            return LlmEntry(name=name, source="api" if (kind, name) in made else "config", config=config)

        return LlmSettingsOut(
            enabled=current.enabled,
            providers=[entry("provider", name, _shown(p)) for name, p in current.providers.items()],
            routing_rules=[
                entry("rule", rule.name, rule.model_dump(exclude_none=True)) for rule in current.routing_rules
            ],
            aliases=[entry("alias", name, {"target": target}) for name, target in current.aliases.items()],
            prices=[entry("price", name, p.model_dump(exclude_none=True)) for name, p in current.prices.items()],
            not_applied=dict(gateway.llm_skipped),
        )

    async def put(kind: Kind, name: str, config: dict[str, Any]) -> LlmSettingsOut:
        await store().put_llm_setting(kind, name, config)
        await gateway.sync()
        logger.info("admin API: set LLM %s %s", kind, name)
        return await settings_out()

    async def remove(kind: Kind, name: str) -> Response:
        if not await store().delete_llm_setting(kind, name):
            in_file = _in_file(gateway.config.llm, kind, name)
            if in_file:
                raise HTTPException(409, f"{kind} {name!r} comes from gateway.yaml; remove it there")
            raise HTTPException(404, f"no {kind} named {name!r} was made through the API or CLI")
        await gateway.sync()
        logger.info("admin API: removed LLM %s %s", kind, name)
        return Response(status_code=204)

    @router.get("/llm", tags=["llm"])
    async def get_llm() -> LlmSettingsOut:
        """The LLM gateway's effective settings: gateway.yaml with what was made at run time over it."""
        return await settings_out()

    @router.put("/llm/providers/{name}", tags=["llm"])
    async def put_provider(name: str, body: ProviderConfig) -> LlmSettingsOut:
        """Add or replace a provider; its secrets must be `${VAR}` references set in the gateway's environment."""
        if not PROVIDER_NAME_PATTERN.fullmatch(name):
            raise invalid(("path", "name"), "use letters, digits, '_' and '-' only")
        try:  # the settings' own check: a name that is not a known kind needs `kind`
            checked = LlmSettings.model_validate({"providers": {name: body.model_dump(exclude_none=True)}})
        except ValidationError as exc:
            raise invalid(("body", "kind"), exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        refused = secret_references_only(checked.providers[name])
        if refused is not None:
            raise invalid(("body", refused[0]), refused[1])
        try:
            expand_llm_environment(checked, os.environ, source="request")
        except ConfigError as exc:
            raise invalid(("body",), exc.message.split(": ", 1)[-1]) from None
        return await put("provider", name, checked.providers[name].model_dump(exclude_none=True))

    @router.delete("/llm/providers/{name}", status_code=204, tags=["llm"], responses=NOT_FOUND | CONFLICT)
    async def delete_provider(name: str) -> Response:
        return await remove("provider", name)

    @router.put("/llm/routing-rules/{name}", tags=["llm"])
    async def put_rule(name: str, body: RoutingRule) -> LlmSettingsOut:
        """Add or replace a routing rule (`name` in the body, if given, must match the path)."""
        if body.name != name:
            raise invalid(("body", "name"), f"the rule's name {body.name!r} differs from the path's {name!r}")
        return await put("rule", name, body.model_dump(exclude_none=True))

    @router.delete("/llm/routing-rules/{name}", status_code=204, tags=["llm"], responses=NOT_FOUND | CONFLICT)
    async def delete_rule(name: str) -> Response:
        return await remove("rule", name)

    @router.put("/llm/aliases/{name}", tags=["llm"])
    async def put_alias(name: str, body: AliasTarget) -> LlmSettingsOut:
        """Make `name` stand for a `provider/model`."""
        return await put("alias", name, body.model_dump())

    @router.delete("/llm/aliases/{name}", status_code=204, tags=["llm"], responses=NOT_FOUND | CONFLICT)
    async def delete_alias(name: str) -> Response:
        return await remove("alias", name)

    @router.put("/llm/prices/{name:path}", tags=["llm"])
    async def put_price(name: str, body: ModelPrice) -> LlmSettingsOut:
        """The price of `provider/model` (or a glob), USD per million tokens."""
        return await put("price", name, body.model_dump(exclude_none=True))

    @router.delete("/llm/prices/{name:path}", status_code=204, tags=["llm"], responses=NOT_FOUND | CONFLICT)
    async def delete_price(name: str) -> Response:
        return await remove("price", name)

    @router.post("/llm/explain", tags=["llm"])
    async def explain(body: ExplainIn) -> ExplainOut:
        """Where a model request would go, and why (the same answer the request itself would get)."""
        from llm_gateway.routing import RequestFacts, Router
        from llm_gateway.service import DEFAULT_PROVIDER

        settings = gateway.llm.settings if gateway.llm is not None else gateway.config.llm
        identity = None
        if body.virtual_key is not None:
            record = await store().get_virtual_key_by_id_or_name(body.virtual_key)
            if record is None:
                raise invalid(("body", "virtual_key"), f"no virtual key named or with id {body.virtual_key!r}")
            identity = key_identity(key_grant(record))
        headers = {k.lower(): v for k, v in body.headers.items()}
        result = Router(settings).explain(RequestFacts(body.model, headers, identity, DEFAULT_PROVIDER[body.api]))
        route = result.route
        return ExplainOut(
            rule=route.rule if route else None,
            alias=route.alias if route else None,
            targets=[str(t) for t in route.targets] if route else [],
            reasons=result.lines,
            error=result.error,
        )


def _in_file(settings: LlmSettings, kind: Kind, name: str) -> bool:
    if kind == "provider":
        return name in settings.providers
    if kind == "alias":
        return name in settings.aliases
    if kind == "price":
        return name in settings.prices
    return any(rule.name == name for rule in settings.routing_rules)


def _shown(provider: ProviderConfig) -> dict[str, Any]:
    """A provider fit to show: `${VAR}` references as written, literal secrets (from the file) as `***`."""
    shown = provider.model_dump(exclude_none=True)
    for field in _SECRET_FIELDS:
        if field in shown and "${" not in str(shown[field]):
            shown[field] = REDACTED
    if "keys" in shown:
        shown["keys"] = [{**k, "value": k["value"] if "${" in k["value"] else REDACTED} for k in shown["keys"]]
    return shown
