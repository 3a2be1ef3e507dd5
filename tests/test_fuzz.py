"""Property-based fuzzing of /mcp with hypothesis, against a real gateway fronting the lab server (stdio).

Generated: JSON-RPC messages (valid-ish and broken: wrong types for id/method/params, huge and
deeply nested params, unknown methods, batches, notifications, responses, wrong `jsonrpc`) and
raw bodies (random bytes, truncated JSON), sent as POST, GET or DELETE with random Content-Type,
Accept, Mcp-Session-Id, MCP-Protocol-Version, Authorization, x-bf-vk, x-api-key and other headers.

Invariants: no 5xx, no request left hanging, every JSON error body a JSON-RPC error, no ERROR
log record (an unhandled exception included), and an SDK client is still served afterwards.

`MCPGW_FUZZ_EXAMPLES` sets the examples per test: 300 by default so `make test` stays fast; the
nightly run uses `MCPGW_FUZZ_EXAMPLES=10000`. Under CI=true the run is derandomized (repeatable).

The gateway runs in a thread with its own event loop (a blocking portal), so hypothesis can
drive it from a plain synchronous test with a synchronous HTTP client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.from_thread
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningGateway, lab, mcp_client, running_gateway, text_of

EXAMPLES = int(os.environ.get("MCPGW_FUZZ_EXAMPLES", "300"))
# About 30 ms per example on a slow machine, plus start-up; a hang fails far sooner (per-request timeout).
pytestmark = pytest.mark.timeout(120 + EXAMPLES * 0.1)

MAX_BODY = 256 * 1024
"""Small enough that some generated bodies (up to ~300 kB) are refused with 413."""
PROTOCOL_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
# Tools that finish at once by themselves: `slow`, `progress`, server→client requests (sample,
# elicit, ask_roots: a raw HTTP client never answers them), `crash` and the catalog-changing ones
# are left out, because their waiting or effects are their purpose, not a gateway fault.
TOOLS = ["lab-echo", "lab-tool_000", "lab-whoami", "lab-log"]
METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "logging/setLevel",
    "completion/complete",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "sampling/createMessage",
    "roots/list",
    "tasks/get",
    "tasks/list",
]
# What a 2026-07-28 request carries instead of a session (one variant of generated `_meta`).
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "fuzz", "version": "1"},
}
# Headers that change HTTP framing: the client library refuses to send nonsense in them.
FRAMING_HEADERS = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te", "trailer"}

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)


def chance(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(0, 99)) < percent


@st.composite
def params_for(draw: st.DrawFn, method: str) -> Any:
    """Plausible params for `method` most of the time, anything at all otherwise."""
    if chance(draw, 15):
        return draw(json_values)
    shaped: dict[str, Any]
    if method == "tools/call":
        shaped = {
            "name": draw(st.sampled_from(TOOLS)) if chance(draw, 80) else draw(json_scalars),
            "arguments": draw(st.dictionaries(st.sampled_from(["text", "value", "level", "message"]), json_values)),
        }
    elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        uris = ["lab://item/000", "lab://template/000/x", "lab://nope"]
        shaped = {"uri": draw(st.sampled_from(uris)) if chance(draw, 80) else draw(json_scalars)}
    elif method == "prompts/get":
        shaped = {
            "name": draw(st.sampled_from(["lab-prompt_000", "nope"]) | json_scalars),
            "arguments": draw(json_values),
        }
    elif method == "initialize":
        shaped = {
            "protocolVersion": draw(st.sampled_from(PROTOCOL_VERSIONS) | json_scalars),
            "capabilities": draw(json_values),
            "clientInfo": draw(st.fixed_dictionaries({"name": st.text(), "version": st.text()}) | json_values),
        }
    elif method == "logging/setLevel":
        shaped = {"level": draw(st.sampled_from(["debug", "error", "emergency"]) | json_scalars)}
    elif method in ("notifications/cancelled", "notifications/progress"):
        shaped = {"requestId": draw(json_values), "progressToken": draw(json_values), "progress": draw(json_values)}
    else:
        shaped = {"cursor": draw(json_values)} if chance(draw, 30) else {}
    if chance(draw, 40):
        shaped["_meta"] = draw(
            st.just(MODERN_META) | st.fixed_dictionaries({"progressToken": json_values}) | json_values
        )
    return shaped


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """One JSON-RPC message object, valid or broken in one or more places."""
    method = draw(st.sampled_from(METHODS)) if chance(draw, 85) else draw(st.text(max_size=30))
    message: dict[str, Any] = {}
    if chance(draw, 92):
        message["jsonrpc"] = "2.0"
    elif chance(draw, 50):
        message["jsonrpc"] = draw(st.sampled_from(["1.0", "2", 2.0, None, ""]) | json_scalars)
    kind = draw(st.sampled_from(["request"] * 6 + ["notification"] * 2 + ["response", "junk"]))
    if kind == "request":
        message["id"] = draw(st.integers(0, 2**63)) if chance(draw, 80) else draw(st.text(max_size=20) | json_values)
    if kind in ("request", "notification"):
        message["method"] = method if chance(draw, 95) else draw(json_values)
        if chance(draw, 85):
            message["params"] = draw(params_for(method))
    elif kind == "response":
        message["id"] = draw(st.integers(0, 100) | json_values)
        if chance(draw, 50):
            message["result"] = draw(json_values)
        else:
            message["error"] = draw(st.fixed_dictionaries({"code": st.integers(), "message": st.text()}) | json_values)
    else:
        message.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)))
    return message


def _nested(depth: int) -> bytes:
    params = b'{"a": ' * depth + b"1" + b"}" * depth
    return b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": ' + params + b"}"


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.integers(0, 99))
    if shape < 70:
        return json.dumps(draw(messages())).encode()
    if shape < 78:
        return json.dumps(draw(st.lists(messages(), max_size=4))).encode()  # a batch
    if shape < 86:
        text = json.dumps(draw(messages()))
        return text[: draw(st.integers(0, max(0, len(text) - 1)))].encode()  # truncated
    if shape < 90:
        return _nested(draw(st.integers(1, 400)))
    if shape < 94:
        big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        big["params"] = {"name": "lab-echo", "arguments": {"text": "x" * draw(st.integers(10_000, 300_000))}}
        return json.dumps(big).encode()
    return draw(st.binary(max_size=200))


@dataclass
class Probe:
    """One fuzz request; `session` and `credential` are resolved when it is sent."""

    method: str
    body: bytes
    headers: dict[str, str]
    session: str  # "none", "valid" or a literal value
    credential: str  # "none", "valid" or "random"
    credential_header: str = "x-bf-vk"


@st.composite
def probes(draw: st.DrawFn) -> Probe:
    headers: dict[str, str] = {}
    if chance(draw, 95):
        content_types = ["application/json; charset=utf-8", "text/plain", "application/jsonx", "multipart/form-data"]
        random_type = draw(st.sampled_from(content_types) | printable)
        headers["Content-Type"] = "application/json" if chance(draw, 90) else random_type
    if chance(draw, 95):
        accepts = ["application/json", "text/event-stream", "*/*", "application/json;q=0, text/event-stream"]
        random_accept = draw(st.sampled_from(accepts) | printable)
        headers["Accept"] = "application/json, text/event-stream" if chance(draw, 90) else random_accept
    version = draw(st.sampled_from(["none", "none", "2025-11-25", "2026-07-28", "other", "random"]))
    if version == "other":
        headers["MCP-Protocol-Version"] = draw(st.sampled_from(PROTOCOL_VERSIONS))
    elif version == "random":
        headers["MCP-Protocol-Version"] = draw(printable)
    elif version != "none":
        headers["MCP-Protocol-Version"] = version
    for name in ("Authorization", "x-bf-mcp-session-id", "x-bf-mcp-include-clients", "x-bf-mcp-include-tools"):
        if chance(draw, 8):
            headers[name] = draw(printable | st.builds(lambda s: f"Bearer {s}", printable))
    if chance(draw, 5):
        headers["Last-Event-ID"] = draw(printable)
    if chance(draw, 5):
        headers["Origin"] = draw(st.sampled_from(["http://localhost:3000", "https://evil.example.test"]) | printable)
    extra = draw(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True), printable, max_size=3))
    headers.update({k: v for k, v in extra.items() if k.lower() not in FRAMING_HEADERS})
    # The usual case first: hypothesis leans towards the first choice when it simplifies.
    session = draw(st.sampled_from(["valid", "valid", "valid", "valid", "none", "other"]))
    return Probe(
        method=draw(st.sampled_from(["POST"] * 16 + ["GET", "DELETE"])),
        body=draw(bodies()),
        headers=headers,
        session=session if session != "other" else draw(printable) or "-",
        credential=draw(st.sampled_from(["valid", "valid", "valid", "none", "random"])),
        credential_header=draw(st.sampled_from(["x-bf-vk", "authorization", "x-api-key"])),
    )


@dataclass
class Target:
    """The running gateway, the caller's credential, and a session kept open for the probes."""

    portal: anyio.from_thread.BlockingPortal
    gw: RunningGateway
    key: str | None = None
    session_id: str = ""
    seen: dict[int, int] = field(default_factory=dict)

    def credential_headers(self) -> dict[str, str]:
        return {"x-bf-vk": self.key} if self.key else {}

    def open_session(self, http: httpx2.Client) -> None:
        headers = {"Accept": "application/json, text/event-stream", **self.credential_headers()}
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "f", "version": "1"},
            },
        }
        opened = http.post(self.gw.url, json=initialize, headers=headers)
        assert opened.status_code == 200, opened.text
        self.session_id = opened.headers["mcp-session-id"]
        session = {**headers, "Mcp-Session-Id": self.session_id, "MCP-Protocol-Version": "2025-11-25"}
        http.post(self.gw.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)

    def send(self, http: httpx2.Client, probe: Probe) -> None:
        headers = dict(probe.headers)
        if probe.session == "valid":
            headers["Mcp-Session-Id"] = self.session_id
        elif probe.session != "none":
            headers["Mcp-Session-Id"] = probe.session
        if probe.credential == "valid" and self.key:
            value = self.key if probe.credential_header != "authorization" else f"Bearer {self.key}"
            headers = {k: v for k, v in headers.items() if k.lower() != probe.credential_header}
            headers[probe.credential_header] = value
        elif probe.credential == "random":
            headers[probe.credential_header] = "sk-mcpgw-" + probe.session
        headers = {name: value.strip() for name, value in headers.items()}  # h11 refuses edge blanks
        content = probe.body if probe.method == "POST" else None
        with http.stream(probe.method, self.gw.url, content=content, headers=headers) as response:
            streaming_get = probe.method == "GET" and response.status_code == 200
            if not streaming_get:  # the standalone GET stream stays open by design
                response.read()
        self.seen[response.status_code] = self.seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, response.text[:500], probe)
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
            error = response.json().get("error")
            assert isinstance(error, dict), response.text[:500]
            assert isinstance(error.get("code"), int) and isinstance(error.get("message"), str), response.text[:500]
        if probe.method == "DELETE" and probe.session == "valid" and response.status_code == 200:
            self.open_session(http)


