"""The `mcpgw` command line."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, cast

import anyio
import typer
import uvicorn
from rich.console import Console
from rich.table import Table
from sse_starlette.sse import AppStatus

from mcp_gateway import __version__
from mcp_gateway.config import GatewayConfig, dump_config, load_config, parse_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.importer import read_mcp_servers
from mcp_gateway.upstreams.manager import UpstreamManager

app = typer.Typer(no_args_is_help=True, add_completion=False, help="mcpgw: one MCP endpoint for many MCP servers.")
upstream_app = typer.Typer(no_args_is_help=True, help="Inspect configured upstream servers.")
app.add_typer(upstream_app, name="upstream")

# soft_wrap: an error line must stay one line in CI logs and pipes, not be wrapped at 80 columns.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="MCPGW_CONFIG", help="Path to gateway.yaml.", show_default=True)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Ask a running gateway (e.g. http://127.0.0.1:8080) instead of starting upstreams."),
]

STARTER_CONFIG = """\
# mcpgw configuration. Reference: README.md ("Configuration").
server:
  host: 127.0.0.1
  port: 8080
  name_separator: "-"      # tools appear as <upstream>-<tool>

upstreams:
  # A server started as a child process, spoken to over stdin/stdout:
  # filesystem:
  #   transport: stdio
  #   command: npx
  #   args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
  #   env: {}
  #
  # A remote server over streamable HTTP; ${VAR} is read from the environment:
  # github:
  #   transport: http
  #   url: https://example.internal/mcp
  #   headers:
  #     Authorization: "Bearer ${GITHUB_TOKEN}"
  #   timeout: 60            # seconds per call
  #
  # A legacy HTTP+SSE server:
  # legacy:
  #   transport: sse
  #   url: http://127.0.0.1:9000/sse
