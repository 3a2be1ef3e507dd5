"""The `mcpgw` command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar, cast
from urllib.parse import quote

import anyio
import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from sse_starlette.sse import AppStatus

from mcp_gateway import __version__
from mcp_gateway.config import UPSTREAM_NAME_PATTERN, GatewayConfig, dump_config, load_config, parse_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.importer import read_mcp_servers
from mcp_gateway.upstreams.manager import UpstreamManager

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported only by the commands that use it
    from mcp_gateway.store import AuditEventRecord, Store, UserRecord, VirtualKeyRecord

app = typer.Typer(no_args_is_help=True, add_completion=False, help="mcpgw: one MCP endpoint for many MCP servers.")
upstream_app = typer.Typer(no_args_is_help=True, help="Inspect configured upstream servers.")
app.add_typer(upstream_app, name="upstream")
vk_app = typer.Typer(no_args_is_help=True, help="Create and manage virtual keys, the credentials MCP clients send.")
app.add_typer(vk_app, name="vk")
audit_app = typer.Typer(no_args_is_help=True, help="Read the audit log of tool calls.")
app.add_typer(audit_app, name="audit")
user_app = typer.Typer(no_args_is_help=True, help="SSO users and key owners: their grants, disable and enable.")
app.add_typer(user_app, name="user")


def _console(*, stderr: bool = False) -> Console:
    """A console as wide as the terminal, or unbounded for a pipe or file: rich would otherwise assume
    80 columns there and fold ids and grants a few characters per line (COLUMNS still wins). soft_wrap: an
    error line stays one line in CI logs and pipes."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, soft_wrap=True, width=_PIPE_WIDTH if piped else None)


_PIPE_WIDTH = 4000
console = _console()
errors = _console(stderr=True)

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


def _load(path: Path, *, expand: bool = True) -> GatewayConfig:
    try:
        if not expand:
            return parse_config(path.read_text(encoding="utf-8"), source=str(path), expand=False)
        return load_config(path)
    except ConfigError as exc:
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _setup_logging(level: str, fmt: Literal["console", "json"] = "console") -> None:
    from mcp_gateway.logs import configure_logging

    configure_logging(level, fmt)


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
    from mcp_gateway.app import create_gateway, is_loopback
    from mcp_gateway.tracing import configure_tracing

    _setup_logging(log_level, log_format)
    _load(config)  # fail fast, with line numbers, on a bad file or an unset ${VAR}
    gateway_config = _load(config, expand=False)  # references stay references in the store
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
        color = {"connected": "green", "disabled": "dim", "connecting": "yellow"}.get(state, "red")
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


def _check_master_key(config: GatewayConfig) -> None:
    """A bad MCPGW_MASTER_KEY or an unsafe key file ends `serve` with one line, not a start-up traceback."""
    from mcp_gateway.app import resolve_database_url
    from mcp_gateway.vault import MasterKeyError, default_key_file, load_master_key

    try:
        anyio.run(load_master_key, os.environ, default_key_file(resolve_database_url(config)))
    except (MasterKeyError, ConfigError) as exc:
        _fail(exc.message, 1)


@upstream_app.command("reconnect")
def upstream_reconnect(
    name: Annotated[str, typer.Argument(help="The upstream's name (see `mcpgw upstream list`).")],
    url: Annotated[str, typer.Option("--url", help="The running gateway.")] = "http://127.0.0.1:8080",
) -> None:
    """Make a running gateway drop an upstream's session and connect again now.

    The admin token is read from MCPGW_ADMIN_TOKEN.
    """
    response = _upstream_action(url, name, "reconnect")
    if response.status_code != 202:
        _fail(f"the gateway at {url} answered HTTP {response.status_code}: {_detail(response)}", 1)
    console.print(f"reconnecting {name!r} on {url}; `mcpgw upstream list --url {url}` shows its state", highlight=False)


@upstream_app.command("authorize")
def upstream_authorize(
    name: Annotated[str, typer.Argument(help="An upstream with `auth: {type: oauth}`.")],
    url: Annotated[str, typer.Option("--url", help="The running gateway.")] = "http://127.0.0.1:8080",
) -> None:
    """Print the consent link for a shared-OAuth upstream; open it once and the upstream connects.

    The admin token is read from MCPGW_ADMIN_TOKEN. The link works once and expires in 10 minutes.
    """
    response = _upstream_action(url, name, "authorize")
    if response.status_code != 200:
        _fail(f"the gateway at {url} answered HTTP {response.status_code}: {_detail(response)}", 1)
    console.print(f"open this link in a browser and sign in for {name!r}:", highlight=False)
    print(response.json()["url"])


