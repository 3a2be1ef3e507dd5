"""What `GET /v1/models` lists: every name a client can ask for that the gateway knows of.

Each provider's configured `models` as `provider/model` (without the prefix for the API's own
provider), every alias, and every model name a routing rule matches exactly (`sonnet-model`).
Any other model may still be requested; this list is for pickers and discovery.
"""

from __future__ import annotations

from llm_gateway.errors import Api
from mcp_gateway.config_llm import LlmSettings

_OWN_PROVIDER = {"anthropic": "anthropic", "openai": "openai"}


def listed_models(settings: LlmSettings, api: Api) -> list[str]:
    names: list[str] = []
    for rule in settings.routing_rules:
        if rule.enabled and isinstance(rule.when.model, str):
            names.append(rule.when.model)
    names.extend(settings.aliases)
    for provider, config in settings.providers.items():
        for model in config.models:
            names.append(model if provider == _OWN_PROVIDER[api] else f"{provider}/{model}")
    return list(dict.fromkeys(names))
