"""Which provider and model really serve a request: pinning, aliases, routing rules and fallbacks.

Order, first answer wins:

1. Routing rules. Rules scoped to the caller's virtual key come first, then global rules; within
   each, higher `priority` first, ties in the order they are defined. A rule matches when every
   condition in its `when` holds (model exact/glob/regex, request headers, virtual key, identity
   mode). Its target is `target`, or one of `targets` chosen by weight; its `fallbacks` follow.
2. An alias (`llm.aliases`): the requested name stands for a `provider/model`.
3. The name itself: `provider/model` when the part before the first `/` is a configured
   provider; otherwise the whole name is a model of the API's own provider (`anthropic` on
   `/anthropic`, `openai` on `/openai`).

A target may itself be an alias (resolved once, never recursively). `explain` gives the same
answer with the reasons the other rules did not match, for `mcpgw route explain`.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from mcp_gateway.config_llm import PROVIDER_KINDS, HeaderMatch, LlmSettings, ModelMatch, RoutingRule
from mcp_gateway.identity import Identity


class RoutingError(Exception):
    """The request names something the gateway cannot route (unknown provider, nothing configured)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request can go: a configured provider and the model name it knows."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: `targets[0]` first, the rest in order if it fails before anything was streamed."""

    requested: str
    targets: tuple[Target, ...]
    rule: str | None = None
    """The routing rule that matched; None when the name was pinned or an alias."""
    alias: str | None = None