def _detail(response: Any) -> str:
    try:
        return str(response.json().get("detail", "")) or response.reason_phrase
    except ValueError:
        return str(response.text[:200])


def _upstream_action(url: str, name: str, action: str) -> Any:
    """POST /api/mcp/client/NAME/ACTION with the admin token; common failures end the command with a clear line."""
    import httpx2

    token = os.environ.get("MCPGW_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    endpoint = f"{url.rstrip('/')}/api/mcp/client/{quote(name, safe='')}/{action}"
    try:
        response = httpx2.post(endpoint, headers=headers, timeout=30)
    except httpx2.HTTPError as exc:
        _fail(f"cannot reach a gateway at {url}: {exc}", 1)
    detail = _detail(response)
    if response.status_code == 401:
        hint = "is not the gateway's admin token" if token else "is not set"
        _fail(f"the gateway refused the request (HTTP 401): MCPGW_ADMIN_TOKEN {hint}", 1)
    if response.status_code == 404 and detail != "Not Found":
        _fail(f"no upstream named {name!r} on the gateway at {url} (see `mcpgw upstream list --url {url}`)", 1)
    return response


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


async def _probe(config: GatewayConfig, read: Callable[[UpstreamManager], T]) -> T:
    """Start every upstream once (as `serve` would) and `read` what they offer, so a config can be checked
    without a gateway. Read before stopping them: stopped upstreams report nothing."""
    manager = UpstreamManager(config)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        result = read(manager)
        tg.cancel_scope.cancel()
    return result


async def _probe_upstreams(config: GatewayConfig) -> list[dict[str, Any]]:
    return await _probe(config, lambda manager: [dict(c.summary()) for c in manager.connections.values()])


async def _probe_tools(config: GatewayConfig) -> list[dict[str, Any]]:
    return await _probe(
        config,
        lambda manager: [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in manager.catalog.tools],
    )


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


# --- governance: virtual keys and the audit log, straight on the store ---------------------------
#
# These commands never talk to a running gateway: they change the store, and every gateway on
# that store notices within a few seconds because it polls the store revision.

T = TypeVar("T")

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
KeyIdArgument = Annotated[str, typer.Argument(metavar="ID", help="The key's id (see `mcpgw vk list`).")]
ALLOW_SYNTAX = "UPSTREAM:TOOL[,TOOL...], e.g. github:create_issue,list_issues or github:* or 'github:get_*'"
AUDIT_FOLLOW_POLL_SECONDS = 1.0
_AUDIT_PAGE = 500
AuditOutcomeChoice = Literal["ok", "tool_error", "error", "denied"]
"""`store.AuditOutcome`, spelled out so that typer can read it without importing the store."""
_OUTCOME_COLORS = {"ok": "green", "tool_error": "yellow", "error": "red", "denied": "magenta"}


class _Failure(Exception):
    """Raised inside a store command to end it with one `error:` line and `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _database_url(config: Path | None) -> str | None:
    """The store URL `serve` would use with this config: DATABASE_URL, then `database_url:`, then None (default)."""
    from mcp_gateway.app import resolve_database_url

    path = Path("gateway.yaml") if config is None else config
    if config is None and not path.exists():
        return resolve_database_url(GatewayConfig())  # no file is fine here: only database_url is read
    try:
        text = path.read_text(encoding="utf-8")
        # Unexpanded: an unset ${VAR} in some upstream must not stop key management.
        return resolve_database_url(parse_config(text, source=str(path), expand=False))
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror}", 2)
    except ConfigError as exc:
        _fail(exc.message, 2)


def _with_store(config: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (migrating it if needed), run `work`, close it; store and config problems end the command."""
    from mcp_gateway.store import StoreError, open_store

    url = _database_url(config)

    async def run() -> T:
        async with await open_store(url) as store:
            return await work(store)

    try:
        return anyio.run(run)
    except _Failure as exc:
        _fail(exc.message, exc.code)
    except ConfigError as exc:
        _fail(exc.message, 2)
    except StoreError as exc:
        _fail(exc.message, 1)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=_json_default))


def _record_json(record: VirtualKeyRecord | AuditEventRecord) -> dict[str, Any]:
    """The same fields as the admin API's bodies; a key record never holds the key itself."""
    return asdict(record)


def _when(value: datetime | None, never: str = "never") -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else never


