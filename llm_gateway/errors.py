"""Errors of the LLM gateway, and how each API shapes them.

Clients of `/anthropic` get Anthropic's error body (`{"type":"error","error":{"type","message"}}`),
clients of `/openai` OpenAI's (`{"error":{"message","type","param","code"}}`), with the status
the real API would use, so SDKs raise their usual exception classes and Claude Code prints a
message a person can act on. Auth failures carry `x-should-retry: false` (Claude Code retries a
401 eleven times over three minutes otherwise); rate limits carry `retry-after`.
"""

from __future__ import annotations

from typing import Literal

Api = Literal["anthropic", "openai"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class LlmError(Exception):
    """A request the gateway answers itself with an error: status, message, and what a client may do."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.status in (401, 403):
            headers["x-should-retry"] = "false"
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after)))
        return headers


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(status: int, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def openai_error(status: int, message: str, *, code: str | None = None) -> dict[str, object]:
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_body(api: Api, status: int, message: str) -> dict[str, object]:
    """The error body `api`'s clients expect for `status`."""
    return anthropic_error(status, message) if api == "anthropic" else openai_error(status, message)


def message_of(body: object) -> str | None:
    """The human message inside an Anthropic-, OpenAI- or Gemini-shaped error body, if there is one."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return str(body["message"])
    if isinstance(body, list) and body:
        return message_of(body[0])
    return None
