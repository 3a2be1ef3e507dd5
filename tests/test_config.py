"""gateway.yaml loading: validation with field paths and line numbers, `${VAR}` expansion, round trips."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mcp_gateway.config import (
    GatewayConfig,
    HttpUpstream,
    SseUpstream,
    StdioUpstream,
    dump_config,
    load_config,
    parse_config,
)
from mcp_gateway.errors import ConfigError


def parse(text: str, environ: dict[str, str] | None = None) -> GatewayConfig:
    return parse_config(textwrap.dedent(text), source="gateway.yaml", environ=environ or {})


def config_error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text, environ)
    return caught.value.message


def test_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            server:
              host: 0.0.0.0
              port: 9001
              name_separator: "_"
            upstreams:
              fs:
                transport: stdio
                command: npx
                args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
                env: {DEBUG: "1"}
                timeout: 5
              remote:
                transport: http
                url: https://example.internal/mcp
                headers: {X-Team: platform}
                prefix: ""
                enabled: false
            """
        ),
        encoding="utf-8",
    )

    config = load_config(path, environ={})

    assert (config.server.host, config.server.port, config.server.name_separator) == ("0.0.0.0", 9001, "_")
    assert list(config.upstreams) == ["fs", "remote"]
    fs = config.upstreams["fs"]
    assert isinstance(fs, StdioUpstream)
    assert (fs.command, fs.args, fs.env, fs.timeout) == (
        "npx",
        ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
        {"DEBUG": "1"},
        5.0,
    )
    remote = config.upstreams["remote"]
    assert isinstance(remote, HttpUpstream)
    assert (remote.url, remote.headers, remote.prefix, remote.enabled) == (
        "https://example.internal/mcp",
        {"X-Team": "platform"},
        "",
        False,
    )


def test_empty_file_is_an_empty_gateway() -> None:
    config = parse("")

    assert config.upstreams == {}
    assert config.server.port == 8080


def test_sections_holding_only_comments_are_empty() -> None:
    # What `mcpgw init` writes, and what a user gets after commenting out every upstream.
    config = parse(
        """\
        server:
          # port: 9000
        upstreams:
          # fs:
          #   command: npx
        """
    )

    assert config.upstreams == {}
    assert config.server.port == 8080


def test_transport_inferred_from_command_and_url() -> None:
    config = parse(
        """\
        upstreams:
          local:
            command: npx
          remote:
            url: https://example.internal/mcp
        """
    )

    assert isinstance(config.upstreams["local"], StdioUpstream)
    assert isinstance(config.upstreams["remote"], HttpUpstream)


def test_claude_style_type_key_selects_transport() -> None:
    config = parse(
        """\
        upstreams:
          local:
            type: stdio
            command: npx
          remote:
            type: http
            url: https://example.internal/mcp
          legacy:
            type: sse
            url: http://127.0.0.1:9000/sse
        """
    )

    assert isinstance(config.upstreams["local"], StdioUpstream)
    assert isinstance(config.upstreams["remote"], HttpUpstream)
    assert isinstance(config.upstreams["legacy"], SseUpstream)


def test_unknown_key_names_field_path_and_line() -> None:
    message = config_error(
        """\
        upstreams:
          fs:
            command: npx
            arsg: ["-y"]
        """
    )

    assert "gateway.yaml: line 4: upstreams.fs.arsg" in message


def test_misspelled_command_with_explicit_transport_names_field_path_and_line() -> None:
    message = config_error(
        """\
        upstreams:
          fs:
            transport: stdio
            comand: npx
        """
    )

    assert "line 4: upstreams.fs.comand" in message


def test_misspelled_command_without_transport_names_field_path_and_line() -> None:
    # Transport inference is the documented default, so this is the file a user actually writes.
    message = config_error(
        """\
        server:
          port: 8080
        upstreams:
          fs:
            comand: npx
            args: ["-y"]
        """
    )

    assert "line 5: upstreams.fs.comand" in message