def _parse_allow(values: Sequence[str]) -> dict[str, list[str]]:
    """`--allow` values → mcp_configs; repeated upstreams merge. Raises _Failure (exit 2) with the reason."""
    configs: dict[str, list[str]] = {}
    for value in values:
        upstream, colon, tools_part = value.partition(":")
        upstream = upstream.strip()
        tools = [tool.strip() for tool in tools_part.split(",")]
        if not colon or not upstream:
            raise _Failure(f"--allow {value!r}: expected {ALLOW_SYNTAX}", 2)
        if not UPSTREAM_NAME_PATTERN.match(upstream):
            raise _Failure(
                f"--allow {value!r}: upstream name {upstream!r} may only contain letters, digits and underscores", 2
            )
        if not all(tools):
            raise _Failure(
                f"--allow {value!r}: name tools or patterns after ':', separated by commas ({upstream}:* for all)", 2
            )
        merged = configs.setdefault(upstream, [])
        merged.extend(tool for tool in tools if tool not in merged)
    return configs


def _allow_summary(configs: Mapping[str, Sequence[str]], *, most: int = 3) -> str:
    if not configs:
        return "-"
    parts = []
    for upstream, tools in configs.items():
        shown = ",".join(tools[:most]) + (f",+{len(tools) - most}" if len(tools) > most else "")
        parts.append(f"{upstream}:{shown or '(none)'}")
    return " ".join(parts)


def _no_such_key(key_id: str) -> _Failure:
    return _Failure(f"no virtual key with id {key_id} (see `mcpgw vk list`)", 1)


@vk_app.command("create")
def vk_create(
    name: Annotated[str, typer.Option("--name", help="A label people recognise, e.g. ci-bot.")],
    description: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Owner's user id (SSO subject), created if unknown; calls count as that user."),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help=f"Grant tools, repeatable: {ALLOW_SYNTAX}. Without it: global upstreams only."),
    ] = None,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a virtual key; the key is printed once and cannot be shown again."""
    if not name.strip():
        _fail("--name must not be empty", 2)
    try:
        configs = _parse_allow(allow or [])
    except _Failure as exc:
        _fail(exc.message, exc.code)

    async def create(store: Store) -> tuple[VirtualKeyRecord, str]:
        # Not `upsert_user`: that records a sign-in (last_seen_at); this user has never signed in.
        if user is not None and await store.get_user(user) is None:
            await store.set_user_mcp_configs(user, {})
        return await store.create_virtual_key(name, description=description, user_id=user, mcp_configs=configs)

    record, key = _with_store(config, create)
    if as_json:
        _print_json({"id": record.id, "key": key} | _record_json(record))
        return
    console.print(f"created virtual key {escape(record.name)} (id {record.id})", highlight=False)
    console.print(key, markup=False, highlight=False)
    console.print(
        "[yellow]This key is shown only now and cannot be shown again: store it securely.[/yellow]", highlight=False
    )
    allows = _allow_summary(record.mcp_configs, most=1_000)
    console.print(
        f"allows: {escape(allows)}" if record.mcp_configs else "allows: only upstreams with allow_on_all_virtual_keys",
        highlight=False,
    )


@vk_app.command("list")
def vk_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many keys, newest first.")] = 100,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Virtual keys, newest first (never the keys themselves)."""

    async def fetch(store: Store) -> tuple[list[VirtualKeyRecord], int]:
        return await store.list_virtual_keys(limit=limit), await store.count_virtual_keys()

    records, total = _with_store(config, fetch)
    if as_json:
        _print_json([_record_json(record) for record in records])
        return
    table = Table(
        # An id is what the other vk commands take: never cut it short, even in an 80-column pipe.
        Column("id", no_wrap=True, min_width=32),
        Column("name", overflow="fold"),
        Column("prefix", no_wrap=True, min_width=13),  # its last characters are the ones that differ
        Column("user", overflow="fold"),
        "active",
        Column("allows", overflow="fold"),
        "last used",
    )
    for record in records:
        table.add_row(
            record.id,
            escape(record.name),
            escape(record.key_prefix) + "…",
            escape(record.user_id or "-"),
            "[green]yes[/green]" if record.active else "[red]no[/red]",
            escape(_allow_summary(record.mcp_configs)),
            _when(record.last_used_at),
        )
    console.print(table)
    console.print(f"{len(records)} of {total} virtual keys" + (" (raise --limit to see more)" if total > limit else ""))


