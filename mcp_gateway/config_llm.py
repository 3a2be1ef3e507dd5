"""The `llm:` section of gateway.yaml: model providers, aliases and routing rules.

Beside `config.py` rather than inside it because it is a vocabulary of its own (what a provider,
a rule and a target are) that the LLM gateway (`llm_gateway/`) reads; it stays in
`mcp_gateway` so the configuration is validated by one set of models in one package, with the
same line-numbered errors as upstreams.

Targets are written `provider/model` (`openai/gpt-5.5`, `bedrock/global.anthropic.claude-sonnet-4-6`):
the part before the first `/` names a configured provider. A model without a known provider
prefix goes to the API's own provider (`anthropic` on `/anthropic`, `openai` on `/openai`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROVIDER_KINDS = ("anthropic", "openai", "openai_compatible", "azure", "bedrock", "vertex", "gemini")
ProviderKind = Literal["anthropic", "openai", "openai_compatible", "azure", "bedrock", "vertex", "gemini"]
PROVIDER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderKey(_Strict):
    """One API key of a provider; several keys share the traffic by `weight`."""

    value: str = Field(description='The key; use a "${VAR}" reference to keep it out of the file.')
    weight: float = Field(default=1.0, gt=0)


class ProviderConfig(_Strict):
    """One model provider. `kind` defaults to the provider's name when that is a known kind."""

    kind: ProviderKind | None = None
    base_url: str | None = Field(default=None, description="Where the provider's API is; default: its public API.")
    api_key: str | None = Field(default=None, description="One key (or use `keys` for several, weighted).")
    keys: list[ProviderKey] = Field(default_factory=list)
    timeout: float = Field(default=600.0, gt=0, description="Seconds a request may take (streams: between chunks).")
    connect_timeout: float = Field(default=10.0, gt=0)
    api_version: str | None = Field(default=None, description="azure: the `api-version` query parameter.")
    api: Literal["chat_completions", "messages"] = Field(
        default="chat_completions",
        description="azure: `messages` for Claude on Azure AI Foundry (the Anthropic Messages API).",
    )
    deployments: dict[str, str] = Field(
        default_factory=dict, description="azure: model name → deployment name (default: the model name)."
    )
    region: str | None = Field(default=None, description="bedrock / vertex: the region.")
    project: str | None = Field(default=None, description="vertex: the Google Cloud project.")
    credentials_file: str | None = Field(
        default=None, description="vertex: a service-account JSON file (default: Application Default Credentials)."
    )
    access_key_id: str | None = Field(default=None, description="bedrock: default: the standard AWS chain.")
    secret_access_key: str | None = None
    session_token: str | None = None
    models: list[str] = Field(
        default_factory=list, description="Models listed by `GET /v1/models` (any model may be requested)."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or "${" in value:
            return value  # checked again once `${VAR}` references are expanded
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value

    def secrets(self) -> list[str]:
        """Every credential in this provider's config (so logs and answers can be checked against them)."""
        values = [self.api_key, self.secret_access_key, self.session_token, *(k.value for k in self.keys)]
        return [v for v in values if v]


class ModelMatch(_Strict):
    """How a rule matches the requested model: exactly, by glob (`claude-*`) or by regular expression."""

    equals: str | None = None
    glob: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ModelMatch:
        if sum(v is not None for v in (self.equals, self.glob, self.regex)) != 1:
            raise ValueError("give exactly one of equals, glob, regex")
        if self.regex is not None:
            _compile(self.regex)
        return self


class HeaderMatch(_Strict):
    """How a rule matches one request header (names are case-insensitive, values case-sensitive)."""

    equals: str | None = None
    starts_with: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HeaderMatch:
        if sum(v is not None for v in (self.equals, self.starts_with, self.regex)) != 1:
            raise ValueError("give exactly one of equals, starts_with, regex")
        if self.regex is not None:
            _compile(self.regex)
        return self


class RuleCondition(_Strict):
    """Everything given must hold; an empty condition matches every request."""

    model: str | ModelMatch | None = Field(default=None, description="A plain string matches exactly.")
    headers: dict[str, str | HeaderMatch] = Field(default_factory=dict, description="A plain string: equals.")
    virtual_keys: list[str] | None = Field(default=None, description="Names or ids of virtual keys.")
    identity_modes: list[Literal["user", "vk", "session", "anonymous"]] | None = None

    @field_validator("headers")
    @classmethod
    def _lower(cls, value: dict[str, str | HeaderMatch]) -> dict[str, str | HeaderMatch]:
        return {name.lower(): match for name, match in value.items()}


class WeightedTarget(_Strict):
    target: str
    weight: float = Field(default=1.0, gt=0)


class RoutingRule(_Strict):
    """When `when` matches, the request goes to `target` (or one of `targets`), then `fallbacks` in order."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    scope: Literal["global", "virtual_key"] = Field(
        default="global", description="virtual_key: only for the keys in `virtual_keys`, tried before global rules."
    )
    virtual_keys: list[str] = Field(default_factory=list, description="scope virtual_key: names or ids.")
    priority: int = Field(default=0, description="Higher wins; ties go to the rule defined first.")
    enabled: bool = True
    when: RuleCondition = Field(default_factory=RuleCondition)
    target: str | None = None
    targets: list[WeightedTarget] = Field(default_factory=list, description="Several targets, chosen by weight.")
    fallbacks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _target(self) -> RoutingRule:
        if (self.target is None) == (not self.targets):
            raise ValueError("give `target` or `targets` (not both)")
        if self.scope == "virtual_key" and not self.virtual_keys:
            raise ValueError("scope virtual_key needs `virtual_keys`")
        return self


class ModelPrice(_Strict):
    """USD per million tokens; cache reads and writes cost the input price unless given."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class KeyLlmPolicy(_Strict):
    """What one virtual key may do on `/anthropic` and `/openai` (no field: no limit).

    `allowed_models` are `provider/model` patterns (globs): the model a request is finally routed
    to must match one (or, for a request naming a rule's or alias's name, that name may). Budgets
    are per key: requests and tokens per rolling minute, US dollars per UTC day and month
    (priced by `llm.prices`).
    """

    allowed_models: list[str] | None = Field(default=None, description='e.g. ["anthropic/*", "openai/gpt-5*"]')
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    usd_per_day: float | None = Field(default=None, gt=0)
    usd_per_month: float | None = Field(default=None, gt=0)
    inject_mcp_tools: bool | None = Field(
        default=None, description="false: no MCP tools are added to this key's model requests (default: llm setting)."
    )
    tools_to_auto_execute: list[str] | None = Field(
        default=None,
        description="Narrows which auto-executable tools the gateway runs for this key: gateway tool names or "
        'globs (e.g. ["docs-*"]); [] runs none.',
    )


class LlmSettings(_Strict):
    """The LLM gateway: `/anthropic` and `/openai` on the same port as `/mcp`."""

    enabled: bool = True
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict, description="Model name → provider/model.")
    routing_rules: list[RoutingRule] = Field(default_factory=list)
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='Prices by "provider/model", "model" or a glob of either (e.g. "openai/gpt-5*"); for cost '
        "in `mcpgw usage` and USD budgets. Requests to unpriced models cost nothing.",
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0, description="Largest request body accepted.")
    auto_inject_mcp_tools: bool = Field(
        default=True,
        description="Add the MCP tools the caller may use on /mcp to its model requests (unless the client already "
        "sends them: see docs/llm-tools.md); per key with the key's `inject_mcp_tools`, per request with the "
        "header `x-mcpgw-inject-tools: off`.",
    )
    max_agent_depth: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Most rounds of tool execution the gateway runs for one model request (agent mode); after "
        "that the model's answer goes to the client as it is.",
    )

    @field_validator("providers")
    @classmethod
    def _kinds(cls, providers: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name, provider in providers.items():
            if not PROVIDER_NAME_PATTERN.match(name):
                raise ValueError(f"provider name {name!r}: use letters, digits, '_' and '-' only")
            if provider.kind is None:
                if name not in PROVIDER_KINDS:
                    raise ValueError(f"provider {name!r} needs `kind` (one of {', '.join(PROVIDER_KINDS)})")
                provider.kind = name  # type: ignore[assignment]  # checked just above
        return providers

    @model_validator(mode="after")
    def _unique_rule_names(self) -> LlmSettings:
        seen: set[str] = set()
        for rule in self.routing_rules:
            if rule.name in seen:
                raise ValueError(f"two routing rules are named {rule.name!r}")
            seen.add(rule.name)
        return self


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def expand_llm(settings: LlmSettings, expand: Any) -> LlmSettings:
    """`settings` with `${VAR}` references expanded in every provider string (keys, URLs, credentials).

    `expand(value, *location)` is `config.expand_environment`'s expander, so an unset variable is
    reported with its field path and line like any other.
    """
    providers: dict[str, ProviderConfig] = {}
    for name, provider in settings.providers.items():
        update: dict[str, Any] = {}
        for field in ("base_url", "api_key", "access_key_id", "secret_access_key", "session_token", "credentials_file"):
            value = getattr(provider, field)
            if isinstance(value, str):
                update[field] = expand(value, "llm", "providers", name, field)
        update["keys"] = [
            key.model_copy(update={"value": expand(key.value, "llm", "providers", name, "keys", i, "value")})
            for i, key in enumerate(provider.keys)
        ]
        providers[name] = provider.model_copy(update=update)
    return settings.model_copy(update={"providers": providers})


def overlay(
    settings: LlmSettings, entries: list[tuple[str, str, dict[str, Any]]]
) -> tuple[LlmSettings, dict[str, str]]:
    """`settings` (from gateway.yaml) with run-time entries `(kind, name, config)` laid over them.

    A provider, alias or price of the same name replaces the file's; a rule of the same name takes
    the file rule's place, other rules follow the file's in the order given. An entry that is not
    valid (here: e.g. written by a newer gateway) is left out and reported in the second value,
    `"<kind> <name>" → why`, so one bad row never takes the rest down.
    """
    providers = dict(settings.providers)
    aliases = dict(settings.aliases)
    prices = dict(settings.prices)
    rules = {rule.name: rule for rule in settings.routing_rules}
    skipped: dict[str, str] = {}
    for kind, name, config in entries:
        try:
            if kind == "provider":
                providers[name] = ProviderConfig.model_validate(config)
            elif kind == "alias":
                aliases[name] = str(AliasTarget.model_validate(config).target)
            elif kind == "price":
                prices[name] = ModelPrice.model_validate(config)
            elif kind == "rule":
                rules[name] = RoutingRule.model_validate({**config, "name": name})
            else:
                skipped[f"{kind} {name}"] = f"unknown kind {kind!r}"
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            skipped[f"{kind} {name}"] = str(exc).splitlines()[0]
    try:
        merged = LlmSettings.model_validate(
            {
                **settings.model_dump(exclude={"providers", "aliases", "prices", "routing_rules"}),
                "providers": {n: p.model_dump(exclude_none=True) for n, p in providers.items()},
                "aliases": aliases,
                "prices": {n: p.model_dump(exclude_none=True) for n, p in prices.items()},
                "routing_rules": [r.model_dump(exclude_none=True) for r in rules.values()],
            }
        )
    except ValueError as exc:
        skipped["llm"] = f"run-time settings ignored: {str(exc).splitlines()[0]}"
        return settings, skipped
    return merged, skipped


class AliasTarget(_Strict):
    """The body of an alias entry: what the name stands for."""

    target: str = Field(min_length=3, pattern=r"^[^/\s]+/\S+$", description="provider/model")


def secret_references_only(provider: ProviderConfig) -> tuple[str, str] | None:
    """(field, why) when `provider` holds a literal secret, else None: stored secrets are `${VAR}` references."""
    for field in ("api_key", "secret_access_key", "session_token"):
        value = getattr(provider, field)
        if value and not _REFERENCE.fullmatch(value):
            return field, "give a ${VAR} reference, not the secret itself (secrets stay out of the database)"
    for i, key in enumerate(provider.keys):
        if not _REFERENCE.fullmatch(key.value):
            return f"keys.{i}.value", "give a ${VAR} reference, not the secret itself"
    return None


_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
