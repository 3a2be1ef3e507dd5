"""HTTP to a provider, and the messages made of its answers.

Every request to an authorization server goes through here so that each one gets a timeout and a size
cap, and so that every failure becomes an `OAuthError` whose text is fit for an end user: URLs lose
their query and credentials, provider text loses any secret the caller names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2

from mcp_gateway.errors import OAuthError

REQUEST_TIMEOUT = 15.0
"""Seconds for any one request to a provider: a consent flow or a tool call is waiting on it."""
MAX_RESPONSE_BYTES = 1024 * 1024
"""Metadata and token responses are small; a larger body is a misconfigured URL, not worth reading."""
PROVIDER_TEXT_LIMIT = 200


async def _send(http: httpx2.AsyncClient, method: str, url: str, *, what: str, **kwargs: Any) -> tuple[int, bytes]:
    """One request with a timeout and a size cap; network failures become transient `OAuthError`s.

    httpx2's timeout bounds each phase (connect, each read…); the overall deadline also stops a server
    that trickles its answer.
    """
    try:
        with anyio.fail_after(2 * REQUEST_TIMEOUT):
            async with http.stream(
                method, url, timeout=REQUEST_TIMEOUT, follow_redirects=method == "GET", **kwargs
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise OAuthError(f"the {what} at {_where(url)} sent an oversized response")
                return response.status_code, bytes(body)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise OAuthError(f"cannot reach the {what} at {_where(url)}: {_describe(exc)}", transient=True) from None


async def _get_json_document(url: str, http: httpx2.AsyncClient, *, what: str) -> dict[str, Any] | None:
    """A metadata document, or None when this well-known location has none (so the next one is tried)."""
    status, body = await _send(http, "GET", url, what=what)
    if status >= 500:
        raise OAuthError(f"the {what} at {_where(url)} failed with HTTP {status}", transient=True)
    if status != 200:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None  # e.g. a single-page app answering every path with HTML
    return document if isinstance(document, dict) else None


def _json_object(
    status: int,
    body: bytes,
    url: str,
    *,
    what: str,
    expected: tuple[int, ...],
    hide: Sequence[str] = (),
) -> dict[str, Any]:
    where = _where(url)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status not in expected:
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            error = data["error"]
            description = data.get("error_description")
            detail = f" ({_provider_text(description, hide)})" if isinstance(description, str) and description else ""
            raise OAuthError(
                f"the {what} at {where} refused the request: {_provider_text(error, hide)}{detail}",
                error=error,
                transient=status >= 500,
            )
        raise OAuthError(f"the {what} at {where} answered HTTP {status}", transient=status >= 500 or status == 429)
    if not isinstance(data, dict):
        raise OAuthError(f"the {what} at {where} did not answer with a JSON object")
    return data


def _where(url: str) -> str:
    """A URL for messages: without query or fragment, where a misconfigured provider might echo secrets."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not parts.netloc:
        return repr(url[:80])
    host = parts.netloc.rpartition("@")[2]  # never user:password@
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _provider_text(text: str, hide: Sequence[str] = ()) -> str:
    """Text written by the provider, made fit for an end user's eyes: no secrets, no control characters, short."""
    for secret in hide:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= PROVIDER_TEXT_LIMIT else text[:PROVIDER_TEXT_LIMIT] + "…"


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return f"timed out after {REQUEST_TIMEOUT:g} s"
    return type(exc).__name__