def test_wrong_type_in_nested_field_reports_its_line() -> None:
    message = config_error(
        """\
        upstreams:
          fs:
            command: npx
            env:
              HOME: /tmp
              DEPTH:
                - 1
        """
    )

    assert "line 6: upstreams.fs.env.DEPTH" in message


def test_wrong_type_in_server_section_reports_its_line() -> None:
    message = config_error(
        """\
        server:
          host: 127.0.0.1
          port: high
        """
    )

    assert "line 3: server.port" in message


def test_upstream_named_like_a_transport_keeps_its_field_path() -> None:
    message = config_error(
        """\
        upstreams:
          http:
            url: http://127.0.0.1:9000/mcp
            heders: {}
        """
    )

    assert "line 4: upstreams.http.heders" in message


def test_duplicate_upstream_names_both_lines() -> None:
    message = config_error(
        """\
        upstreams:
          fs:
            command: npx
          other:
            command: uvx
          fs:
            command: node
        """
    )

    assert "duplicate key 'fs'" in message
    assert "line 6" in message
    assert "line 2" in message


def test_not_yaml_reports_line_and_column() -> None:
    message = config_error(
        """\
        upstreams:
          fs: [npx,
        """
    )

    assert message.startswith("gateway.yaml: not valid YAML:")
    assert "line 3, column 1" in message


def test_top_level_list_is_refused() -> None:
    message = config_error("- fs\n- remote\n")

    assert "top level must be a mapping" in message


def test_upstream_name_with_dash_is_refused() -> None:
    message = config_error(
        """\
        upstreams:
          my-server:
            command: npx
        """
    )

    assert "'my-server'" in message
    assert "letters, digits and underscores" in message


@pytest.mark.parametrize("prefix", ["my-prefix", "a b", "tools/"])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    message = config_error(
        f"""\
        upstreams:
          fs:
            command: npx
            prefix: "{prefix}"
        """
    )

    assert "line 4: upstreams.fs.prefix" in message


def test_empty_prefix_is_allowed() -> None:
    config = parse(
        """\
        upstreams:
          fs:
            command: npx
            prefix: ""
        """
    )

    assert config.upstreams["fs"].prefix == ""


def test_environment_references_are_expanded() -> None:
    config = parse(
        """\
        upstreams:
          remote:
            url: https://${API_HOST}/mcp?region=${REGION:-eu}
            headers:
              Authorization: Bearer ${TOKEN}
              X-Team: ${TEAM:-platform}
          local:
            command: ${NODE_BIN:-npx}
            args: ["--root", "${ROOT_DIR}", "--mode=${MODE:-ro}"]
            env:
              API_KEY: ${API_KEY}
              LEVEL: ${LEVEL:-info}
        """,
        environ={"API_HOST": "api.example.com", "TOKEN": "t0k", "ROOT_DIR": "/srv", "API_KEY": "k3y", "LEVEL": "debug"},
    )

    remote = config.upstreams["remote"]
    assert isinstance(remote, HttpUpstream)
    assert remote.url == "https://api.example.com/mcp?region=eu"
    assert remote.headers == {"Authorization": "Bearer t0k", "X-Team": "platform"}
    local = config.upstreams["local"]
    assert isinstance(local, StdioUpstream)
    assert local.command == "npx"
    assert local.args == ["--root", "/srv", "--mode=ro"]
    assert local.env == {"API_KEY": "k3y", "LEVEL": "debug"}


def test_default_is_not_used_when_variable_is_set_even_if_empty() -> None:
    config = parse(
        """\
        upstreams:
          local:
            command: npx
            env: {A: "${A:-fallback}", B: "${B:-fallback}"}
        """,
        environ={"A": "set", "B": ""},
    )

    upstream = config.upstreams["local"]
    assert isinstance(upstream, StdioUpstream)
    assert upstream.env == {"A": "set", "B": ""}


def test_whole_url_from_variable_with_default_is_expanded() -> None:
    # Claude Code's documented pattern: "url": "${API_BASE_URL:-https://api.example.com}/mcp".
    config = parse(
        """\
        upstreams:
          remote:
            url: ${API_BASE_URL:-https://api.example.com}/mcp
        """
    )

    remote = config.upstreams["remote"]
    assert isinstance(remote, HttpUpstream)
    assert remote.url == "https://api.example.com/mcp"


