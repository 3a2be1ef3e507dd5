"""A stdio MCP upstream with 100 tools, for ``llm_injection.py``: a realistic catalog to inject into model requests.

Why this shape: what injection costs grows with what is injected, so the tools look like a real server's — a
sentence-long description (~100 characters) and an ``inputSchema`` with three typed, described properties each —
rather than the lab server's one-property echo tools. Names are ``tool_000`` … ``tool_099`` (``MANY_TOOLS_COUNT``
changes the count). Calling a tool returns its arguments as JSON text; the benchmark never calls them (the mock
model answers with text), but the server stays a correct one. Built like ``examples/servers/notes_server.py``:
the SDK's low-level ``Server`` with ``_serve.serve`` for the transport (stdio by default).

Run::

    python benchmarks/_many_tools_server.py             # stdio
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError

_SERVE_DIR = Path(__file__).resolve().parents[1] / "examples" / "servers"
if str(_SERVE_DIR) not in sys.path:  # the transport plumbing is shared with the example servers
    sys.path.insert(0, str(_SERVE_DIR))
from _serve import ListChangedServer, serve  # noqa: E402

TOOL_COUNT = int(os.environ.get("MANY_TOOLS_COUNT", "100"))

# (verb, object, what the tool does with it): combined with the areas below into 100 distinct descriptions.
_ACTIONS = (
    ("Search", "records", "matching a free-text query and return their ids and titles, newest first"),
    ("Create", "a record", "with the given fields and return its id and the URL to view it"),
    ("Update", "a record", "by id, changing only the given fields; returns the updated record"),
    ("Archive", "a record", "by id so it no longer shows in listings (restorable for 30 days)"),
    ("Summarise", "recent activity", "over the last N days as a short list of the notable changes"),
)
_AREAS = (
    "issue tracker",
    "customer CRM",
    "billing ledger",
    "team calendar",
    "document store",
    "support inbox",
    "inventory system",
    "HR directory",
    "deployment log",
    "feature flag service",
    "analytics warehouse",
    "knowledge base",
    "vendor registry",
    "expense reports",
    "asset tracker",
    "incident log",
    "sales pipeline",
    "contract archive",
    "recruiting board",
    "release notes",
)


def tool(index: int) -> types.Tool:
    """Tool ``index``: a description of ~100 characters and three typed, described properties (two required)."""
    verb, obj, rest = _ACTIONS[index % len(_ACTIONS)]
    area = _AREAS[(index // len(_ACTIONS)) % len(_AREAS)]
    return types.Tool(
        name=f"tool_{index:03d}",
        description=f"{verb} {obj} in the {area} {rest}.",
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": f"What to look for or change in the {area}."},
                "limit": {"type": "integer", "description": "Most items to return.", "minimum": 1, "maximum": 100},
                "include_archived": {"type": "boolean", "description": "Also consider archived items."},
            },
            "required": ["query", "limit"],
        },
    )


TOOLS: list[types.Tool] = [tool(i) for i in range(TOOL_COUNT)]
NAMES = frozenset(t.name for t in TOOLS)


async def on_list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    """All tools on one page; the set is fixed."""
    return types.ListToolsResult(tools=TOOLS)


async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    """Every tool answers with its name and arguments; an unknown tool is a protocol error (-32602)."""
    if params.name not in NAMES:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    text = json.dumps({"tool": params.name, "arguments": params.arguments or {}})
    return types.CallToolResult(content=[types.TextContent(text=text)])


def main() -> None:
    server = ListChangedServer("many-tools", version="0.1.0", on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    serve(server, default_transport="stdio")


if __name__ == "__main__":
    main()