@vk_app.command("show")
def vk_show(
    key_id: KeyIdArgument,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One virtual key in full (never the key itself)."""

    async def fetch(store: Store) -> VirtualKeyRecord:
        record = await store.get_virtual_key(key_id)
        if record is None:
            raise _no_such_key(key_id)
        return record

    record = _with_store(config, fetch)
    if as_json:
        _print_json(_record_json(record))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    allows = "\n".join(f"{up}: {', '.join(tools) or '(nothing)'}" for up, tools in record.mcp_configs.items())
    for label, value in (
        ("id", record.id),
        ("name", escape(record.name)),
        ("description", escape(record.description or "-")),
        ("prefix", escape(record.key_prefix) + "…"),
        ("user", escape(record.user_id or "-")),
        ("active", "[green]yes[/green]" if record.active else "[red]no[/red]"),
        ("allows", escape(allows) or "only upstreams with allow_on_all_virtual_keys"),
        ("created", _when(record.created_at)),
        ("updated", _when(record.updated_at)),
        ("last used", _when(record.last_used_at)),
    ):
        grid.add_row(label, value)
    console.print(grid, highlight=False)


def _set_active(key_id: str, active: bool, config: Path | None) -> None:
    async def update(store: Store) -> VirtualKeyRecord:
        record = await store.update_virtual_key(key_id, active=active)
        if record is None:
            raise _no_such_key(key_id)
        return record

    record = _with_store(config, update)
    console.print(
        f"{'enabled' if active else 'disabled'} virtual key {escape(record.name)} (id {record.id}); "
        f"running gateways apply this within a few seconds",
        highlight=False,
    )


@vk_app.command("disable")
def vk_disable(key_id: KeyIdArgument, config: StoreConfigOption = None) -> None:
    """Refuse a virtual key from now on (it can be enabled again)."""
    _set_active(key_id, False, config)


@vk_app.command("enable")
def vk_enable(key_id: KeyIdArgument, config: StoreConfigOption = None) -> None:
    """Accept a disabled virtual key again."""
    _set_active(key_id, True, config)


@vk_app.command("delete")
def vk_delete(
    key_id: KeyIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: StoreConfigOption = None,
) -> None:
    """Delete a virtual key and its grants for good; clients using it are refused."""

    async def delete(store: Store) -> VirtualKeyRecord:
        record = await store.get_virtual_key(key_id)
        if record is None:
            raise _no_such_key(key_id)
        if not yes:
            if not sys.stdin.isatty():
                raise _Failure("not deleting without confirmation: pass --yes", 2)
            question = f"Delete virtual key {record.name} (id {record.id})?"
            if not await anyio.to_thread.run_sync(lambda: typer.confirm(question, default=False)):
                raise _Failure("not deleted", 1)
        if not await store.delete_virtual_key(key_id):
            raise _no_such_key(key_id)
        return record

    record = _with_store(config, delete)
    console.print(f"deleted virtual key {escape(record.name)} (id {record.id})", highlight=False)


def _caller(event: AuditEventRecord) -> str:
    caller = f"{event.identity_mode} {event.subject}" if event.subject else event.identity_mode
    if event.virtual_key_id and event.virtual_key_id != event.subject:
        caller += f" via vk {event.virtual_key_id}"
    return caller


def _target(event: AuditEventRecord) -> str:
    return "/".join(part for part in (event.upstream, event.tool) if part) or "-"


def _outcome(event: AuditEventRecord) -> str:
    color = _OUTCOME_COLORS.get(event.outcome, "white")
    return f"[{color}]{event.outcome}[/{color}]"


def _audit_table(events: Sequence[AuditEventRecord]) -> Table:
    table = Table(
        "id",
        Column("time (UTC)", no_wrap=True, min_width=19),
        Column("caller", overflow="fold"),
        Column("method", no_wrap=True),
        Column("upstream/tool", overflow="fold"),
        "outcome",
        Column("ms", justify="right"),
        Column("detail", overflow="fold"),
    )
    for event in events:
        table.add_row(
            str(event.id),
            _when(event.ts),
            escape(_caller(event)),
            escape(event.method),
            escape(_target(event)),
            _outcome(event),
            f"{event.duration_ms:.1f}",
            escape(event.detail or ""),
        )
    return table


def _audit_line(event: AuditEventRecord) -> str:
    """One event as one line, for --follow (a table cannot grow once printed)."""
    detail = f"  {escape(event.detail)}" if event.detail else ""
    return (
        f"{event.id:>6}  {_when(event.ts)}  {_outcome(event)}  {escape(_caller(event))}  {escape(event.method)} "
        f"{escape(_target(event))}  {event.duration_ms:.1f} ms{detail}"
    )


async def _audit_between(
    store: Store, after_id: int, before_id: int | None, filters: Mapping[str, Any]
) -> list[AuditEventRecord]:
    """Every matching event with after_id < id < before_id, oldest first, however many there are."""
    found: list[AuditEventRecord] = []
    while True:
        page = await store.list_audit(limit=_AUDIT_PAGE, after_id=after_id, before_id=before_id, **filters)
        found.extend(page)
        if len(page) < _AUDIT_PAGE:
            return found[::-1]
        before_id = page[-1].id


# --- users ---------------------------------------------------------------------------------------

UserIdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The user's id, their SSO subject (see `mcpgw user list`).")
]


def _no_such_user(user_id: str) -> _Failure:
    return _Failure(f"no user with id {user_id} (see `mcpgw user list`)", 1)


@user_app.command("list")
def user_list(config: StoreConfigOption = None, as_json: JsonOption = False) -> None:
    """SSO users and owners of virtual keys, oldest first, with their grants."""
    records = _with_store(config, lambda store: store.list_users())
    if as_json:
        _print_json([asdict(record) for record in records])
        return
    table = Table(
        Column("id", overflow="fold"),
        Column("email", overflow="fold"),
        "active",
        Column("allows", overflow="fold"),
        "last seen",
    )
    for record in records:
        table.add_row(
            escape(record.id),
            escape(record.email or "-"),
            "[green]yes[/green]" if record.active else "[red]no[/red]",
            escape(_allow_summary(record.mcp_configs)),
            _when(record.last_seen_at),
        )
    console.print(table)
    console.print(f"{len(records)} users")


@user_app.command("grant")
def user_grant(
    user_id: UserIdArgument,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help=f"Repeatable: {ALLOW_SYNTAX}. Replaces the user's grants; none: global only."),
    ] = None,
    config: StoreConfigOption = None,
) -> None:
    """Set which tools a user may use (created if they have not signed in yet)."""
    try:
        configs = _parse_allow(allow or [])
    except _Failure as exc:
        _fail(exc.message, exc.code)
    record = _with_store(config, lambda store: store.set_user_mcp_configs(user_id, configs))
    console.print(
        f"user {escape(record.id)} now allows {escape(_allow_summary(record.mcp_configs))}; "
        "running gateways apply this within a few seconds",
        highlight=False,
    )


def _set_user_active(user_id: str, active: bool, config: Path | None) -> None:
    async def update(store: Store) -> UserRecord:
        record = await store.set_user_active(user_id, active)
        if record is None:
            raise _no_such_user(user_id)
        return record

    record = _with_store(config, update)
    console.print(
        f"{'enabled' if active else 'disabled'} user {escape(record.id)}; running gateways apply this within a "
        "few seconds" + ("" if active else " (their open sessions are ended, their keys refused)"),
        highlight=False,
    )


@user_app.command("disable")
def user_disable(user_id: UserIdArgument, config: StoreConfigOption = None) -> None:
    """Refuse a user's SSO tokens and every virtual key they own, and end their open sessions."""
    _set_user_active(user_id, False, config)


@user_app.command("enable")
def user_enable(user_id: UserIdArgument, config: StoreConfigOption = None) -> None:
    """Accept a disabled user again."""
    _set_user_active(user_id, True, config)


@audit_app.command("tail")
def audit_tail(
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="How many of the newest events to show.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (checked every second) until Ctrl-C.")
    ] = False,
    upstream: Annotated[str | None, typer.Option(help="Only events for this upstream.")] = None,
    vk: Annotated[str | None, typer.Option("--vk", help="Only events made with this virtual key id.")] = None,
    outcome: Annotated[AuditOutcomeChoice | None, typer.Option(help="Only events with this outcome.")] = None,
    config: StoreConfigOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON array; with --follow, one JSON object per line.")
    ] = False,
) -> None:
    """The newest audit events, oldest first (like tail); --follow keeps printing new ones."""
    filters: dict[str, Any] = {"upstream": upstream, "virtual_key_id": vk, "outcome": outcome}

    def emit(events: Sequence[AuditEventRecord], first: bool) -> None:
        if as_json and not follow:
            _print_json([_record_json(event) for event in events])
        elif as_json:
            for event in events:
                print(json.dumps(_record_json(event), default=_json_default), flush=True)
        elif follow:
            for event in events:
                console.print(_audit_line(event), highlight=False)
        elif events:
            console.print(_audit_table(events))
        elif first:
            console.print("no audit events" + (" match" if any(filters.values()) else " yet"), highlight=False)

    async def tail(store: Store) -> None:
        recent = await store.list_audit(limit=limit, **filters) if limit else []
        emit(recent[::-1], True)
        if not follow:
            return
        newest = await store.list_audit(limit=1)
        seen = newest[0].id if newest else 0
        while True:
            await anyio.sleep(AUDIT_FOLLOW_POLL_SECONDS)
            # Anchor on the newest id of any event, so a narrow filter never rescans the whole log.
            newest = await store.list_audit(limit=1)
            top = newest[0].id if newest else seen
            if top > seen:
                emit(await _audit_between(store, seen, top + 1, filters), False)
                seen = top

    if follow:
        # Ctrl-C is how --follow ends, also when started with SIGINT ignored (e.g. as a background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _with_store(config, tail)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


