"""Request-path caches in front of the store: virtual keys by hash, SSO users' grants.

Every /mcp request resolves its caller, so a database round trip per request would be the
gateway's bottleneck. Entries live for a short TTL and the whole cache is dropped whenever the
store's revision changes (a VK disabled through the API, the CLI or another replica is noticed
within one poll interval); negative answers are cached briefly so a flood of bogus keys costs
one query per key per few seconds, not one per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from mcp_gateway.identity import KeyGrant, UserAccess

_T = TypeVar("_T")

POSITIVE_TTL = 30.0
NEGATIVE_TTL = 5.0
MAX_ENTRIES = 100_000


class TtlCache(Generic[_T]):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, _T | None]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[_T | None]]) -> _T | None:
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (now + (POSITIVE_TTL if value is not None else NEGATIVE_TTL), value)
        return value

    def clear(self) -> None:
        self._entries.clear()


class KeyCaches:
    """The two lookups `IdentityResolver` needs, cached; `clear()` when the store changes."""

    def __init__(
        self,
        find_key: Callable[[str], Awaitable[KeyGrant | None]],
        find_user: Callable[[str, Mapping[str, Any]], Awaitable[UserAccess | None]],
        find_key_by_id: Callable[[str], Awaitable[KeyGrant | None]] | None = None,
    ) -> None:
        """`find_key_by_id`: for sign-in tokens, which name their key by id."""
        self._find_key = find_key
        self._find_user = find_user
        self._find_key_by_id = find_key_by_id
        self._keys: TtlCache[KeyGrant] = TtlCache()
        self._keys_by_id: TtlCache[KeyGrant] = TtlCache()
        self._users: TtlCache[UserAccess] = TtlCache()

    async def key(self, key_hash: str) -> KeyGrant | None:
        return await self._keys.get(key_hash, lambda: self._find_key(key_hash))

    async def key_by_id(self, key_id: str) -> KeyGrant | None:
        find = self._find_key_by_id
        return await self._keys_by_id.get(key_id, lambda: find(key_id)) if find is not None else None

    async def user(self, user_id: str, claims: Mapping[str, Any]) -> UserAccess | None:
        return await self._users.get(user_id, lambda: self._find_user(user_id, claims))

    def clear(self) -> None:
        self._keys.clear()
        self._keys_by_id.clear()
        self._users.clear()
