"""A configurable MCP upstream for the gateway's tests.

Everything a gateway test needs to provoke is one tool call away: pagination, cancellation, progress,
``list_changed`` (or a silent tool change: ``add_tool`` with ``notify: false``), server-to-client requests (roots,
sampling, elicitation), log messages, header inspection and a crash. Behaviour is set through environment variables
so a test can shape the upstream without editing code:

==========================  =======  ===============================================================================
variable                    default  effect
==========================  =======  ===============================================================================
``LAB_NAME``                lab      server name in ``serverInfo``
``LAB_TOOL_COUNT``          3        generated tools ``tool_000`` … each echoing its ``value`` argument
``LAB_PROMPT_COUNT``        2        generated prompts ``prompt_000`` … (optional argument ``value``)
``LAB_RESOURCE_COUNT``      2        generated resources ``lab://item/000`` …
``LAB_TEMPLATE_COUNT``      1        generated templates ``lab://template/000/{value}`` …
``LAB_PAGE_SIZE``           0        > 0: every list method returns pages of this size with an opaque ``nextCursor``
``LAB_EVENT_LOG``           (unset)  file that gets ``started <pid>`` on start and ``cancelled <seconds>`` when a
                                     ``slow`` call is cancelled (``<seconds>`` is the argument as sent, JSON-encoded)
==========================  =======  ===============================================================================

Run ``python tests/upstreams/lab_server.py [--transport stdio|http|sse] [--host H] [--port N]`` (stdio by default).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata

_SERVE_DIR = Path(__file__).resolve().parents[2] / "examples" / "servers"
if str(_SERVE_DIR) not in sys.path:  # the transport plumbing is shared with the example servers
    sys.path.insert(0, str(_SERVE_DIR))
from _serve import ListChangedServer, serve  # noqa: E402

RESOURCE_NOT_FOUND = -32002  # the code the MCP spec suggests for an unknown resource URI
LOG_LEVELS: tuple[str, ...] = get_args(types.LoggingLevel)  # ordered debug → emergency
ITEM_URI_PREFIX = "lab://item/"
TEMPLATE_URI_PREFIX = "lab://template/"

Context = ServerRequestContext[Any]
ToolFn = Callable[[Context, Mapping[str, Any]], Awaitable[types.CallToolResult]]
T = TypeVar("T")


class ToolArgumentError(Exception):
    """Bad tool arguments; reported to the caller as an ``isError`` result (the SDK does not validate input)."""


@dataclass(frozen=True)
class LabConfig:
    """The knobs read from the environment (see the module docstring)."""

    name: str = "lab"
    tool_count: int = 3
    prompt_count: int = 2
    resource_count: int = 2
    template_count: int = 1
    page_size: int = 0
    event_log: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LabConfig:
        """Read ``LAB_*`` variables; an unparsable number fails loudly so a misconfigured test is obvious."""
        env = os.environ if env is None else env
        log = env.get("LAB_EVENT_LOG")
        return cls(
            name=env.get("LAB_NAME", "lab"),
            tool_count=int(env.get("LAB_TOOL_COUNT", "3")),
            prompt_count=int(env.get("LAB_PROMPT_COUNT", "2")),
            resource_count=int(env.get("LAB_RESOURCE_COUNT", "2")),
            template_count=int(env.get("LAB_TEMPLATE_COUNT", "1")),
            page_size=int(env.get("LAB_PAGE_SIZE", "0")),
            event_log=Path(log) if log else None,
        )


def _text(text: str, *, is_error: bool = False) -> types.CallToolResult:
    """A one-block text result."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=is_error)


_JSON_TYPE_NAMES: dict[type | tuple[type, ...], str] = {str: "string", int: "integer", (int, float): "number"}