@contextlib.contextmanager
def fuzz_target(caplog: pytest.LogCaptureFixture, **options: Any) -> Iterator[Target]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_gateway({"lab": lab()}, max_body_bytes=MAX_BODY, **options)) as gw,
    ):
        # uvicorn's loggers do not propagate to the root logger that caplog watches.
        uvicorn_logger = logging.getLogger("uvicorn")
        uvicorn_logger.addHandler(caplog.handler)
        try:
            yield Target(portal, gw)
        finally:
            uvicorn_logger.removeHandler(caplog.handler)


def run_fuzz(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with httpx2.Client(timeout=httpx2.Timeout(30)) as http:
        target.open_session(http)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=os.environ.get("CI") == "true",
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(probe=probes())
        def probe_gateway(probe: Probe) -> None:
            target.send(http, probe)

        probe_gateway()

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in errors[:5])

    async def normal_call() -> str:
        async with mcp_client(target.gw.url, headers=target.credential_headers()) as client:
            return text_of(await client.call_tool("lab-echo", {"text": "still serving"}))

    assert target.portal.call(normal_call) == "still serving"
    assert sum(target.seen.values()) >= min(EXAMPLES, 100), target.seen
    print(f"fuzz: HTTP statuses {dict(sorted(target.seen.items()))}")  # shown with -s, e.g. in nightly logs


def test_fuzz_open_gateway(caplog: pytest.LogCaptureFixture) -> None:
    with fuzz_target(caplog) as target:
        run_fuzz(target, caplog)


def test_fuzz_gateway_with_enforced_auth(caplog: pytest.LogCaptureFixture) -> None:
    with fuzz_target(caplog, auth={"enforce_auth_on_inference": True}) as target:

        async def create_key() -> str:
            store = target.gw.gateway.store
            assert store is not None
            _, key = await store.create_virtual_key("fuzz", mcp_configs={"lab": ["echo", "tool_000", "whoami", "log"]})
            await target.gw.gateway.sync()
            return key

        target.key = target.portal.call(create_key)
        run_fuzz(target, caplog)
