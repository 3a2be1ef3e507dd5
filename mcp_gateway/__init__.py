"""mcpgw: one MCP endpoint that aggregates, governs and relays many upstream MCP servers."""

from mcp_gateway.config import GatewayConfig, UpstreamConfig, load_config
from mcp_gateway.errors import (
    AuthError,
    ConfigError,
    Conflict,
    CredentialError,
    CredentialRequired,
    GatewayError,
    IdentityRequired,
    NotReady,
    OAuthError,
    UnknownTool,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "AuthError",
    "ConfigError",
    "Conflict",
    "CredentialError",
    "CredentialRequired",
    "GatewayConfig",
    "GatewayError",
    "IdentityRequired",
    "NotReady",
    "OAuthError",
    "UnknownTool",
    "UpstreamConfig",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "load_config",
]

__version__ = "0.1.0"
