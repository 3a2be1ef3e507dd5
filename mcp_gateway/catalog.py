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

Dedupe groups (`dedupe:` in gateway.yaml) are replicas of one server. Their members contribute under
the group's prefix (default: the group name), together, at the place of the first connected member:
- a tool offered by several members with the same original name and an equal `inputSchema` is one
  entry, `<group prefix><separator><tool>`, whose `Route` lists the members offering it in the
  group's order (`upstream` first, then `alternates`) for failover;
- a member whose variant of a tool has a different `inputSchema` than the first member offering it
  (say, half-way through a rolling upgrade) has that variant listed as `<member prefix><separator><tool>`,
  routed to that member alone;
- prompts follow the same rules, comparing their arguments; a resource URI or template that another
  member already serves is not listed again (its explicit address still resolves).
The merged names depend only on the group prefix and the tool name, so they stay the same while
members connect and disconnect; only the candidates behind a name change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import mcp_types as types

from mcp_gateway.config import DedupeGroup
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
    alternates: tuple[UpstreamName, ...] = ()
    """Replicas (dedupe group members, in the group's order) serving the same tool, tried in turn when
    `upstream` is unavailable."""

    @property
    def candidates(self) -> tuple[UpstreamName, ...]:
        """Every upstream that can serve this name, preferred first."""
        return (self.upstream, *self.alternates)


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
    def build(
        cls,
        contributions: Iterable[Contribution],
        separator: str,
        dedupe_groups: Mapping[str, DedupeGroup] | None = None,
    ) -> Catalog:
        """Merge the contributions in order; `dedupe_groups` members are merged as the module docstring says."""
        parts = list(contributions)
        group_of: dict[UpstreamName, str] = {}
        groups = dedupe_groups or {}
        for name, group in groups.items():
            for member in group.upstreams:
                group_of.setdefault(member, name)  # an upstream listed in two groups stays in the first
        merger = _Merger(separator)
        merged_groups: set[str] = set()
        for part in parts:
            group_name = group_of.get(part.upstream)
            if group_name is None:
                merger.add(part)
            elif group_name not in merged_groups:
                # The whole group goes where its first connected member is, in the group's own order.
                merged_groups.add(group_name)
                group = groups[group_name]
                members = sorted(
                    (p for p in parts if group_of.get(p.upstream) == group_name),
                    key=lambda p: group.upstreams.index(p.upstream),
                )
                merger.group(group_name if group.prefix is None else group.prefix, members)
        return merger.catalog()

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


_Named = TypeVar("_Named", types.Tool, types.Prompt)


class _Merger:
    """Accumulates one catalog; `add` and `group` are called in configuration order."""

    def __init__(self, separator: str) -> None:
        self.separator = separator
        self.tools: list[types.Tool] = []
        self.tool_routes: dict[ExposedName, Route] = {}
        self.prompts: list[types.Prompt] = []
        self.prompt_routes: dict[ExposedName, Route] = {}
        self.resources: list[types.Resource] = []
        self.resource_routes: dict[str, UpstreamName] = {}
        self.templates: list[types.ResourceTemplate] = []
        self.template_routes: list[tuple[str, UpstreamName]] = []
        self.collisions: list[Collision] = []

    def add(self, part: Contribution) -> None:
        for tool in part.tools:
            self._named("tool", self.tools, self.tool_routes, part.prefix, tool, (part.upstream,))
        for prompt in part.prompts:
            self._named("prompt", self.prompts, self.prompt_routes, part.prefix, prompt, (part.upstream,))
        self._resources(part, ())

    def group(self, prefix: str, members: Sequence[Contribution]) -> None:
        """One dedupe group's connected `members`, in the group's order (rules: module docstring)."""
        for (name_prefix, upstreams), tool in _replicated(members, lambda m: m.tools, lambda t: t.input_schema, prefix):
            self._named("tool", self.tools, self.tool_routes, name_prefix, tool, upstreams)
        for (name_prefix, upstreams), prompt in _replicated(
            members, lambda m: m.prompts, lambda p: p.arguments, prefix
        ):
            self._named("prompt", self.prompts, self.prompt_routes, name_prefix, prompt, upstreams)
        served: tuple[UpstreamName, ...] = ()
        for member in members:
            self._resources(member, served)
            served += (member.upstream,)

    def _named(
        self,
        kind: str,
        items: list[_Named],
        routes: dict[ExposedName, Route],
        prefix: str,
        item: _Named,
        upstreams: tuple[UpstreamName, ...],
    ) -> None:
        name = exposed_name(prefix, self.separator, item.name)
        if name in routes:
            self.collisions.append(Collision(kind, name, routes[name].upstream, upstreams[0]))
            return
        routes[name] = Route(upstreams[0], item.name, upstreams[1:])
        items.append(item if name == item.name else item.model_copy(update={"name": name}))

    def _resources(self, part: Contribution, replicas: tuple[UpstreamName, ...]) -> None:
        """`replicas`: upstreams of the same dedupe group already merged; what they serve is not listed twice."""
        for resource in part.resources:
            uri = str(resource.uri)
            owner = self.resource_routes.get(uri)
            if owner in replicas:
                continue
            if owner is not None:
                # Still reachable through its explicit address; list it under that one.
                self.resources.append(resource.model_copy(update={"uri": explicit_uri(part.upstream, uri)}))
                continue
            self.resource_routes[uri] = part.upstream
            self.resources.append(resource)
        for template in part.resource_templates:
            if any(t == template.uri_template and o in replicas for t, o in self.template_routes):
                continue
            self.templates.append(template)
            self.template_routes.append((template.uri_template, part.upstream))

    def catalog(self) -> Catalog:
        return Catalog(
            tools=tuple(self.tools),
            tool_routes=self.tool_routes,
            prompts=tuple(self.prompts),
            prompt_routes=self.prompt_routes,
            resources=tuple(self.resources),
            resource_templates=tuple(self.templates),
            resource_routes=self.resource_routes,
            template_routes=tuple(self.template_routes),
            collisions=tuple(self.collisions),
        )


def _replicated(
    members: Sequence[Contribution],
    items_of: Callable[[Contribution], Sequence[_Named]],
    signature: Callable[[_Named], object],
    group_prefix: str,
) -> Iterator[tuple[tuple[str, tuple[UpstreamName, ...]], _Named]]:
    """((prefix, upstreams), item) for each distinct variant of each name offered by the group's members."""
    offers: dict[str, list[tuple[Contribution, _Named]]] = {}
    for member in members:
        for item in items_of(member):
            offered = offers.setdefault(item.name, [])
            if not any(m is member for m, _ in offered):  # a server listing a name twice
                offered.append((member, item))
    for offered in offers.values():
        first = signature(offered[0][1])
        yield (group_prefix, tuple(m.upstream for m, i in offered if signature(i) == first)), offered[0][1]
        for member, item in offered[1:]:
            if signature(item) != first:
                yield (member.prefix, (member.upstream,)), item


def _template_matches(template: str, uri: str) -> bool:
    """RFC 6570 level-1 match: literal parts must agree, each `{var}` matches one or more characters."""
    pattern = "".join(
        "(.+)" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template) if part
    )
    return re.fullmatch(pattern, uri) is not None
