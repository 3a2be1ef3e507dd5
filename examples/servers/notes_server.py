"""A tiny in-memory notes app served over MCP -- the "typical text upstream" for trying out the gateway.

It deliberately covers the shapes a gateway has to pass through untouched: plain text results, a tool error
result (``isError: true``), ``structuredContent`` with an ``outputSchema``, tool ``title``/``annotations``, a
static resource, a resource template and a prompt with an argument.

Run::

    python examples/servers/notes_server.py                      # stdio (default)
    python examples/servers/notes_server.py --transport http --port 8930   # http://127.0.0.1:8930/mcp
    python examples/servers/notes_server.py --transport sse --port 8930    # http://127.0.0.1:8930/sse
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError

if str(Path(__file__).resolve().parent) not in sys.path:  # also importable as a module, not only run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import ListChangedServer, serve

INDEX_URI = "notes://index"
NOTE_URI_PREFIX = "notes://note/"
NOTE_URI_TEMPLATE = NOTE_URI_PREFIX + "{title}"
RESOURCE_NOT_FOUND = -32002  # the code the MCP spec suggests for an unknown resource URI

NOTES: dict[str, str] = {
    "welcome": "Welcome to the notes server. Add notes with add_note and read them back with get_note.",
    "shopping": "Milk, eggs, coffee beans.",
}
"""Process-wide note store, seeded so a fresh server has something to list, read and summarise."""

ToolFn = Callable[[Mapping[str, Any]], Awaitable[types.CallToolResult]]


def _text(text: str, *, is_error: bool = False) -> types.CallToolResult:
    """A one-block text result; ``is_error`` marks a tool-level failure the model should see (not a protocol error)."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=is_error)


def _string_arg(args: Mapping[str, Any], name: str) -> str | None:
    """Fetch a string argument; the low-level server does not validate arguments against ``inputSchema``."""
    value = args.get(name)
    return value if isinstance(value, str) else None


def _note_uri(title: str) -> str:
    """Resource URI of one note; the title is percent-encoded so any title round-trips through the template."""
    return NOTE_URI_PREFIX + quote(title, safe="")


LIST_NOTES_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "notes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "chars": {"type": "integer"}},
                "required": ["title", "chars"],
            },
        }
    },
    "required": ["notes"],
}

TOOLS: list[types.Tool] = [
    types.Tool(
        name="add_note",
        title="Add note",
        description="Store a note under a title (replaces an existing note with the same title).",
        input_schema={
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["title", "body"],
        },
        annotations=types.ToolAnnotations(
            title="Add note", read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    ),
    types.Tool(
        name="get_note",
        title="Get note",
        description="Return the body of the note with this title.",
        input_schema={"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
        annotations=types.ToolAnnotations(title="Get note", read_only_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="list_notes",
        title="List notes",
        description="List all note titles with their length in characters.",
        input_schema={"type": "object", "properties": {}},
        output_schema=LIST_NOTES_OUTPUT_SCHEMA,
        annotations=types.ToolAnnotations(title="List notes", read_only_hint=True, open_world_hint=False),
    ),
]


async def add_note(args: Mapping[str, Any]) -> types.CallToolResult:
    """Store or replace a note."""
    title, body = _string_arg(args, "title"), _string_arg(args, "body")
    if not title or body is None:
        return _text("add_note needs a non-empty string 'title' and a string 'body'.", is_error=True)
    NOTES[title] = body
    return _text(f"Saved note {title!r} ({len(body)} chars).")


async def get_note(args: Mapping[str, Any]) -> types.CallToolResult:
    """Return a note's body, or a tool error naming the known titles so the model can recover."""
    title = _string_arg(args, "title")
    if title is None:
        return _text("get_note needs a string 'title'.", is_error=True)
    if title not in NOTES:
        known = ", ".join(sorted(NOTES)) or "(none)"
        return _text(f"No note titled {title!r}. Known titles: {known}.", is_error=True)
    return _text(NOTES[title])


async def list_notes(_args: Mapping[str, Any]) -> types.CallToolResult:
    """Structured listing plus a text rendering for clients that ignore ``structuredContent``."""
    notes = [{"title": title, "chars": len(body)} for title, body in sorted(NOTES.items())]
    rendering = "\n".join(f"- {n['title']} ({n['chars']} chars)" for n in notes) or "(no notes)"
    return types.CallToolResult(content=[types.TextContent(text=rendering)], structured_content={"notes": notes})


TOOL_FUNCTIONS: dict[str, ToolFn] = {"add_note": add_note, "get_note": get_note, "list_notes": list_notes}


async def on_list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    """All tools on one page; the set is fixed."""
    return types.ListToolsResult(tools=TOOLS)


async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    """Dispatch to the tool function; an unknown tool is a protocol error (-32602), not a tool error."""
    fn = TOOL_FUNCTIONS.get(params.name)
    if fn is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    return await fn(params.arguments or {})


async def on_list_resources(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    """Only the index is listed; individual notes are reached through the template."""
    index = types.Resource(
        name="index", title="Notes index", uri=INDEX_URI, description="One line per note.", mime_type="text/plain"
    )
    return types.ListResourcesResult(resources=[index])


async def on_list_resource_templates(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    """One template addressing a note by its (percent-encoded) title."""
    template = types.ResourceTemplate(
        name="note", title="Note by title", uri_template=NOTE_URI_TEMPLATE, mime_type="text/plain"
    )
    return types.ListResourceTemplatesResult(resource_templates=[template])


async def on_read_resource(
    ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    """Serve the index or one note; unknown URIs get the spec's resource-not-found error."""
    uri = str(params.uri)
    if uri == INDEX_URI:
        text = "\n".join(f"{title}\t{_note_uri(title)}" for title in sorted(NOTES))
    elif uri.startswith(NOTE_URI_PREFIX) and unquote(uri.removeprefix(NOTE_URI_PREFIX)) in NOTES:
        text = NOTES[unquote(uri.removeprefix(NOTE_URI_PREFIX))]
    else:
        raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="text/plain", text=text)])


SUMMARIZE_PROMPT = types.Prompt(
    name="summarize_notes",
    title="Summarize notes",
    description="Ask the model to summarise every note in a given style.",
    arguments=[types.PromptArgument(name="style", description="e.g. 'bullet points', 'haiku'", required=True)],
)


async def on_list_prompts(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    """The single prompt."""
    return types.ListPromptsResult(prompts=[SUMMARIZE_PROMPT])


async def on_get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
    """Render the prompt with the current notes inlined, so the model needs no tool calls to answer it."""
    if params.name != SUMMARIZE_PROMPT.name:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
    style = (params.arguments or {}).get("style") or "a short paragraph"
    notes = "\n\n".join(f"## {title}\n{body}" for title, body in sorted(NOTES.items()))
    message = types.PromptMessage(
        role="user", content=types.TextContent(text=f"Summarize these notes as {style}.\n\n{notes}")
    )
    return types.GetPromptResult(description=f"Summary of {len(NOTES)} notes", messages=[message])


def build_server() -> ListChangedServer:
    """Assemble the server; separate from :func:`main` so tests can host it in-process."""
    return ListChangedServer(
        "notes",
        version="0.1.0",
        title="Notes",
        instructions="An in-memory notebook: add_note, get_note, list_notes; notes are also resources.",
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=on_list_resources,
        on_list_resource_templates=on_list_resource_templates,
        on_read_resource=on_read_resource,
        on_list_prompts=on_list_prompts,
        on_get_prompt=on_get_prompt,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: stdio by default."""
    serve(build_server(), argv, default_transport="stdio", default_port=8930)


if __name__ == "__main__":
    main()
