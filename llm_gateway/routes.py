"""The LLM faces' routes, for the assembly to mount beside `/mcp` (same server, same port)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from llm_gateway.anthropic_api import Guard, anthropic_routes
from llm_gateway.openai_api import openai_routes
from llm_gateway.service import LlmService


def llm_routes(service: LlmService, *, anthropic_guard: Guard, openai_guard: Guard) -> list[BaseRoute]:
    """`/anthropic/...` and `/openai/...`; each guard wraps an endpoint in the identity middleware."""
    return [*anthropic_routes(service, anthropic_guard), *openai_routes(service, openai_guard)]
