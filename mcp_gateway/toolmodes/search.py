"""`search` mode: an upstream's tools are reached through three meta tools instead of being listed.

`search_tools` ranks the caller's search-mode tools with BM25 (the `bm25s` library) over the
tool name, its upstream, its description and its parameter names; `get_tool_schema` returns one
tool's full definition; `call_tool` calls it. Only `ToolAccess.tools(ToolMode.SEARCH)` is ever
consulted, so a caller finds, describes and calls exactly the tools its policy lets it see, and a
hidden tool is answered like a missing one.

Indexing costs a few milliseconds for hundreds of tools; `SearchMode` keeps a small LRU of
indexes keyed by the visible tools, so callers with the same view share one and an upstream
change simply produces a new key.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import bm25s  # type: ignore[import-untyped]  # no type information shipped
import mcp_types as types
import numpy as np
from bm25s.stopwords import STOPWORDS_EN_PLUS  # type: ignore[import-untyped]

from mcp_gateway.errors import UnknownTool
from mcp_gateway.toolmodes.base import ModalTool, ToolAccess, ToolMode
from mcp_gateway.toolmodes.compact import first_sentence

SEARCH_TOOLS = "search_tools"
GET_TOOL_SCHEMA = "get_tool_schema"
CALL_TOOL = "call_tool"
DEFAULT_LIMIT = 10
MAX_LIMIT = 50

META_TOOLS: list[types.Tool] = [
    types.Tool(
        name=SEARCH_TOOLS,
        description=(
            "Find tools by describing the task in plain words (e.g. 'create an issue in the tracker'). "
            "Returns matching tool names with one-line descriptions. "
            "Then call get_tool_schema for the arguments and call_tool to run it."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What you want to do."},
                "upstream": {"type": "string", "description": "Only tools of this server."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            },
            "required": ["query"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name=GET_TOOL_SCHEMA,
        description="Get a tool's full description and input schema by the name search_tools returned.",
        input_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name=CALL_TOOL,
        description="Call a tool found with search_tools; `arguments` must match its input schema.",
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
            "required": ["name"],
        },
    ),
]

# Words that carry meaning in tool queries ("scale down", "turn off") stay searchable.
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS) - {"up", "down", "on", "off", "out", "over", "under"}
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+")
_NAME_WEIGHT = 2  # a word in the tool's own name says more than one in its prose

# Tool names use a handful of verbs; people asking for a tool use others. Added to the query
# (never to documents), so "find emails" also matches `search_emails`.
_QUERY_SYNONYMS = {
    "find": ("search",),
    "look": ("search",),
    "lookup": ("search",),
    "show": ("get", "list"),
    "make": ("create",),
    "add": ("create",),
    "remove": ("delete",),
    "edit": ("update",),
    "change": ("update",),
    "modify": ("update",),
    "run": ("execute",),
}


@lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """A light English suffix stripper, so "issues", "creating" and "created" meet "issue"/"create".

    bm25s takes its stemmer from PyStemmer, a second native dependency; tool names and one-line
    descriptions need little more than plurals and -ing/-ed forms.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # stopped → stop, running → run
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]  # create / created / creating all become "creat"
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words of `text`; snake_case, camelCase and kebab-case names split apart."""
    words = _WORD.findall(_CAMEL_BOUNDARY.sub(" ", text).lower())
    return [stem(w) for w in words if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]


_STEMMED_SYNONYMS = {stem(word): tuple(map(stem, more)) for word, more in _QUERY_SYNONYMS.items()}


def _query_words(query: str) -> list[str]:
    words = tokenize(query)
    return words + [s for w in words for s in _STEMMED_SYNONYMS.get(w, ())]


def _document(tool: ModalTool) -> list[str]:
    properties = tool.tool.input_schema.get("properties")
    parameters = " ".join(properties) if isinstance(properties, dict) else ""
    return list(_document_words(tool.original, tool.upstream, tool.tool.title, tool.tool.description, parameters))


@lru_cache(maxsize=8192)
def _document_words(
    original: str, upstream: str, title: str | None, description: str | None, parameters: str
) -> tuple[str, ...]:
    """Memoised, because tokenising is most of an index build and most tools survive a catalog change."""
    return (
        *tokenize(original) * _NAME_WEIGHT,
        *tokenize(upstream),
        *tokenize(title or ""),
        *tokenize(description or ""),
        *tokenize(parameters),
    )


class SearchIndex:
    """BM25 over a fixed list of tools; immutable once built.

    Building one for 500 tools takes ~8 ms when their words are already memoised (~20 ms cold), on
    the event loop: it happens once per distinct view, and a query then takes ~0.03 ms.
    """

    def __init__(self, tools: Sequence[ModalTool]) -> None:
        self.tools = tuple(tools)
        self._upstreams = np.array([t.upstream for t in self.tools], dtype=object)
        self._bm25 = bm25s.BM25()
        if self.tools:
            self._bm25.index([_document(t) for t in self.tools], show_progress=False)

    def search(self, query: str, *, upstream: str | None = None, limit: int = DEFAULT_LIMIT) -> list[ModalTool]:
        """The best `limit` matches, best first; ties keep catalog order.

        A blank query lists tools (of `upstream`) in catalog order; a query sharing no word with
        any tool finds nothing.
        """
        if limit <= 0 or not self.tools:
            return []
        if not query.strip():
            return [t for t in self.tools if upstream is None or t.upstream == upstream][:limit]
        mask = None if upstream is None else (self._upstreams == upstream).astype(np.float32)
        vocabulary = self._bm25.vocab_dict
        tokens = [t for t in _query_words(query) if t in vocabulary]
        if not tokens:
            return []
        scores = np.asarray(self._bm25.get_scores(tokens, weight_mask=mask))
        best = np.argsort(-scores, kind="stable")[:limit]
        return [self.tools[i] for i in best if scores[i] > 0]


_IndexKey = tuple[tuple[str, str, str | None], ...]


class SearchMode:
    """Answers the three meta tools for one gateway; share one instance between all callers."""

    names = frozenset({SEARCH_TOOLS, GET_TOOL_SCHEMA, CALL_TOOL})

    def __init__(self, *, cache_size: int = 8) -> None:
        self._cache_size = cache_size
        self._indexes: OrderedDict[_IndexKey, SearchIndex] = OrderedDict()

    def index_for(self, tools: Sequence[ModalTool]) -> SearchIndex:
        """The index of exactly these tools, from the LRU when another call already built it."""
        # Descriptions are part of the key: an upstream may change one without renaming the tool.
        key = tuple((t.name, t.upstream, t.tool.description) for t in tools)
        index = self._indexes.get(key)
        if index is not None:
            self._indexes.move_to_end(key)
            return index
        index = SearchIndex(tools)
        self._indexes[key] = index
        while len(self._indexes) > self._cache_size:
            self._indexes.popitem(last=False)
        return index

    async def call(self, name: str, arguments: Mapping[str, Any], access: ToolAccess) -> dict[str, Any]:
        """Answer one meta tool call with a wire `CallToolResult` dict; bad input is a tool error."""
        tools = access.tools(ToolMode.SEARCH)
        if name == SEARCH_TOOLS:
            return self._search(arguments, tools)
        if name == GET_TOOL_SCHEMA:
            return _schema(arguments, tools)
        if name == CALL_TOOL:
            return await _call(arguments, tools, access)
        return _error(f"{name!r} is not a search-mode meta tool")

    def _search(self, arguments: Mapping[str, Any], tools: list[ModalTool]) -> dict[str, Any]:
        query = arguments.get("query")
        upstream = arguments.get("upstream")
        limit = arguments.get("limit", DEFAULT_LIMIT)
        if not isinstance(query, str):
            return _error("search_tools needs `query`, a string describing the task")
        if upstream is not None and not isinstance(upstream, str):
            return _error("`upstream` must be a string")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return _error(f"`limit` must be an integer from 1 to {MAX_LIMIT}")
        if upstream is not None and not any(t.upstream == upstream for t in tools):
            known = ", ".join(sorted({t.upstream for t in tools})) or "none"
            return _error(f"no upstream named {upstream!r} is available; upstreams: {known}")
        found = self.index_for(tools).search(query, upstream=upstream, limit=min(limit, MAX_LIMIT))
        summaries = [{"name": t.name, "upstream": t.upstream, "description": _summary(t)} for t in found]
        if summaries:
            text = "\n".join(f"{s['name']} — {s['description']}" if s["description"] else s["name"] for s in summaries)
        else:
            text = f"no tools match {query!r}; try other words" + (" or leave out `upstream`" if upstream else "")
        return _result(text, {"tools": summaries})


def _summary(tool: ModalTool) -> str:
    return first_sentence(tool.tool.description) or ""


def _find(arguments: Mapping[str, Any], tools: list[ModalTool]) -> ModalTool | str:
    name = arguments.get("name")
    if not isinstance(name, str) or not name:
        return "`name` must be a tool name returned by search_tools"
    for tool in tools:
        if tool.name == name:
            return tool
    return _not_available(name)


def _not_available(name: str) -> str:
    return f"no tool named {name!r} is available; use search_tools"


def _schema(arguments: Mapping[str, Any], tools: list[ModalTool]) -> dict[str, Any]:
    found = _find(arguments, tools)
    if isinstance(found, str):
        return _error(found)
    definition = found.tool.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        include={"name", "title", "description", "input_schema", "output_schema", "annotations"},
    )
    return _result(json.dumps(definition, ensure_ascii=False), definition)


async def _call(arguments: Mapping[str, Any], tools: list[ModalTool], access: ToolAccess) -> dict[str, Any]:
    found = _find(arguments, tools)
    if isinstance(found, str):
        return _error(found)
    tool_arguments = arguments.get("arguments")
    if tool_arguments is not None and not isinstance(tool_arguments, dict):
        return _error("`arguments` must be an object")
    try:
        return await access.call(found.name, tool_arguments)
    except UnknownTool:
        return _error(_not_available(found.name))  # hidden or removed since the tool list was read


def _result(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": False,
        "resultType": "complete",
    }


def _error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True, "resultType": "complete"}