# --- the credential vault: stored upstream credentials, and rotating the master key ------------------
#
# `creds` commands only read and delete rows, never decrypt, so they need no master key: revoking
# must work wherever the database is reachable. `vault rotate` needs the current key, found the
# way the gateway finds it (MCPGW_MASTER_KEY, else the key file).

if TYPE_CHECKING:
    from mcp_gateway.vault import CredentialInfo

vault_app = typer.Typer(no_args_is_help=True, help="The credential vault: upstream credentials, encrypted at rest.")
app.add_typer(vault_app, name="vault")
creds_app = typer.Typer(
    no_args_is_help=True, help="Stored per-user upstream credentials: list and revoke them (secrets are never shown)."
)
app.add_typer(creds_app, name="creds")

CredentialKindChoice = Literal["headers", "oauth", "oauth_client"]
"""`vault.CredentialKind`, spelled out so that typer can read it without importing the vault."""
_STATE_COLORS = {"active": "green", "needs_reauth": "yellow"}
IdentityOption = Annotated[
    str | None,
    typer.Option("--identity", help="An identity key: user:SUBJECT, vk:ID, session:HASH, shared or gateway."),
]


def _with_vault_store(config: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    """`_with_store`, with vault errors (a bad or wrong master key, an unreadable credential) as one error line."""
    from mcp_gateway.vault import VaultError

    async def guarded(store: Store) -> T:
        try:
            return await work(store)
        except VaultError as exc:
            raise _Failure(exc.message, 1) from None

    return _with_store(config, guarded)


def _credential_json(info: CredentialInfo) -> dict[str, Any]:
    """A credential's metadata; `CredentialInfo` has no secret to leak."""
    return asdict(info)


@creds_app.command("list")
def creds_list(
    upstream: Annotated[str | None, typer.Option("--upstream", help="Only credentials for this upstream.")] = None,
    identity: IdentityOption = None,
    config: StoreConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stored upstream credentials: whose, for which upstream, and whether they still work (never the secrets)."""
    from datetime import UTC

    from mcp_gateway.vault import list_credentials

    async def fetch(store: Store) -> list[CredentialInfo]:
        return await list_credentials(store, upstream=upstream, identity_key=identity)

    infos = _with_vault_store(config, fetch)
    if as_json:
        _print_json([_credential_json(info) for info in infos])
        return
    if not infos:
        console.print("no stored credentials" + (" match" if upstream or identity else " yet"), highlight=False)
        return
    now = datetime.now(UTC)
    table = Table(
        Column("id", no_wrap=True, min_width=32),  # what `creds revoke` takes: never cut short
        Column("identity", overflow="fold", min_width=10),
        Column("upstream", overflow="fold", min_width=8),
        Column("kind", overflow="fold", min_width=5),
        Column("state", overflow="fold", min_width=6),
        Column("updated", overflow="fold", min_width=10),  # a narrow pipe wraps it after the date
        Column("expires", overflow="fold", min_width=10),
    )
    for info in infos:
        color = _STATE_COLORS.get(info.state, "red")
        expires = _when(info.expires_at, "-")
        if info.expires_at is not None and info.expires_at <= now:
            expires = f"[dim]{expires} (past)[/dim]"
        table.add_row(
            info.id,
            escape(info.identity_key),
            escape(info.upstream),
            escape(info.kind),
            f"[{color}]{escape(info.state)}[/{color}]",
            _when(info.updated_at),
            expires,
        )
    console.print(table)
    console.print(f"{len(infos)} credential(s); times in UTC", highlight=False)


@creds_app.command("revoke")
def creds_revoke(
    credential_id: Annotated[
        str | None,
        typer.Argument(metavar="ID", help="The credential's id (see `mcpgw creds list`).", show_default=False),
    ] = None,
    identity: IdentityOption = None,
    upstream: Annotated[str | None, typer.Option("--upstream", help="With --identity: the upstream.")] = None,
    kind: Annotated[
        CredentialKindChoice | None, typer.Option("--kind", help="With --identity: only this kind (default: all).")
    ] = None,
    config: StoreConfigOption = None,
) -> None:
    """Delete stored credentials: one by ID, or an identity's for an upstream (--identity with --upstream).

    Nothing is decrypted, so no master key is needed. The gateway asks the owner for it again when next needed.
    """
    from mcp_gateway.vault import delete_credential, delete_credentials

    if credential_id is not None and (identity is not None or upstream is not None or kind is not None):
        _fail("give either a credential ID or --identity with --upstream, not both", 2)
    if credential_id is None and (identity is None or upstream is None):
        _fail("say what to revoke: a credential ID, or --identity KEY with --upstream NAME (see `mcpgw creds list`)", 2)

    async def by_id(store: Store, wanted: str) -> str:
        info = await delete_credential(store, wanted)
        if info is None:
            raise _Failure(f"no credential with id {wanted} (see `mcpgw creds list`)", 1)
        return f"revoked the {info.kind} credential of {info.identity_key} for {info.upstream} (id {info.id})"

    async def by_owner(store: Store, owner: str, target: str) -> str:
        count = await delete_credentials(store, owner, target, kind)
        if count == 0:
            what = f"{kind} credential" if kind else "credentials"
            raise _Failure(f"no {what} of {owner} for {target} (see `mcpgw creds list`)", 1)
        return f"revoked {count} credential(s) of {owner} for {target}"

    if credential_id is not None:
        wanted = credential_id
        message = _with_vault_store(config, lambda store: by_id(store, wanted))
    else:
        assert identity is not None and upstream is not None
        owner, target = identity, upstream
        message = _with_vault_store(config, lambda store: by_owner(store, owner, target))
    console.print(escape(message), highlight=False)


_ROTATE_HELP = "\n\n".join(
    (
        "Re-encrypt every stored credential under a new random master key (and a fresh data key).",
        "The current key is found as the gateway finds it: MCPGW_MASTER_KEY, else the key file "
        "(MCPGW_MASTER_KEY_FILE, else master.key next to the SQLite database, else ./.mcpgw/master.key). "
        "All credentials are re-encrypted in one database transaction: a failure or crash leaves the vault "
        "as it was, or fully rotated.",
        "With a key file: the new key is first written to KEYFILE.new (mode 0600), then the database is "
        "re-encrypted, then KEYFILE.new atomically replaces KEYFILE. If the command is stopped between the last "
        "two steps, KEYFILE.new holds the working key (the gateway says so): run the command again to finish.",
        "With MCPGW_MASTER_KEY: the new key is printed once on stdout, before the database changes, and stored "
        "nowhere: set MCPGW_MASTER_KEY to it wherever gateways run.",
        "Running gateways keep the old key in memory: restart them afterwards.",
    )
)


@vault_app.command("rotate", help=_ROTATE_HELP)
def vault_rotate(
    config: StoreConfigOption = None,
    new_key_file: Annotated[
        Path | None,
        typer.Option(
            "--new-key-file",
            help="Write the new master key to this new file (mode 0600) instead: the current key file is left "
            "alone, and with MCPGW_MASTER_KEY nothing is printed.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Re-encrypt every stored credential under a new random master key (and a fresh data key)."""
    from mcp_gateway.vault import MASTER_KEY_ENV, default_key_file

    url = _database_url(config)
    try:
        key_file = default_key_file(url)
    except ConfigError as exc:
        _fail(exc.message, 2)
    from_environment = MASTER_KEY_ENV in os.environ
    target = new_key_file if new_key_file is not None else (None if from_environment else key_file)
    if new_key_file is not None and new_key_file.resolve() == key_file.resolve():
        target = key_file  # the default, spelled out
    elif new_key_file is not None and new_key_file.exists():
        _fail(f"{new_key_file} already exists: --new-key-file must name a new file", 2)

    message = _with_vault_store(config, lambda store: _rotate_vault(store, key_file, target))
    console.print(escape(message), highlight=False)


@vault_app.command("reset")
def vault_reset(
    config: StoreConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete every stored credential.")] = False,
) -> None:
    """For a lost master key: delete every stored credential and the vault's data key.

    People are asked for their credentials again on their next call; shared OAuth upstreams need
    `mcpgw upstream authorize` again. The next start creates a new data key under the current
    master key (MCPGW_MASTER_KEY, or a new key file). Stop the gateway first.
    """
    from mcp_gateway.store.credentials import erase_vault

    if not yes:
        _fail("this deletes every stored credential; run again with --yes if the master key is lost", 2)
    count = _with_store(config, erase_vault)
    console.print(f"deleted {count} credential(s) and the vault's data key; the next start makes a new one")


async def _rotate_vault(store: Store, key_file: Path, target: Path | None) -> str:
    """The steps of `vault rotate`, ordered so that the key that unlocks the vault always exists somewhere."""
    from mcp_gateway.store import StoreError
    from mcp_gateway.vault import (
        MASTER_KEY_ENV,
        MasterKey,
        Vault,
        VaultError,
        WrongMasterKey,
        load_master_key,
        pending_key_file,
        rotate,
    )
    from mcp_gateway.vault.keyfile import replace_key_file, write_key_file

    old = await load_master_key(os.environ, key_file, create=False)
    try:
        await Vault.open(store, old)
    except WrongMasterKey:
        if target is not None and await _finish_interrupted_rotation(store, target):
            return (
                f"finished an interrupted rotation: {target} now holds the master key that unlocks the vault "
                "(nothing was re-encrypted now); restart running gateways"
            )
        raise
    new = MasterKey.generate()
    staged = None if target is None else pending_key_file(target)
    if staged is None:
        console.print("New master key (shown only now; it unlocks the vault once this command succeeds):")
        console.print(new.encode(), markup=False, highlight=False)
        sys.stdout.flush()
    else:
        try:
            await anyio.to_thread.run_sync(write_key_file, staged, new.encode())
        except OSError as exc:
            raise _Failure(f"cannot write the new master key to {staged}: {exc.strerror}; nothing changed") from None
    try:
        count = await rotate(store, old, new)
    except VaultError as exc:  # raised before anything was written: the transaction rolled back
        if staged is not None:
            await anyio.Path(staged).unlink(missing_ok=True)
        raise _Failure(f"{exc.message}; the vault was not rotated", 1) from None
    except StoreError as exc:
        unused = f"the key printed above is unused, keep {MASTER_KEY_ENV}" if staged is None else f"{staged} is unused"
        raise _Failure(
            f"{exc.message}; the vault was not rotated ({unused}; if the old key no longer unlocks the vault, "
            "the database committed just before the error: then use the new key)",
            1,
        ) from None
    rotated = f"rotated the vault: {count} credential(s) re-encrypted under a new master key"
    if staged is None or target is None:
        return (
            f"{rotated}. Set {MASTER_KEY_ENV} to the new key printed above wherever gateways run, then restart "
            "them; the old key no longer unlocks the vault"
        )
    try:
        await anyio.to_thread.run_sync(replace_key_file, staged, target)
    except OSError as exc:
        raise _Failure(
            f"{rotated}, but {staged} could not be moved to {target} ({exc.strerror}): move it yourself, it holds "
            "the only key that unlocks the vault",
            1,
        ) from None
    if os.environ.get(MASTER_KEY_ENV):
        return (
            f"{rotated}. The new key is in {target} (mode 0600): set {MASTER_KEY_ENV} to its contents wherever "
            "gateways run, then restart them"
        )
    if target != key_file:
        return (
            f"{rotated}. The new key is in {target} (mode 0600); {key_file} still holds the old key, which no "
            f"longer unlocks the vault: set MCPGW_MASTER_KEY_FILE={target} (or move it there) and restart gateways"
        )
    return f"{rotated}. The new key replaced the one in {target}; restart running gateways to load it"


async def _finish_interrupted_rotation(store: Store, target: Path) -> bool:
    """True if TARGET.new is what unlocks the vault (the database was rotated, the file not yet moved): move it."""
    from mcp_gateway.vault import MasterKey, Vault, WrongMasterKey, pending_key_file
    from mcp_gateway.vault.keyfile import read_key_file, replace_key_file

    staged = pending_key_file(target)
    text = await anyio.to_thread.run_sync(read_key_file, staged)
    if text is None:
        return False
    try:
        await Vault.open(store, MasterKey.decode(text, source=f"master key file {staged}"))
    except WrongMasterKey:
        return False
    await anyio.to_thread.run_sync(replace_key_file, staged, target)
    return True


def main() -> None:
    app()
