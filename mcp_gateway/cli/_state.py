"""The ways a command reaches the state it reads or changes, and the options that say where that state is.

There are five, and each command group uses the one that fits what it touches:

- **The config file** (`read_config`, `--config`): `serve` runs from it; `init` and `import`
  write it.
- **Upstreams started right here** (`probe`): `tools` and `upstream list` without `--url` start
  every upstream once, as `serve` would, so a config can be checked without a gateway.
- **A running gateway's public endpoints** (`--url`): `upstream list --url` reads `/readyz`
  (`fetch_readyz`), `tools --url` lists tools over `/mcp` as a client would (`gateway_tools`,
  with the virtual key in MCPGW_VK). What a client sees, no admin token needed.
- **A running gateway's admin API** (`upstream_action`, MCPGW_ADMIN_TOKEN): `upstream reconnect`
  and `upstream authorize`, because the sessions they act on live only in that process.
- **The store, directly** (`with_store`, `--config` for its database_url): `vk`, `user`, `audit`,
  `creds` and `vault`. These never talk to a gateway: they change the database, and every gateway
  on it notices within a few seconds because it polls the store revision. So they work with the
  gateways stopped, and from any machine that reaches the database. `creds` and `vault rotate`
  go through `with_vault_store`, which also turns vault errors into one error line.

The store and the gateway's app are imported only by the commands that use them: `mcpgw --help`
stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote

import anyio
import typer

from mcp_gateway.cli._output import Failure, errors, fail
from mcp_gateway.config import GatewayConfig, load_config, parse_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.upstreams.manager import UpstreamManager

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported only by the commands that use it
    from mcp_gateway.store import Store

T = TypeVar("T")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="MCPGW_CONFIG", help="Path to gateway.yaml.", show_default=True)
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Ask a running gateway (e.g. http://127.0.0.1:8080) instead of starting upstreams."),
]
StoreConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="MCPGW_CONFIG",
        help="gateway.yaml, read for its database_url (default: ./gateway.yaml if it exists). DATABASE_URL wins.",
        show_default=False,
    ),
]


# --- the config file -----------------------------------------------------------------------------


def read_config(path: Path, *, expand: bool = True) -> GatewayConfig:
    """The config at `path` (`expand=False`: ${VAR} references left as written); a bad file ends the command."""
    try:
        if not expand:
            return parse_config(path.read_text(encoding="utf-8"), source=str(path), expand=False)
        return load_config(path)
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
        raise typer.Exit(2) from None


# --- upstreams started right here ----------------------------------------------------------------


async def probe(config: GatewayConfig, read: Callable[[UpstreamManager], T]) -> T:
    """Start every upstream once (as `serve` would) and `read` what they offer, so a config can be checked
    without a gateway. Read before stopping them: stopped upstreams report nothing."""
    manager = UpstreamManager(config)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        result = read(manager)
        tg.cancel_scope.cancel()
    return result


async def probe_upstreams(config: GatewayConfig) -> list[dict[str, Any]]:
    return await probe(config, lambda manager: [dict(c.summary()) for c in manager.connections.values()])


async def probe_tools(config: GatewayConfig) -> list[dict[str, Any]]:
    return await probe(
        config,
        lambda manager: [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in manager.catalog.tools],
    )


# --- a running gateway: /readyz, /mcp and the admin API ------------------------------------------


def fetch_readyz(url: str) -> dict[str, Any]:
    import httpx2

    try:
        response = httpx2.get(url.rstrip("/") + "/readyz", timeout=10)
        data: dict[str, Any] = response.json()
        return data
    except (httpx2.HTTPError, ValueError) as exc:
        errors.print(f"[red]error:[/red] cannot reach a gateway at {url}: {exc}")
        raise typer.Exit(1) from None


async def gateway_tools(url: str) -> list[dict[str, Any]]:
    """Every tool the gateway at `url` lists over /mcp, as a client with MCPGW_VK (if set) sees them."""
    import httpx2
    import mcp_types as types
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {}
    if token := os.environ.get("MCPGW_VK"):
        headers["Authorization"] = f"Bearer {token}"
    listed: list[dict[str, Any]] = []
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as client,
            streamable_http_client(url.rstrip("/") + "/mcp", http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            cursor = None
            while True:
                page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                listed.extend(t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    return listed
    except Exception as exc:  # top-level CLI boundary: say what failed, no traceback
        errors.print(f"[red]error:[/red] cannot list tools from {url}: {exc}")
        raise typer.Exit(1) from None


def response_detail(response: Any) -> str:
    """The admin API's `detail`, else the HTTP reason, for an error line."""
    try:
        return str(response.json().get("detail", "")) or response.reason_phrase
    except ValueError:
        return str(response.text[:200])


def upstream_action(url: str, name: str, action: str) -> Any:
    """POST /api/mcp/client/NAME/ACTION with the admin token; common failures end the command with a clear line."""
    import httpx2

    token = os.environ.get("MCPGW_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    endpoint = f"{url.rstrip('/')}/api/mcp/client/{quote(name, safe='')}/{action}"
    try:
        response = httpx2.post(endpoint, headers=headers, timeout=30)
    except httpx2.HTTPError as exc:
        fail(f"cannot reach a gateway at {url}: {exc}", 1)
    detail = response_detail(response)
    if response.status_code == 401:
        hint = "is not the gateway's admin token" if token else "is not set"
        fail(f"the gateway refused the request (HTTP 401): MCPGW_ADMIN_TOKEN {hint}", 1)
    if response.status_code == 404 and detail != "Not Found":
        fail(f"no upstream named {name!r} on the gateway at {url} (see `mcpgw upstream list --url {url}`)", 1)
    return response


# --- the store, directly -------------------------------------------------------------------------


def database_url(config: Path | None) -> str | None:
    """The store URL `serve` would use with this config: DATABASE_URL, then `database_url:`, then None (default)."""
    from mcp_gateway.http.app import resolve_database_url

    path = Path("gateway.yaml") if config is None else config
    if config is None and not path.exists():
        return resolve_database_url(GatewayConfig())  # no file is fine here: only database_url is read
    try:
        text = path.read_text(encoding="utf-8")
        # Unexpanded: an unset ${VAR} in some upstream must not stop key management.
        return resolve_database_url(parse_config(text, source=str(path), expand=False))
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror}", 2)
    except ConfigError as exc:
        fail(exc.message, 2)


def with_store(config: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (migrating it if needed), run `work`, close it; store and config problems end the command."""
    from mcp_gateway.store import StoreError, open_store

    url = database_url(config)

    async def run() -> T:
        async with await open_store(url) as store:
            return await work(store)

    try:
        return anyio.run(run)
    except Failure as exc:
        fail(exc.message, exc.code)
    except ConfigError as exc:
        fail(exc.message, 2)
    except StoreError as exc:
        fail(exc.message, 1)


def with_vault_store(config: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    """`with_store`, with vault errors (a bad or wrong master key, an unreadable credential) as one error line."""
    from mcp_gateway.vault import VaultError

    async def guarded(store: Store) -> T:
        try:
            return await work(store)
        except VaultError as exc:
            raise Failure(exc.message, 1) from None

    return with_store(config, guarded)
