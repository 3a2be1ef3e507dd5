"""An MCP upstream whose tools return every non-text content type, for checking the gateway passes them through.

Images and audio are real files generated in pure Python (``zlib`` + ``struct`` for PNG, ``wave`` for WAV) so
the example has no third-party dependencies and a client can actually decode what it receives. It also covers
``structuredContent`` + ``outputSchema``, an ``isError`` result, a ``resource_link`` block and an embedded resource.

Run::

    python examples/servers/media_server.py                      # streamable HTTP on http://127.0.0.1:8931/mcp
    python examples/servers/media_server.py --transport sse      # legacy SSE on http://127.0.0.1:8931/sse
    python examples/servers/media_server.py --transport stdio
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import struct
import sys
import wave
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError

if str(Path(__file__).resolve().parent) not in sys.path:  # also importable as a module, not only run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import ListChangedServer, serve

ABOUT_URI = "media://about"
ABOUT_TEXT = "media server: demo upstream returning image, audio, structured, error and resource-link results."
RESOURCE_NOT_FOUND = -32002  # the code the MCP spec suggests for an unknown resource URI

ToolFn = Callable[[Mapping[str, Any]], Awaitable[types.CallToolResult]]


# --- media generation ------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC over type+data (PNG spec section 5.3)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """Encode an 8-bit RGB PNG from a pixel function; filter type 0 on every row keeps the encoder trivial."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )


