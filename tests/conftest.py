"""Shared helpers: a real gateway on a free port, real upstream processes, the official SDK client."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import asyncpg
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway.config import GatewayConfig
from mcp_gateway.http.app import Gateway, create_gateway
from tests.serving import free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[1]
LAB_SERVER = ROOT / "tests" / "upstreams" / "lab_server.py"
NOTES_SERVER = ROOT / "examples" / "servers" / "notes_server.py"
MEDIA_SERVER = ROOT / "examples" / "servers" / "media_server.py"
CONFORMANCE_SERVER = ROOT / "examples" / "servers" / "conformance_server.py"
NPM_BIN = ROOT / ".cache" / "npm" / "node_modules" / ".bin"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def pg_admin(sql: str) -> None:
    """Run one statement on the local PostgreSQL's `test` database; fail (never skip) when it is down."""
    try:
        connection = await asyncpg.connect(f"{PG_SERVER}/test", timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER}/test ({exc!r}). The PostgreSQL tests need it and never "
            "skip: start the server (CI's machine runs one) and allow trust auth for user postgres.",
            pytrace=False,
        )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database per test: a SQLite file, or a new PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    name = f"mcpgw_{secrets.token_hex(6)}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stdio_upstream(script: Path = LAB_SERVER, **fields: Any) -> dict[str, Any]:
    """Config for an upstream the gateway starts itself; `env` may be passed in `fields`."""
    return {"transport": "stdio", "command": sys.executable, "args": [str(script)], **fields}


def lab(**env: str) -> dict[str, Any]:
    return stdio_upstream(LAB_SERVER, env=dict(env))


@dataclass
class RunningGateway:
    gateway: Gateway
    base_url: str

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"


OPEN_AUTH = {"enforce_auth_on_inference": False}
"""Most tests are about MCP behaviour, not governance: no credentials needed, every upstream global."""

ADMIN_TOKEN = "test-admin-token"


@contextlib.asynccontextmanager
async def running_gateway(
    upstreams: Mapping[str, Any],
    *,
    auth: Mapping[str, Any] | None = None,
    database_url: str | None = None,
    admin_token: str | None = ADMIN_TOKEN,
    cors_origins: list[str] | None = None,
    dedupe: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
    llm: Mapping[str, Any] | None = None,
    port: int | None = None,
    **server: Any,
) -> AsyncIterator[RunningGateway]:
    """Serve a gateway over real HTTP on a free port for the duration of the block.

    Without `auth`, the gateway is open (enforcement off) and upstreams default to
    `allow_on_all_virtual_keys: true`. The store is a fresh SQLite file unless `database_url` is given.
    """
    port = port or free_port()
    if auth is None:
        auth = OPEN_AUTH
        upstreams = {name: {"allow_on_all_virtual_keys": True, **u} for name, u in upstreams.items()}
    config = GatewayConfig.model_validate(
        {
            "server": {"port": port, **server},
            "auth": dict(auth),
            "cors": {"allowed_origins": cors_origins or []},
            "upstreams": dict(upstreams),
            "dedupe": dict(dedupe or {}),
            "limits": dict(limits or {}),
            "llm": dict(llm or {}),
        }
    )
    with tempfile.TemporaryDirectory(prefix="mcpgw-test-") as folder:
        url = database_url or f"sqlite+aiosqlite:///{folder}/mcpgw.db"
        gateway = create_gateway(config, database_url=url, admin_token=admin_token)
        async with _serve(gateway, port) as running:
            yield running


@contextlib.asynccontextmanager
async def _serve(gateway: Gateway, port: int) -> AsyncIterator[RunningGateway]:
    async with serve_asgi(gateway.app, port) as base_url:
        yield RunningGateway(gateway=gateway, base_url=base_url)


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, headers: Mapping[str, str] | None = None, **session_options: Any
) -> AsyncIterator[ClientSession]:
    """The official SDK client, initialized, over streamable HTTP."""
    async with (
        httpx2.AsyncClient(headers=dict(headers or {}), timeout=httpx2.Timeout(30, read=300)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, **session_options) as session,
    ):
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def listening_process(
    argv: Sequence[str | Path], port: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[anyio.abc.Process]:
    """Start `argv` and wait until it accepts connections on `port`; stopped (TERM, then KILL) on the way out."""
    process = await anyio.open_process(
        [str(part) for part in argv], env={**os.environ, **(env or {})}, stdout=None, stderr=None
    )
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    if process.returncode is not None:
                        raise RuntimeError(f"{Path(argv[1]).name} exited with {process.returncode}") from None
                    await anyio.sleep(0.05)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        await process.aclose()


@contextlib.asynccontextmanager
async def upstream_process(
    script: Path, transport: str = "http", env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """Run an example/test server as its own process; yields its endpoint URL once it accepts connections."""
    port = free_port()
    argv = [sys.executable, script, "--transport", transport, "--port", str(port)]
    async with listening_process(argv, port, env):
        path = "/mcp" if transport == "http" else "/sse"
        yield f"http://127.0.0.1:{port}{path}"


def tool_names(result: Any) -> list[str]:
    return [tool.name for tool in result.tools]


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", None) == "text")
