"""An "everything" MCP server that passes the official conformance suite's server scenarios.

The suite (``@modelcontextprotocol/conformance``, installed by ``scripts/install-npm-peers.sh``) drives a server
with fixed tool, resource and prompt names and checks the exact shape of every answer. This server implements
all of them with the low-level SDK ``Server``, so it doubles as:

* a reference upstream for mcpgw: run the suite against the gateway with this server behind it, and any
  difference from running it against this server directly is a gateway bug;
* a tour of the protocol surface a gateway must forward: content types, logging, progress, sampling,
  elicitation, resource subscriptions, completions and SSE resumability.

Usage::

    python examples/servers/conformance_server.py [--transport stdio|http|sse] [--host 127.0.0.1] [--port 8765]

``http`` serves streamable HTTP at ``/mcp``; ``sse`` serves the legacy transport (``GET /sse``,
``POST /messages/``). Both validate ``Host``/``Origin`` against loopback names (the suite checks
DNS-rebinding protection), so reach them as ``127.0.0.1``, ``localhost`` or ``[::1]``.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import logging
import wave
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import anyio
import mcp.types as types
import uvicorn
from mcp import MCPError, UriTemplate
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

logger = logging.getLogger("conformance_server")

Context = ServerRequestContext[Any, Any]
ToolHandler = Callable[[Context, dict[str, Any]], Awaitable[types.CallToolResult]]
Transport = Literal["stdio", "http", "sse"]

SERVER_NAME: Final = "mcpgw-conformance-server"
SERVER_VERSION: Final = "1.0.0"

WATCHED_URI: Final = "test://watched-resource"
TEMPLATE_URI: Final = "test://template/{id}/data"

# A 1x1 red PNG: the smallest image every client can decode.
RED_PIXEL_PNG: Final = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"

# JSON-RPC code the spec assigns to "resource not found"; the SDK has no constant for it.
RESOURCE_NOT_FOUND: Final = -32002

# Ordered from least to most severe, so a level's index is its severity (RFC 5424 order, as the spec uses).
LOG_LEVELS: Final[tuple[types.LoggingLevel, ...]] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)

# Pause between the notifications of the logging and progress tools: the suite checks that clients receive
# several notifications spread over the lifetime of one call, not a burst at the end.
STEP_DELAY_S: Final = 0.05

# Milliseconds a client should wait before reconnecting a closed SSE stream (sent as the SSE `retry` field).
SSE_RETRY_MS: Final = 500


def _silent_wav() -> str:
    """Return 10 ms of 8 kHz mono silence as base64 WAV, built with `wave` so the bytes are a valid file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


SILENT_WAV: Final = _silent_wav()


def text_result(text: str, *, is_error: bool = False) -> types.CallToolResult:
    """Wrap `text` as the single content block of a tool result."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=is_error)


# --------------------------------------------------------------------------------------------------------------
# Per-client state
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ClientState:
    """What the server remembers about one connected client between its requests."""

    log_level: types.LoggingLevel | None = None
    """Minimum level set by `logging/setLevel`; None until the client sets one (then everything is sent)."""

    subscriptions: set[str] = field(default_factory=set)
    """URIs the client subscribed to with `resources/subscribe`."""


class ClientRegistry:
    """Maps each connected client to its `ClientState`.

    Why not a field on the session: `ctx.session` lives for one request only, and the SDK keeps its
    per-connection state private. The transport's own session identifier is stable across requests, so it keys
    the state: the `mcp-session-id` header on streamable HTTP, the `session_id` query parameter on legacy SSE,
    and a single slot on stdio, which has exactly one client per process. Entries are never evicted; this is a
    test server whose sessions number in the hundreds at most.
    """

    def __init__(self) -> None:
        self._states: dict[str, ClientState] = {}

    def get(self, ctx: Context) -> ClientState:
        """Return the state of the client that sent the request in `ctx`, creating it on first use."""
        key = "stdio"
        if isinstance(ctx.request, Request):
            key = ctx.request.headers.get("mcp-session-id") or ctx.request.query_params.get("session_id") or "http"
        return self._states.setdefault(key, ClientState())


# --------------------------------------------------------------------------------------------------------------
# SSE resumability
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StoredEvent:
    stream_id: StreamId
    event_id: EventId
    message: types.JSONRPCMessage | None


class InMemoryEventStore(EventStore):
    """Keeps the last `max_events` SSE events so a client can resume a closed stream with `Last-Event-ID`.

    Giving the session manager an event store is what makes it send SSE priming events and lets a handler close
    its response stream mid-call (SEP-1699); `test_reconnection` relies on that. Memory is bounded: the oldest
    events are dropped first, and a client resuming from a dropped event simply gets nothing replayed.
    """

    def __init__(self, max_events: int = 10_000) -> None:
        self._events: deque[_StoredEvent] = deque(maxlen=max_events)
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        """Record `message` (None for a priming event) on `stream_id` and return its new event id."""
        event_id = str(next(self._ids))
        self._events.append(_StoredEvent(stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        """Send the events of `last_event_id`'s stream that came after it; return that stream's id."""
        stream_id: StreamId | None = None
        for event in list(self._events):
            if stream_id is None:
                if event.event_id == last_event_id:
                    stream_id = event.stream_id
            elif event.stream_id == stream_id and event.message is not None:
                await send_callback(EventMessage(event.message, event.event_id))
        return stream_id


# --------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------


class ConformanceServer(Server[Any]):
    """A low-level `Server` whose capabilities say that tool, prompt and resource lists may change.

    Why a subclass: the streamable-HTTP session manager calls `create_initialization_options()` without
    arguments, which would advertise `listChanged: false` over HTTP while stdio and SSE (where this file passes
    the options itself) advertise `true`. Defaulting here makes all transports agree.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        """Default the notification options to "every list may change"."""
        if notification_options is None:
            notification_options = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        return super().create_initialization_options(notification_options, experimental_capabilities, extensions)


