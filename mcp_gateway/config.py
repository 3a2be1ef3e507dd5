"""gateway.yaml: the declarative description of a gateway and its upstreams.

The same pydantic models validate the YAML file, `mcpgw import` output and (later) the admin
API, so there is one definition of what a valid upstream is. Loading reports the first problems
with the field path *and* the line in the file, because a platform engineer editing YAML needs
to know where to look, not a pydantic traceback.

Why one module of this length: the models, the YAML loading that maps a pydantic error back to
its line, and `${VAR}` expansion are one concept — what a valid gateway.yaml is — and each needs
the others' details (field paths, node positions). The `llm:` vocabulary lives in `config_llm.py`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_gateway.config_llm import LlmSettings, expand_llm
from mcp_gateway.errors import ConfigError
from mcp_gateway.identity import API_KEY_HEADER, SESSION_HEADER, VK_HEADER, AuthSettings
from mcp_gateway.toolmodes.base import ToolMode

UPSTREAM_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

DEFAULT_CALL_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class _Strict(BaseModel):
    """Unknown keys are errors: a typo such as `comand:` must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class _UpstreamBase(_Strict):
    prefix: str | None = Field(
        default=None,
        description='Prefix for tool/prompt names; default is the upstream name, "" exposes names unprefixed.',
    )
    timeout: float = Field(default=DEFAULT_CALL_TIMEOUT, gt=0, description="Seconds one call may take.")
    connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0, description="Seconds to connect.")
    enabled: bool = True
    description: str | None = None
    tool_mode: ToolMode | None = Field(
        default=None, description="direct | compact | search | code; default: server.tool_mode."
    )
    tools_to_auto_execute: list[str] = Field(
        default_factory=list,
        description='Tools (names as this server lists them, globs allowed, "*" for all) the gateway runs itself '
        "when a model it serves on /anthropic or /openai calls them (agent mode); others go back to the client.",
    )
    allow_on_all_virtual_keys: bool = Field(
        default=False,
        description="Every caller sees all of this upstream's tools unless their grants name it explicitly; "
        "session and anonymous callers see only such upstreams.",
    )
    ping: bool = Field(
        default=True,
        description="Health-check with MCP `ping`; false: with `tools/list`, for servers that do not answer ping.",
    )
    ping_interval: float = Field(default=10.0, gt=0, description="Seconds between health checks.")
    ping_timeout: float = Field(default=5.0, gt=0, description="Seconds a health check may take before it fails.")
    max_ping_failures: int = Field(
        default=5, ge=1, description="Health checks failed in a row after which the upstream is disconnected."
    )
    sync_interval: float = Field(
        default=600.0,
        description="Seconds between re-listing tools, prompts and resources, for servers that change them "
        "without notifying; 0 or negative: never.",
    )
    reconnect_backoff_start: float = Field(
        default=1.0, gt=0, description="Seconds before the first reconnect; doubled after each failed attempt."
    )
    reconnect_backoff_max: float = Field(default=30.0, gt=0, description="Longest wait between reconnect attempts.")

    @field_validator("prefix")
    @classmethod
    def _prefix_charset(cls, value: str | None) -> str | None:
        if value and not UPSTREAM_NAME_PATTERN.match(value):
            raise ValueError("prefix may only contain letters, digits and underscores")
        return value


class StdioUpstream(_UpstreamBase):
    """A server the gateway starts as a child process and talks to over stdin/stdout."""

    transport: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class NoAuth(_Strict):
    """Nothing beyond the static `headers` (which may themselves carry a shared token).

    `type` has no default in any auth model: stored configs drop defaults, and the type must survive.
    """

    type: Literal["none", "headers"]


class PerUserHeaders(_Strict):
    """Each caller supplies their own values for these headers (via a gateway web form) the first time."""

    type: Literal["per_user_headers"]
    header_keys: list[str] = Field(min_length=1, description="Header names each caller must supply, e.g. X-Api-Token.")

    @field_validator("header_keys")
    @classmethod
    def _header_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in _CLIENT_ONLY_HEADERS:
                raise ValueError(f"{name!r} is reserved for the gateway's own callers and is never sent upstream")
        return value


class OAuthClientSettings(_Strict):
    """OAuth 2.1 (authorization code + PKCE) against the upstream's authorization server.

    The server is discovered from the upstream (RFC 9728, then RFC 8414) unless given; the client
    registers itself (RFC 7591) when the server allows it and no `client_id` is configured.
    """

    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] = Field(default_factory=list)
    authorization_server: str | None = Field(
        default=None, description="Issuer URL, when the upstream does not advertise it (RFC 9728)."
    )


class SharedOAuth(OAuthClientSettings):
    """One token for everybody: an admin authorizes once (`mcpgw upstream authorize NAME`)."""

    type: Literal["oauth"]


