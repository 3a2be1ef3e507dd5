"""The `mcpgw` command line: the root typer `app`, assembled from one module per command group.

`pyproject.toml` installs `mcpgw = "mcp_gateway.cli:app"`. Where things are:

- `serve`: `init`, `import`, `serve`, `version` (setting up and running a gateway)
- `upstreams`: `tools` and `upstream list|reconnect|authorize`
- `keys`: `vk ...` (virtual keys); `users`: `user ...`; `audit`: `audit tail`
- `vault`: `creds ...` and `vault rotate|reset`
- `routes`: `route explain` (model routing of the LLM gateway); `usage`: `usage` (what model traffic cost)
- `_output` (printing and failing), `_state` (how each group reaches the state it needs: the config
  file, upstreams started here, a running gateway, or the store), `_grants` (the `--allow` syntax),
  `_sse_starlette` (the one sse_starlette internal `serve` relies on)

Commands are listed in `mcpgw --help` in the order they are added here (groups after commands).
"""

from __future__ import annotations

import typer

from mcp_gateway.cli import audit, grants, keys, routes, serve, upstreams, usage, users, vault

app = typer.Typer(no_args_is_help=True, add_completion=False, help="mcpgw: one MCP endpoint for many MCP servers.")

app.command()(serve.version)
app.command()(serve.serve)
app.command()(serve.init)
app.command("import")(serve.import_servers)
app.command()(upstreams.tools)
app.command()(usage.usage)

app.add_typer(upstreams.app, name="upstream")
app.add_typer(keys.app, name="vk")
app.add_typer(audit.app, name="audit")
app.add_typer(users.app, name="user")
app.add_typer(vault.vault_app, name="vault")
app.add_typer(vault.creds_app, name="creds")
app.add_typer(routes.app, name="route")
app.add_typer(grants.app, name="grants")

__all__ = ["app", "main"]


def main() -> None:
    app()
