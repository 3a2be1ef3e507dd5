"""OpenAI Chat Completions: OpenAI itself, any OpenAI-compatible server (vLLM, Ollama, …) and Azure OpenAI.

OpenAI and compatible servers take `Authorization: Bearer <key>` at `{base_url}/chat/completions`
(`base_url` includes `/v1`). Azure OpenAI takes an `api-key` header at
`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=…`, the deployment
named after the model unless `deployments` maps it.
"""

from __future__ import annotations

from urllib.parse import quote

from llm_gateway.providers.base import Family, Provider
from llm_gateway.providers.http import ProviderResponse

AZURE_API_VERSION = "2024-10-21"


class OpenAIProvider(Provider):
    family: Family = "openai"

    @property
    def is_azure(self) -> bool:
        return self.config.kind == "azure"

    @property
    def max_tokens_field(self) -> str:
        """OpenAI's own API wants `max_completion_tokens`; compatible servers know `max_tokens` best."""
        return "max_tokens" if self.config.kind == "openai_compatible" else "max_completion_tokens"

    async def chat(self, body: bytes, key: str | None, model: str) -> ProviderResponse:
        headers = {"content-type": "application/json"}
        if self.is_azure:
            deployment = self.config.deployments.get(model, model)
            version = self.config.api_version or AZURE_API_VERSION
            path = f"/openai/deployments/{quote(deployment, safe='')}/chat/completions"
            url = f"{self.base_url}{path}?api-version={version}"
            if key:
                headers["api-key"] = key
        else:
            url = f"{self.base_url}/chat/completions"
            if key:
                headers["authorization"] = f"Bearer {key}"
        return await self.open(url, body, headers)