def render_badge_png(text: str) -> bytes:
    """A small badge: a 1-px border and one 5x10 cell per character showing the low 10 bits of its code point.

    Not a font renderer -- the point is a valid, deterministic, text-dependent PNG that stays a few hundred bytes.
    """
    digest = hashlib.sha256(text.encode()).digest()
    fill, ink = (digest[0], digest[1], digest[2]), (255 - digest[0], 255 - digest[1], 255 - digest[2])
    codes = [ord(c) for c in text[:32]] or [0]
    width, height = 4 + 6 * len(codes), 16

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        if x in (0, width - 1) or y in (0, height - 1):
            return (40, 40, 40)
        col = x - 2
        if 0 <= col < 6 * len(codes) and col % 6 < 5 and 3 <= y < 13:
            bit = (codes[col // 6] >> (col % 6 + 5 * ((y - 3) // 5))) & 1  # top half: bits 0-4, bottom: 5-9
            return ink if bit else fill
        return fill

    return make_png(width, height, pixel)


def make_beep_wav(frequency: float = 880.0, seconds: float = 0.15, rate: int = 8000) -> bytes:
    """A short mono 16-bit sine beep with a linear fade-out (avoids a click), as a complete WAV file."""
    frames = int(seconds * rate)
    samples = (int(12000 * (1 - i / frames) * math.sin(2 * math.pi * frequency * i / rate)) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


# --- tools -------------------------------------------------------------------------------------------------------


STATS_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "mean": {"type": "number"},
        "min": {"type": "number"},
        "max": {"type": "number"},
    },
    "required": ["count", "mean", "min", "max"],
}

TOOLS: list[types.Tool] = [
    types.Tool(
        name="render_badge",
        title="Render badge",
        description="Render a small PNG badge for the given text (returned as an image content block).",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="beep",
        title="Beep",
        description="Return a short WAV beep (an audio content block).",
        input_schema={"type": "object", "properties": {}},
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="stats",
        title="Statistics",
        description="Count, mean, min and max of a list of numbers (structured result).",
        input_schema={
            "type": "object",
            "properties": {"numbers": {"type": "array", "items": {"type": "number"}}},
            "required": ["numbers"],
        },
        output_schema=STATS_OUTPUT_SCHEMA,
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="fail",
        title="Fail",
        description="Always fails with the given reason (an isError result), for testing error pass-through.",
        input_schema={"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
        annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="resource_link",
        title="Resource link",
        description="Return a resource_link block and the same resource embedded.",
        input_schema={"type": "object", "properties": {}},
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
]


def _error(text: str) -> types.CallToolResult:
    """A tool-level failure the model should see (``isError: true``), not a JSON-RPC error."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


async def render_badge(args: Mapping[str, Any]) -> types.CallToolResult:
    """Image content block with base64 PNG data."""
    text = args.get("text")
    if not isinstance(text, str):
        return _error("render_badge needs a string 'text'.")
    data = base64.b64encode(render_badge_png(text)).decode("ascii")
    return types.CallToolResult(content=[types.ImageContent(data=data, mime_type="image/png")])


async def beep(_args: Mapping[str, Any]) -> types.CallToolResult:
    """Audio content block with base64 WAV data."""
    data = base64.b64encode(make_beep_wav()).decode("ascii")
    return types.CallToolResult(content=[types.AudioContent(data=data, mime_type="audio/wav")])


async def stats(args: Mapping[str, Any]) -> types.CallToolResult:
    """Structured summary plus a text rendering; an empty or non-numeric list is a tool error."""
    numbers = args.get("numbers")
    if (
        not isinstance(numbers, list)
        or not numbers
        or not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)
    ):
        return _error("stats needs 'numbers': a non-empty list of numbers.")
    values = [float(n) for n in numbers]
    result = {"count": len(values), "mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    rendering = ", ".join(f"{key}={value:g}" for key, value in result.items())
    # Annotations and `_meta` too, so clients (and the gateway's tests) see every part of a result.
    text = types.TextContent(text=rendering, annotations=types.Annotations(audience=["user"], priority=1))
    return types.CallToolResult(
        content=[text], structured_content=result, _meta={"io.github.mcpgw.examples/computed-from": len(values)}
    )


async def fail(args: Mapping[str, Any]) -> types.CallToolResult:
    """Always an ``isError`` result, carrying the caller's reason."""
    return _error(f"fail: {args.get('reason', 'no reason given')}")


async def resource_link(_args: Mapping[str, Any]) -> types.CallToolResult:
    """A link the client may resolve later, and the same content embedded for clients that won't."""
    link = types.ResourceLink(name="about", title="About", uri=ABOUT_URI, mime_type="text/plain")
    embedded = types.EmbeddedResource(
        resource=types.TextResourceContents(uri=ABOUT_URI, mime_type="text/plain", text=ABOUT_TEXT)
    )
    return types.CallToolResult(content=[link, embedded])


TOOL_FUNCTIONS: dict[str, ToolFn] = {
    "render_badge": render_badge,
    "beep": beep,
    "stats": stats,
    "fail": fail,
    "resource_link": resource_link,
}


# --- handlers ----------------------------------------------------------------------------------------------------


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
    """The one static resource."""
    about = types.Resource(name="about", title="About", uri=ABOUT_URI, mime_type="text/plain")
    return types.ListResourcesResult(resources=[about])


async def on_read_resource(
    ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    """Serve ``media://about``; anything else is resource-not-found."""
    uri = str(params.uri)
    if uri != ABOUT_URI:
        raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=ABOUT_URI, mime_type="text/plain", text=ABOUT_TEXT)]
    )


DESCRIBE_PROMPT = types.Prompt(
    name="describe_image",
    title="Describe image",
    description="Ask the model to describe the image at a URL.",
    arguments=[types.PromptArgument(name="url", description="Image URL", required=True)],
)


async def on_list_prompts(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    """The single prompt."""
    return types.ListPromptsResult(prompts=[DESCRIBE_PROMPT])


async def on_get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
    """Render the prompt; a missing ``url`` is invalid params since the argument is declared required."""
    if params.name != DESCRIBE_PROMPT.name:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
    url = (params.arguments or {}).get("url")
    if not url:
        raise MCPError(types.INVALID_PARAMS, "describe_image needs the 'url' argument")
    message = types.PromptMessage(
        role="user", content=types.TextContent(text=f"Describe the image at {url} in two sentences.")
    )
    return types.GetPromptResult(description="Describe an image", messages=[message])


def build_server() -> ListChangedServer:
    """Assemble the server; separate from :func:`main` so tests can host it in-process."""
    return ListChangedServer(
        "media",
        version="0.1.0",
        title="Media",
        instructions="Demo tools returning images, audio, structured data, errors and resource links.",
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=on_list_resources,
        on_read_resource=on_read_resource,
        on_list_prompts=on_list_prompts,
        on_get_prompt=on_get_prompt,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: streamable HTTP on port 8931 by default."""
    serve(build_server(), argv, default_transport="http", default_port=8931)


if __name__ == "__main__":
    main()
