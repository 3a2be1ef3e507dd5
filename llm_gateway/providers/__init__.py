"""One adapter per provider API; `build_providers` makes them from the `llm.providers` settings."""

from __future__ import annotations

from llm_gateway.providers.anthropic import AnthropicFamily, AnthropicProvider, AzureFoundryProvider
from llm_gateway.providers.base import Family, Provider, ProviderFailure
from llm_gateway.providers.bedrock import BedrockProvider
from llm_gateway.providers.gemini import GeminiProvider
from llm_gateway.providers.openai import OpenAIProvider
from llm_gateway.providers.vertex import VertexProvider
from mcp_gateway.config_llm import ProviderConfig

__all__ = [
    "AnthropicFamily",
    "AnthropicProvider",
    "AzureFoundryProvider",
    "BedrockProvider",
    "Family",
    "GeminiProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderFailure",
    "VertexProvider",
    "build_providers",
]


def build_providers(settings: dict[str, ProviderConfig]) -> dict[str, Provider]:
    """An adapter for each configured provider whose kind is implemented; the others are listed as missing."""
    providers: dict[str, Provider] = {}
    for name, config in settings.items():
        if config.kind == "anthropic":
            providers[name] = AnthropicProvider(name, config)
        elif config.kind == "azure" and config.api == "messages":
            providers[name] = AzureFoundryProvider(name, config)
        elif config.kind == "bedrock":
            providers[name] = BedrockProvider(name, config)
        elif config.kind == "gemini":
            providers[name] = GeminiProvider(name, config)
        elif config.kind == "vertex":
            providers[name] = VertexProvider(name, config)
        elif config.kind in ("openai", "openai_compatible", "azure"):
            providers[name] = OpenAIProvider(name, config)
    return providers
