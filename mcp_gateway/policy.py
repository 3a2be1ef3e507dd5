"""What a caller may see and call. tools/list, tools/call, prompts and resources all ask here.

Rules (deny by default):
- A caller's grants (its virtual key's `mcp_configs`, or an SSO user's) map an upstream name to
  tool-name patterns: exact names, `*`, or shell-style globs (`get_*`).
- An explicit entry for an upstream wins, even an empty list (which hides that upstream).
- Otherwise an upstream marked `allow_on_all_virtual_keys` is fully visible to every caller,
  including session and anonymous callers when the gateway lets those in.
- Otherwise the upstream is invisible.
- Prompts follow the same name patterns as tools; resources and templates are visible when
  the upstream is granted at all.
- The request headers `x-bf-mcp-include-clients` / `x-bf-mcp-include-tools` narrow the result
  further; they can never add anything.

A hidden tool is indistinguishable from a missing one: `route_for` answers None for both.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import mcp_types as types

from mcp_gateway.catalog import Catalog, Route, split_explicit_uri
from mcp_gateway.identity import Identity

_CACHE_SIZE = 4096


@lru_cache(maxsize=_CACHE_SIZE)
def _compile(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """One matcher per distinct pattern list: exact names by set lookup, globs by one regex."""
    if "*" in patterns:
        return lambda name: True
    exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = [p for p in patterns if p not in exact]
    if not globs:
        return exact.__contains__
    regex = re.compile("|".join(fnmatch.translate(g) for g in globs))
    return lambda name: name in exact or regex.match(name) is not None


@dataclass(frozen=True, slots=True)
class View:
    """What one caller sees of one catalog snapshot."""

    tools: tuple[types.Tool, ...]
    prompts: tuple[types.Prompt, ...]
    resources: tuple[types.Resource, ...]
    resource_templates: tuple[types.ResourceTemplate, ...]


class Policy:
    def __init__(self, separator: str, global_upstreams: Callable[[], frozenset[str]]) -> None:
        self._separator = separator
        self._global_upstreams = global_upstreams
        self._views: dict[tuple[object, ...], View] = {}
        self._views_of: int | None = None

    def invalidate(self) -> None:
        """Call when grants or upstream flags change (catalog changes are noticed by themselves)."""
        self._views.clear()

    def _patterns(self, identity: Identity, upstream: str, globals_: frozenset[str]) -> tuple[str, ...] | None:
        if identity.include_clients is not None and upstream not in identity.include_clients:
            return None
        grants = identity.grants
        if grants is not None and upstream in grants:
            return grants[upstream] or None
        return ("*",) if upstream in globals_ else None

    def _narrowed(self, identity: Identity, exposed: str) -> bool:
        if identity.include_tools is None:
            return True
        return _compile(identity.include_tools)(exposed)

    def _allowed_on(self, identity: Identity, upstream: str, original: str, globals_: frozenset[str]) -> bool:
        patterns = self._patterns(identity, upstream, globals_)
        return patterns is not None and _compile(patterns)(original)

    def allows(self, identity: Identity, route: Route, exposed: str) -> bool:
        return self._restrict(identity, route, exposed) is not None

    def _restrict(self, identity: Identity, route: Route, exposed: str) -> Route | None:
        """The route narrowed to the replicas the caller may use (a dedupe group's members can differ)."""
        if not self._narrowed(identity, exposed):
            return None
        globals_ = self._global_upstreams()
        allowed = [u for u in route.candidates if self._allowed_on(identity, u, route.original, globals_)]
        if not allowed:
            return None
        if len(allowed) == len(route.candidates):
            return route
        return Route(allowed[0], route.original, tuple(allowed[1:]))

    def route_for(self, identity: Identity, catalog: Catalog, exposed: str) -> Route | None:
        """The route of a tool the caller may call; None if it does not exist *or* is hidden."""
        route = catalog.tool_routes.get(exposed)
        return self._restrict(identity, route, exposed) if route is not None else None

    def prompt_route_for(self, identity: Identity, catalog: Catalog, exposed: str) -> Route | None:
        route = catalog.prompt_routes.get(exposed)
        return route if route is not None and self.allows(identity, route, exposed) else None

    def may_use_upstream(self, identity: Identity, upstream: str) -> bool:
        return self._patterns(identity, upstream, self._global_upstreams()) is not None

    def resource_route_for(self, identity: Identity, catalog: Catalog, uri: str) -> tuple[str, str] | None:
        found = catalog.resource_route(uri)
        if found is None or not self.may_use_upstream(identity, found[0]):
            return None
        return found

    def view(self, identity: Identity, catalog: Catalog) -> View:
        """The caller's filtered lists, memoised per catalog snapshot and grant set."""
        if self._views_of != id(catalog):
            self._views.clear()
            self._views_of = id(catalog)
        globals_ = self._global_upstreams()
        key = (_freeze(identity.grants), globals_, identity.include_clients, identity.include_tools)
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= _CACHE_SIZE:
                self._views.clear()
            view = self._build(identity, catalog, globals_)
            self._views[key] = view
        return view

    def _build(self, identity: Identity, catalog: Catalog, globals_: frozenset[str]) -> View:
        matchers: dict[str, Callable[[str], bool] | None] = {}

        def matcher(upstream: str) -> Callable[[str], bool] | None:
            if upstream not in matchers:
                patterns = self._patterns(identity, upstream, globals_)
                matchers[upstream] = _compile(patterns) if patterns is not None else None
            return matchers[upstream]

        def visible(routes: Mapping[str, Route], items: Iterable[types.Tool | types.Prompt]) -> list[Route | None]:
            out: list[Route | None] = []
            for item in items:
                route = routes[item.name]
                allowed = self._narrowed(identity, item.name) and any(
                    (match := matcher(upstream)) is not None and match(route.original) for upstream in route.candidates
                )
                out.append(route if allowed else None)
            return out

        tools = tuple(t for t, r in zip(catalog.tools, visible(catalog.tool_routes, catalog.tools), strict=True) if r)
        prompts = tuple(
            p for p, r in zip(catalog.prompts, visible(catalog.prompt_routes, catalog.prompts), strict=True) if r
        )

        def resource_owner(uri: str) -> str | None:
            explicit = split_explicit_uri(uri)
            return explicit[0] if explicit else catalog.resource_routes.get(uri)

        resources = tuple(
            r for r in catalog.resources if (owner := resource_owner(str(r.uri))) and matcher(owner) is not None
        )
        templates = tuple(
            t
            for t, (_, owner) in zip(catalog.resource_templates, catalog.template_routes, strict=True)
            if matcher(owner) is not None
        )
        return View(tools=tools, prompts=prompts, resources=resources, resource_templates=templates)


def _freeze(grants: Mapping[str, tuple[str, ...]] | None) -> object:
    return None if grants is None else tuple(sorted(grants.items()))
