"""The `--allow UPSTREAM:TOOL[,TOOL...]` grant syntax, read and written back.

Virtual keys (`vk create`) and users (`user grant`) are granted tools the same way, and both
list their grants (`vk list`, `user list`) in the same short form: one place for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mcp_gateway.cli._output import Failure
from mcp_gateway.config import UPSTREAM_NAME_PATTERN

ALLOW_SYNTAX = "UPSTREAM:TOOL[,TOOL...], e.g. github:create_issue,list_issues or github:* or 'github:get_*'"


def parse_allow(values: Sequence[str]) -> dict[str, list[str]]:
    """`--allow` values → mcp_configs; repeated upstreams merge. Raises Failure (exit 2) with the reason."""
    configs: dict[str, list[str]] = {}
    for value in values:
        upstream, colon, tools_part = value.partition(":")
        upstream = upstream.strip()
        tools = [tool.strip() for tool in tools_part.split(",")]
        if not colon or not upstream:
            raise Failure(f"--allow {value!r}: expected {ALLOW_SYNTAX}", 2)
        if not UPSTREAM_NAME_PATTERN.match(upstream):
            raise Failure(
                f"--allow {value!r}: upstream name {upstream!r} may only contain letters, digits and underscores", 2
            )
        if not all(tools):
            raise Failure(
                f"--allow {value!r}: name tools or patterns after ':', separated by commas ({upstream}:* for all)", 2
            )
        merged = configs.setdefault(upstream, [])
        merged.extend(tool for tool in tools if tool not in merged)
    return configs


def allow_summary(configs: Mapping[str, Sequence[str]], *, most: int = 3) -> str:
    """Grants in `--allow` form, `most` tools per upstream and a count of the rest; `-` for none."""
    if not configs:
        return "-"
    parts = []
    for upstream, tools in configs.items():
        shown = ",".join(tools[:most]) + (f",+{len(tools) - most}" if len(tools) > most else "")
        parts.append(f"{upstream}:{shown or '(none)'}")
    return " ".join(parts)
