"""The aggregated, namespaced view of every connected upstream's tools, prompts and resources.

Each upstream contributes a `Contribution` (its lists, already renamed); the `Catalog` merges
them in configuration order. Merging is a dictionary build over already-renamed objects, so a
change in one upstream costs one rename of that upstream plus a cheap merge, and readers (the
request handlers) only ever see a finished, immutable snapshot.

Naming rules, chosen so names are stable and always valid for MCP hosts (Claude Code requires
`^[a-zA-Z0-9_-]{1,64}$` for tool names):
- `<prefix><separator><name>`, or `<name>` when the prefix is "".
- characters outside `[A-Za-z0-9_-]` become `_` (the MCP spec also allows `.`, Claude Code does
  not). If that happened, or the name is longer than 64 characters, the name is cut and ends in
  `_` + 8 hex digits of a SHA-256 of the full original: deterministic, unique in practice, and
  it still resolves.
- on a collision the upstream listed first in the config keeps the name; the other entry is
  left out and reported (never silently shadowed).

Resource URIs are passed through unchanged, so links inside tool results keep working. A URI
offered by more than one upstream, or any URI at all, can be addressed explicitly as
`mcpgw://<upstream>/<original-uri>`; the plain form resolves to the first upstream offering it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import mcp_types as types

from mcp_gateway.types import ExposedName, ToolName, UpstreamName

MAX_NAME_LENGTH = 64
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
EXPLICIT_URI_SCHEME = "mcpgw://"


def exposed_name(prefix: str, separator: str, name: str) -> ExposedName:
    """The name a client sees for an upstream's tool or prompt."""
    full = f"{prefix}{separator}{name}" if prefix else name
    clean = _INVALID_NAME_CHARS.sub("_", full)
    if clean == full and len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:8]
    return f"{clean[: MAX_NAME_LENGTH - 9]}_{digest}"


def explicit_uri(upstream: UpstreamName, uri: str) -> str:
    """The always-unambiguous address of an upstream's resource."""
    return f"{EXPLICIT_URI_SCHEME}{upstream}/{uri}"


def split_explicit_uri(uri: str) -> tuple[UpstreamName, str] | None:
    """Undo `explicit_uri`; None when `uri` is not in the explicit form."""
    if not uri.startswith(EXPLICIT_URI_SCHEME):
        return None
    upstream, sep, original = uri[len(EXPLICIT_URI_SCHEME) :].partition("/")
    return (upstream, original) if sep and upstream and original else None


@dataclass(frozen=True, slots=True)
class Route:
    """Where a client-visible name leads."""

    upstream: UpstreamName
    original: ToolName


@dataclass(frozen=True)
class Contribution:
    """One upstream's lists, as fetched, plus the naming inputs."""

    upstream: UpstreamName
    prefix: str
    tools: Sequence[types.Tool] = ()
    prompts: Sequence[types.Prompt] = ()
    resources: Sequence[types.Resource] = ()
    resource_templates: Sequence[types.ResourceTemplate] = ()


@dataclass(frozen=True)
class Collision:
    """A name two upstreams both wanted; `kept` won because it is listed first in the config."""

    kind: str
    name: ExposedName
    kept: UpstreamName
    dropped: UpstreamName

    def describe(self) -> str:
        return (
            f"{self.kind} name {self.name!r} is exposed by both upstream {self.kept!r} and upstream "
            f"{self.dropped!r}; keeping {self.kept!r}. Give one of them a prefix to expose both."
        )


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot; build a new one with `Catalog.build` when an upstream changes."""

    tools: tuple[types.Tool, ...] = ()
    tool_routes: dict[ExposedName, Route] = field(default_factory=dict)
    prompts: tuple[types.Prompt, ...] = ()
    prompt_routes: dict[ExposedName, Route] = field(default_factory=dict)
    resources: tuple[types.Resource, ...] = ()
    resource_templates: tuple[types.ResourceTemplate, ...] = ()
    resource_routes: dict[str, UpstreamName] = field(default_factory=dict)
    template_routes: tuple[tuple[str, UpstreamName], ...] = ()
    collisions: tuple[Collision, ...] = ()

    @classmethod
    def build(cls, contributions: Iterable[Contribution], separator: str) -> Catalog:
        tools: list[types.Tool] = []
        tool_routes: dict[ExposedName, Route] = {}
        prompts: list[types.Prompt] = []
        prompt_routes: dict[ExposedName, Route] = {}
        resources: list[types.Resource] = []
        resource_routes: dict[str, UpstreamName] = {}
        templates: list[types.ResourceTemplate] = []
        template_routes: list[tuple[str, UpstreamName]] = []
        collisions: list[Collision] = []

        for part in contributions:
            for tool in part.tools:
                name = exposed_name(part.prefix, separator, tool.name)
                if name in tool_routes:
                    collisions.append(Collision("tool", name, tool_routes[name].upstream, part.upstream))
                    continue
                tool_routes[name] = Route(part.upstream, tool.name)
                tools.append(tool if name == tool.name else tool.model_copy(update={"name": name}))
            for prompt in part.prompts:
                name = exposed_name(part.prefix, separator, prompt.name)
                if name in prompt_routes:
                    collisions.append(Collision("prompt", name, prompt_routes[name].upstream, part.upstream))
                    continue
                prompt_routes[name] = Route(part.upstream, prompt.name)
                prompts.append(prompt if name == prompt.name else prompt.model_copy(update={"name": name}))
            for resource in part.resources:
                uri = str(resource.uri)
                if uri in resource_routes:
                    # Still reachable through its explicit address; list it under that one.
                    resources.append(resource.model_copy(update={"uri": explicit_uri(part.upstream, uri)}))
                    continue
                resource_routes[uri] = part.upstream
                resources.append(resource)
            for template in part.resource_templates:
                templates.append(template)
                template_routes.append((template.uri_template, part.upstream))

        return cls(
            tools=tuple(tools),
            tool_routes=tool_routes,
            prompts=tuple(prompts),
            prompt_routes=prompt_routes,
            resources=tuple(resources),
            resource_templates=tuple(templates),
            resource_routes=resource_routes,
            template_routes=tuple(template_routes),
            collisions=tuple(collisions),
        )

    def resource_route(self, uri: str) -> tuple[UpstreamName, str] | None:
        """Which upstream serves `uri`, and the URI to ask it for."""
        explicit = split_explicit_uri(uri)
        if explicit is not None:
            return explicit
        upstream = self.resource_routes.get(uri)
        if upstream is not None:
            return upstream, uri
        for template, owner in self.template_routes:
            if _template_matches(template, uri):
                return owner, uri
        return None


def _template_matches(template: str, uri: str) -> bool:
    """RFC 6570 level-1 match: literal parts must agree, each `{var}` matches one or more characters."""
    pattern = "".join(
        "(.+)" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template) if part
    )
    return re.fullmatch(pattern, uri) is not None
