"""The audit log's buffer: observers see every event, and a flush returns only once events are written."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from mcp_gateway.audit import AuditEvent, AuditLog

pytestmark = pytest.mark.anyio

EVENT = AuditEvent("vk", "key-1", "key-1", "lab", "echo", "tools/call", 1.5, "ok")


async def test_observers_see_events_as_they_are_recorded() -> None:
    seen: list[AuditEvent] = []

    async def sink(batch: Sequence[AuditEvent]) -> None:
        pass

    audit = AuditLog(sink, observers=[seen.append])
    audit.record(EVENT)
    assert seen == [EVENT]


async def test_a_flush_waits_for_the_write_already_in_progress() -> None:
    """Otherwise a reader that flushes first (the admin API's /audit) can miss events being written."""
    written: list[AuditEvent] = []
    writing, release, second_done = anyio.Event(), anyio.Event(), anyio.Event()

    async def sink(batch: Sequence[AuditEvent]) -> None:
        writing.set()
        await release.wait()
        written.extend(batch)

    audit = AuditLog(sink)
    audit.record(EVENT)

    async def second_flush() -> None:
        await audit.flush()
        second_done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(audit.flush)
            await writing.wait()
            tg.start_soon(second_flush)
            await anyio.wait_all_tasks_blocked()
            assert not second_done.is_set()
            release.set()
            await second_done.wait()
            assert written == [EVENT]
