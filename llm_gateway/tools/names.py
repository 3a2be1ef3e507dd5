"""Tool names across the two worlds: what providers accept, and which client tools already are a gateway tool.

**Provider names.** MCP tool names may hold any character and be long; model APIs accept
`[A-Za-z0-9_-]`, at most 64 characters, starting with a letter or `_` (the strictest of
Anthropic, OpenAI, Bedrock and Gemini). A gateway name that fits is used as it is; one that does
not becomes a readable, stable stand-in: other characters → `_`, and, when that is too long or
collides with another tool of the same view, a cut name plus 8 hex digits of the name's SHA-256.
The mapping back is kept per view (`ProviderNames`).

**Duplicates.** An MCP host that is also connected to the gateway's `/mcp` already sends the
gateway's tools under its own names. Matching ignores the host's naming scheme: both names are
normalised (every character other than a letter or digit → `_`) and a client tool counts as the
gateway tool `g` when its normalised name is `g`'s, or ends in `__g` after an `mcp__` prefix
(Claude Code, Codex: `mcp__<server>__<tool>`, whatever the user named the server), or ends in
`_g` after an `mcp_` prefix (Gemini CLI: `mcp_<server>_<tool>`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

MAX_NAME = 64
_VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
_DEFERRED = re.compile(r"\bmcp__[A-Za-z0-9_-]+")


def normalised(name: str) -> str:
    """The form names are compared in: letters and digits kept, everything else `_`."""
    return _NOT_ALNUM.sub("_", name)


def _hashed(name: str, stem: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{stem[: MAX_NAME - 9]}_{digest}"


class ProviderNames:
    """Gateway tool name ⇄ the name a model sees, for one view's tools (stable while the view is)."""

    __slots__ = ("to_gateway", "to_provider")

    def __init__(self, gateway_names: Sequence[str]) -> None:
        self.to_provider: dict[str, str] = {}
        self.to_gateway: dict[str, str] = {}
        for name in gateway_names:
            candidate = name if _VALID.fullmatch(name) else _INVALID_CHAR.sub("_", name)
            if not candidate[:1].isalpha() and not candidate.startswith("_"):
                candidate = "t_" + candidate
            if len(candidate) > MAX_NAME or candidate in self.to_gateway:
                candidate = _hashed(name, candidate)
            self.to_provider[name] = candidate
            self.to_gateway[candidate] = name


def client_tool_keys(names: Iterable[str]) -> frozenset[str]:
    """Every normalised gateway name the client's own tools may stand for (see the module docstring)."""
    keys: set[str] = set()
    for name in names:
        key = normalised(name)
        keys.add(key)
        if name.startswith("mcp__"):
            # `mcp__<server>__<tool>`: the tool is what follows any later `__` (the server may hold `_`).
            keys.update(_suffixes(key[5:], "__"))
        elif name.startswith("mcp_"):
            keys.update(_suffixes(key[4:], "_"))
    keys.discard("")
    return frozenset(keys)


def _suffixes(text: str, separator: str) -> list[str]:
    """What follows each `separator` in `text`: the candidate tool names of a prefixed client name."""
    found: list[str] = []
    start = text.find(separator)
    while start != -1:
        found.append(text[start + len(separator) :])
        start = text.find(separator, start + 1)
    return found


def deferred_tool_names(texts: Iterable[str]) -> list[str]:
    """`mcp__…` names a client mentions without sending their definitions (Claude Code's tool search lists
    deferred MCP tools in a system message; they reach the model once it asks for them)."""
    return [match for text in texts for match in _DEFERRED.findall(text)]
