"""Gemini through Google AI (`generativelanguage.googleapis.com`): `generateContent`, key in `x-goog-api-key`.

Bodies are Gemini's own (`translate/anthropic_to_gemini.py` makes them); a stream is
`streamGenerateContent?alt=sse`, server-sent events each holding one `GenerateContentResponse`.
Gemini on Vertex AI is `VertexProvider.generate` (same bodies, OAuth tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from llm_gateway.providers.base import Family, Provider
from llm_gateway.providers.http import ProviderResponse
from llm_gateway.wire import dumps


def gemini_action(stream: bool) -> str:
    return "streamGenerateContent?alt=sse" if stream else "generateContent"


class GeminiProvider(Provider):
    family: Family = "gemini"

    async def generate(self, body: Mapping[str, Any], model: str, key: str | None, *, stream: bool) -> ProviderResponse:
        url = f"{self.base_url}/v1beta/models/{quote(model, safe='')}:{gemini_action(stream)}"
        headers = {"content-type": "application/json"}
        if key:
            headers["x-goog-api-key"] = key
        return await self.open(url, dumps(body), headers)
