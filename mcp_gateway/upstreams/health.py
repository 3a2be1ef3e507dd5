"""Watching a connected upstream: health probes, and re-listing for servers that change lists silently.

Both run as supervised sibling tasks of the connection's owner task while it is connected
(`UpstreamConnection._connect_and_serve`); they only need the small `Watched` interface, so
the policy (how often, how many failures, what counts as an answer) reads on its own.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
import anyio.abc
from mcp import ClientSession, MCPError
from mcp_types import METHOD_NOT_FOUND
from pydantic import ValidationError

from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream
from mcp_gateway.upstreams.failures import session_gone
from mcp_gateway.upstreams.lists import ListKind

logger = logging.getLogger(__name__)

SESSION_GONE = "the upstream no longer knows our session (it restarted?)"


class Watched(Protocol):
    """What the watchers need of the connection they watch."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> StdioUpstream | HttpUpstream | SseUpstream: ...
    def drop(self, reason: str) -> None:
        """End the session (it is unusable) and reconnect; `reason` is what operators are told."""

    async def refresh(self, kinds: frozenset[ListKind]) -> None: ...
    def checkpoint(self, task: str) -> None:
        """The supervisor's fault-injection hook, once per loop iteration."""


async def watch_health(upstream: Watched, session: ClientSession) -> None:
    """Probe every `ping_interval`; after `max_ping_failures` failures in a row, drop the session."""
    failures = 0
    async with anyio.create_task_group() as probes:
        while True:
            await anyio.sleep(upstream.config.ping_interval)
            upstream.checkpoint(f"health:{upstream.name}")
            problem = await _check(upstream, session, probes)
            if problem is None:
                failures = 0
                continue
            failures += 1
            limit = upstream.config.max_ping_failures
            logger.warning("upstream %s: health check failed (%d/%d): %s", upstream.name, failures, limit, problem)
            if failures >= limit:
                upstream.drop(f"{failures} health checks failed in a row (last: {problem})")
                return


async def _check(upstream: Watched, session: ClientSession, probes: anyio.abc.TaskGroup) -> str | None:
    """One health check: None when the upstream answered in time, else what went wrong.

    The probe runs in its own task: when it times out the SDK sends a courtesy cancel, which
    can itself wait on a wedged transport, and the monitor must keep its own pace.
    """
    timeout = upstream.config.ping_timeout
    what = "ping" if upstream.config.ping else "tools/list"
    outcome: list[str | None] = []
    done = anyio.Event()

    async def probe() -> None:
        try:
            with anyio.fail_after(timeout):
                outcome.append(await _probe(upstream, session))
        except TimeoutError:
            pass
        finally:
            done.set()

    probes.start_soon(probe)
    with anyio.move_on_after(timeout):
        await done.wait()
    return outcome[0] if outcome else f"no answer to {what} within {timeout:g}s"


async def _probe(upstream: Watched, session: ClientSession) -> str | None:
    try:
        if upstream.config.ping:
            await session.send_ping()
        else:
            await session.list_tools()
    except MCPError as exc:
        if exc.error.code == METHOD_NOT_FOUND:
            return None  # an answer all the same: the server is alive, it just lacks the method
        if session_gone(exc):
            upstream.drop(SESSION_GONE)  # no point in asking again: only a new session helps
        return f"{'ping' if upstream.config.ping else 'tools/list'} failed: {exc.error.message}"
    except ValidationError:
        return "malformed answer to a health check"
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
        return "the connection is closed"
    return None


async def sync_lists(upstream: Watched) -> None:
    """Re-list everything every `sync_interval`; catches servers that change lists silently."""
    while (interval := upstream.config.sync_interval) > 0:
        await anyio.sleep(interval)
        upstream.checkpoint(f"sync:{upstream.name}")
        with anyio.move_on_after(upstream.config.timeout) as scope:
            await upstream.refresh(frozenset(ListKind))
        if scope.cancelled_caught:
            logger.warning("upstream %s: periodic re-list timed out after %gs", upstream.name, upstream.config.timeout)
    await anyio.sleep_forever()
