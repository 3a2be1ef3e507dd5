"""Connections to upstream MCP servers: transports, lifecycle, and the manager of them all."""
