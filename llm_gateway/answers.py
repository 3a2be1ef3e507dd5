"""What comes back from a provider, read without re-validating it: token counts, failures, stream errors.

Beside `service.py` because these are pure functions of an answer (or of a failure) that every
path there needs — same-format relays, translated answers, streams — and none of them needs the
service's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2

from llm_gateway.errors import Api, error_body, message_of
from llm_gateway.providers import ProviderFailure
from llm_gateway.providers.http import ProviderResponse
from llm_gateway.translate.common import StreamError
from llm_gateway.usage import UsageEvent
from llm_gateway.wire import dumps, loads, sse

Counts = tuple[int, int, int, int]
"""Tokens: input, output, cache read, cache write."""


async def read_json_answer(response: ProviderResponse, provider: str) -> dict[str, Any]:
    try:
        data = await response.aread()
    except httpx2.HTTPError as exc:
        raise ProviderFailure(provider, f"provider {provider} broke off its answer: {exc}") from None
    finally:
        await response.aclose()
    try:
        value = loads(data)
    except ValueError:
        raise ProviderFailure(
            provider, f"provider {provider} answered with something that is not JSON", status=502
        ) from None
    if not isinstance(value, dict):
        raise ProviderFailure(provider, f"provider {provider} answered with JSON that is not an object", status=502)
    return value


def counts_in(data: str | bytes, counts_of: Callable[[Any], Counts | None]) -> Counts | None:
    """Token counts in an answer or stream event; only events that mention usage are parsed."""
    mentioned = b'"usage"' in data if isinstance(data, bytes) else '"usage"' in data
    if not mentioned:
        return None
    try:
        return counts_of(loads(data))
    except ValueError:
        return None


def anthropic_usage(data: Any) -> Counts | None:
    """Usage inside an Anthropic message, `message_start` or `message_delta`."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if usage is None and isinstance(data.get("message"), dict):
        usage = data["message"].get("usage")
    return anthropic_counts(usage)


def anthropic_counts(usage: Any) -> Counts | None:
    if not isinstance(usage, dict):
        return None
    return (
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        int(usage.get("cache_read_input_tokens") or 0),
        int(usage.get("cache_creation_input_tokens") or 0),
    )


def openai_usage(data: Any) -> Counts | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return int(usage.get("prompt_tokens") or 0) - cached, int(usage.get("completion_tokens") or 0), cached, 0


def merge_counts(previous: Counts | None, found: Counts) -> Counts:
    """Anthropic streams give input counts in `message_start` and output in `message_delta`: keep the larger."""
    if previous is None:
        return found
    return (
        max(previous[0], found[0]),
        max(previous[1], found[1]),
        max(previous[2], found[2]),
        max(previous[3], found[3]),
    )


def apply_counts(event: UsageEvent, counts: Counts | None) -> None:
    if counts is not None:
        event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens = counts


_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")


def last_event_end(data: bytes) -> int:
    """Where the last complete server-sent event in `data` ends (0: none is complete yet)."""
    ends = [data.rfind(mark) + len(mark) for mark in _EVENT_ENDS if mark in data]
    return max(ends, default=0)


def json_or_none(data: bytes) -> Any:
    if not data:
        return None
    try:
        return loads(data)
    except ValueError:
        return None


def in_api_shape(api: Api, body: Any) -> bool:
    """Whether a provider's error body is already what `api`'s clients parse."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    return body.get("type") == "error" if api == "anthropic" else "message" in body["error"]


def describe_failure(failure: ProviderFailure) -> str:
    detail = ""
    if failure.body:
        try:
            detail = message_of(loads(failure.body)) or ""
        except ValueError:
            detail = ""
    return failure.message + (f" ({detail[:200]})" if detail else "")


def stream_failure(exc: Exception, provider: str | None) -> str:
    if isinstance(exc, StreamError):
        return f"provider {provider} reported an error mid-stream: {message_of(exc.body) or 'no message'}"
    if isinstance(exc, httpx2.TimeoutException):
        return f"provider {provider} stopped sending (timed out mid-stream)"
    return f"provider {provider} broke off the stream: {exc or type(exc).__name__}"


def overloaded(exc: Exception) -> bool:
    if isinstance(exc, StreamError) and isinstance(exc.body, dict):
        error = exc.body.get("error")
        return isinstance(error, dict) and error.get("type") == "overloaded_error"
    return False


def stream_error(api: Api, message: str, *, overloaded: bool) -> bytes:
    if api == "anthropic":
        kind = "overloaded_error" if overloaded else "api_error"
        return sse("error", {"type": "error", "error": {"type": kind, "message": message}})
    return b"data: " + dumps(error_body("openai", 502, message)) + b"\n\n"
