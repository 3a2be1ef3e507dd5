"""`/openai`: the OpenAI Chat Completions API, for the official `openai` SDKs and compatible tools.

`POST /openai/v1/chat/completions` (streaming and not, tools) and `GET /openai/v1/models`.
A model without a provider prefix goes to the provider named `openai`.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_gateway.anthropic_api import Endpoint, Guard
from llm_gateway.http_common import completion_handler
from llm_gateway.models import listed_models
from llm_gateway.service import LlmService


def openai_routes(service: LlmService, guard: Guard) -> list[BaseRoute]:
    """The routes under `/openai`; `guard` puts the identity middleware in front of them."""

    chat_completions = completion_handler(service, "openai")

    async def models(request: Request) -> Response:
        created = int(time.time())
        data = [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": model.partition("/")[0] if "/" in model else "mcpgw",
            }
            for model in listed_models(service.settings, "openai")
        ]
        return JSONResponse({"object": "list", "data": data})

    return [
        Route(
            "/openai/v1/chat/completions",
            guard(Endpoint(chat_completions, "openai")),
            methods=["POST"],
        ),
        Route("/openai/v1/models", guard(Endpoint(models, "openai")), methods=["GET"]),
    ]
