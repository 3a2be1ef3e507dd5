"""Prometheus metrics: one `CollectorRegistry` per gateway (not the process-global one: tests and
embedders run several gateways in one process). Tool-call metrics are fed the same `AuditEvent`
the audit log records, so there is one place that knows a call ended. Upstream states and session
counts are read from the gateway at scrape time, so there is no bookkeeping to get out of step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcp_gateway.audit import AuditEvent

if TYPE_CHECKING:
    from mcp_gateway.upstreams.manager import UpstreamManager

UNKNOWN = "_unknown"
"""Label value for a tool or path the gateway does not know: client input never becomes a label."""
GATEWAY = "_gateway"
"""`upstream` label of calls the gateway answers itself (search and code mode meta tools, unknown tools)."""

# Tool calls span sub-millisecond local tools to minute-long upstream jobs.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own; `endpoint` serves them."""

    def __init__(
        self,
        manager: UpstreamManager,
        clients: Sized,
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
        self.llm_requests = Counter(
            "mcpgw_llm_requests",
            "Model requests (/anthropic, /openai) by provider, model and HTTP status.",
            ["provider", "model", "status"],
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "mcpgw_llm_tokens",
            "Tokens by provider, model and kind (input, output, cache_read, cache_write).",
            ["provider", "model", "kind"],
            registry=self.registry,
        )
        self.llm_duration = Histogram(
            "mcpgw_llm_request_duration_seconds",
            "Time from a model request arriving to its last byte, by provider.",
            ["provider"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.llm_ttfb = Histogram(
            "mcpgw_llm_time_to_first_byte_seconds",
            "Time from a model request arriving to its first byte out, by provider.",
            ["provider"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_GatewayCollector(manager, clients, invalid_upstreams))
        # Children by label values: one dict lookup per call instead of `labels()`'s lock and checks.
        self._calls: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        self._responses: dict[tuple[str, int], Any] = {}
        self._llm: dict[tuple[str, str, int], Any] = {}

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

    def observe_llm(
        self,
        provider: str | None,
        model: str,
        status: int,
        tokens: Mapping[str, int],
        duration_ms: float,
        ttfb_ms: float | None,
    ) -> None:
        """Count one finished model request; `model` must already be a bounded label (see the LLM gateway)."""
        provider = provider or UNKNOWN
        children = self._llm.get((provider, model, status))
        if children is None:
            children = self._llm[(provider, model, status)] = (
                self.llm_requests.labels(provider, model, str(status)),
                {kind: self.llm_tokens.labels(provider, model, kind) for kind in tokens},
                self.llm_duration.labels(provider),
                self.llm_ttfb.labels(provider),
            )
        requests, token_counters, duration, ttfb = children
        requests.inc()
        for kind, count in tokens.items():
            if count:
                token_counters[kind].inc(count)
        duration.observe(duration_ms / 1000)
        if ttfb_ms is not None:
            ttfb.observe(ttfb_ms / 1000)

    def http_response(self, path: str, status: int) -> None:
        key = (path, status)
        counter = self._responses.get(key)
        if counter is None:
            counter = self._responses[key] = self.http_requests.labels(path, str(status))
        counter.inc()

    content_type = CONTENT_TYPE_LATEST
    """The media type of `exposition()`, for the face that serves it (`GET /metrics`)."""

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class _GatewayCollector(Collector):
    """Gauges read from the gateway at scrape time."""

    def __init__(self, manager: UpstreamManager, clients: Sized, invalid: Callable[[], Iterable[str]]) -> None:
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