def test_unset_variable_names_variable_and_field_without_leaking_other_values() -> None:
    message = config_error(
        """\
        upstreams:
          remote:
            url: https://api.example.com/mcp?key=${URL_KEY}
            headers:
              X-Api-Key: literal-secret-4711
              Cookie: session=${COOKIE}
              Authorization: Bearer ${GITHUB_TOKEN}
        """,
        environ={"URL_KEY": "url-secret-0815", "COOKIE": "cookie-secret-1234"},
    )

    assert "GITHUB_TOKEN" in message
    assert "line 7: upstreams.remote.headers.Authorization" in message
    for secret in ("literal-secret-4711", "cookie-secret-1234", "url-secret-0815"):
        assert secret not in message


def test_unset_variable_in_stdio_env_names_the_key() -> None:
    message = config_error(
        """\
        upstreams:
          local:
            command: npx
            env:
              SAFE: visible-value
              API_KEY: ${MISSING_KEY}
        """
    )

    assert "line 6: upstreams.local.env.API_KEY: environment variable MISSING_KEY is not set" in message
    assert "MISSING_KEY" in message
    assert "visible-value" not in message


def test_unset_variable_in_args_names_the_item_and_its_line() -> None:
    message = config_error(
        """\
        upstreams:
          local:
            command: npx
            args:
              - -y
              - ${PACKAGE}
        """
    )

    assert message.endswith("line 6: upstreams.local.args.1: environment variable PACKAGE is not set"), message


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")

    assert "absent.yaml" in caught.value.message
    assert "mcpgw init" in caught.value.message


def test_dump_config_round_trips() -> None:
    config = parse(
        """\
        server:
          port: 9000
          name_separator: "_"
          allowed_hosts: [gateway.internal]
        upstreams:
          local:
            command: npx
            args: ["-y", "server"]
            env: {A: "1"}
            prefix: ""
            enabled: false
            cwd: /srv
          remote:
            url: https://example.internal/mcp
            headers: {X-Team: platform}
            timeout: 5
            connect_timeout: 2.5
            description: the remote one
          legacy:
            transport: sse
            url: http://127.0.0.1:9000/sse
            prefix: old
        """
    )

    text = dump_config(config)

    assert parse_config(text, environ={}) == config
    assert "page_size" not in text  # defaults are left out


def test_dump_config_of_empty_gateway_round_trips() -> None:
    assert parse_config(dump_config(GatewayConfig()), environ={}) == GatewayConfig()


def test_llm_provider_keys_are_expanded_and_an_unset_one_is_named_with_its_line() -> None:
    message = config_error(
        """\
        llm:
          providers:
            anthropic:
              base_url: https://api.anthropic.com
              api_key: ${MISSING_ANTHROPIC_KEY}
        """
    )
    assert message.endswith(
        "line 5: llm.providers.anthropic.api_key: environment variable MISSING_ANTHROPIC_KEY is not set"
    ), message


def test_llm_settings_refuse_what_would_only_fail_at_request_time() -> None:
    bad_url = config_error("llm:\n  providers:\n    openai: {base_url: api.openai.com/v1}\n")
    assert "llm.providers.openai.base_url" in bad_url and "must be an http:// or https:// URL" in bad_url
    no_kind = config_error("llm:\n  providers:\n    local: {base_url: 'http://127.0.0.1:8000/v1'}\n")
    assert "provider 'local' needs `kind`" in no_kind
    bad_rule = config_error("llm:\n  routing_rules:\n    - {name: r, when: {model: {regex: '('}}, target: openai/x}\n")
    assert "invalid regular expression '('" in bad_rule
    two_targets = config_error("llm:\n  routing_rules:\n    - {name: r, target: a/b, targets: [{target: c/d}]}\n")
    assert "give `target` or `targets` (not both)" in two_targets
