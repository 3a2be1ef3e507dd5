"""Logs, metrics and traces of a running gateway: JSON lines with request ids and no secrets, /metrics with
bounded labels, a CLIENT span per upstream request and a `traceparent` header for HTTP upstreams."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import structlog
from mcp import MCPError
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mcp_gateway.config import GatewayConfig
from mcp_gateway.http.app import create_gateway
from mcp_gateway.http.clients import ClientConnections
from mcp_gateway.http.request_context import RequestContextMiddleware
from mcp_gateway.logs import REDACTED, configure_logging, redact_text
from mcp_gateway.metrics import Metrics
from mcp_gateway.upstreams.manager import UpstreamManager
from tests.conftest import (
    LAB_SERVER,
    free_port,
    lab,
    mcp_client,
    running_gateway,
    text_of,
    upstream_process,
)

pytestmark = pytest.mark.anyio

MCPGW = str(Path(sys.executable).parent / "mcpgw")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged during the test, as `mcpgw serve --log-format json --log-level debug` writes it."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("debug", "json", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- logs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("x-bf-vk: sk-mcpgw-AbC_d-9", "x-bf-vk: "),
        ("{'authorization': 'Basic dXNlcjpwYXNz', 'accept': '*/*'}", "'authorization': 'Basic [REDACTED]', 'accept'"),
        ("Authorization: Bearer abc.def/ghi==", "Authorization: Bearer "),
        ("GET /mcp?token=abc123&page=2", "&page=2"),
        ('{"password": "hunter2", "user": "ada"}', '"user": "ada"'),
        ("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2ln was rejected", " was rejected"),
        ("client_secret=s3cr3t; path=/", "; path=/"),
    ],
)
def test_redact_text(text: str, kept: str) -> None:
    redacted = redact_text(text)
    assert REDACTED in redacted
    assert kept in redacted
    for secret in ("sk-mcpgw-AbC_d-9", "dXNlcjpwYXNz", "abc.def", "abc123", "hunter2", "eyJ", "s3cr3t"):
        assert secret not in redacted


def test_ordinary_text_is_left_alone() -> None:
    for text in ("upstream lab: connected (stdio, protocol 2025-11-25, 14 tools)", "max_tokens 5, tokens: 7"):
        assert redact_text(text) == text


def test_secret_keys_and_nested_values_are_redacted(json_logs: io.StringIO) -> None:
    logging.getLogger("mcp_gateway.test").warning(
        "refused %s", "Bearer t0k3n-t0k3n", extra={"headers": {"X-Api-Key": "k3y", "accept": "json"}, "api_key": "k3y"}
    )
    [line] = log_lines(json_logs)
    assert line["message"] == f"refused Bearer {REDACTED}"
    assert line["headers"] == {"X-Api-Key": REDACTED, "accept": "json"}
    assert line["api_key"] == REDACTED
    assert list(line)[:4] == ["timestamp", "level", "logger", "message"]


async def test_each_request_has_an_id_in_its_log_lines_and_response(json_logs: io.StringIO) -> None:
    async with running_gateway({"lab": lab()}) as gw:
        async with mcp_client(gw.url, headers={"X-Request-Id": "req-obs-1"}) as client:
            assert text_of(await client.call_tool("lab-echo", {"text": "hi"})) == "hi"
        async with httpx2.AsyncClient() as http:
            mine = await http.get(f"{gw.base_url}/healthz", headers={"X-Request-Id": "trace:42/../../etc"})
            theirs = await http.get(f"{gw.base_url}/healthz", headers={"X-Request-Id": "abc.DEF_1:2-3"})
    generated = mine.headers["x-request-id"]
    assert generated != "trace:42/../../etc" and len(generated) == 32, "an id that is not a plain token is replaced"
    assert theirs.headers["x-request-id"] == "abc.DEF_1:2-3"
    lines = log_lines(json_logs)
    tagged = [line for line in lines if line.get("request_id") == "req-obs-1"]
    # The MCP SDK logs the call in its session task; it must still be attributed to the request.
    assert any(line["logger"].startswith("mcp.") for line in tagged), [line["message"] for line in tagged][:20]


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_upstream_http_calls_are_not_logged_one_line_each_unless_debugging(level: str) -> None:
    """At the default level the HTTP client libraries stay quiet (4,210 lines for 4,200 calls before)."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.level
    handler = configure_logging(level, "json", stream=stream)
    try:
        async with (
            upstream_process(LAB_SERVER, "http") as url,
            running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
            mcp_client(gw.url) as client,
        ):
            for _ in range(5):
                assert text_of(await client.call_tool("lab-echo", {"text": "hi"})) == "hi"
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        structlog.reset_defaults()
    requests = [line for line in log_lines(stream) if line["message"].startswith("HTTP Request:")]
    if level == "info":
        assert requests == []
    else:
        assert len(requests) >= 5  # the same calls, logged when debugging