class PerUserOAuth(OAuthClientSettings):
    """Each caller consents at the provider the first time; the gateway keeps and refreshes their tokens."""

    type: Literal["per_user_oauth"]


UpstreamAuth = Annotated[NoAuth | PerUserHeaders | SharedOAuth | PerUserOAuth, Field(discriminator="type")]
_CLIENT_ONLY_HEADERS = frozenset(
    {"authorization", VK_HEADER, API_KEY_HEADER, SESSION_HEADER, "cookie", "host", "content-length"}
)


class _RemoteUpstream(_UpstreamBase):
    """A server reached over HTTP: a URL and static headers (which may hold `${VAR}` references)."""

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    auth: UpstreamAuth = Field(
        default_factory=lambda: NoAuth(type="none"),
        description="none | headers | oauth | per_user_headers | per_user_oauth",
    )
    max_user_sessions: int = Field(
        default=200, ge=1, description="Per-user upstreams: open sessions kept at most (idle ones are closed first)."
    )
    user_session_idle_timeout: float = Field(
        default=300.0, gt=0, description="Per-user upstreams: seconds a session may sit unused before it is closed."
    )

    @property
    def per_user(self) -> bool:
        return isinstance(self.auth, PerUserHeaders | PerUserOAuth)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_http_url(value)


class HttpUpstream(_RemoteUpstream):
    """A server reached over MCP streamable HTTP."""

    transport: Literal["http"] = "http"


class SseUpstream(_RemoteUpstream):
    """A server reached over the legacy HTTP+SSE transport (protocol 2024-11-05)."""

    transport: Literal["sse"] = "sse"


def _check_http_url(value: str) -> str:
    if "${" in value:
        return value  # checked again once `${VAR}` references are expanded
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


UpstreamConfig = Annotated[StdioUpstream | HttpUpstream | SseUpstream, Field(discriminator="transport")]


class CodeModeLimits(_Strict):
    """Bounds on one `run_code` call; defaults stop an infinite loop in under 5 s."""

    wall_seconds: float = Field(default=30.0, gt=0, description="Whole call, including time spent in tool calls.")
    cpu_seconds: float = Field(default=3.0, gt=0, description="Time the sandbox itself may run between tool calls.")
    max_memory_mb: int = Field(default=128, ge=8)
    max_tool_calls: int = Field(default=50, ge=0)
    max_output_chars: int = Field(default=20_000, ge=100)


class DedupeGroup(_Strict):
    """Replicas of one server: their identical tools are listed once, with failover between them."""

    upstreams: list[str] = Field(min_length=2)
    prefix: str | None = Field(default=None, description="Name prefix for the merged tools; default: the group name.")


class ServerSettings(_Strict):
    """How the gateway itself serves clients."""

    tool_mode: ToolMode = ToolMode.DIRECT
    code_mode: CodeModeLimits = Field(default_factory=CodeModeLimits)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    name_separator: str = Field(default="-", min_length=1, max_length=3)
    page_size: int = Field(default=200, ge=1, description="Items per page in tools/list, prompts/list, …")
    allowed_hosts: list[str] | None = Field(
        default=None, description="Host header allowlist for /mcp; default: loopback names when bound to loopback."
    )
    allowed_origins: list[str] | None = Field(
        default=None, description="Origin allowlist for /mcp; default: loopback origins when bound to loopback."
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, ge=1024, description="Largest request body /mcp accepts; larger ones get 413."
    )
    public_url: str | None = Field(
        default=None,
        description="How users reach the gateway (e.g. https://mcpgw.example.com), for credential links and the "
        "OAuth callback; default: the scheme and host each request came in on.",
    )
    fast_tool_calls: bool = Field(
        default=True,
        description="Answer plain tools/call requests without the SDK's per-message server machinery (see "
        "docs/architecture.md); false (or MCPGW_FAST_PATH=off) sends every call through the SDK.",
    )
    credential_wait_seconds: float = Field(
        default=120.0,
        ge=0,
        description="How long a tool call waits for a person who accepted a URL elicitation to finish entering "
        "credentials or signing in; 0: never elicit, always answer with the link.",
    )

    @field_validator("name_separator")
    @classmethod
    def _separator_charset(cls, value: str) -> str:
        if not re.match(r"^[-_]+$", value):
            raise ValueError("name_separator may only use '-' or '_' (characters every MCP host accepts in tool names)")
        return value


class LimitsSettings(_Strict):
    """Per-caller limits, keyed by identity: one virtual key, one user (across their keys and SSO),
    one `x-bf-mcp-session-id`, or all anonymous callers together. `None`: unlimited."""

    requests_per_minute: int | None = Field(
        default=None, ge=1, description="HTTP requests to /mcp per minute, with bursts up to this many; else 429."
    )
    concurrent_calls: int | None = Field(
        default=None, ge=1, description="tools/call requests running at once; more get a JSON-RPC error at once."
    )


