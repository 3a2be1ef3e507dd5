"""Logs: every record — ours, uvicorn's, the MCP SDK's — goes through the stdlib root logger into
structlog's `ProcessorFormatter`, so one format (console or JSON) covers everything, and `redact`
runs on every line just before it is rendered, so secrets never reach the output. Each line
carries the `request_id` bound by `request_context.RequestContextMiddleware` and, inside a span,
the trace and span ids.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from opentelemetry import trace

LogFormat = Literal["console", "json"]

REDACTED = "[REDACTED]"

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_bf_vk",
        "x_api_key",
        "api_key",
        "apikey",
        "token",
        "password",
        "passwd",
        "secret",
    }
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_api_key")
_SECRET_KEYWORDS = r"authorization|x-bf-vk|x-api-key|api[_-]?key|password|secret|token"
_AUTH_SCHEMES = r"(?:bearer|basic|digest|negotiate|token|bot) "  # kept: they tell which kind of credential it was
_SECRET_TEXT = (
    (re.compile(r"sk-mcpgw-[A-Za-z0-9_-]+"), REDACTED),  # a virtual key, wherever it appears
    # A JWT: header and payload are base64url JSON objects, so both start with "ey".
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # A bearer credential (not `Bearer realm="…"` in a challenge: tokens are longer than that).
    (re.compile(r"(\bbearer\s+)(?!realm=)[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE), rf"\1{REDACTED}"),
    # `key: value` and `key=value` pairs, as in a logged header dict, a URL query or exception text.
    (
        re.compile(
            rf"((?:{_SECRET_KEYWORDS})[\"']?\s*[:=]\s*[\"']?(?:{_AUTH_SCHEMES})?+)(?!\[REDACTED\])[^\"'\s,;&}}]+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
)


CHATTY_LIBRARIES = ("httpx", "httpx2", "httpcore", "httpcore2")
"""Loggers that write one line per HTTP request at info; quiet unless the gateway logs at debug."""


def _is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """`text` with virtual keys, bearer tokens, JWTs and `secret=…`-style values replaced by `[REDACTED]`."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:  # a deeper structure in a log line is a mistake; do not spend time on it
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(str(k)) else _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    return value


def redact(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """structlog processor: the values of secret-named keys, and secrets inside any text, become `[REDACTED]`."""
    for key, value in event.items():
        event[key] = REDACTED if _is_secret_key(key) else _redact_value(value)
    return event


def _tidy(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """The fixed fields first, so a line reads the same way every time; uvicorn's ANSI copy of the message dropped."""
    event.pop("color_message", None)
    front = {key: event.pop(key) for key in _FRONT if key in event}
    front.update(event)
    return front


_FRONT = ("timestamp", "level", "logger", "event", "message")


def _add_trace_ids(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """Lets a log line be found from its trace (and back) when tracing is on."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


_HANDLER_MARK = "_mcpgw_handler"


def configure_logging(level: str = "info", fmt: LogFormat = "console", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record (stdlib and structlog) to `stream` (stderr) in one format, redacted.

    Replaces the handler a previous call installed; returns the new one (tests remove it again).
    """
    output = stream or sys.stderr
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[structlog.typing.Processor]
    if fmt == "json":
        # "message" is the key log platforms (Loki, Datadog, Cloud Logging, …) take the text from.
        renderer = [structlog.processors.EventRenamer("message"), _tidy, structlog.processors.JSONRenderer()]
    else:
        renderer = [_tidy, structlog.dev.ConsoleRenderer(colors=output.isatty(), pad_event_to=40)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction: exception messages can quote headers.
            structlog.processors.format_exc_info,
            redact,
            *renderer,
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # HTTP client libraries log every request at info ("HTTP Request: POST …": one line per upstream
    # call); per-call detail belongs in the audit trail and metrics, so they speak up only on debug.
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler
