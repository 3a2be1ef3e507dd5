"""Third-party private internals: each is reached through one module that names it, and an
upgrade that removes one fails here (instead of the gateway silently getting slower or less exact).

`upstreams/_httpx2.py` (the pool path of direct calls), `upstreams/_sdk_client.py` (shaping
direct results, sender contexts) and `http/sdk_server.py` (the SDK's server side). For the first
two, each fallback is also exercised: the module is put into its "unavailable" state, as after an
upgrade that removed the internal, and calls must still work, the slower way.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import httpcore2
import httpx2
import mcp.client.session
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage

from mcp_gateway.http import sdk_server
from mcp_gateway.upstreams import _httpx2, _sdk_client
from mcp_gateway.upstreams.direct import DirectHttp
from mcp_gateway.upstreams.progress import ProgressRoutes
from mcp_gateway.upstreams.streams import MergedInbound
from mcp_gateway.upstreams.transports import _DrainingTransport, _plain_pool
from tests.conftest import LAB_SERVER, mcp_client, running_gateway, text_of, upstream_process
from tests.serving import free_port

pytestmark = pytest.mark.anyio


# --- the installed versions still have every internal -------------------------------------------


def test_httpx2_has_every_internal_the_pool_path_uses() -> None:
    gone = _httpx2.missing()
    assert gone == [], f"httpx2 upgrade removed {', '.join(gone)}: update mcp_gateway/upstreams/_httpx2.py"
    assert _httpx2.AVAILABLE


def test_opentelemetry_keeps_the_provider_global_tracing_reads() -> None:
    """`tracing.tracing_configured` reads the API's provider global while no provider is set."""
    from opentelemetry import trace

    from mcp_gateway import tracing

    assert hasattr(trace, tracing.PROVIDER_GLOBAL)
    provider = getattr(trace, tracing.PROVIDER_GLOBAL)
    assert provider is None or provider is trace.get_tracer_provider()


def test_the_sdk_client_has_every_internal_the_upstreams_use() -> None:
    gone = _sdk_client.missing()
    assert gone == [], f"mcp SDK upgrade removed {', '.join(gone)}: update mcp_gateway/upstreams/_sdk_client.py"
    assert _sdk_client.AVAILABLE


async def test_httpx2_internals_still_behave_as_the_pool_path_expects() -> None:
    parser = _httpx2.sse_parser(1024)
    events = [*parser.decode("event: message\r\ndata: {"), *parser.decode('"a": 1}\r\n\r\n'), *parser.flush()]
    assert [(event.event, event.data) for event in events] == [("message", '{"a": 1}')], (
        "httpx2 upgrade changed _SSEParser: update mcp_gateway/upstreams/_httpx2.py"
    )
    with pytest.raises(httpx2.ConnectError), _httpx2.map_httpcore_exceptions():
        raise httpcore2.ConnectError("refused")
    plain = httpx2.AsyncHTTPTransport()
    proxied = httpx2.AsyncHTTPTransport()
    async with httpx2.AsyncClient(transport=plain, mounts={"http://proxied.example": proxied}) as client:
        assert _httpx2.transport_for_url(client, "http://upstream.example/mcp") is plain
        assert _httpx2.transport_for_url(client, "http://proxied.example/mcp") is proxied
        assert isinstance(_httpx2.connection_pool(plain), httpcore2.AsyncConnectionPool)


async def test_the_sdk_runs_handlers_in_the_sender_context_our_read_stream_reports() -> None:
    """Both halves of `last_context`: read off the SDK's streams (`pump`), and read by the SDK's
    dispatcher off ours (`deliver`). Without it, relayed messages lose their exact caller."""
    caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)
    seen: list[tuple[Any, str | None]] = []
    both = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.append((params.data, caller.get()))
        if len(seen) == 2:
            both.set()

    def log(data: str) -> SessionMessage:
        params = {"level": "info", "data": data}
        return SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params=params))

    async with create_client_server_memory_streams() as ((read, write), (_, server_write)):
        inbound = MergedInbound(read, anyio.Event(), ProgressRoutes("t"))
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(inbound.pump)
            async with ClientSession(inbound, write, logging_callback=on_log):
                caller.set("alice")
                await server_write.send(log("through the transport"))
                caller.set("bob")
                await inbound.deliver(log("from a direct call"))
                caller.set(None)
                with anyio.fail_after(5):
                    await both.wait()
            pumps.cancel_scope.cancel()
    assert sorted(seen) == [("from a direct call", "bob"), ("through the transport", "alice")], (
        f"mcp SDK upgrade changed how handlers get the sender's context ({_sdk_client.SENDER_CONTEXT}): "
        "update mcp_gateway/upstreams/_sdk_client.py"
    )