@dataclass(slots=True)
class Explanation:
    route: Route | None
    lines: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What rules may look at: the requested model, headers (lower-case names), and who is asking."""

    model: str
    headers: Mapping[str, str]
    identity: Identity | None
    default_provider: str


class Router:
    """Routes requests by the `llm` settings it was built with; rebuilt when they change."""

    def __init__(self, settings: LlmSettings, *, choose: Callable[[Sequence[float]], int] | None = None) -> None:
        self.settings = settings
        self._choose = choose or _weighted_index
        ordered = [r for r in settings.routing_rules if r.enabled]
        # Stable sort: ties keep definition order.
        self._scoped = sorted((r for r in ordered if r.scope == "virtual_key"), key=lambda r: -r.priority)
        self._global = sorted((r for r in ordered if r.scope == "global"), key=lambda r: -r.priority)

    def route(self, facts: RequestFacts) -> Route:
        """The route for a request; raises `RoutingError` when it names an unknown provider."""
        for rule in self._rules_for(facts.identity):
            if _why_not(rule, facts) is None:
                return self._rule_route(rule, facts)
        return self._name_route(facts.model, facts.default_provider)

    def explain(self, facts: RequestFacts) -> Explanation:
        """The route with one line per rule considered, saying why it did or did not match."""
        explanation = Explanation(route=None)
        for rule in self._rules_for(facts.identity):
            reason = _why_not(rule, facts)
            scope = "virtual key" if rule.scope == "virtual_key" else "global"
            if reason is None:
                explanation.lines.append(f"rule {rule.name!r} ({scope}, priority {rule.priority}): matches")
                try:
                    explanation.route = self._rule_route(rule, facts)
                except RoutingError as exc:
                    explanation.error = exc.message
                return explanation
            explanation.lines.append(f"rule {rule.name!r} ({scope}, priority {rule.priority}): {reason}")
        skipped = [r.name for r in self.settings.routing_rules if r.scope == "virtual_key" and r not in self._scoped]
        skipped += [r.name for r in self.settings.routing_rules if not r.enabled]
        for name in skipped:
            explanation.lines.append(f"rule {name!r}: disabled")
        try:
            explanation.route = self._name_route(facts.model, facts.default_provider)
        except RoutingError as exc:
            explanation.error = exc.message
            return explanation
        if explanation.route.alias is not None:
            explanation.lines.append(f"no rule matched; {facts.model!r} is an alias")
        else:
            explanation.lines.append("no rule matched; the model name is used as given")
        return explanation

    def target(self, name: str, default_provider: str) -> Target:
        """`provider/model` (or an alias of one) as a `Target`."""
        aliased = self.settings.aliases.get(name)
        return self._parse(aliased if aliased is not None else name, default_provider)

    def _rules_for(self, identity: Identity | None) -> list[RoutingRule]:
        key = identity.virtual_key if identity is not None else None
        scoped = [
            r for r in self._scoped if key is not None and (key.id in r.virtual_keys or key.name in r.virtual_keys)
        ]
        return scoped + self._global

    def _rule_route(self, rule: RoutingRule, facts: RequestFacts) -> Route:
        if rule.target is not None:
            first = rule.target
        else:
            first = rule.targets[self._choose([t.weight for t in rule.targets])].target
        targets = [self.target(first, facts.default_provider)]
        targets += [self.target(f, facts.default_provider) for f in rule.fallbacks]
        return Route(facts.model, tuple(_unique(targets)), rule=rule.name)

    def _name_route(self, model: str, default_provider: str) -> Route:
        aliased = self.settings.aliases.get(model)
        if aliased is not None:
            return Route(model, (self._parse(aliased, default_provider),), alias=model)
        return Route(model, (self._parse(model, default_provider),))

    def _parse(self, name: str, default_provider: str) -> Target:
        providers = self.settings.providers
        prefix, slash, rest = name.partition("/")
        if slash and prefix in providers and rest:
            return Target(prefix, rest)
        if slash and prefix in PROVIDER_KINDS:
            configured = ", ".join(sorted(providers)) or "none"
            raise RoutingError(f"provider {prefix!r} is not configured on this gateway (configured: {configured})")
        if default_provider not in providers:
            configured = ", ".join(sorted(providers)) or "none"
            raise RoutingError(
                f"model {name!r} has no provider prefix and no {default_provider!r} provider is configured; "
                f"write it as <provider>/<model> (configured: {configured})"
            )
        return Target(default_provider, name)


def _why_not(rule: RoutingRule, facts: RequestFacts) -> str | None:
    """None when `rule` matches the request, else the first condition that fails, in words."""
    when = rule.when
    if when.model is not None and not _model_matches(when.model, facts.model):
        return f"model {facts.model!r} does not match {_describe_model(when.model)}"
    for name, match in when.headers.items():
        value = facts.headers.get(name)
        if value is None:
            return f"header {name} is absent"
        if not _header_matches(match, value):
            return f"header {name} {value!r} does not match {_describe_header(match)}"
    identity = facts.identity
    if when.virtual_keys is not None:
        key = identity.virtual_key if identity is not None else None
        if key is None or (key.id not in when.virtual_keys and key.name not in when.virtual_keys):
            return "the caller's virtual key is not listed"
    if when.identity_modes is not None:
        mode = identity.mode.value if identity is not None else "anonymous"
        if mode not in when.identity_modes:
            return f"identity mode {mode} is not listed"
    return None


def _model_matches(match: str | ModelMatch, model: str) -> bool:
    if isinstance(match, str):
        return model == match
    if match.equals is not None:
        return model == match.equals
    if match.glob is not None:
        return fnmatch.fnmatchcase(model, match.glob)
    assert match.regex is not None
    return _regex(match.regex).search(model) is not None


def _header_matches(match: str | HeaderMatch, value: str) -> bool:
    if isinstance(match, str):
        return value == match
    if match.equals is not None:
        return value == match.equals
    if match.starts_with is not None:
        return value.startswith(match.starts_with)
    assert match.regex is not None
    return _regex(match.regex).search(value) is not None


def _describe_model(match: str | ModelMatch) -> str:
    if isinstance(match, str):
        return repr(match)
    if match.glob is not None:
        return f"glob {match.glob!r}"
    if match.regex is not None:
        return f"regex {match.regex!r}"
    return repr(match.equals)


def _describe_header(match: str | HeaderMatch) -> str:
    if isinstance(match, str):
        return repr(match)
    if match.starts_with is not None:
        return f"starts_with {match.starts_with!r}"
    if match.regex is not None:
        return f"regex {match.regex!r}"
    return repr(match.equals)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _weighted_index(weights: Sequence[float]) -> int:
    return random.choices(range(len(weights)), weights=weights)[0]


def _unique(targets: list[Target]) -> list[Target]:
    """The targets in order, each once (a fallback equal to the target would only repeat its failure)."""
    return list(dict.fromkeys(targets))
