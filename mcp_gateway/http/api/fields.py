"""Field types shared by the admin API's request bodies (upstreams, virtual keys, users)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mcp_gateway.config import UPSTREAM_NAME_PATTERN

UpstreamNameField = Annotated[
    str, StringConstraints(pattern=UPSTREAM_NAME_PATTERN.pattern, max_length=64), Field(examples=["github"])
]
ToolPattern = Annotated[str, StringConstraints(min_length=1)]
McpConfigsField = Annotated[
    dict[UpstreamNameField, list[ToolPattern]],
    Field(
        description='Upstream name → tool names, "*" or shell-style globs ("get_*"). An empty list hides the '
        "upstream even when it is allowed on all virtual keys.",
        examples=[{"github": ["search_issues", "get_*"], "docs": ["*"]}],
    ),
]


class Body(BaseModel):
    """Unknown fields are errors: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")
