"""`mcpgw import`: read the `mcpServers` JSON that MCP hosts use and turn it into upstreams.

Understood shapes (all share `{"mcpServers": {name: {...}}}`):
- Claude Code `.mcp.json`, and `~/.claude.json` (top-level `mcpServers` plus
  `projects.<path>.mcpServers`); entries have `type: stdio|http|sse`.
- Claude Desktop `claude_desktop_config.json` and Cursor `mcp.json`: `command/args/env` for
  stdio, `url` (+ `headers`) for remote servers, no `type`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream, UpstreamConfig
from mcp_gateway.errors import ConfigError

_UPSTREAM = TypeAdapter[StdioUpstream | HttpUpstream | SseUpstream](UpstreamConfig)
_HOST_ONLY_KEYS = {"type", "alwaysAllow", "disabled", "autoApprove", "timeout", "oauth", "headersHelper"}


def read_mcp_servers(path: Path) -> dict[str, StdioUpstream | HttpUpstream | SseUpstream]:
    """Parse an mcpServers file into validated upstream configs keyed by a valid upstream name.

    Raises:
        ConfigError: the file is unreadable, not JSON, has no servers, or an entry is invalid.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with an 'mcpServers' key")
    upstreams: dict[str, StdioUpstream | HttpUpstream | SseUpstream] = {}
    for original_name, entry in _server_entries(data):
        converted = _convert(path, original_name, entry)
        name = base = upstream_name(original_name)
        suffix = 2
        while name in upstreams:
            if upstreams[name] == converted:
                break  # the same server listed in several projects of ~/.claude.json
            name = f"{base}_{suffix}"
            suffix += 1
        upstreams[name] = converted
    if not upstreams:
        raise ConfigError(f"{path}: no 'mcpServers' entries found")
    return upstreams


def _server_entries(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    servers = data.get("mcpServers")
    if isinstance(servers, dict):
        yield from ((k, v) for k, v in servers.items() if isinstance(v, dict))
    projects = data.get("projects")
    if isinstance(projects, dict):
        for project in projects.values():
            if isinstance(project, dict) and isinstance(project.get("mcpServers"), dict):
                yield from ((k, v) for k, v in project["mcpServers"].items() if isinstance(v, dict))


def upstream_name(name: str) -> str:
    """Map a host's server name (which may contain '-', '.', spaces) onto `[A-Za-z0-9_]+`."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    return cleaned or "server"


def _convert(path: Path, name: str, entry: dict[str, Any]) -> StdioUpstream | HttpUpstream | SseUpstream:
    kind = entry.get("type") or entry.get("transport")
    if kind is None:
        kind = "stdio" if "command" in entry else "http"
    if kind == "streamable-http":
        kind = "http"
    fields = {k: v for k, v in entry.items() if k not in _HOST_ONLY_KEYS and k != "transport"}
    if kind != "stdio":
        fields = {k: v for k, v in fields.items() if k in ("url", "headers")}
    else:
        fields = {k: v for k, v in fields.items() if k in ("command", "args", "env", "cwd")}
    if entry.get("disabled") is True:
        fields["enabled"] = False
    try:
        return _UPSTREAM.validate_python({"transport": kind, **fields})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or kind}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: mcpServers.{name}: {problems}") from None
