"""OpenTelemetry traces. The MCP SDK opens a SERVER span per client message and a CLIENT span per
message it sends, with W3C trace context in `_meta`. We add a CLIENT span per upstream request
carrying the upstream's name (`upstream_span`), and a `traceparent` header on HTTP upstream
requests (`inject_trace_headers`). Without `OTEL_EXPORTER_OTLP_ENDPOINT` the API's no-op tracer
is kept. No web framework here: upstream connections depend on this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from mcp_gateway import __version__
from mcp_gateway.errors import UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    import httpx2
    from mcp_types import ClientRequest
    from opentelemetry.sdk.trace import TracerProvider


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


_configured = False
PROVIDER_GLOBAL = "_TRACER_PROVIDER"
"""The OpenTelemetry API's (private) global for the provider `set_tracer_provider` sets; read directly
while it is None, because `get_tracer_provider()` then looks up an environment variable per call.
Without it (an upgrade renamed it), the public call is made every time (`tests/test_private_internals.py`)."""
_READ_GLOBAL = hasattr(trace, PROVIDER_GLOBAL) and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ


def tracing_configured() -> bool:
    """Whether an OpenTelemetry SDK is set up in this process (spans are recorded and exported).

    Asked several times per call on the hot path, so it must cost next to nothing when tracing is
    off; once a provider is set it stays set (the API refuses a second), so a yes is remembered.
    """
    global _configured
    if _configured:
        return True
    if _READ_GLOBAL and getattr(trace, PROVIDER_GLOBAL) is None:
        return False
    _configured = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _configured


def trace_context_active() -> bool:
    """Whether there is a trace context to pass on (a span, or a caller's context attached).

    `propagate.inject` adds nothing without one; checking first spares each upstream request the
    propagators' work (~10 µs) when nothing is traced.
    """
    return bool(otel_context.get_current())


_sdk_tracer = trace.get_tracer("mcp-python-sdk")
"""The MCP SDK's tracer name: the `/mcp` fast path's SERVER spans look exactly like the SDK's."""


def request_span(
    method: str, target: str | None, request_id: object, version: str, meta: Mapping[str, Any] | None
) -> AbstractContextManager[trace.Span | None]:
    """The SERVER span the SDK's `OpenTelemetryMiddleware` makes for a request, for requests the `/mcp`
    fast path answers without the SDK: same name, attributes and parent (the caller's trace context
    in `_meta`). Nothing at all when no OpenTelemetry SDK is configured."""
    if not tracing_configured():
        return nullcontext(None)
    attributes: dict[str, Any] = {
        "mcp.method.name": method,
        "mcp.protocol.version": version,
        "jsonrpc.request.id": str(request_id),
    }
    if method == "tools/call":
        attributes["gen_ai.operation.name"] = "execute_tool"
        if target is not None:
            attributes["gen_ai.tool.name"] = target
    return _sdk_tracer.start_as_current_span(
        f"{method} {target}" if target else method,
        kind=SpanKind.SERVER,
        attributes=attributes,
        context=_trace_context(meta),
        record_exception=False,
        set_status_on_exception=False,
    )


def request_outcome(span: trace.Span | None, answer: Mapping[str, Any]) -> None:
    """Mark a request span as the SDK's middleware marks it: a JSON-RPC error, or a tool error."""
    if span is None:
        return
    error = answer.get("error")
    if isinstance(error, Mapping):
        code = str(error.get("code"))
        span.set_attributes({"error.type": code, "rpc.response.status_code": code})
        span.set_status(StatusCode.ERROR, str(error.get("message", "")))
        return
    result = answer.get("result")
    if isinstance(result, Mapping) and result.get("isError") is True:
        span.set_attribute("error.type", "tool_error")
        span.set_status(StatusCode.ERROR)


def _trace_context(meta: Mapping[str, Any] | None) -> Any:
    """The caller's W3C trace context from `_meta`; None (parent: the ambient context) when it has none."""
    if not meta:
        return None
    try:
        context = propagate.extract(meta)
    except (ValueError, TypeError):
        return None
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def upstream_span(upstream: str, transport: str, request: ClientRequest) -> AbstractContextManager[UpstreamCall]:
    """A CLIENT span around one request to an upstream, e.g. `tools/call search` on upstream `github`."""
    if not tracing_configured():
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
    if trace_context_active():
        propagate.inject(request.headers)