"""


def _load(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@app.command()
def version() -> None:
    """Print the mcpgw version."""
    console.print(__version__)


@app.command()
def serve(
    config: ConfigOption = Path("gateway.yaml"),
    host: Annotated[str | None, typer.Option(help="Bind address (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8080).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every HTTP request.")] = False,
    shutdown_grace: Annotated[float, typer.Option(help="Seconds open streams get to finish on shutdown.")] = 3.0,
) -> None:
    """Run the gateway: MCP clients connect to http://HOST:PORT/mcp."""
    from mcp_gateway.app import create_gateway

    _setup_logging(log_level)
    gateway_config = _load(config)
    settings = gateway_config.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    gateway_config = gateway_config.model_copy(update={"server": settings})
    gateway = create_gateway(gateway_config)

    # sse_starlette would end every open event stream on its own timer after a signal, racing
    # the answers below; the gateway decides when streams end.
    cast(Any, AppStatus).disable_automatic_graceful_drain()  # untyped in sse_starlette

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Fail calls that are waiting on upstreams right away (they get an error result)
            # and let those answers go out before open streams are ended.
            gateway.manager.stop()
            with anyio.move_on_after(shutdown_grace):
                while gateway.manager.calls_in_flight():  # noqa: ASYNC110 -- brief poll, shutdown only
                    await anyio.sleep(0.02)
            AppStatus.should_exit = True
            await super().shutdown(sockets)

    uvicorn_config = uvicorn.Config(
        gateway.app,
        host=settings.host,
        port=settings.port,
        # uvloop and httptools roughly halve the event-loop and HTTP-parsing cost of every hop,
        # which is most of what a proxy does (see benchmarks/README.md).
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        log_level=log_level.lower(),
        access_log=access_log,
        timeout_graceful_shutdown=max(1, round(shutdown_grace)),
        lifespan="on",
    )
    console.print(f"mcpgw {__version__}: MCP endpoint http://{settings.host}:{settings.port}/mcp", highlight=False)
    _Server(uvicorn_config).run()


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = Path("gateway.yaml"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter gateway.yaml."""
    if path.exists() and not force:
        errors.print(f"[red]error:[/red] {path} already exists (use --force to overwrite)")
        raise typer.Exit(1)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    console.print(f"wrote {path}; add upstreams, then run: mcpgw serve --config {path}")


@app.command("import")
def import_servers(
    file: Annotated[Path, typer.Argument(help="An mcpServers JSON file (.mcp.json, ~/.claude.json, Cursor, …).")],
    config: ConfigOption = Path("gateway.yaml"),
    replace: Annotated[bool, typer.Option(help="Replace upstreams that already exist under the same name.")] = False,
) -> None:
    """Add the servers from an mcpServers JSON file to gateway.yaml as upstreams."""
    try:
        imported = read_mcp_servers(file.expanduser())
        current = (
            parse_config(config.read_text(encoding="utf-8"), source=str(config), expand=False)
            if config.exists()
            else GatewayConfig()
        )
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    upstreams = dict(current.upstreams)
    added, skipped = [], []
    for name, upstream in imported.items():
        if name in upstreams and not replace:
            skipped.append(name)
            continue
        upstreams[name] = upstream
        added.append(name)
    config.write_text(dump_config(current.model_copy(update={"upstreams": upstreams})), encoding="utf-8")
    console.print(f"imported {len(added)} upstream(s) into {config}: {', '.join(added) or '-'}")
    if skipped:
        console.print(f"kept existing (use --replace to overwrite): {', '.join(skipped)}")


@upstream_app.command("list")
def upstream_list(
    config: ConfigOption = Path("gateway.yaml"), url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Name, transport, state and tool count of every upstream."""
    rows = _fetch_readyz(url)["upstreams"] if url else anyio.run(_probe_upstreams, _load(config))
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("name", "transport", "state", "tools", "prompts", "resources", "error")
    for row in rows:
        state = row["state"]
        color = {"connected": "green", "disabled": "dim"}.get(state, "red")
        table.add_row(
            row["name"],
            row["transport"],
            f"[{color}]{state}[/{color}]",
            str(row["tools"]),
            str(row["prompts"]),
            str(row["resources"]),
            row.get("error") or "",
        )
    console.print(table)


@app.command()
def tools(config: ConfigOption = Path("gateway.yaml"), url: UrlOption = None, as_json: JsonOption = False) -> None:
    """The aggregated tool list, as clients of the gateway see it."""
    listed = anyio.run(_gateway_tools, url) if url else anyio.run(_probe_tools, _load(config))
    if as_json:
        console.print_json(json.dumps(listed))
        return
    table = Table("tool", "title", "description")
    for tool in listed:
        description = (tool.get("description") or "").strip().splitlines()
        table.add_row(tool["name"], tool.get("title") or "", description[0] if description else "")
    console.print(table)
    console.print(f"{len(listed)} tools")


async def _probe(config: GatewayConfig) -> UpstreamManager:
    """Start every upstream once (as `serve` would), so a config can be checked without a gateway."""
    manager = UpstreamManager(config)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        tg.cancel_scope.cancel()
    return manager


async def _probe_upstreams(config: GatewayConfig) -> list[dict[str, Any]]:
    manager = await _probe(config)
    return [dict(c.summary()) for c in manager.connections.values()]


async def _probe_tools(config: GatewayConfig) -> list[dict[str, Any]]:
    manager = await _probe(config)
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in manager.catalog.tools]


def _fetch_readyz(url: str) -> dict[str, Any]:
    import httpx2

    try:
        response = httpx2.get(url.rstrip("/") + "/readyz", timeout=10)
        data: dict[str, Any] = response.json()
        return data
    except (httpx2.HTTPError, ValueError) as exc:
        errors.print(f"[red]error:[/red] cannot reach a gateway at {url}: {exc}")
        raise typer.Exit(1) from None


async def _gateway_tools(url: str) -> list[dict[str, Any]]:
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


def main() -> None:
    app()
