"""What the upstream servers offer and how they are connected: `mcpgw upstream ...` and `mcpgw tools`.

`upstream list` and `tools` either start the configured upstreams right here (checking a config
without a gateway) or, with `--url`, ask a running gateway through its public endpoints.
`upstream reconnect` and `upstream authorize` act on live sessions, which only the running
gateway holds, so they go through its admin API (see `_state`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.table import Table

from mcp_gateway.cli._output import JsonOption, console, fail
from mcp_gateway.cli._state import (
    ConfigOption,
    UrlOption,
    fetch_readyz,
    gateway_tools,
    probe_tools,
    probe_upstreams,
    read_config,
    response_detail,
    upstream_action,
)

app = typer.Typer(no_args_is_help=True, help="Inspect configured upstream servers.")


@app.command("list")
def upstream_list(
    config: ConfigOption = Path("gateway.yaml"), url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Name, transport, state and tool count of every upstream."""
    rows = fetch_readyz(url)["upstreams"] if url else anyio.run(probe_upstreams, read_config(config))
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


@app.command("reconnect")
def upstream_reconnect(
    name: Annotated[str, typer.Argument(help="The upstream's name (see `mcpgw upstream list`).")],
    url: Annotated[str, typer.Option("--url", help="The running gateway.")] = "http://127.0.0.1:8080",
) -> None:
    """Make a running gateway drop an upstream's session and connect again now.

    The admin token is read from MCPGW_ADMIN_TOKEN.
    """
    response = upstream_action(url, name, "reconnect")
    if response.status_code != 202:
        fail(f"the gateway at {url} answered HTTP {response.status_code}: {response_detail(response)}", 1)
    console.print(f"reconnecting {name!r} on {url}; `mcpgw upstream list --url {url}` shows its state", highlight=False)


@app.command("authorize")
def upstream_authorize(
    name: Annotated[str, typer.Argument(help="An upstream with `auth: {type: oauth}`.")],
    url: Annotated[str, typer.Option("--url", help="The running gateway.")] = "http://127.0.0.1:8080",
) -> None:
    """Print the consent link for a shared-OAuth upstream; open it once and the upstream connects.

    The admin token is read from MCPGW_ADMIN_TOKEN. The link works once and expires in 10 minutes.
    """
    response = upstream_action(url, name, "authorize")
    if response.status_code != 200:
        fail(f"the gateway at {url} answered HTTP {response.status_code}: {response_detail(response)}", 1)
    console.print(f"open this link in a browser and sign in for {name!r}:", highlight=False)
    print(response.json()["url"])


def tools(config: ConfigOption = Path("gateway.yaml"), url: UrlOption = None, as_json: JsonOption = False) -> None:
    """The aggregated tool list, as clients of the gateway see it."""
    listed = anyio.run(gateway_tools, url) if url else anyio.run(probe_tools, read_config(config))
    if as_json:
        console.print_json(json.dumps(listed))
        return
    table = Table("tool", "title", "description")
    for tool in listed:
        description = (tool.get("description") or "").strip().splitlines()
        table.add_row(tool["name"], tool.get("title") or "", description[0] if description else "")
    console.print(table)
    console.print(f"{len(listed)} tools")
