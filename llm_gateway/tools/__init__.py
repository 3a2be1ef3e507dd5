"""MCP tools in model requests: injection, dedupe, agent mode, running a model's tool call (docs/llm-tools.md)."""
