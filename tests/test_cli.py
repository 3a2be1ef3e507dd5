"""The `mcpgw` command line, run as the installed console script in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mcp_gateway.config import HttpUpstream, StdioUpstream, load_config
from tests.conftest import lab

MCPGW = Path(sys.executable).parent / "mcpgw"
TIMEOUT = 60  # seconds; generous for starting the lab server on a loaded machine


def mcpgw(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # No COLUMNS: what a CI log or a pipe gets, so output does not depend on the developer's terminal.
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [str(MCPGW), *map(str, args)],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def claude_code_file(path: Path) -> Path:
    data = {
        "mcpServers": {
            "github": {
                "type": "http",
                "url": "https://api.githubcopilot.com/mcp/",
                "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"},
            },
            "fs": {"type": "stdio", "command": "npx", "args": ["-y", "server-filesystem"], "env": {"KEY": "${FS_KEY}"}},
        }
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_init_writes_a_loadable_config(tmp_path: Path) -> None:
    target = tmp_path / "gateway.yaml"

    result = mcpgw("init", target, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    config = load_config(target, environ={})
    assert config.server.port == 8080
    assert config.upstreams == {}


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "gateway.yaml"
    target.write_text("# mine\n", encoding="utf-8")

    refused = mcpgw("init", target, cwd=tmp_path)

    assert refused.returncode == 1
    assert "already exists" in refused.stderr
    assert "--force" in refused.stderr
    assert target.read_text(encoding="utf-8") == "# mine\n"


def test_init_force_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "gateway.yaml"
    target.write_text("# mine\n", encoding="utf-8")

    forced = mcpgw("init", target, "--force", cwd=tmp_path)

    assert forced.returncode == 0, forced.stderr
    assert "upstreams:" in target.read_text(encoding="utf-8")


def test_import_adds_upstreams_and_keeps_references(tmp_path: Path) -> None:
    target = tmp_path / "gateway.yaml"
    source = claude_code_file(tmp_path / ".mcp.json")

    result = mcpgw("import", source, "--config", target, cwd=tmp_path, env={"GITHUB_TOKEN": "ghp_real_secret"})

    assert result.returncode == 0, result.stderr
    text = target.read_text(encoding="utf-8")
    assert "ghp_real_secret" not in text
    written = yaml.safe_load(text)["upstreams"]
    assert written["github"]["headers"] == {"Authorization": "Bearer ${GITHUB_TOKEN}"}
    assert written["fs"]["env"] == {"KEY": "${FS_KEY}"}
    config = load_config(target, environ={"GITHUB_TOKEN": "t", "FS_KEY": "k"})
    assert isinstance(config.upstreams["github"], HttpUpstream)
    assert isinstance(config.upstreams["fs"], StdioUpstream)


def test_import_keeps_existing_upstreams_unless_replace(tmp_path: Path) -> None:
    target = write_yaml(
        tmp_path / "gateway.yaml",
        {
            "server": {"port": 9100},
            "upstreams": {
                "github": {"url": "https://github.internal/mcp"},
                "notes": {"command": "notes-server"},
            },
        },
    )
    source = claude_code_file(tmp_path / ".mcp.json")

    kept = mcpgw("import", source, "--config", target, cwd=tmp_path)

    assert kept.returncode == 0, kept.stderr
    assert "github" in kept.stdout  # reported as kept
    config = load_config(target, environ={"FS_KEY": "k"})
    assert list(config.upstreams) == ["github", "notes", "fs"]
    github = config.upstreams["github"]
    assert isinstance(github, HttpUpstream)
    assert github.url == "https://github.internal/mcp"
    assert config.server.port == 9100

    replaced = mcpgw("import", source, "--config", target, "--replace", cwd=tmp_path)

    assert replaced.returncode == 0, replaced.stderr
    config = load_config(target, environ={"FS_KEY": "k", "GITHUB_TOKEN": "t"})
    assert list(config.upstreams) == ["github", "notes", "fs"]
    github = config.upstreams["github"]
    assert isinstance(github, HttpUpstream)
    assert github.url == "https://api.githubcopilot.com/mcp/"


def test_import_keeps_defaults_of_existing_references(tmp_path: Path) -> None:
    target = write_yaml(
        tmp_path / "gateway.yaml",
        {"upstreams": {"wiki": {"url": "https://wiki.internal/mcp", "headers": {"X-Team": "${TEAM:-platform}"}}}},
    )
    source = claude_code_file(tmp_path / ".mcp.json")

    result = mcpgw("import", source, "--config", target, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(target.read_text(encoding="utf-8"))["upstreams"]
    assert written["wiki"]["headers"] == {"X-Team": "${TEAM:-platform}"}


def test_import_of_invalid_file_exits_2(tmp_path: Path) -> None:
    source = tmp_path / ".mcp.json"
    source.write_text('{"mcpServers": {\n  "fs": \n}', encoding="utf-8")

    result = mcpgw("import", source, "--config", tmp_path / "gateway.yaml", cwd=tmp_path)

    assert result.returncode == 2
    assert "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "gateway.yaml").exists()


def test_upstream_list_json_shows_connected_and_broken(tmp_path: Path) -> None:
    target = write_yaml(
        tmp_path / "gateway.yaml",
        {"upstreams": {"lab": lab(), "broken": {"command": "/nonexistent/x"}}},
    )

    result = mcpgw("upstream", "list", "--config", target, "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["lab", "broken"]
    working, broken = rows
    assert (working["state"], working["transport"], working["tools"]) == ("connected", "stdio", 14)
    assert working["error"] is None
    assert broken["state"] == "disconnected"
    assert broken["tools"] == 0
    assert "/nonexistent/x" in broken["error"]


def test_tools_json_lists_prefixed_lab_tools(tmp_path: Path) -> None:
    target = write_yaml(tmp_path / "gateway.yaml", {"upstreams": {"lab": lab()}})

    result = mcpgw("tools", "--config", target, "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    tools = json.loads(result.stdout)
    names = [t["name"] for t in tools]
    assert "lab-echo" in names
    assert len(names) == 14
    echo = tools[names.index("lab-echo")]
    assert echo["inputSchema"]["type"] == "object"


def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "server:\n  port: 8080\nupstreams:\n  lab:\n    command: python\n    timeout: soon\n", encoding="utf-8"
    )
    return path


def test_serve_with_invalid_config_exits_2_without_traceback(tmp_path: Path) -> None:
    result = mcpgw("serve", "--config", bad_config(tmp_path), cwd=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error:")
    assert "line 6: upstreams.lab.timeout" in message


def test_serve_with_invalid_config_prints_one_error_line(tmp_path: Path) -> None:
    result = mcpgw("serve", "--config", bad_config(tmp_path), cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert f"{tmp_path / 'gateway.yaml'}: line 6: upstreams.lab.timeout" in lines[0]


def test_serve_with_missing_config_suggests_init(tmp_path: Path) -> None:
    result = mcpgw("serve", "--config", "absent.yaml", cwd=tmp_path)

    assert result.returncode == 2
    assert "mcpgw init" in result.stderr
    assert "Traceback" not in result.stderr
