"""Anthropic's Messages API (`api.anthropic.com` or anything that speaks it): bodies go through as they came.

The client's body is forwarded with only `model` replaced: fields the gateway does not know
(`thinking`, `context_management`, `output_config`, `cache_control`, `role: "system"` entries,
tool search blocks) reach the provider untouched, and `anthropic-beta` / `anthropic-version`
are passed on. The caller's credentials never are: the provider gets the gateway's key.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx2

from llm_gateway.providers.base import Family, Provider

ANTHROPIC_VERSION = "2023-06-01"
PASSED_HEADERS = ("anthropic-beta", "anthropic-version")


class AnthropicProvider(Provider):
    family: Family = "anthropic"

    def headers(self, key: str | None, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        for name in PASSED_HEADERS:
            value = client_headers.get(name)
            if value:
                headers[name] = value
        if key:
            headers["x-api-key"] = key
        return headers

    async def messages(self, body: bytes, key: str | None, client_headers: Mapping[str, str]) -> httpx2.Response:
        return await self.open(f"{self.base_url}/v1/messages", body, self.headers(key, client_headers))

    async def count_tokens(self, body: bytes, key: str | None, client_headers: Mapping[str, str]) -> httpx2.Response:
        return await self.open(f"{self.base_url}/v1/messages/count_tokens", body, self.headers(key, client_headers))
