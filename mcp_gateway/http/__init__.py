"""The HTTP faces of the gateway, and nothing else: every module here turns requests into calls on the domain.

Layers (a module may import from layers below it, never above):

    faces       mcp_gateway/http/   /mcp, /api, /healthz /readyz /metrics, consent pages
                mcp_gateway/cli/    the `mcpgw` command line
                llm_gateway/        /anthropic, /openai (model traffic)
    pipeline    calls.py, channel.py, relay.py, toolmodes/
    domain      identity.py, keys.py, policy.py, catalog.py, audit.py, credentials/, upstreams/
    state       store/, vault/, config.py, errors.py, supervisor.py, logs/metrics/tracing

Domain code raises `mcp_gateway.errors` exceptions; each face maps them to its own error shape
(JSON-RPC errors on /mcp, `{"detail": ...}` on /api, exit codes in the CLI).
"""
