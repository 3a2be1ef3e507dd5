"""The `--llm-*` options of `mcpgw vk create` and `mcpgw vk llm`: a key's models and budgets on the LLM routes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mcp_gateway.cli._output import fail
from mcp_gateway.config_llm import KeyLlmPolicy

LlmModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--llm-models", help="Models the key may use, provider/model globs, repeatable: 'anthropic/*', 'openai/gpt-5*'."
    ),
]
LlmRpmOption = Annotated[int | None, typer.Option("--llm-rpm", help="Model requests per minute.", min=1)]
LlmTpmOption = Annotated[int | None, typer.Option("--llm-tpm", help="Tokens per minute.", min=1)]
LlmUsdDayOption = Annotated[float | None, typer.Option("--llm-usd-day", help="US dollars per UTC day.", min=0.01)]
LlmUsdMonthOption = Annotated[float | None, typer.Option("--llm-usd-month", help="US dollars per UTC month.", min=0.01)]
LlmInjectOption = Annotated[
    bool | None,
    typer.Option(
        "--llm-inject-tools/--llm-no-inject-tools",
        help="Add (or never add) the key's MCP tools to its model requests; default: llm.auto_inject_mcp_tools.",
    ),
]
LlmAutoExecuteOption = Annotated[
    list[str] | None,
    typer.Option(
        "--llm-auto-execute",
        help="Only these auto-executable tools are run by the gateway for this key (gateway names or globs, "
        "repeatable); --llm-auto-execute '' runs none.",
    ),
]


def llm_policy(
    models: list[str] | None,
    rpm: int | None,
    tpm: int | None,
    usd_day: float | None,
    usd_month: float | None,
    *,
    inject_tools: bool | None = None,
    auto_execute: list[str] | None = None,
) -> dict[str, Any] | None:
    """The stored policy for the given options; None when none was given."""
    fields = {
        "allowed_models": models,
        "requests_per_minute": rpm,
        "tokens_per_minute": tpm,
        "usd_per_day": usd_day,
        "usd_per_month": usd_month,
        "inject_mcp_tools": inject_tools,
        "tools_to_auto_execute": [p for p in auto_execute if p] if auto_execute is not None else None,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    if not given:
        return None
    try:
        return KeyLlmPolicy.model_validate(given).model_dump(exclude_none=True)
    except ValidationError as exc:
        fail(f"invalid LLM policy: {exc.errors()[0]['msg']}", 2)


def describe_policy(policy: Mapping[str, Any]) -> str:
    parts = []
    if policy.get("allowed_models") is not None:
        parts.append("models " + (", ".join(policy["allowed_models"]) or "none"))
    for field, unit in (
        ("requests_per_minute", "requests/min"),
        ("tokens_per_minute", "tokens/min"),
        ("usd_per_day", "USD/day"),
        ("usd_per_month", "USD/month"),
    ):
        if policy.get(field) is not None:
            parts.append(f"{policy[field]:g} {unit}")
    if policy.get("inject_mcp_tools") is not None:
        parts.append("MCP tools " + ("added" if policy["inject_mcp_tools"] else "not added") + " to requests")
    if policy.get("tools_to_auto_execute") is not None:
        parts.append("auto-executes " + (", ".join(policy["tools_to_auto_execute"]) or "nothing"))
    return "; ".join(parts) or "no restrictions"