def build_server() -> ConformanceServer:
    """Create the server with every tool, resource, prompt and utility the conformance scenarios exercise."""
    clients = ClientRegistry()
    watched_resource = {"text": "Watched resource content, version 1."}

    # ---- helpers ------------------------------------------------------------------------------------------

    async def log(ctx: Context, level: types.LoggingLevel, message: str) -> None:
        """Send a log notification on the request's own stream, unless the client asked for a higher level."""
        minimum = clients.get(ctx).log_level
        if minimum is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(minimum):
            return
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams(level=level, data=message, logger=SERVER_NAME)
        )
        await ctx.session.send_notification(notification, related_request_id=ctx.request_id)

    def require_capability(ctx: Context, capability: types.ClientCapabilities, name: str) -> None:
        """Refuse a server-to-client request the client did not declare it can answer."""
        if not ctx.session.check_client_capability(capability):
            raise MCPError(types.INVALID_REQUEST, f"Client does not support {name}")

    async def elicit(ctx: Context, message: str, schema: dict[str, Any]) -> types.ElicitResult:
        """Ask the client for form input on the request's own stream (so it works without a GET stream)."""
        require_capability(ctx, types.ClientCapabilities(elicitation=types.ElicitationCapability()), "elicitation")
        return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)

    def elicitation_summary(result: types.ElicitResult) -> str:
        return f"action={result.action}, content={json.dumps(result.content)}"

    # ---- tools --------------------------------------------------------------------------------------------

    async def simple_text(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        return text_result("This is a simple text response for testing.")

    async def image_content(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        return types.CallToolResult(content=[types.ImageContent(data=RED_PIXEL_PNG, mime_type="image/png")])

    async def audio_content(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        return types.CallToolResult(content=[types.AudioContent(data=SILENT_WAV, mime_type="audio/wav")])

    async def embedded_resource(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        resource = types.TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        )
        return types.CallToolResult(content=[types.EmbeddedResource(resource=resource)])

    async def multiple_content_types(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return types.CallToolResult(
            content=[
                types.TextContent(text="Multiple content types test:"),
                types.ImageContent(data=RED_PIXEL_PNG, mime_type="image/png"),
                types.EmbeddedResource(resource=resource),
            ]
        )

    async def tool_with_logging(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        await log(ctx, "info", "Tool execution started")
        await anyio.sleep(STEP_DELAY_S)
        await log(ctx, "info", "Tool processing data")
        await anyio.sleep(STEP_DELAY_S)
        await log(ctx, "info", "Tool execution completed")
        return text_result("Tool with logging executed successfully")

    async def error_handling(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        # A tool failure is a result with isError, not a JSON-RPC error: the model must be able to read it.
        return text_result("This tool intentionally returns an error for testing", is_error=True)

    async def tool_with_progress(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        # report_progress is a no-op when the request carried no progressToken, as the scenario allows.
        for step, progress in enumerate((0, 50, 100)):
            if step:
                await anyio.sleep(STEP_DELAY_S)
            await ctx.session.report_progress(progress, 100, f"Completed step {step + 1} of 3")
        return text_result("Tool with progress executed successfully")

    async def sampling(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        prompt = args.get("prompt")
        if not isinstance(prompt, str):
            raise MCPError(types.INVALID_PARAMS, "Argument 'prompt' (string) is required")
        require_capability(ctx, types.ClientCapabilities(sampling=types.SamplingCapability()), "sampling")
        request = types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[types.SamplingMessage(role="user", content=types.TextContent(text=prompt))],
                max_tokens=100,
            )
        )
        # send_request rather than ServerSession.create_message: the latter warns that sampling is deprecated
        # in the 2026-07-28 era, while this server speaks the handshake era where it is current.
        result = await ctx.session.send_request(
            request, types.CreateMessageResult, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
        )
        answer = result.content.text if isinstance(result.content, types.TextContent) else str(result.content)
        return text_result(f"LLM response: {answer}")

    async def elicitation(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        message = args.get("message")
        if not isinstance(message, str):
            raise MCPError(types.INVALID_PARAMS, "Argument 'message' (string) is required")
        schema = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        result = await elicit(ctx, message, schema)
        return text_result(f"User response: {elicitation_summary(result)}")

    async def elicitation_sep1034_defaults(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "description": "Verification status", "default": True},
            },
            "required": [],
        }
        result = await elicit(ctx, "Please review and update the form fields with defaults", schema)
        return text_result(f"Elicitation completed: {elicitation_summary(result)}")

    async def elicitation_sep1330_enums(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        # One field per enum flavour SEP-1330 defines, so a client's form renderer meets each of them.
        schema = {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Untitled single-select",
                    "enum": ["option1", "option2", "option3"],
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Titled single-select",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Legacy titled enum (deprecated enumNames)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Untitled multi-select",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Titled multi-select",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
            "required": [],
        }
        result = await elicit(ctx, "Please choose from the enum fields", schema)
        return text_result(f"Elicitation completed: {elicitation_summary(result)}")

    async def json_schema_2020_12(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        return text_result(f"Received: {json.dumps(args, sort_keys=True)}")

    async def reconnection(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        # Close this call's SSE stream before answering; the client reconnects with Last-Event-ID and the event
        # store replays the result. The SDK offers the callback only when resumption is possible (an event store
        # and protocol >= 2025-11-25); otherwise the answer simply rides the original stream.
        if ctx.close_sse_stream is not None:
            await ctx.close_sse_stream()
            await anyio.sleep(SSE_RETRY_MS / 1000 * 2)
        return text_result("Reconnection test completed successfully")

    async def update_watched_resource(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        content = args.get("content")
        watched_resource["text"] = content if isinstance(content, str) else f"{watched_resource['text']} (updated)"
        if WATCHED_URI in clients.get(ctx).subscriptions:
            await ctx.session.send_resource_updated(WATCHED_URI)
        return text_result(f"{WATCHED_URI} updated")

    no_args: dict[str, Any] = {"type": "object", "properties": {}}
    tool_table: list[tuple[str, str, dict[str, Any], ToolHandler]] = [
        ("test_simple_text", "Returns a simple text response", no_args, simple_text),
        ("test_image_content", "Returns a 1x1 PNG image", no_args, image_content),
        ("test_audio_content", "Returns a short WAV clip", no_args, audio_content),
        ("test_embedded_resource", "Returns an embedded text resource", no_args, embedded_resource),
        ("test_multiple_content_types", "Returns text, image and resource content", no_args, multiple_content_types),
        ("test_tool_with_logging", "Sends three info log notifications while running", no_args, tool_with_logging),
        ("test_error_handling", "Always fails with isError: true", no_args, error_handling),
        ("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", no_args, tool_with_progress),
        (
            "test_sampling",
            "Asks the client's LLM to answer a prompt (sampling/createMessage)",
            {
                "type": "object",
                "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
                "required": ["prompt"],
            },
            sampling,
        ),
        (
            "test_elicitation",
            "Asks the user for a username and email (elicitation/create)",
            {
                "type": "object",
                "properties": {"message": {"type": "string", "description": "The message to show the user"}},
                "required": ["message"],
            },
            elicitation,
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Elicits a form whose fields all carry default values (SEP-1034)",
            no_args,
            elicitation_sep1034_defaults,
        ),
        (
            "test_elicitation_sep1330_enums",
            "Elicits a form with every enum variant (SEP-1330)",
            no_args,
            elicitation_sep1330_enums,
        ),
        (
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                    }
                },
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                "additionalProperties": False,
            },
            json_schema_2020_12,
        ),
        (
            "test_reconnection",
            "Closes its SSE response stream before answering, to test client resumption (SEP-1699)",
            no_args,
            reconnection,
        ),
        (
            "test_update_watched_resource",
            f"Changes {WATCHED_URI} and notifies the caller if it subscribed",
            {
                "type": "object",
                "properties": {"content": {"type": "string", "description": "New text of the resource"}},
            },
            update_watched_resource,
        ),
    ]
    tools = [types.Tool(name=name, description=desc, input_schema=schema) for name, desc, schema, _ in tool_table]
    tool_handlers: dict[str, ToolHandler] = {name: handler for name, _, _, handler in tool_table}

    async def list_tools(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        handler = tool_handlers.get(params.name)
        if handler is None:
            # An unknown tool is a protocol error (the caller asked for something that does not exist),
            # not a tool failure.
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        return await handler(ctx, params.arguments or {})

    # ---- resources ----------------------------------------------------------------------------------------

    static_resources = [
        types.Resource(
            uri="test://static-text",
            name="static-text",
            description="A static text resource",
            mime_type="text/plain",
        ),
        types.Resource(
            uri="test://static-binary",
            name="static-binary",
            description="A static binary resource (1x1 PNG)",
            mime_type="image/png",
        ),
        types.Resource(
            uri=WATCHED_URI,
            name="watched-resource",
            description="A resource clients can subscribe to; test_update_watched_resource changes it",
            mime_type="text/plain",
        ),
    ]
    template = UriTemplate.parse(TEMPLATE_URI)

    async def list_resources(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=static_resources)

    async def list_resource_templates(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=TEMPLATE_URI,
                    name="template-data",
                    description="JSON data for the item whose id is in the URI",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(ctx: Context, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = params.uri
        contents: types.TextResourceContents | types.BlobResourceContents
        if uri == "test://static-text":
            text = "This is the content of the static text resource."
            contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text=text)
        elif uri == "test://static-binary":
            contents = types.BlobResourceContents(uri=uri, mime_type="image/png", blob=RED_PIXEL_PNG)
        elif uri == WATCHED_URI:
            contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text=watched_resource["text"])
        elif (variables := template.match(uri)) is not None:
            item_id = str(variables["id"])
            data = {"id": item_id, "templateTest": True, "data": f"Data for ID: {item_id}"}
            contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(data))
        else:
            raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
        return types.ReadResourceResult(contents=[contents])

    async def subscribe(ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
        clients.get(ctx).subscriptions.add(params.uri)
        return types.EmptyResult()

    async def unsubscribe(ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        clients.get(ctx).subscriptions.discard(params.uri)
        return types.EmptyResult()

    # ---- prompts ------------------------------------------------------------------------------------------

    prompts = [
        types.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
        types.Prompt(
            name="test_prompt_with_arguments",
            description="A prompt that substitutes two arguments",
            arguments=[
                types.PromptArgument(name="arg1", description="First test argument", required=True),
                types.PromptArgument(name="arg2", description="Second test argument", required=True),
            ],
        ),
        types.Prompt(
            name="test_prompt_with_embedded_resource",
            description="A prompt that embeds a resource",
            arguments=[types.PromptArgument(name="resourceUri", description="URI of the resource", required=True)],
        ),
        types.Prompt(name="test_prompt_with_image", description="A prompt that includes an image"),
    ]
    prompt_arguments = {p.name: [a.name for a in p.arguments or [] if a.required] for p in prompts}

    async def list_prompts(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=prompts)

    async def get_prompt(ctx: Context, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name not in prompt_arguments:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        args = params.arguments or {}
        missing = [name for name in prompt_arguments[params.name] if name not in args]
        if missing:
            raise MCPError(types.INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}")

        def user(content: types.ContentBlock) -> types.PromptMessage:
            return types.PromptMessage(role="user", content=content)

        if params.name == "test_simple_prompt":
            messages = [user(types.TextContent(text="This is a simple prompt for testing."))]
        elif params.name == "test_prompt_with_arguments":
            text = f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"
            messages = [user(types.TextContent(text=text))]
        elif params.name == "test_prompt_with_embedded_resource":
            resource = types.TextResourceContents(
                uri=args["resourceUri"], mime_type="text/plain", text="Embedded resource content for testing."
            )
            messages = [
                user(types.EmbeddedResource(resource=resource)),
                user(types.TextContent(text="Please process the embedded resource above.")),
            ]
        else:
            messages = [
                user(types.ImageContent(data=RED_PIXEL_PNG, mime_type="image/png")),
                user(types.TextContent(text="Please analyze the image above.")),
            ]
        return types.GetPromptResult(messages=messages)

    # ---- utilities ----------------------------------------------------------------------------------------

    suggestions: dict[tuple[str, str], list[str]] = {
        ("test_prompt_with_arguments", "arg1"): ["paris", "park", "party", "test", "testing"],
        ("test_prompt_with_arguments", "arg2"): ["hello", "help", "world", "wonder"],
        (TEMPLATE_URI, "id"): ["1", "12", "123", "1234"],
    }

    async def complete(ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref.name if isinstance(params.ref, types.PromptReference) else params.ref.uri
        candidates = suggestions.get((ref, params.argument.name), [])
        values = [value for value in candidates if value.startswith(params.argument.value)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    async def set_level(ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
        clients.get(ctx).log_level = params.level
        return types.EmptyResult()

    server = ConformanceServer(
        SERVER_NAME,
        version=SERVER_VERSION,
        instructions="Reference server for the MCP conformance suite's server scenarios.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
    )
    # Registered here rather than with on_set_logging_level=, which warns that logging is deprecated in the
    # 2026-07-28 era; handshake-era clients (and this suite) still use it.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    return server


# --------------------------------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------------------------------


def security_settings(host: str) -> TransportSecuritySettings:
    """Accept only loopback names (plus the bind address) in Host and Origin, against DNS rebinding."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        names.append(f"[{host}]" if ":" in host else host)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in names],
        allowed_origins=[f"http://{name}:*" for name in names],
    )


def streamable_http_app(server: ConformanceServer, host: str) -> Starlette:
    """Serve streamable HTTP at `/mcp`, with resumable SSE streams."""
    manager = StreamableHTTPSessionManager(
        app=server,
        event_store=InMemoryEventStore(),
        retry_interval=SSE_RETRY_MS,
        security_settings=security_settings(host),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    # A Route, not a Mount: Starlette answers `POST /mcp` on a Mount with a 307 redirect to `/mcp/`.
    return Starlette(routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan)


def sse_app(server: ConformanceServer, host: str) -> Starlette:
    """Serve the legacy HTTP+SSE transport: `GET /sse` opens the stream, `POST /messages/` carries requests."""
    transport = SseServerTransport("/messages/", security_settings=security_settings(host))

    async def handle_sse(request: Request) -> Response:
        async with transport.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, server.create_initialization_options())
        # The stream has already been answered; Starlette still needs a response object once it closes.
        return Response()

    return Starlette(
        routes=[
            Route("/sse", endpoint=handle_sse, methods=["GET"]),
            Mount("/messages/", app=transport.handle_post_message),
        ]
    )


async def run_stdio(server: ConformanceServer) -> None:
    """Speak newline-delimited JSON-RPC on stdin/stdout."""
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve on the chosen transport until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=("stdio", "http", "sse"), default="http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    transport: Transport = args.transport

    # Logs go to stderr (stdout is the stdio transport's wire). The SDK logs every new session at INFO, which
    # drowns a conformance run; its warnings (rejected Host headers, crashed sessions) still show.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    server = build_server()
    if transport == "stdio":
        anyio.run(run_stdio, server)
        return
    app = streamable_http_app(server, args.host) if transport == "http" else sse_app(server, args.host)
    path = "/mcp" if transport == "http" else "/sse"
    logger.info("serving %s on http://%s:%d%s", transport, args.host, args.port, path)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