async def test_the_sdk_server_internals_exist() -> None:
    """`http/sdk_server.py` raises `SdkInternalsChanged` at run time; here it fails before a release."""
    try:
        connection = Connection(outbound=object(), protocol_version="2025-06-18")
        session = ServerSession(request_outbound=object(), connection=connection)
        assert sdk_server.connection_of(session) is connection
        sessions = StreamableHTTPSessionManager(app=Server("probe"))
        assert not sdk_server.is_running(sessions)
        async with sessions.run():
            assert sdk_server.is_running(sessions)
            assert sdk_server.open_sessions(sessions) == 0
            assert not await sdk_server.end_session(sessions, "no-such-session")
            assert not sdk_server.session_open_for(sessions, "no-such-session", None)
        assert not sdk_server.is_running(sessions)
    except sdk_server.SdkInternalsChanged as exc:
        pytest.fail(f"mcp SDK upgrade removed a server internal: {exc}")


# --- each fallback works ----------------------------------------------------------------------


@contextlib.contextmanager
def _unavailable(module: ModuleType, owner: object, name: str) -> Iterator[None]:
    """`module` as it loads when `owner.name` is gone; the dependency itself is left intact (it may
    use the internal itself), only our module sees it missing. Reloaded as it was afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delattr(owner, name)
        importlib.reload(module)
    try:
        yield
    finally:
        importlib.reload(module)


class _Answering(httpx2.AsyncHTTPTransport):
    """A plain transport (with a real connection pool, so `_plain_pool` finds one) that answers
    every request itself: a request that reaches it went through the client, not the pool."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(request)
        request_id = json.loads(await request.aread())["id"]
        return httpx2.Response(200, json={"jsonrpc": "2.0", "id": request_id, "result": {"content": []}})


async def _call(direct: DirectHttp) -> dict[str, Any]:
    async def on_message(message: object) -> None:
        raise AssertionError(message)

    direct.protocol_version, direct.session_id = "2025-06-18", "s-1"
    return await direct.request(direct.next_id(), "tools/call", {"name": "t"}, on_message)


async def test_with_httpx2_internals_the_pool_path_is_taken() -> None:
    """The control for the test below: the pool path bypasses the client's transport."""
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens: the pool's connection is refused
    inner = _Answering()
    transport = _DrainingTransport(inner)
    async with httpx2.AsyncClient(transport=transport) as client:
        direct = DirectHttp(client, url, _plain_pool(client, url, transport, None))
        with pytest.raises(httpx2.ConnectError):
            await _call(direct)
    assert inner.seen == []


@pytest.mark.parametrize(
    "internal",
    [
        "httpx2._sse._SSEParser",
        "httpx2._transports.default.map_httpcore_exceptions",
        "httpx2.AsyncClient._transport_for_url",
        "httpx2.AsyncHTTPTransport._pool",
    ],
)
async def test_without_an_httpx2_internal_calls_go_through_the_client(internal: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    inner = _Answering()
    transport = _DrainingTransport(inner)
    async with httpx2.AsyncClient(transport=transport) as client:
        with contextlib.ExitStack() as removed:
            if internal == "httpx2._sse._SSEParser":
                removed.enter_context(_unavailable(_httpx2, importlib.import_module("httpx2._sse"), "_SSEParser"))
            elif internal == "httpx2._transports.default.map_httpcore_exceptions":
                owner = importlib.import_module("httpx2._transports.default")
                removed.enter_context(_unavailable(_httpx2, owner, "map_httpcore_exceptions"))
            else:
                patch = removed.enter_context(pytest.MonkeyPatch.context())
                if internal == "httpx2.AsyncClient._transport_for_url":
                    patch.delattr(httpx2.AsyncClient, "_transport_for_url")
                else:
                    patch.delattr(inner, "_pool")
                    plain_init = httpx2.AsyncHTTPTransport.__init__

                    def init_without_pool(self: httpx2.AsyncHTTPTransport, *args: Any, **kwargs: Any) -> None:
                        plain_init(self, *args, **kwargs)
                        del self._pool

                    patch.setattr(httpx2.AsyncHTTPTransport, "__init__", init_without_pool)
            assert internal in " ".join(_httpx2.missing())
            direct = DirectHttp(client, url, _plain_pool(client, url, transport, None))
        assert await _call(direct) == {"content": []}  # not a refused connection: through the client
    assert len(inner.seen) == 1


@pytest.mark.parametrize("name", ["_clamp_inbound_ttl", "_later_revision_fields"])
async def test_without_an_sdk_result_helper_there_is_no_direct_path(name: str) -> None:
    with _unavailable(_sdk_client, mcp.client.session, name):
        assert f"mcp.client.session.{name}" in _sdk_client.missing()
        async with httpx2.AsyncClient() as client:
            direct = DirectHttp(client, "http://127.0.0.1/mcp")
            direct.protocol_version = "2025-06-18"
            assert not direct.ready


async def test_without_the_sdk_result_helpers_calls_go_through_the_sdk_session() -> None:
    with _unavailable(_sdk_client, mcp.client.session, "_later_revision_fields"):
        async with (
            upstream_process(LAB_SERVER, "http") as url,
            running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
            mcp_client(gw.url) as client,
        ):
            assert not gw.gateway.manager.connections["lab"].calls_directly
            assert text_of(await client.call_tool("lab-echo", {"text": "via the SDK"})) == "via the SDK"
            assert (await client.call_tool("lab-echo", {"text": 3})).is_error


def test_without_the_sdk_sender_context_there_is_none() -> None:
    class Bare:
        pass

    assert _sdk_client.sender_context(Bare()) is None
