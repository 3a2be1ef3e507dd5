"""A real OAuth 2.1 authorization server and a real OAuth-protected MCP upstream, for tests.

Both are served over real sockets by uvicorn, in-process (see `tests.oauth.fixtures`) or as their own
processes (`python -m tests.oauth.authorization_server`, `python -m tests.oauth.protected_upstream`).
"""