class CorsSettings(_Strict):
    allowed_origins: list[str] = Field(default_factory=list, description='e.g. ["https://app.example.com"] or ["*"]')
    allowed_headers: list[str] = Field(
        default_factory=lambda: [
            "Content-Type",
            "Authorization",
            "X-Requested-With",
            "X-Stainless-Timeout",
            "X-Api-Key",
            "x-bf-vk",
            "x-bf-mcp-session-id",
            "x-bf-mcp-include-clients",
            "x-bf-mcp-include-tools",
            "Mcp-Session-Id",
            "Mcp-Protocol-Version",
            "Last-Event-ID",
        ]
    )


class AdminSettings(_Strict):
    enabled: bool = True
    token_env: str = Field(default="MCPGW_ADMIN_TOKEN", description="Environment variable holding the admin token.")


class MetricsSettings(_Strict):
    """Prometheus metrics at GET /metrics: unauthenticated, so restrict it by network policy or turn it off."""

    enabled: bool = True


class GatewayConfig(_Strict):
    """The whole file."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; DATABASE_URL overrides; default SQLite in .mcpgw/."
    )
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    dedupe: dict[str, DedupeGroup] = Field(
        default_factory=dict, description="Groups of replica upstreams whose tools are merged (see README)."
    )
    llm: LlmSettings = Field(
        default_factory=LlmSettings, description="Model providers, aliases and routing rules for /anthropic, /openai."
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_transport(cls, data: Any) -> Any:
        """Let users omit `transport:` like in Claude's mcpServers files: `url` → http, otherwise stdio.

        Defaulting to stdio (rather than leaving it unset) makes a typo such as `comand:` come back
        as "extra input `comand`" on its own line instead of an opaque discriminator error. A section
        holding only comments reads as null in YAML and means "empty".
        """
        if isinstance(data, dict):
            sections = ("server", "auth", "admin", "cors", "limits", "metrics", "upstreams", "llm")
            data = {k: ({} if v is None and k in sections else v) for k, v in data.items()}
        if isinstance(data, dict) and isinstance(data.get("upstreams"), dict):
            upstreams = {}
            for name, entry in data["upstreams"].items():
                if isinstance(entry, dict) and "transport" not in entry:
                    entry = dict(entry)
                    if "type" in entry:
                        entry["transport"] = entry.pop("type")
                    else:
                        entry["transport"] = "http" if "url" in entry else "stdio"
                upstreams[name] = entry
            data = {**data, "upstreams": upstreams}
        return data

    @model_validator(mode="after")
    def _dedupe_members(self) -> GatewayConfig:
        """Each dedupe member must be a configured upstream and belong to one group only."""
        owner: dict[str, str] = {}
        for group, settings in self.dedupe.items():
            if not UPSTREAM_NAME_PATTERN.match(settings.prefix if settings.prefix is not None else group):
                raise ValueError(f"dedupe.{group}: the prefix may only contain letters, digits and underscores")
            for member in settings.upstreams:
                if member in owner:
                    raise ValueError(f"dedupe: upstream {member!r} is in both group {owner[member]!r} and {group!r}")
                owner[member] = group
        return self

    @field_validator("upstreams")
    @classmethod
    def _names(cls, value: dict[str, UpstreamConfig]) -> dict[str, UpstreamConfig]:
        for name in value:
            if not UPSTREAM_NAME_PATTERN.match(name):
                raise ValueError(f"upstream name {name!r} may only contain letters, digits and underscores")
        return value


def prefix_of(name: str, upstream: StdioUpstream | HttpUpstream | SseUpstream) -> str:
    """The effective name prefix: the upstream name unless `prefix` says otherwise."""
    return name if upstream.prefix is None else upstream.prefix


# --- loading ---------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first defined at line {seen[key].start_mark.line + 1})"
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, validate and expand `${VAR}` references in a gateway.yaml.

    Raises:
        ConfigError: the file is missing, not YAML, invalid, or references an unset variable.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (create one with `mcpgw init`)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(path), environ=environ)


def parse_config(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None, expand: bool = True
) -> GatewayConfig:
    """Validate YAML text; see `load_config`. `expand=False` keeps `${VAR}` references (for rewriting a file)."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader) if root is not None else {}
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with keys 'server' and 'upstreams'")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, root, source)) from None
    if not expand:
        return config
    return expand_environment(
        config, os.environ if environ is None else environ, source=source, locate=lambda loc: _line_of(root, loc)
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)