async def test_credentials_never_reach_the_logs(json_logs: io.StringIO) -> None:
    bearer = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0." + secrets.token_urlsafe(32)
    in_arguments = "sk-mcpgw-" + secrets.token_urlsafe(32)
    async with running_gateway({"lab": lab()}, auth={"enforce_auth_on_inference": True}) as gw:
        store = gw.gateway.store
        assert store is not None
        _, key = await store.create_virtual_key("obs", mcp_configs={"lab": ["*"]})
        await gw.gateway.sync()
        headers = {"x-bf-vk": key, "Authorization": f"Bearer {bearer}"}
        async with mcp_client(gw.url, headers=headers) as client:
            echoed = await client.call_tool("lab-echo", {"text": f"{in_arguments} and Bearer {bearer}"})
            assert in_arguments in text_of(echoed)
            headers_seen = json.loads(text_of(await client.call_tool("lab-whoami", {})))
        assert headers_seen == {}, "stdio upstreams get no HTTP headers at all"
        async with httpx2.AsyncClient() as http:
            refused = await http.post(gw.url, headers={"x-bf-vk": key + "x"}, json={})
        assert refused.status_code == 401
    output = json_logs.getvalue()
    assert "lab-echo" in output, "the call was logged at debug level"
    assert REDACTED in output, "the arguments were logged, redacted"
    for secret in (key, bearer, in_arguments, key[9:], bearer.rsplit(".", 1)[1]):
        assert secret not in output


