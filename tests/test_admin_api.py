"""The admin REST API under /api, against a real gateway: auth, upstreams, virtual keys, audit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import MCPError

from mcp_gateway.config import GatewayConfig
from mcp_gateway.http.api.app import DISABLED_DETAIL
from mcp_gateway.http.app import create_gateway
from mcp_gateway.store import StoreError
from tests.conftest import (
    ADMIN_TOKEN,
    RunningGateway,
    free_port,
    lab,
    mcp_client,
    running_gateway,
    text_of,
    tool_names,
)

pytestmark = pytest.mark.anyio

AUTHORIZED = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENFORCED = {"enforce_auth_on_inference": True}
SECRET = "Bearer secret123"


@contextlib.asynccontextmanager
async def admin(gw: RunningGateway, headers: dict[str, str] | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        base_url=f"{gw.base_url}/api", headers=AUTHORIZED if headers is None else headers, timeout=30
    ) as client:
        yield client


async def wait_for_state(api: httpx2.AsyncClient, name: str, state: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            response = await api.get(f"/mcp/client/{name}")
            body: dict[str, Any] = response.json()
            if body["state"] == state:
                return body
            await anyio.sleep(0.05)


class Notifications:
    """Counts `tools/list_changed` sent to one SDK client; `wait()` returns after the next one."""

    def __init__(self) -> None:
        self._changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._changed.set()

    @property
    def pending(self) -> bool:
        return self._changed.is_set()

    async def wait(self) -> None:
        with anyio.fail_after(30):
            await self._changed.wait()
        self._changed = anyio.Event()


async def mcp_refusal(gw: RunningGateway, key: str) -> tuple[int, str]:
    """A bare tools/list on /mcp with `key`: the HTTP status and the JSON-RPC error message."""
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            gw.url,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    return response.status_code, response.json()["error"]["message"]


def error_locs(response: httpx2.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


# --- auth ----------------------------------------------------------------------------------------


async def test_requests_without_the_admin_token_are_refused() -> None:
    async with running_gateway({}) as gw, admin(gw, headers={}) as api:
        missing = await api.get("/mcp/clients")
        wrong = await api.get("/mcp/clients", headers={"Authorization": "Bearer not-the-token"})
        other_scheme = await api.get("/virtual-keys", headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
        allowed = await api.get("/mcp/clients", headers=AUTHORIZED)
        schema = await api.get("/openapi.json")
    for refused in (missing, wrong, other_scheme):
        assert refused.status_code == 401
        assert "Authorization: Bearer <token>" in refused.json()["detail"]
        assert "MCPGW_ADMIN_TOKEN" in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"
    assert allowed.status_code == 200
    assert allowed.json() == []
    assert schema.status_code == 200


async def test_admin_api_answers_503_when_no_token_is_configured() -> None:
    async with running_gateway({}, admin_token=None) as gw, admin(gw) as api:
        for response in (
            await api.get("/mcp/clients"),
            await api.post("/virtual-keys", json={"name": "x", "mcp_configs": {}}),
            await api.get("/audit", headers={}),
        ):
            assert response.status_code == 503
            assert response.json() == {"detail": DISABLED_DETAIL}


async def test_insecure_mode_serves_the_api_without_a_token() -> None:
    config = GatewayConfig.model_validate({"server": {"port": free_port()}})
    gateway = create_gateway(config, admin_token=None, insecure_admin=True)
    transport = httpx2.ASGITransport(app=gateway.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        response = await http.get("/api/mcp/tools")
    assert response.status_code == 200
    assert response.json() == []


async def test_the_openapi_schema_documents_every_endpoint_and_body() -> None:
    async with running_gateway({}) as gw, admin(gw, headers={}) as api:
        response = await api.get("/openapi.json")
        docs = await api.get("/docs")
    schema = response.json()
    assert schema["servers"] == [{"url": "/api"}]
    paths = schema["paths"]
    expected = {
        "/mcp/clients": {"get", "post"},
        "/mcp/client/{id}": {"get", "put", "delete"},
        "/mcp/client/{id}/reconnect": {"post"},
        "/mcp/tools": {"get"},
        "/virtual-keys": {"get", "post"},
        "/virtual-keys/{id}": {"get", "put", "delete"},
        "/audit": {"get"},
        "/users": {"get"},
        "/users/{id}": {"get", "put"},
        "/credentials": {"get"},
        "/credentials/{credential_id}": {"delete"},
        "/mcp/client/{name}/authorize": {"post"},
        "/me/credentials/{upstream}": {"delete"},
        "/llm": {"get"},
        "/llm/providers/{name}": {"put", "delete"},
        "/llm/routing-rules/{name}": {"put", "delete"},
        "/llm/aliases/{name}": {"put", "delete"},
        "/llm/prices/{name}": {"put", "delete"},
        "/llm/explain": {"post"},
        "/oauth/grants": {"get"},
        "/oauth/grants/{grant_id}": {"delete"},
        "/me/grants": {"get"},
        "/me/grants/{grant_id}": {"delete"},
    }
    assert {path: set(methods) for path, methods in paths.items()} == expected
    models = set(schema["components"]["schemas"])
    for model in ("UpstreamCreate", "UpstreamUpdate", "UpstreamOut", "StdioUpstream", "HttpUpstream", "SseUpstream"):
        assert model in models
    for model in (
        "VirtualKeyCreate",
        "VirtualKeyUpdate",
        "VirtualKeyCreated",
        "VirtualKeyPage",
        "AuditPage",
        "UserOut",
        "LlmSettingsOut",
        "RoutingRule",
        "ProviderConfig",
    ):
        assert model in models
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert docs.status_code == 404


# --- upstreams -----------------------------------------------------------------------------------


async def test_an_upstream_added_and_removed_through_the_api_reaches_connected_clients() -> None:
    notifications = Notifications()
    async with (
        running_gateway({}) as gw,
        admin(gw) as api,
        mcp_client(gw.url, message_handler=notifications) as client,
    ):
        assert tool_names(await client.list_tools()) == []
        created = await api.post(
            "/mcp/clients", json={"name": "lab", "allow_on_all_virtual_keys": True, "config": lab()}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert set(body) == {
            "id",
            "name",
            "transport",
            "state",
            "tools",
            "prompts",
            "resources",
            "error",
            "history",
            "allow_on_all_virtual_keys",
            "source",
            "config",
        }
        assert (body["name"], body["transport"], body["source"]) == ("lab", "stdio", "api")
        assert body["allow_on_all_virtual_keys"] is True

        connected = await wait_for_state(api, "lab", "connected")
        assert connected["tools"] > 0
        assert connected["id"] == body["id"]
        assert (await api.get(f"/mcp/client/{body['id']}")).json()["name"] == "lab"
        listed = (await api.get("/mcp/clients")).json()
        assert [(u["name"], u["state"]) for u in listed] == [("lab", "connected")]
        tools = {t["name"]: t for t in (await api.get("/mcp/tools")).json()}
        assert tools["lab-echo"] == {
            "name": "lab-echo",
            "upstream": "lab",
            "original_name": "echo",
            "title": None,
            "description": "Return `text`.",
        }

        await notifications.wait()
        assert "lab-echo" in tool_names(await client.list_tools())
        assert text_of(await client.call_tool("lab-echo", {"text": "hi"})) == "hi"

        assert (await api.delete(f"/mcp/client/{body['id']}")).status_code == 204
        await notifications.wait()
        assert tool_names(await client.list_tools()) == []
        assert (await api.get("/mcp/client/lab")).status_code == 404
        assert (await api.delete("/mcp/client/lab")).status_code == 404
        assert (await api.get("/mcp/tools")).json() == []


async def test_invalid_upstream_bodies_are_422_naming_the_field() -> None:
    async with running_gateway({}) as gw, admin(gw) as api:

        async def create(body: Any) -> list[list[Any]]:
            return error_locs(await api.post("/mcp/clients", json=body))

        assert ["body", "name"] in await create({"name": "bad name!", "config": lab()})
        assert ["body", "config"] in await create({"name": "x"})
        assert any(loc[-1] == "command" for loc in await create({"name": "x", "config": {"transport": "stdio"}}))
        assert any(loc[-1] == "comand" for loc in await create({"name": "x", "config": {**lab(), "comand": "y"}}))
        assert any("config" in loc for loc in await create({"name": "x", "config": {"transport": "ftp"}}))
        bad_url = {"transport": "http", "url": "ftp://example.com", "headers": {"Authorization": SECRET}}
        response = await api.post("/mcp/clients", json={"name": "x", "config": bad_url})
        assert ["body", "config", "http", "url"] in error_locs(response)
        assert "secret123" not in response.text  # errors never echo the input
        redaction_marker = {"transport": "http", "url": "http://example.com/mcp", "headers": {"X-Key": "***"}}
        assert ["body", "config", "headers", "X-Key"] in await create({"name": "x", "config": redaction_marker})
        not_json = await api.post("/mcp/clients", content=b"{", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 422

        assert (await api.post("/mcp/clients", json={"name": "lab", "config": lab()})).status_code == 201
        assert ["body"] in error_locs(await api.put("/mcp/client/lab", json={}))
        assert any(
            loc[-1] == "timeout"
            for loc in error_locs(await api.put("/mcp/client/lab", json={"config": {**lab(), "timeout": -1}}))
        )
        assert (await api.put("/mcp/client/nope", json={"allow_on_all_virtual_keys": True})).status_code == 404
        assert (await api.get("/mcp/clients")).json()[0]["name"] == "lab"


async def test_a_duplicate_upstream_name_is_409() -> None:
    async with running_gateway({"from_file": lab()}) as gw, admin(gw) as api:
        first = await api.post("/mcp/clients", json={"name": "lab", "config": lab()})
        again = await api.post("/mcp/clients", json={"name": "lab", "config": lab()})
        file_name = await api.post("/mcp/clients", json={"name": "from_file", "config": lab()})
    assert first.status_code == 201
    assert again.status_code == 409
    assert "lab" in again.json()["detail"]
    assert file_name.status_code == 409


async def test_header_and_env_values_are_redacted_unless_they_are_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_API_TEST_TOKEN", "secret123-from-env")
    monkeypatch.delenv("ADMIN_API_TEST_UNSET", raising=False)
    closed = f"http://127.0.0.1:{free_port()}/mcp"
    from_file = {
        "transport": "http",
        "url": closed,
        "headers": {"Authorization": SECRET, "X-Ref": "${ADMIN_API_TEST_TOKEN}", "X-Default": "${NOPE:-fallback}"},
        "connect_timeout": 1,
    }
    seen: list[str] = []
    async with running_gateway({"remote": from_file}) as gw, admin(gw) as api:

        async def call(method: str, url: str, **kwargs: Any) -> httpx2.Response:
            response = await api.request(method, url, **kwargs)
            seen.append(response.text)
            return response

        posted = await call(
            "POST",
            "/mcp/clients",
            json={
                "name": "local",
                "config": lab(LAB_SECRET=SECRET, LAB_REF="${ADMIN_API_TEST_TOKEN}"),
            },
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["config"]["env"] == {"LAB_SECRET": "***", "LAB_REF": "${ADMIN_API_TEST_TOKEN}"}
        remote = (await call("GET", "/mcp/client/remote")).json()
        assert remote["source"] == "config"
        assert remote["config"]["headers"] == {
            "Authorization": "***",
            "X-Ref": "${ADMIN_API_TEST_TOKEN}",
            "X-Default": "${NOPE:-fallback}",
        }

        # A config read from the API can be sent back: "***" keeps the stored secret.
        edited = {**remote["config"], "timeout": 5}
        updated = await call("PUT", f"/mcp/client/{remote['id']}", json={"config": edited})
        assert updated.status_code == 200, updated.text
        assert updated.json()["source"] == "config"
        assert "gateway.yaml" in updated.json()["note"]
        assert updated.json()["config"]["timeout"] == 5
        assert gw.gateway.store is not None
        stored = await gw.gateway.store.get_upstream("remote")
        assert stored is not None
        assert stored.config["headers"]["Authorization"] == SECRET

        unset = await call(
            "POST",
            "/mcp/clients",
            json={
                "name": "unset",
                "config": {"transport": "http", "url": closed, "headers": {"X": "${ADMIN_API_TEST_UNSET}"}},
            },
        )
        assert unset.json()["state"] == "invalid"
        assert "ADMIN_API_TEST_UNSET" in unset.json()["error"]
        assert unset.json()["config"]["headers"] == {"X": "${ADMIN_API_TEST_UNSET}"}
        assert (await call("POST", "/mcp/client/unset/reconnect")).status_code == 409

        for path in (
            "/mcp/clients",
            "/mcp/client/local",
            "/mcp/client/remote",
            "/mcp/tools",
            "/audit",
            "/openapi.json",
        ):
            await call("GET", path)
    assert not [text for text in seen if "secret123" in text]


async def test_reconnect_restarts_the_upstream_and_refuses_disabled_ones(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with running_gateway({}) as gw, admin(gw) as api:
        assert (
            await api.post("/mcp/clients", json={"name": "lab", "config": lab(LAB_EVENT_LOG=str(events))})
        ).status_code == 201
        await wait_for_state(api, "lab", "connected")
        response = await api.post("/mcp/client/lab/reconnect")
        assert response.status_code == 202
        assert response.json()["name"] == "lab"
        with anyio.fail_after(30):
            while events.read_text().count("started") < 2:
                await anyio.sleep(0.05)
        await wait_for_state(api, "lab", "connected")

        off = await api.post("/mcp/clients", json={"name": "off", "config": {**lab(), "enabled": False}})
        assert off.json()["state"] == "disabled"
        refused = await api.post("/mcp/client/off/reconnect")
        assert refused.status_code == 409
        assert "disabled" in refused.json()["detail"]
        assert (await api.post("/mcp/client/nope/reconnect")).status_code == 404


# --- virtual keys --------------------------------------------------------------------------------


async def test_invalid_virtual_key_bodies_are_422_naming_the_field() -> None:
    async with running_gateway({}) as gw, admin(gw) as api:

        async def create(body: Any) -> list[list[Any]]:
            return error_locs(await api.post("/virtual-keys", json=body))

        assert ["body", "name"] in await create({"mcp_configs": {}})
        assert ["body", "mcp_configs"] in await create({"name": "k"})
        assert any("mcp_configs" in loc for loc in await create({"name": "k", "mcp_configs": {"bad-name": ["*"]}}))
        assert ["body", "mcp_configs", "lab", 0] in await create({"name": "k", "mcp_configs": {"lab": [""]}})
        assert ["body", "mcp_configs", "lab"] in await create({"name": "k", "mcp_configs": {"lab": "*"}})
        assert ["body", "user_id"] in await create({"name": "k", "user_id": "ghost", "mcp_configs": {}})

        assert gw.gateway.store is not None
        await gw.gateway.store.set_user_mcp_configs("alice", {})
        owned = await api.post("/virtual-keys", json={"name": "k", "user_id": "alice", "mcp_configs": {}})
        assert owned.status_code == 201
        key_id = owned.json()["id"]
        assert ["body"] in error_locs(await api.put(f"/virtual-keys/{key_id}", json={"active": None}))
        assert ["body", "user_id"] in error_locs(await api.put(f"/virtual-keys/{key_id}", json={"user_id": "ghost"}))
        assert (await api.put("/virtual-keys/nope", json={"active": False})).status_code == 404
        cleared = await api.put(f"/virtual-keys/{key_id}", json={"user_id": None, "description": "ci"})
        assert (cleared.json()["user_id"], cleared.json()["description"], cleared.json()["name"]) == (None, "ci", "k")
        assert (await api.get("/virtual-keys?limit=0")).status_code == 422


async def test_virtual_key_lifecycle_governs_mcp_access(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    notifications = Notifications()
    async with running_gateway({"lab": lab()}, auth=ENFORCED) as gw, admin(gw) as api:
        created = await api.post(
            "/virtual-keys", json={"name": "ci", "description": "CI bot", "mcp_configs": {"lab": ["echo"]}}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        key, key_id = body["key"], body["id"]
        assert key.startswith("sk-mcpgw-")
        assert body["key_prefix"] == key[: len(body["key_prefix"])]
        assert (body["active"], body["mcp_configs"], body["user_id"]) == (True, {"lab": ["echo"]}, None)

        page = await api.get("/virtual-keys")
        one = await api.get(f"/virtual-keys/{key_id}")
        assert page.json()["total"] == 1
        assert [item["id"] for item in page.json()["items"]] == [key_id]
        assert "key" not in one.json()
        assert one.json()["name"] == "ci"
        for response in (page, one):
            assert key not in response.text
            assert key[len(body["key_prefix"]) :] not in response.text

        async with mcp_client(
            gw.url, headers={"Authorization": f"Bearer {key}"}, message_handler=notifications
        ) as client:
            assert tool_names(await client.list_tools()) == ["lab-echo"]
            assert text_of(await client.call_tool("lab-echo", {"text": "one"})) == "one"

            assert not notifications.pending
            widened = await api.put(f"/virtual-keys/{key_id}", json={"mcp_configs": {"lab": ["echo", "tool_*"]}})
            assert widened.status_code == 200
            assert widened.json()["mcp_configs"] == {"lab": ["echo", "tool_*"]}
            assert widened.json()["description"] == "CI bot"  # partial update: the rest is kept
            await notifications.wait()
            assert sorted(tool_names(await client.list_tools())) == [
                "lab-echo",
                "lab-tool_000",
                "lab-tool_001",
                "lab-tool_002",
            ]
            assert "x" in text_of(await client.call_tool("lab-tool_000", {"value": "x"}))
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool("lab-slow", {"seconds": 0})

        disabled = await api.put(f"/virtual-keys/{key_id}", json={"active": False})
        assert disabled.json()["active"] is False
        assert await mcp_refusal(gw, key) == (401, "virtual key is inactive")

        assert (await api.delete(f"/virtual-keys/{key_id}")).status_code == 204
        assert await mcp_refusal(gw, key) == (401, "virtual key not found")
        assert (await api.get(f"/virtual-keys/{key_id}")).status_code == 404
        assert (await api.delete(f"/virtual-keys/{key_id}")).status_code == 404

        audit = await api.get("/audit", params={"virtual_key_id": key_id})
        events = audit.json()["items"]
        assert [(e["identity_mode"], e["upstream"], e["tool"], e["outcome"]) for e in events] == [
            ("vk", None, "lab-slow", "denied"),
            ("vk", "lab", "tool_000", "ok"),
            ("vk", "lab", "echo", "ok"),
        ]
        assert all(e["virtual_key_id"] == key_id and e["subject"] == key_id for e in events)
        assert key not in audit.text
        denied = (await api.get("/audit", params={"virtual_key_id": key_id, "outcome": "denied"})).json()["items"]
        assert [e["tool"] for e in denied] == ["lab-slow"]
        newest = events[0]["id"]
        older = (await api.get("/audit", params={"before_id": newest, "limit": 1})).json()["items"]
        assert [e["id"] for e in older] == [events[1]["id"]]
        assert (await api.get("/audit", params={"outcome": "bogus"})).status_code == 422
    assert key not in caplog.text
    assert ADMIN_TOKEN not in caplog.text


async def test_failures_answer_json_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def store_down(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("database error: OperationalError: disk I/O error")

    async def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    async with running_gateway({}) as gw, admin(gw) as api:
        assert gw.gateway.store is not None
        monkeypatch.setattr(gw.gateway.store, "list_upstreams", store_down)
        monkeypatch.setattr(gw.gateway.store, "list_virtual_keys", bug)
        unavailable = await api.get("/mcp/clients")
        broken = await api.get("/virtual-keys")
    assert unavailable.status_code == 503
    assert unavailable.json() == {"detail": "store unavailable: database error: OperationalError: disk I/O error"}
    assert broken.status_code == 500
    assert broken.json() == {"detail": "internal error in the admin API; see the gateway log"}
    assert "a bug" in caplog.text  # the traceback goes to the log, not to the client
