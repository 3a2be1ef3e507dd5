"""Providers that speak Anthropic's Messages API: Anthropic itself, and the base of Bedrock and Vertex Claude.

The client's body is forwarded as it came, with only what the provider's variant requires
changed (`model` here; Bedrock and Vertex move it into the URL and add their `anthropic_version`):
fields the gateway does not know (`thinking`, `context_management`, `output_config`,
`cache_control`, `role: "system"` entries, tool search blocks) reach the provider untouched, and
`anthropic-beta` / `anthropic-version` are passed on. The caller's credentials never are: the
provider gets the gateway's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from llm_gateway.providers.base import Family, Provider
from llm_gateway.providers.http import ProviderResponse
from llm_gateway.wire import dumps
from mcp_gateway.config_llm import ProviderConfig

ANTHROPIC_VERSION = "2023-06-01"
PASSED_HEADERS = ("anthropic-beta", "anthropic-version")


class AnthropicFamily(Provider):
    """What the service needs of any Anthropic-family provider: send a Messages body, read its event stream."""

    family: Family = "anthropic"

    async def messages(
        self, body: Mapping[str, Any], model: str, key: str | None, client_headers: Mapping[str, str]
    ) -> ProviderResponse:
        raise NotImplementedError

    async def count_tokens(
        self, body: Mapping[str, Any], model: str, key: str | None, client_headers: Mapping[str, str]
    ) -> ProviderResponse | None:
        """None: this provider cannot count tokens."""
        return None

    def events(self, response: ProviderResponse) -> AsyncIterator[bytes]:
        """The answer's stream as Anthropic server-sent events (bytes as they arrive)."""
        return response.aiter_bytes()


class AnthropicProvider(AnthropicFamily):
    """`api.anthropic.com` (or anything that speaks it, e.g. Claude on Azure AI Foundry)."""

    def headers(self, key: str | None, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        for name in PASSED_HEADERS:
            value = client_headers.get(name)
            if value:
                headers[name] = value
        if key:
            headers["x-api-key"] = key
        return headers

    async def messages(
        self, body: Mapping[str, Any], model: str, key: str | None, client_headers: Mapping[str, str]
    ) -> ProviderResponse:
        data = dumps({**body, "model": model})
        return await self.open(f"{self.base_url}/v1/messages", data, self.headers(key, client_headers))

    async def count_tokens(
        self, body: Mapping[str, Any], model: str, key: str | None, client_headers: Mapping[str, str]
    ) -> ProviderResponse | None:
        data = dumps({**body, "model": model})
        return await self.open(f"{self.base_url}/v1/messages/count_tokens", data, self.headers(key, client_headers))


def beta_list(client_headers: Mapping[str, str]) -> list[str]:
    """`anthropic-beta: a,b` as the list Bedrock and Vertex take in the body."""
    value = client_headers.get("anthropic-beta", "")
    return [item.strip() for item in value.split(",") if item.strip()]


class AzureFoundryProvider(AnthropicProvider):
    """Claude on Azure AI Foundry: the Messages API under `{resource endpoint}/anthropic`, key in `api-key`."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        if not self.base_url.endswith("/anthropic"):
            self.base_url += "/anthropic"

    def headers(self, key: str | None, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = super().headers(None, client_headers)
        if key:
            headers["api-key"] = key
        return headers