def _describe_validation_error(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = []
    for error in exc.errors()[:5]:
        loc = list(error["loc"])
        if len(loc) > 2 and loc[0] == "upstreams" and loc[2] in ("stdio", "http", "sse"):
            del loc[2]  # the discriminator tag pydantic inserts, not a key in the file
        field = ".".join(str(part) for part in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"line {line}: " if line else ""
        lines.append(f"{source}: {where}{field}: {error['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        lines.append(f"… and {more} more problem(s)")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """Walk the composed YAML tree along a pydantic error location to the nearest line number."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            line = match[0][0].start_mark.line + 1
            node = match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


Locate = Callable[[Sequence[Any]], int | None]
"""A config path (e.g. `["upstreams", "github", "url"]`) → its line in the file, when known."""


def expand_environment(
    config: GatewayConfig, environ: Mapping[str, str], *, source: str, locate: Locate | None = None
) -> GatewayConfig:
    """Replace `${VAR}` / `${VAR:-default}` in urls, headers, args and env so secrets stay out of the file.

    Raises:
        ConfigError: a referenced variable is unset (naming the field, and its line when `locate` knows it).
    """

    def expand(value: str, *loc: str | int) -> str:
        return _expand(value, environ, source, ("upstreams", *loc), locate)

    expanded: dict[str, StdioUpstream | HttpUpstream | SseUpstream] = {}
    for name, upstream in config.upstreams.items():
        if isinstance(upstream, StdioUpstream):
            expanded[name] = upstream.model_copy(
                update={
                    "command": expand(upstream.command, name, "command"),
                    "args": [expand(a, name, "args", i) for i, a in enumerate(upstream.args)],
                    "env": {k: expand(v, name, "env", k) for k, v in upstream.env.items()},
                }
            )
        else:
            url = expand(upstream.url, name, "url")
            try:
                _check_http_url(url)
            except ValueError as exc:
                raise ConfigError(_located(source, ("upstreams", name, "url"), locate, str(exc))) from None
            auth = upstream.auth
            if isinstance(auth, OAuthClientSettings) and auth.client_secret:
                secret = expand(auth.client_secret, name, "auth", "client_secret")
                auth = auth.model_copy(update={"client_secret": secret})
            expanded[name] = upstream.model_copy(
                update={
                    "url": url,
                    "headers": {k: expand(v, name, "headers", k) for k, v in upstream.headers.items()},
                    "auth": auth,
                }
            )
    llm = expand_llm_environment(config.llm, environ, source=source, locate=locate)
    settings = config.auth
    sso = settings.oauth.sso
    if sso is not None:
        # The IdP's client secret (and, for symmetry, its issuer and client id) may come from the environment.
        fields = {
            field: _expand(value, environ, source, ("auth", "oauth", "sso", field), locate)
            for field in ("issuer", "client_id", "client_secret")
            if isinstance(value := getattr(sso, field), str)
        }
        oauth = settings.oauth.model_copy(update={"sso": sso.model_copy(update=fields)})
        settings = settings.model_copy(update={"oauth": oauth})
    return config.model_copy(update={"upstreams": expanded, "llm": llm, "auth": settings})


def expand_llm_environment(
    settings: LlmSettings, environ: Mapping[str, str], *, source: str, locate: Locate | None = None
) -> LlmSettings:
    """The `llm:` section with `${VAR}` expanded in every provider string; base URLs checked once expanded.

    Raises:
        ConfigError: a referenced variable is unset, or a base URL is not an http(s) URL.
    """
    if not settings.providers:
        return settings
    expanded = expand_llm(settings, lambda value, *loc: _expand(value, environ, source, loc, locate))
    for name, provider in expanded.providers.items():
        if provider.base_url is not None:
            try:
                _check_http_url(provider.base_url)
            except ValueError as exc:
                loc = ("llm", "providers", name, "base_url")
                raise ConfigError(_located(source, loc, locate, str(exc))) from None
    return expanded


def _located(source: str, loc: Sequence[Any], locate: Locate | None, message: str) -> str:
    line = locate(loc) if locate is not None else None
    field = ".".join(str(part) for part in loc)
    return f"{source}: {f'line {line}: ' if line else ''}{field}: {message}"


def _expand(value: str, environ: Mapping[str, str], source: str, loc: Sequence[Any], locate: Locate | None) -> str:
    def replace(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        if variable in environ:
            return environ[variable]
        if default is not None:
            return default
        raise ConfigError(_located(source, loc, locate, f"environment variable {variable} is not set"))

    return _ENV_REFERENCE.sub(replace, value)


def dump_config(config: GatewayConfig) -> str:
    """Serialise back to YAML, leaving out defaults so written files stay short and readable."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    for name, upstream in config.upstreams.items():
        data.setdefault("upstreams", {})[name] = {
            "transport": upstream.transport,
            **upstream.model_dump(mode="json", exclude_defaults=True),
        }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
