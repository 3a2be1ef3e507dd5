"""How an upstream failure is recognised and told: shared by the connection, its health checks and calls.

`session_gone` spots the answer an upstream gives when it forgot our session (it restarted):
only a new session helps, so the connection reconnects at once instead of waiting for health
checks to fail. `describe` turns any exception into the one line operators see in `/readyz`,
the admin API and the log.
"""

from __future__ import annotations

import httpx2
from mcp import MCPError
from mcp_types import INVALID_REQUEST, PARSE_ERROR

_SESSION_GONE = frozenset({"session not found", "session terminated"})
_SESSION_GONE_CODES = frozenset({INVALID_REQUEST, -32001})  # -32001: the TypeScript SDK's servers


def session_gone(exc: MCPError) -> bool:
    """HTTP 404 for our session id: the server forgot the session (it restarted, or reaped it).

    SDK servers answer with a JSON-RPC error "Session not found"; for a bare 404 the client SDK
    makes up "Session terminated".
    """
    return exc.error.code in _SESSION_GONE_CODES and exc.error.message.strip().lower() in _SESSION_GONE


def describe(exc: BaseException) -> str:
    """A one-line, human message for an exception (unwrapping exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out while connecting"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    if isinstance(exc, httpx2.TransportError):
        return f"HTTP connection failed: {text}" + (f" ({type(exc).__name__})" if text != type(exc).__name__ else "")
    if isinstance(exc, MCPError):
        if exc.error.code == PARSE_ERROR:
            return "upstream error: its answer is not JSON-RPC (not an MCP endpoint?)"
        return f"upstream error: {text}"
    return f"{type(exc).__name__}: {text}"
