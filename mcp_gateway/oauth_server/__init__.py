"""The gateway's own OAuth 2.1 server for /mcp: its keys and the tokens it signs (see tokens.py)."""
