"""What operators see of a running gateway: logs, Prometheus metrics, OpenTelemetry traces.

Logs: every record — ours, uvicorn's, the MCP SDK's — goes through the stdlib root logger into
structlog's `ProcessorFormatter`, so one format (console or JSON) covers everything. Each HTTP
request gets a `request_id` (`RequestContextMiddleware`) that every line logged while serving it
carries, and `redact` runs on every line just before it is rendered, so secrets never reach
the output.

Metrics: one `CollectorRegistry` per gateway (not the process-global one: tests and embedders
run several gateways in one process). Tool-call metrics are fed the same `AuditEvent` the audit
log records, so there is one place that knows a call ended. Upstream states and session counts
are read from the gateway at scrape time, so there is no bookkeeping to get out of step.

Traces: the MCP SDK opens a SERVER span per client message and a CLIENT span per message it
sends, with W3C trace context in `_meta`. We add a CLIENT span per upstream request carrying the
upstream's name (`upstream_span`), and a `traceparent` header on HTTP upstream requests
(`inject_trace_headers`). Without `OTEL_EXPORTER_OTLP_ENDPOINT` the API's no-op tracer is kept.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway import __version__
from mcp_gateway.audit import AuditEvent
from mcp_gateway.errors import UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    import httpx2
    from mcp_types import ClientRequest
    from opentelemetry.sdk.trace import TracerProvider

    from mcp_gateway.clients import ClientConnections
    from mcp_gateway.upstreams.manager import UpstreamManager

LogFormat = Literal["console", "json"]

REDACTED = "[REDACTED]"
UNKNOWN = "_unknown"
"""Label value for a tool or path the gateway does not know: client input never becomes a label."""
GATEWAY = "_gateway"
"""`upstream` label of calls the gateway answers itself (search and code mode meta tools, unknown tools)."""

# --- logs -------------------------------------------------------------------------------------

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_bf_vk",
        "x_api_key",
        "api_key",
        "apikey",
        "token",
        "password",
        "passwd",
        "secret",
    }
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_api_key")
_SECRET_KEYWORDS = r"authorization|x-bf-vk|x-api-key|api[_-]?key|password|secret|token"
_AUTH_SCHEMES = r"(?:bearer|basic|digest|negotiate|token|bot) "  # kept: they tell which kind of credential it was
_SECRET_TEXT = (
    (re.compile(r"sk-mcpgw-[A-Za-z0-9_-]+"), REDACTED),  # a virtual key, wherever it appears
    # A JWT: header and payload are base64url JSON objects, so both start with "ey".
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # A bearer credential (not `Bearer realm="…"` in a challenge: tokens are longer than that).
    (re.compile(r"(\bbearer\s+)(?!realm=)[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE), rf"\1{REDACTED}"),
    # `key: value` and `key=value` pairs, as in a logged header dict, a URL query or exception text.
    (
        re.compile(
            rf"((?:{_SECRET_KEYWORDS})[\"']?\s*[:=]\s*[\"']?(?:{_AUTH_SCHEMES})?+)(?!\[REDACTED\])[^\"'\s,;&}}]+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID_HEADER = b"x-request-id"


def _is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """`text` with virtual keys, bearer tokens, JWTs and `secret=…`-style values replaced by `[REDACTED]`."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:  # a deeper structure in a log line is a mistake; do not spend time on it
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(str(k)) else _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    return value


