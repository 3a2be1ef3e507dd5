"""`mcpServers` files from MCP hosts turned into upstream configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream
from mcp_gateway.errors import ConfigError
from mcp_gateway.importer import read_mcp_servers, upstream_name


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def import_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        read_mcp_servers(path)
    return caught.value.message


def test_claude_code_project_file(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / ".mcp.json",
        {
            "mcpServers": {
                "github": {
                    "type": "http",
                    "url": "https://api.githubcopilot.com/mcp/",
                    "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"},
                },
                "fs": {
                    "type": "stdio",
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                    "env": {"DEBUG": "1", "API_KEY": "${FS_KEY}"},
                },
            }
        },
    )

    upstreams = read_mcp_servers(path)

    assert list(upstreams) == ["github", "fs"]
    github = upstreams["github"]
    assert isinstance(github, HttpUpstream)
    assert github.url == "https://api.githubcopilot.com/mcp/"
    assert github.headers == {"Authorization": "Bearer ${GITHUB_TOKEN}"}  # references stay unexpanded
    fs = upstreams["fs"]
    assert isinstance(fs, StdioUpstream)
    assert (fs.command, fs.args, fs.env) == (
        "npx",
        ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
        {"DEBUG": "1", "API_KEY": "${FS_KEY}"},
    )


def test_claude_user_file_with_projects(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / ".claude.json",
        {
            "numStartups": 12,
            "mcpServers": {"linear": {"type": "sse", "url": "https://mcp.linear.app/sse"}},
            "projects": {
                "/home/dev/app": {
                    "allowedTools": [],
                    "mcpServers": {"postgres": {"type": "stdio", "command": "uvx", "args": ["mcp-server-postgres"]}},
                },
                "/home/dev/site": {"mcpServers": {}},
                "/home/dev/empty": {},
            },
        },
    )

    upstreams = read_mcp_servers(path)

    assert list(upstreams) == ["linear", "postgres"]
    assert isinstance(upstreams["linear"], SseUpstream)
    postgres = upstreams["postgres"]
    assert isinstance(postgres, StdioUpstream)
    assert (postgres.command, postgres.args) == ("uvx", ["mcp-server-postgres"])


def test_claude_desktop_file(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "claude_desktop_config.json",
        {
            "mcpServers": {
                "sqlite": {
                    "command": "uvx",
                    "args": ["mcp-server-sqlite", "--db-path", "/tmp/test.db"],
                    "env": {"LOG_LEVEL": "debug"},
                }
            }
        },
    )

    upstreams = read_mcp_servers(path)

    sqlite = upstreams["sqlite"]
    assert isinstance(sqlite, StdioUpstream)
    assert (sqlite.command, sqlite.args, sqlite.env) == (
        "uvx",
        ["mcp-server-sqlite", "--db-path", "/tmp/test.db"],
        {"LOG_LEVEL": "debug"},
    )


def test_cursor_file_url_only_is_http_and_sse_type_is_sse(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "remote": {"url": "https://example.com/mcp", "headers": {"X-Key": "${KEY}"}},
                "legacy": {"type": "sse", "url": "http://127.0.0.1:9000/sse"},
            }
        },
    )

    upstreams = read_mcp_servers(path)

    remote = upstreams["remote"]
    assert isinstance(remote, HttpUpstream)
    assert remote.headers == {"X-Key": "${KEY}"}
    legacy = upstreams["legacy"]
    assert isinstance(legacy, SseUpstream)
    assert legacy.url == "http://127.0.0.1:9000/sse"


def test_host_only_keys_are_dropped_and_disabled_is_kept(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "mcp.json",
        {"mcpServers": {"fs": {"command": "npx", "alwaysAllow": ["read"], "autoApprove": [], "disabled": True}}},
    )

    fs = read_mcp_servers(path)["fs"]

    assert isinstance(fs, StdioUpstream)
    assert fs.enabled is False


@pytest.mark.parametrize(
    ("host_name", "expected"),
    [
        ("my-server", "my_server"),
        ("mcp.example.com", "mcp_example_com"),
        ("--odd name--", "odd_name"),
        ("!!", "server"),
    ],
)
def test_upstream_name_maps_to_valid_characters(host_name: str, expected: str) -> None:
    assert upstream_name(host_name) == expected


def test_server_names_are_mapped_in_imported_files(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / ".mcp.json",
        {"mcpServers": {"brave-search": {"command": "npx"}, "docs.internal": {"url": "https://docs.example.com/mcp"}}},
    )

    assert list(read_mcp_servers(path)) == ["brave_search", "docs_internal"]


def test_distinct_servers_whose_names_map_to_the_same_upstream_are_all_kept(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / ".mcp.json",
        {"mcpServers": {"my-server": {"command": "first"}, "my.server": {"command": "second"}}},
    )

    upstreams = read_mcp_servers(path)

    commands = {u.command for u in upstreams.values() if isinstance(u, StdioUpstream)}
    assert commands == {"first", "second"}


def test_remote_url_with_variable_and_default_is_accepted(tmp_path: Path) -> None:
    # Claude Code documents "${API_BASE_URL:-https://api.example.com}/mcp" for .mcp.json.
    path = write_json(
        tmp_path / ".mcp.json",
        {"mcpServers": {"api": {"type": "http", "url": "${API_BASE_URL:-https://api.example.com}/mcp"}}},
    )

    api = read_mcp_servers(path)["api"]

    assert isinstance(api, HttpUpstream)
    assert api.url == "${API_BASE_URL:-https://api.example.com}/mcp"


def test_invalid_json_reports_line(tmp_path: Path) -> None:
    path = tmp_path / ".mcp.json"
    path.write_text('{\n  "mcpServers": {\n    "fs": {"command": "npx",}\n  }\n}\n', encoding="utf-8")

    message = import_error(path)

    assert ".mcp.json: not valid JSON" in message
    assert "line 3" in message


@pytest.mark.parametrize(
    "data",
    [{}, {"mcpServers": {}}, {"projects": {"/p": {"mcpServers": {}}}}, {"mcpServers": {"fs": "npx"}}],
)
def test_file_without_servers_is_refused(tmp_path: Path, data: dict[str, Any]) -> None:
    message = import_error(write_json(tmp_path / ".mcp.json", data))

    assert "no 'mcpServers' entries" in message


def test_top_level_array_is_refused(tmp_path: Path) -> None:
    message = import_error(write_json(tmp_path / ".mcp.json", [{"command": "npx"}]))

    assert "expected a JSON object" in message


def test_entry_without_command_or_url_names_the_server(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / ".mcp.json",
        {"mcpServers": {"fine": {"command": "npx"}, "half-done": {"env": {"A": "1"}}}},
    )

    message = import_error(path)

    assert "mcpServers.half-done" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    message = import_error(tmp_path / "absent.json")

    assert "absent.json: file not found" in message
