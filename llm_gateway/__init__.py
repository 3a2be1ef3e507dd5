"""The LLM gateway: `/anthropic` and `/openai` on the same port as `/mcp`.

A request is identified like any `/mcp` request (the identity middleware the assembly puts in
front), routed by `routing.Router` to a provider and model, translated when the provider speaks
another wire format (`translate/`), sent by a provider adapter (`providers/`), relayed back
(streams chunk by chunk) and recorded (`usage.py`).

Built only on identity, policy, catalog and the call pipeline of `mcp_gateway`; never on
`mcp_gateway.upstreams` or `mcp_gateway.http`.
"""