def redact(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """structlog processor: the values of secret-named keys, and secrets inside any text, become `[REDACTED]`."""
    for key, value in event.items():
        event[key] = REDACTED if _is_secret_key(key) else _redact_value(value)
    return event


def _tidy(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """The fixed fields first, so a line reads the same way every time; uvicorn's ANSI copy of the message dropped."""
    event.pop("color_message", None)
    front = {key: event.pop(key) for key in _FRONT if key in event}
    front.update(event)
    return front


_FRONT = ("timestamp", "level", "logger", "event", "message")


def _add_trace_ids(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """Lets a log line be found from its trace (and back) when tracing is on."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


_HANDLER_MARK = "_mcpgw_handler"


def configure_logging(level: str = "info", fmt: LogFormat = "console", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record (stdlib and structlog) to `stream` (stderr) in one format, redacted.

    Replaces the handler a previous call installed; returns the new one (tests remove it again).
    """
    output = stream or sys.stderr
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[structlog.typing.Processor]
    if fmt == "json":
        # "message" is the key log platforms (Loki, Datadog, Cloud Logging, …) take the text from.
        renderer = [structlog.processors.EventRenamer("message"), _tidy, structlog.processors.JSONRenderer()]
    else:
        renderer = [_tidy, structlog.dev.ConsoleRenderer(colors=output.isatty(), pad_event_to=40)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction: exception messages can quote headers.
            structlog.processors.format_exc_info,
            redact,
            *renderer,
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


class RequestContextMiddleware:
    """Gives each HTTP request a `request_id` (logged with every line, echoed as `X-Request-Id`) and counts it.

    A client's own `X-Request-Id` is kept when it is a plain token (at most 128 of
    `A-Z a-z 0-9 . _ : -`), so ids can be followed across hops; anything else is replaced.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope["headers"]) or uuid.uuid4().hex
        path = _path_label(scope["path"])
        metrics = self.metrics
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID_HEADER, request_id.encode())]
                if metrics is not None:
                    metrics.http_response(path, message["status"])
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                if not started and metrics is not None:
                    metrics.http_response(path, 500)  # Starlette's error middleware, outside us, answers it
                raise


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == _REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None


_PATHS = frozenset({"/mcp", "/healthz", "/readyz", "/metrics"})


def _path_label(path: str) -> str:
    if path in _PATHS:
        return path
    if path == "/api" or path.startswith("/api/"):
        return "/api"  # admin API paths hold ids: one label for all of them
    return "other"


# --- metrics ----------------------------------------------------------------------------------

# Tool calls span sub-millisecond local tools to minute-long upstream jobs.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own; `endpoint` serves them."""

    def __init__(
        self,
        manager: UpstreamManager,
        clients: ClientConnections,
        *,
        gateway_tools: Iterable[str] = (),
        invalid_upstreams: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        """`gateway_tools`: the meta tools the gateway answers itself; `invalid_upstreams`: configured, unstartable."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._gateway_tools = frozenset(gateway_tools)
        self.tool_calls = Counter(
            "mcpgw_tool_calls",
            "Tool calls by upstream, tool and outcome (ok, tool_error, error, denied).",
            ["upstream", "tool", "outcome"],
            registry=self.registry,
        )
        self.tool_call_duration = Histogram(
            "mcpgw_tool_call_duration_seconds",
            "Time from a tools/call arriving to its answer, by upstream.",
            ["upstream"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "mcpgw_http_requests",
            "HTTP responses by path (/mcp, /api, /healthz, /readyz, /metrics, other) and status.",
            ["path", "status"],
            registry=self.registry,
        )
        self.registry.register(_GatewayCollector(manager, clients, invalid_upstreams))
        # Children by label values: one dict lookup per call instead of `labels()`'s lock and checks.
        self._calls: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        self._responses: dict[tuple[str, int], Any] = {}

    def observe(self, event: AuditEvent) -> None:
        """Count one finished tool call (an `AuditLog` observer)."""
        if event.upstream is not None:
            upstream, tool = event.upstream, event.tool or UNKNOWN
        else:
            upstream = GATEWAY
            tool = event.tool if event.tool in self._gateway_tools else UNKNOWN
        key = (upstream, tool, event.outcome)
        counter = self._calls.get(key)
        if counter is None:
            counter = self._calls[key] = self.tool_calls.labels(*key)
        counter.inc()
        if tool is UNKNOWN:
            return  # never ran anywhere: its "duration" would only blur the histogram
        histogram = self._durations.get(upstream)
        if histogram is None:
            histogram = self._durations[upstream] = self.tool_call_duration.labels(upstream)
        histogram.observe(event.duration_ms / 1000)

    def http_response(self, path: str, status: int) -> None:
        key = (path, status)
        counter = self._responses.get(key)
        if counter is None:
            counter = self._responses[key] = self.http_requests.labels(path, str(status))
        counter.inc()

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _GatewayCollector(Collector):
    """Gauges read from the gateway at scrape time."""

    def __init__(
        self, manager: UpstreamManager, clients: ClientConnections, invalid: Callable[[], Iterable[str]]
    ) -> None:
        # Deferred: connection.py imports this module (for `upstream_span`).
        from mcp_gateway.upstreams.connection import UpstreamState

        self._manager = manager
        self._clients = clients
        self._invalid = invalid
        self._states = (*(state.value for state in UpstreamState), "invalid")

    def describe(self) -> Iterator[Metric]:
        """The metric names, for registration (which must not read a gateway still being built)."""
        yield self._states_family()
        yield GaugeMetricFamily("mcpgw_active_sessions", self._SESSIONS_HELP)

    _SESSIONS_HELP = "MCP client sessions the gateway holds open (the ones it can send notifications to)."

    @staticmethod
    def _states_family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "mcpgw_upstream_state",
            "1 for the state each upstream is in, 0 for the others (invalid: configured but cannot start).",
            labels=["upstream", "state"],
        )

    def collect(self) -> Iterator[Metric]:
        states = self._states_family()
        current = {name: c.state.value for name, c in self._manager.connections.items()}
        current.update(dict.fromkeys(self._invalid(), "invalid"))
        for name, now in current.items():
            for state in self._states:
                states.add_metric([name, state], 1.0 if state == now else 0.0)
        yield states
        yield GaugeMetricFamily("mcpgw_active_sessions", self._SESSIONS_HELP, value=len(self._clients))


# --- traces -----------------------------------------------------------------------------------

_tracer = trace.get_tracer("mcpgw", __version__)


def configure_tracing(environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """Export spans over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set.

    The exporter reads the other standard `OTEL_*` variables itself (headers, timeout, …).
    Returns the provider, to be shut down (flushing spans) when the gateway exits; None when
    tracing stays off and the API's no-op tracer is used.
    """
    wanted = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not wanted or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; "mcpgw" only when they name no service.
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "mcpgw"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


class UpstreamCall:
    """One upstream request being traced; `result` notes a tool error in an otherwise good answer."""

    __slots__ = ("outcome", "span")

    def __init__(self, span: trace.Span | None) -> None:
        self.span = span
        self.outcome = "ok"

    def result(self, result: dict[str, Any]) -> dict[str, Any]:
        if self.span is not None and result.get("isError") is True:
            self.outcome = "tool_error"
            self.span.set_status(StatusCode.ERROR)
        return result


_UNTRACED = nullcontext(UpstreamCall(None))


def upstream_span(upstream: str, transport: str, request: ClientRequest) -> AbstractContextManager[UpstreamCall]:
    """A CLIENT span around one request to an upstream, e.g. `tools/call search` on upstream `github`."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # No SDK configured: skip even the API's no-op span (about 10 µs a call). Trace context
        # from the client still flows on through the SDK's own per-message span.
        return _UNTRACED
    return _upstream_span(upstream, transport, request)


@contextmanager
def _upstream_span(upstream: str, transport: str, request: ClientRequest) -> Iterator[UpstreamCall]:
    method = request.method
    target = getattr(getattr(request, "params", None), "name", None)
    attributes: dict[str, str] = {
        "mcp.method.name": method,
        "mcpgw.upstream": upstream,
        "mcpgw.transport": transport,
    }
    if isinstance(target, str):
        attributes["gen_ai.tool.name" if method == "tools/call" else "mcp.target.name"] = target
    name = f"{method} {target}" if isinstance(target, str) else method
    with _tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        call = UpstreamCall(span)
        try:
            yield call
        except BaseException as exc:
            outcome = _outcome(exc)
            span.set_attribute("mcpgw.outcome", outcome)
            if outcome != "cancelled":  # the caller gave up: not the upstream's failure
                span.set_attribute("error.type", outcome if outcome != "error" else type(exc).__qualname__)
                span.set_status(StatusCode.ERROR, str(exc))
            raise
        span.set_attribute("mcpgw.outcome", call.outcome)


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamUnavailable):
        return "unavailable"
    if not isinstance(exc, Exception):
        return "cancelled"
    return "error"


async def inject_trace_headers(request: httpx2.Request) -> None:
    """httpx2 request hook: W3C `traceparent`/`tracestate` headers, so HTTP upstreams join the trace.

    The SDK puts the same context into each message's `_meta`; servers and proxies that only
    read HTTP headers need it there too. With no active span this adds nothing.
    """
    propagate.inject(request.headers)
