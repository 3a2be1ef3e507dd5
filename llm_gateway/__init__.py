"""LLM routing for mcpgw (Anthropic / OpenAI compatible endpoints); filled in by its own issue."""