async def test_serve_logs_json_lines_uvicorn_included(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(f"server: {{port: {port}}}\nauth: {{enforce_auth_on_inference: false}}\n")
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = await anyio.open_process(
            [MCPGW, "serve", "-c", str(config), "--log-format", "json", "--access-log"],
            cwd=tmp_path,
            stdout=sink,
            stderr=sink,
            env={**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/store.db"},
        )
        try:
            async with httpx2.AsyncClient() as http:
                with anyio.fail_after(30):
                    while True:
                        try:
                            response = await http.get(f"http://127.0.0.1:{port}/healthz?token=s3cr3t")
                            break
                        except httpx2.TransportError:
                            await anyio.sleep(0.1)
            assert response.status_code == 200
        finally:
            process.terminate()
            with anyio.fail_after(15):
                await process.wait()
            await process.aclose()
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "uvicorn.access", "mcp_gateway.http.gateway"} <= loggers, loggers
    [access] = [record for record in records if record["logger"] == "uvicorn.access"]
    assert "token=[REDACTED]" in access["message"] and access["request_id"] == response.headers["x-request-id"]
    assert "s3cr3t" not in log.read_text()


# --- metrics ----------------------------------------------------------------------------------


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name`, keyed by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(base_url: str) -> str:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_count_calls_by_catalog_names_only() -> None:
    typo = "lab-ech0-" + secrets.token_hex(4)
    async with running_gateway({"lab": lab()}, auth={"enforce_auth_on_inference": True}) as gw:
        store = gw.gateway.store
        assert store is not None
        _, key = await store.create_virtual_key("obs", mcp_configs={"lab": ["echo"]})
        await gw.gateway.sync()
        async with mcp_client(gw.url, headers={"x-bf-vk": key}) as client:
            for _ in range(2):
                await client.call_tool("lab-echo", {"text": "hi"})
            assert (await client.call_tool("lab-echo", {})).is_error
            for name in (typo, "lab-whoami"):  # one that does not exist, one this key may not call
                with pytest.raises(MCPError):
                    await client.call_tool(name, {})
            text = await scrape(gw.base_url)  # no credentials needed
            sessions = samples(text, "mcpgw_active_sessions")
    assert typo not in text and "whoami" not in text, "client input never becomes a label value"
    calls = samples(text, "mcpgw_tool_calls_total")
    assert calls == {
        (("outcome", "ok"), ("tool", "echo"), ("upstream", "lab")): 2.0,
        (("outcome", "tool_error"), ("tool", "echo"), ("upstream", "lab")): 1.0,
        (("outcome", "denied"), ("tool", "_unknown"), ("upstream", "_gateway")): 2.0,
    }
    assert samples(text, "mcpgw_tool_call_duration_seconds_count") == {(("upstream", "lab"),): 3.0}
    states = samples(text, "mcpgw_upstream_state")
    assert states[(("state", "connected"), ("upstream", "lab"))] == 1.0
    assert sum(value for labels, value in states.items() if ("upstream", "lab") in labels) == 1.0
    assert {labels[0][1] for labels in states} >= {"connecting", "connected", "disconnected", "disabled", "invalid"}
    assert sessions == {(): 1.0}
    http = samples(text, "mcpgw_http_requests_total")
    assert http[(("path", "/mcp"), ("status", "200"))] >= 5


async def test_metrics_of_meta_tools_and_invalid_upstreams() -> None:
    upstreams = {"lab": lab(), "broken": {"transport": "http", "url": "${MCPGW_TEST_UNSET_URL}"}}
    async with running_gateway(upstreams, tool_mode="search") as gw:
        async with mcp_client(gw.url) as client:
            await client.call_tool("search_tools", {"query": "echo"})
        text = await scrape(gw.base_url)
    calls = samples(text, "mcpgw_tool_calls_total")
    assert calls == {(("outcome", "ok"), ("tool", "search_tools"), ("upstream", "_gateway")): 1.0}
    states = samples(text, "mcpgw_upstream_state")
    assert states[(("state", "invalid"), ("upstream", "broken"))] == 1.0


async def test_responses_are_counted_by_path_even_when_the_app_fails() -> None:
    metrics = Metrics(UpstreamManager(GatewayConfig()), ClientConnections())

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = Starlette(
        routes=[Route("/api/things/{id}", boom), Route("/healthz", lambda request: PlainTextResponse("ok"))],
        middleware=[Middleware(RequestContextMiddleware, metrics=metrics)],
    )
    transport = httpx2.ASGITransport(app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.get("/api/things/42")).status_code == 500
        assert (await http.get("/healthz")).headers["x-request-id"]
        assert (await http.get("/nowhere/" + secrets.token_hex(4))).status_code == 404
    text = generate_latest(metrics.registry).decode()
    assert samples(text, "mcpgw_http_requests_total") == {
        (("path", "/api"), ("status", "500")): 1.0,
        (("path", "/healthz"), ("status", "200")): 1.0,
        (("path", "other"), ("status", "404")): 1.0,
    }


def test_metrics_can_be_turned_off() -> None:
    config = GatewayConfig.model_validate({"metrics": {"enabled": False}})
    gateway = create_gateway(config, database_url="sqlite+aiosqlite:///:memory:")
    paths = {getattr(route, "path", None) for route in gateway.app.routes}
    assert "/metrics" not in paths and "/healthz" in paths


# --- traces -----------------------------------------------------------------------------------


TRACING_PROBE = """
import json, sys
from opentelemetry import trace
from mcp_gateway.tracing import configure_tracing
provider = configure_tracing()
print(json.dumps({"on": provider is not None, "global": trace.get_tracer_provider() is provider,
                  "resource": dict(provider.resource.attributes) if provider else {}}))
if provider:
    provider.shutdown()
"""


@pytest.mark.parametrize(
    ("env", "service"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "mcpgw"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces", "OTEL_SERVICE_NAME": "gw-a"}, "gw-a"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
async def test_tracing_is_configured_from_the_environment(env: dict[str, str], service: str | None) -> None:
    """In a process of its own: the global tracer provider can be set only once per process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = await anyio.run_process([sys.executable, "-c", TRACING_PROBE], env={**clean, **env})
    probe = json.loads(done.stdout)
    assert probe["on"] is (service is not None)
    if service is not None:
        assert probe["global"] and probe["resource"]["service.name"] == service
        assert probe["resource"]["service.version"]


class _Switch(Sampler):
    """Records spans only while a test that wants them runs (the global provider can be set once per process)."""

    on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        chosen = ALWAYS_ON if self.on else ALWAYS_OFF
        return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "test switch"


_SWITCH = _Switch()
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=_SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


def upstream_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.attributes and "mcpgw.upstream" in s.attributes]


async def test_each_upstream_request_is_a_client_span(spans: InMemorySpanExporter) -> None:
    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url) as client:
        spans.clear()  # connecting and listing are traced too; this test is about calls
        await client.call_tool("lab-echo", {"text": "hi"})
        await client.call_tool("lab-echo", {})
    ok, tool_error = upstream_spans(spans)
    assert ok.name == "tools/call echo" and ok.kind is SpanKind.CLIENT
    assert dict(ok.attributes or {}) == {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "echo",
        "mcpgw.upstream": "lab",
        "mcpgw.transport": "stdio",
        "mcpgw.outcome": "ok",
    }
    assert (tool_error.attributes or {})["mcpgw.outcome"] == "tool_error"
    server = next(
        s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER and s.name == "tools/call lab-echo"
    )
    assert ok.parent is not None and ok.parent.span_id == server.context.span_id, "the gateway's span is its parent"


async def test_a_timeout_is_an_outcome(spans: InMemorySpanExporter) -> None:
    async with running_gateway({"lab": {**lab(), "timeout": 0.2}}) as gw, mcp_client(gw.url) as client:
        result = await client.call_tool("lab-slow", {"seconds": 5})
    assert result.is_error
    [span] = [s for s in upstream_spans(spans) if s.name == "tools/call slow"]
    assert (span.attributes or {})["mcpgw.outcome"] == "timeout"
    assert not span.status.is_ok


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_http_upstreams_receive_a_traceparent_header(spans: InMemorySpanExporter, transport: str) -> None:
    async with (
        upstream_process(LAB_SERVER, transport) as url,
        running_gateway({"lab": {"transport": transport, "url": url}}) as gw,
        mcp_client(gw.url) as client,
    ):
        headers = json.loads(text_of(await client.call_tool("lab-whoami", {})))
    [span] = [s for s in upstream_spans(spans) if s.name == "tools/call whoami"]
    assert span.context is not None
    version, trace_id, _parent, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1, "sampled"
    assert trace_id == format(span.context.trace_id, "032x"), "the upstream joins the caller's trace"
