"""Setting up and running a gateway: `init`, `import`, `serve` and `version`.

These work from the config file alone (see `_state`): `init` writes a starter gateway.yaml,
`import` adds the servers of an mcpServers JSON file to it, and `serve` runs the gateway it
describes, failing fast, in one line, on a bad file or master key rather than with a start-up
traceback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

import anyio
import typer
import uvicorn

from mcp_gateway import __version__
from mcp_gateway.cli import _sse_starlette
from mcp_gateway.cli._output import console, errors, fail
from mcp_gateway.cli._state import ConfigOption, read_config
from mcp_gateway.config import GatewayConfig, dump_config, parse_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.importer import read_mcp_servers

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


def version() -> None:
    """Print the mcpgw version."""
    console.print(__version__)


def serve(
    config: ConfigOption = Path("gateway.yaml"),
    host: Annotated[str | None, typer.Option(help="Bind address (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8080).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every HTTP request.")] = False,
    log_format: Annotated[
        Literal["console", "json"],
        typer.Option(envvar="MCPGW_LOG_FORMAT", help="console (for people) or json (one object per line)."),
    ] = "console",
    shutdown_grace: Annotated[float, typer.Option(help="Seconds open streams get to finish on shutdown.")] = 3.0,
    insecure_admin: Annotated[
        bool, typer.Option(help="Serve the admin API without MCPGW_ADMIN_TOKEN (loopback binds only).")
    ] = False,
) -> None:
    """Run the gateway: MCP clients connect to http://HOST:PORT/mcp."""
    from mcp_gateway.http.app import create_gateway, is_loopback
    from mcp_gateway.http.server_protocol import protocol_class
    from mcp_gateway.tracing import configure_tracing

    _setup_logging(log_level, log_format)
    read_config(config)  # fail fast, with line numbers, on a bad file or an unset ${VAR}
    gateway_config = read_config(config, expand=False)  # references stay references in the store
    settings = gateway_config.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    gateway_config = gateway_config.model_copy(update={"server": settings})
    admin_token = os.environ.get(gateway_config.admin.token_env) or None
    if insecure_admin and not is_loopback(settings.host):
        errors.print(f"[red]error:[/red] --insecure-admin is only allowed on a loopback address, not {settings.host}")
        raise typer.Exit(2)
    _check_master_key(gateway_config)
    gateway = create_gateway(gateway_config, admin_token=admin_token, insecure_admin=insecure_admin)

    # sse_starlette would end every open event stream on its own timer after a signal, racing
    # the answers below; the gateway decides when streams end.
    _sse_starlette.take_over_graceful_drain()

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Fail calls that are waiting on upstreams right away (they get an error result)
            # and let those answers go out before open streams are ended.
            gateway.manager.stop()
            with anyio.move_on_after(shutdown_grace):
                while gateway.manager.calls_in_flight():  # noqa: ASYNC110 -- brief poll, shutdown only
                    await anyio.sleep(0.02)
            _sse_starlette.signal_exit()
            await super().shutdown(sockets)

    uvicorn_config = uvicorn.Config(
        gateway.app,
        host=settings.host,
        port=settings.port,
        # uvloop and httptools roughly halve the event-loop and HTTP-parsing cost of every hop,
        # which is most of what a proxy does (see benchmarks/README.md).
        loop="uvloop" if _has("uvloop") else "asyncio",
        # httptools, with a response's head and body in one write (`http/server_protocol.py`).
        http=protocol_class() or "h11",
        log_level=log_level.lower(),
        log_config=None,  # uvicorn's loggers propagate to ours: one format, redacted, with request ids
        access_log=access_log,
        timeout_graceful_shutdown=max(1, round(shutdown_grace)),
        lifespan="on",
    )
    console.print(f"mcpgw {__version__}: MCP endpoint http://{settings.host}:{settings.port}/mcp", highlight=False)
    tracer_provider = configure_tracing()
    try:
        _Server(uvicorn_config).run()
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # exports the spans still buffered


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


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _setup_logging(level: str, fmt: Literal["console", "json"] = "console") -> None:
    from mcp_gateway.logs import configure_logging

    configure_logging(level, fmt)


def _check_master_key(config: GatewayConfig) -> None:
    """A bad MCPGW_MASTER_KEY or an unsafe key file ends `serve` with one line, not a start-up traceback."""
    from mcp_gateway.http.app import resolve_database_url
    from mcp_gateway.vault import MasterKeyError, default_key_file, load_master_key

    try:
        anyio.run(load_master_key, os.environ, default_key_file(resolve_database_url(config)))
    except (MasterKeyError, ConfigError) as exc:
        fail(exc.message, 1)
