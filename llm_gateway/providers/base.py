"""What every provider adapter shares: one connection pool, its keys, and failing in a way the router can use.

A provider is reached through one `httpx2.AsyncClient` for its whole life (keep-alive, one pool
per provider). Responses are always opened as streams, so a streamed answer is relayed chunk by
chunk and a non-streamed one is read once; nothing is validated on the way through.

Several keys share the traffic by weight; a key that answers 429 is rested for the time the
provider asks (`retry-after`, else 30 s) and the request is retried with another key at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Literal

import httpx2

from llm_gateway.providers.http import ProviderHttp, ProviderResponse
from mcp_gateway.config_llm import DEFAULT_BASE_URLS, ProviderConfig

logger = logging.getLogger(__name__)

Family = Literal["anthropic", "openai", "gemini"]
"""The wire format a provider speaks (what a request must be translated to)."""

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""Statuses after which another key, provider or fallback may succeed."""
_DEFAULT_REST_SECONDS = 30.0


class ProviderFailure(Exception):
    """The provider gave no usable answer: a connection failure or timeout (`status` None) or an error status.

    `body` is what the provider answered (for passing on to a client of the same API); `retryable`
    tells the router whether a fallback may be tried.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUSES

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class Provider:
    """Base of every adapter: `name` as configured, `family` its wire format, `client` its pool."""

    family: Family = "openai"

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config
        kind = config.kind or name
        self.base_url = (config.base_url or DEFAULT_BASE_URLS.get(kind, "")).rstrip("/")
        keys = [(k.value, k.weight) for k in config.keys]
        if config.api_key:
            keys.insert(0, (config.api_key, 1.0))
        self._keys = keys
        self._rested_until = [0.0] * len(keys)
        self.http = ProviderHttp(timeout=config.timeout, connect_timeout=config.connect_timeout)

    def family_of(self, model: str) -> Family:
        """The wire format this provider speaks for `model` (Vertex serves Claude and Gemini)."""
        return self.family

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def pick_key(self) -> tuple[int, str | None]:
        """A key by weight among those not resting (all resting: the one whose rest ends first)."""
        if not self._keys:
            return -1, None
        now = time.monotonic()
        usable = [i for i, until in enumerate(self._rested_until) if until <= now]
        if not usable:
            index = min(range(len(self._keys)), key=self._rested_until.__getitem__)
        elif len(usable) == 1:
            index = usable[0]
        else:
            index = random.choices(usable, weights=[self._keys[i][1] for i in usable])[0]
        return index, self._keys[index][0]

    def rest(self, index: int, seconds: float | None) -> None:
        """Stop using key `index` for a while (it answered 429)."""
        if 0 <= index < len(self._keys):
            self._rested_until[index] = time.monotonic() + (seconds or _DEFAULT_REST_SECONDS)
            logger.warning("provider %s: key #%d rate-limited; resting it", self.name, index + 1)

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> ProviderResponse:
        """POST `body` and return the response with its body still unread (the caller closes it).

        Raises:
            ProviderFailure: the connection failed or timed out (status None), or the status is an error
                (the body read, up to 64 KiB).
        """
        try:
            response = await self.http.post(url, body, headers)
        except httpx2.InvalidURL as exc:
            raise ProviderFailure(
                self.name, f"provider {self.name} has an unusable URL ({exc}); check its base_url"
            ) from None
        except httpx2.TimeoutException:
            raise ProviderFailure(self.name, f"provider {self.name} did not answer in time") from None
        except httpx2.TransportError as exc:
            raise ProviderFailure(
                self.name, f"cannot reach provider {self.name}: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            try:
                data = await _read_some(response, 64 * 1024)
            finally:
                await response.aclose()
            raise ProviderFailure(
                self.name,
                f"provider {self.name} answered HTTP {response.status_code}",
                status=response.status_code,
                body=data,
                headers=response.headers,
            )
        return response

    async def aclose(self) -> None:
        await self.http.aclose()


async def _read_some(response: ProviderResponse, limit: int) -> bytes:
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= limit:
                break
    except httpx2.HTTPError:
        pass
    return data[:limit]