def _arg(args: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch a required argument of the given Python type; JSON booleans never count as numbers."""
    value = args.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ToolArgumentError(f"argument {name!r} is required and must be a {_JSON_TYPE_NAMES.get(kind, kind)}")
    return value


def _schema(**props: str) -> dict[str, Any]:
    """Input schema with the given required ``name=json_type`` properties."""
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in props.items()},
        "required": list(props),
    }


def _echo_tool(name: str, description: str) -> types.Tool:
    """Schema of the generated and runtime-added tools: echo the optional ``value`` argument."""
    return types.Tool(name=name, description=description, input_schema={"type": "object", "properties": {"value": {}}})


class Lab:
    """State and handlers of one lab server; the tool registry is shared by all sessions of the process."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.min_log_level = "debug"
        self.fixed: dict[str, tuple[types.Tool, ToolFn]] = {
            "echo": (
                types.Tool(name="echo", description="Return `text`.", input_schema=_schema(text="string")),
                self.echo,
            ),
            "slow": (
                types.Tool(
                    name="slow",
                    description="Sleep `seconds`, then return 'done'; logs to LAB_EVENT_LOG when cancelled.",
                    input_schema=_schema(seconds="number"),
                ),
                self.slow,
            ),
            "progress": (
                types.Tool(
                    name="progress",
                    description="Send `steps` progress notifications ~10 ms apart, then return 'ok'.",
                    input_schema=_schema(steps="integer"),
                ),
                self.progress,
            ),
            "add_tool": (
                types.Tool(
                    name="add_tool",
                    description="Register an echo tool `name` and send notifications/tools/list_changed "
                    "(unless `notify` is false: a server that changes its tools silently).",
                    input_schema={
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "notify": {"type": "boolean"}},
                        "required": ["name"],
                    },
                ),
                self.add_tool,
            ),
            "remove_tool": (
                types.Tool(
                    name="remove_tool",
                    description="Unregister tool `name` and send notifications/tools/list_changed.",
                    input_schema=_schema(name="string"),
                ),
                self.remove_tool,
            ),
            "ask_roots": (
                types.Tool(name="ask_roots", description="Ask the client for roots/list.", input_schema=_schema()),
                self.ask_roots,
            ),
            "sample": (
                types.Tool(
                    name="sample",
                    description="Ask the client for sampling/createMessage and return the reply text.",
                    input_schema=_schema(prompt="string"),
                ),
                self.sample,
            ),
            "elicit": (
                types.Tool(
                    name="elicit",
                    description='Form elicitation for {"name": string}; returns {"action", "content"} as JSON.',
                    input_schema=_schema(message="string"),
                ),
                self.elicit,
            ),
            "log": (
                types.Tool(
                    name="log",
                    description="Send a notifications/message log entry at `level`.",
                    input_schema=_schema(level="string", message="string"),
                ),
                self.log,
            ),
            "whoami": (
                types.Tool(
                    name="whoami",
                    description="JSON of the HTTP request headers this call arrived with ({} on stdio).",
                    input_schema=_schema(),
                ),
                self.whoami,
            ),
            "crash": (
                types.Tool(name="crash", description="Exit the process immediately (code 3).", input_schema=_schema()),
                self.crash,
            ),
        }
        # Ordered registry of every visible tool; add_tool/remove_tool mutate it.
        self.tools: dict[str, types.Tool] = {
            f"tool_{i:03d}": _echo_tool(f"tool_{i:03d}", f"Generated tool {i}: echoes `value`.")
            for i in range(config.tool_count)
        }
        self.tools.update({name: tool for name, (tool, _fn) in self.fixed.items()})

    # --- helpers ------------------------------------------------------------------------------------------------

    def log_event(self, line: str) -> None:
        """Append one line to ``LAB_EVENT_LOG`` synchronously (safe inside a cancelled scope: no awaits)."""
        if self.config.event_log is not None:
            with self.config.event_log.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def page(self, kind: str, items: list[T], cursor: str | None) -> tuple[list[T], str | None]:
        """Slice ``items`` per ``LAB_PAGE_SIZE``; cursors are opaque base64 of ``kind:offset``."""
        start = 0
        if cursor is not None:
            try:
                cursor_kind, offset = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
                start = int(offset)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise MCPError(types.INVALID_PARAMS, f"Invalid cursor: {cursor!r}") from None
            if cursor_kind != kind or start < 0:
                raise MCPError(types.INVALID_PARAMS, f"Invalid cursor: {cursor!r}")
        size = self.config.page_size
        if size <= 0:
            return items[start:], None
        end = start + size
        next_cursor = base64.urlsafe_b64encode(f"{kind}:{end}".encode()).decode() if end < len(items) else None
        return items[start:end], next_cursor

    # --- list/get handlers --------------------------------------------------------------------------------------

    async def on_list_tools(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        tools, cursor = self.page("tools", list(self.tools.values()), params.cursor if params else None)
        return types.ListToolsResult(tools=tools, next_cursor=cursor)

    async def on_call_tool(self, ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        """Fixed tools run their handler; generated and runtime-added tools echo ``value``."""
        if params.name not in self.tools:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        args = params.arguments or {}
        try:
            if params.name in self.fixed:
                return await self.fixed[params.name][1](ctx, args)
        except ToolArgumentError as exc:
            return _text(f"{params.name}: {exc}", is_error=True)
        value = args.get("value", "")
        return _text(value if isinstance(value, str) else json.dumps(value))

    async def on_list_prompts(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        prompts = [
            types.Prompt(
                name=f"prompt_{i:03d}",
                description=f"Generated prompt {i}.",
                arguments=[types.PromptArgument(name="value", required=False)],
            )
            for i in range(self.config.prompt_count)
        ]
        page, cursor = self.page("prompts", prompts, params.cursor if params else None)
        return types.ListPromptsResult(prompts=page, next_cursor=cursor)

    async def on_get_prompt(self, ctx: Context, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        names = {f"prompt_{i:03d}" for i in range(self.config.prompt_count)}
        if params.name not in names:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        value = (params.arguments or {}).get("value", "")
        message = types.PromptMessage(role="user", content=types.TextContent(text=f"{params.name}: {value}"))
        return types.GetPromptResult(description=f"Generated {params.name}", messages=[message])

    async def on_list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        resources = [
            types.Resource(name=f"item_{i:03d}", uri=f"{ITEM_URI_PREFIX}{i:03d}", mime_type="text/plain")
            for i in range(self.config.resource_count)
        ]
        page, cursor = self.page("resources", resources, params.cursor if params else None)
        return types.ListResourcesResult(resources=page, next_cursor=cursor)

    async def on_list_resource_templates(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        templates = [
            types.ResourceTemplate(
                name=f"template_{i:03d}", uri_template=f"{TEMPLATE_URI_PREFIX}{i:03d}/{{value}}", mime_type="text/plain"
            )
            for i in range(self.config.template_count)
        ]
        page, cursor = self.page("templates", templates, params.cursor if params else None)
        return types.ListResourceTemplatesResult(resource_templates=page, next_cursor=cursor)

    async def on_read_resource(self, ctx: Context, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        """``lab://item/NNN`` → ``item NNN``; ``lab://template/NNN/v`` → ``template NNN: v``."""
        uri = str(params.uri)
        text: str | None = None
        if uri.startswith(ITEM_URI_PREFIX):
            index = uri.removeprefix(ITEM_URI_PREFIX)
            if index.isdigit() and int(index) < self.config.resource_count:
                text = f"item {index}"
        elif uri.startswith(TEMPLATE_URI_PREFIX):
            index, _, value = uri.removeprefix(TEMPLATE_URI_PREFIX).partition("/")
            if index.isdigit() and int(index) < self.config.template_count:
                text = f"template {index}: {value}"
        if text is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="text/plain", text=text)]
        )

    async def on_set_logging_level(self, ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Remember the threshold so ``log`` can show that ``logging/setLevel`` reached the upstream."""
        self.min_log_level = params.level
        return types.EmptyResult()

    # --- fixed tools --------------------------------------------------------------------------------------------

    async def echo(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        return _text(_arg(args, "text", str))

    async def slow(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Sleep; on cancellation (``notifications/cancelled`` cancels the handler's scope) record it, re-raise."""
        seconds = _arg(args, "seconds", (int, float))
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            self.log_event(f"cancelled {json.dumps(seconds)}")
            raise
        return _text("done")

    async def progress(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """``report_progress`` is a no-op when the caller sent no ``progressToken``."""
        steps = _arg(args, "steps", int)
        for step in range(1, steps + 1):
            await ctx.session.report_progress(step, steps, f"step {step}/{steps}")
            await anyio.sleep(0.01)
        return _text("ok")

    async def add_tool(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Register an echo tool; the notification goes on the session's standalone channel (GET stream on HTTP).

        ``notify: false`` skips the notification, like servers that change their tools without saying so.
        """
        name = _arg(args, "name", str)
        if name in self.tools:
            return _text(f"tool {name!r} already exists", is_error=True)
        self.tools[name] = _echo_tool(name, "Added at runtime: echoes `value`.")
        if args.get("notify", True) is not False:
            await ctx.session.send_tool_list_changed()
        return _text("added")

    async def remove_tool(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Unregister any tool (generated, fixed or runtime-added) and notify."""
        name = _arg(args, "name", str)
        if self.tools.pop(name, None) is None:
            return _text(f"no tool {name!r}", is_error=True)
        await ctx.session.send_tool_list_changed()
        return _text("removed")

    async def ask_roots(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """``roots/list`` tied to this call (``related_request_id``), so on HTTP it rides the call's POST stream."""
        try:
            result = await ctx.session.send_request(
                types.ListRootsRequest(),
                types.ListRootsResult,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
            )
        except MCPError as exc:
            return _text(f"roots/list failed: {exc.message}", is_error=True)
        return _text("\n".join(str(root.uri) for root in result.roots))

    async def sample(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """``sampling/createMessage`` tied to this call; returns the reply's text (JSON for non-text content)."""
        prompt = _arg(args, "prompt", str)
        message = types.SamplingMessage(role="user", content=types.TextContent(text=prompt))
        try:
            result = await ctx.session.create_message([message], max_tokens=256, related_request_id=ctx.request_id)
        except MCPError as exc:
            return _text(f"sampling failed: {exc.message}", is_error=True)
        content = result.content
        if isinstance(content, types.TextContent):
            return _text(content.text)
        return _text(content.model_dump_json(by_alias=True, exclude_none=True))

    async def elicit(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Form elicitation for a name; the reply is returned verbatim as ``{"action": …, "content": …}``."""
        message = _arg(args, "message", str)
        schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        try:
            result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        except MCPError as exc:
            return _text(f"elicitation failed: {exc.message}", is_error=True)
        return _text(json.dumps({"action": result.action, "content": result.content}))

    async def log(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Send ``notifications/message`` on this call's stream, unless below the ``logging/setLevel`` threshold."""
        level, message = _arg(args, "level", str), _arg(args, "message", str)
        if level not in LOG_LEVELS:
            return _text(f"unknown level {level!r}; use one of {', '.join(LOG_LEVELS)}", is_error=True)
        if LOG_LEVELS.index(level) < LOG_LEVELS.index(self.min_log_level):
            return _text(f"filtered (below {self.min_log_level})")
        await ctx.session.send_log_message(level, message, logger=self.config.name, related_request_id=ctx.request_id)
        return _text("logged")

    async def whoami(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Headers of the HTTP request carrying this call (the POST, for both HTTP transports); repeats joined."""
        headers: dict[str, str] = {}
        request = ctx.request
        if request is not None and hasattr(request, "headers"):
            for name, value in request.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return _text(json.dumps(headers, sort_keys=True))

    async def crash(self, ctx: Context, args: Mapping[str, Any]) -> types.CallToolResult:
        """Die without replying, like an upstream that segfaults or is OOM-killed mid-call."""
        os._exit(3)

    # --- assembly -----------------------------------------------------------------------------------------------

    def build_server(self) -> ListChangedServer:
        """The SDK server wired to this lab's handlers (advertises ``listChanged`` and ``logging``).

        ``on_set_logging_level`` makes the SDK warn that logging is deprecated in the 2026-07-28 era; the lab
        exists to exercise handshake-era logging, so that one warning is silenced here.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            return ListChangedServer(
                self.config.name,
                version="0.1.0",
                on_list_tools=self.on_list_tools,
                on_call_tool=self.on_call_tool,
                on_list_prompts=self.on_list_prompts,
                on_get_prompt=self.on_get_prompt,
                on_list_resources=self.on_list_resources,
                on_list_resource_templates=self.on_list_resource_templates,
                on_read_resource=self.on_read_resource,
                on_set_logging_level=self.on_set_logging_level,
            )


def build_server(env: Mapping[str, str] | None = None) -> ListChangedServer:
    """A lab server configured from ``env`` (default ``os.environ``), for hosting in-process in tests."""
    return Lab(LabConfig.from_env(env)).build_server()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: record the start in the event log (tests count restarts with it), then serve."""
    lab = Lab(LabConfig.from_env())
    lab.log_event(f"started {os.getpid()}")
    serve(lab.build_server(), argv, default_transport="stdio", default_port=8932)


if __name__ == "__main__":
    main()
