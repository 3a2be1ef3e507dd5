"""Supervision of the gateway's background tasks: one failure never takes `/mcp` down.

Background work (the store watcher, the audit writer, each upstream's owner task, health
monitor and list sync, per-user idle eviction, …) runs in the lifespan's task group next to the
SDK's session manager. In a plain task group an exception escaping any of them cancels all the
others, the session manager included, after which every MCP request fails with a 500 while the
process looks alive. So every background task runs through `Supervisor.keep`: an unexpected
exception is logged once (with the task's name and traceback), the task is restarted after a
backoff (1 s doubling to 30 s), and nothing propagates. Cancellation (the gateway stopping, an
upstream removed) passes through untouched.

Each supervised task has a `TaskRecord` that `/readyz` shows while it is failing: a *required*
task that is not running (waiting to restart, or returned although it should run forever) makes
the gateway not ready.

`checkpoint(name)` is a test hook: loops call it once per iteration, and a test arms a fault with
`inject(name)` to make exactly that task raise there, without patching private internals.
"""

from __future__ import annotations

import enum
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

logger = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
"""Seconds a restarted task must run without failing before it counts as healthy again and its backoff
starts from the beginning (a loop that fails on every iteration is never healthy, however briefly it waits)."""


class TaskState(enum.StrEnum):
    """Where one supervised task is."""

    RUNNING = "running"  # doing its job
    RECOVERING = "recovering"  # running again, but it failed less than `stable_after` seconds ago
    RESTARTING = "restarting"  # raised unexpectedly; waiting out its backoff before it runs again
    STOPPED = "stopped"  # a task meant to run forever returned: a bug, reported until the gateway stops


class InjectedFault(RuntimeError):
    """Raised at a `checkpoint` armed by a test with `Supervisor.inject`."""


@dataclass
class TaskRecord:
    """What the supervisor knows of one task; shown by `/readyz` once it has failed."""

    name: str
    required: bool
    state: TaskState = TaskState.RUNNING
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None
    started_at: float = 0.0

    def summary(self, state: TaskState) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": state.value,
            "required": self.required,
            "failures": self.failures,
            "error": self.last_error,
        }


def describe(exc: BaseException) -> str:
    """One line naming the innermost cause (task groups wrap what really happened)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class Supervisor:
    """Keeps background tasks alive and says which ones are not.

    `clock` and the backoff bounds are injectable so tests neither sleep long nor depend on time.
    """

    def __init__(
        self,
        *,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = BACKOFF_MAX,
        stable_after: float = STABLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff_start = backoff_start
        self._backoff_max = backoff_max
        self._stable_after = stable_after
        self._clock = clock
        self._tasks: dict[int, TaskRecord] = {}
        """By record identity: names repeat (each per-user session of an upstream has a `health:<upstream>`)."""
        self._faults: dict[str, int] = {}
        self.stopping = False
        """Set while the gateway shuts down: required tasks that end then are not failures."""

    # --- running tasks ------------------------------------------------------------------------

    def spawn(
        self, group: anyio.abc.TaskGroup, name: str, run: Callable[[], Awaitable[Any]], *, required: bool = False
    ) -> None:
        """Start `run` in `group` under supervision (see `keep`)."""
        group.start_soon(self.keep, name, run, required, name=name)

    async def keep(self, name: str, run: Callable[[], Awaitable[Any]], required: bool = False) -> None:
        """Run `run` in this task, restarting it after unexpected exceptions; returns when it returns.

        A `required` task is one the gateway cannot serve properly without (the store watcher, the
        audit writer): it is expected to run until cancelled, and one that returns stays reported
        as `stopped`. Other tasks simply leave the registry when they end.
        """
        record = TaskRecord(name, required, started_at=self._clock())
        self._tasks[id(record)] = record
        delay = self._backoff_start
        try:
            while True:
                record.state = TaskState.RUNNING
                record.started_at = self._clock()
                try:
                    await run()
                except Exception as exc:
                    if self._clock() - record.started_at >= self._stable_after:
                        delay = self._backoff_start
                    self._failed(record, exc, delay)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self._backoff_max)
                    continue
                if required and not self.stopping:
                    record.state = TaskState.STOPPED
                    record.last_error = "returned although it should run until the gateway stops"
                    logger.error("background task %s stopped unexpectedly", name)
                    return
                break
        except BaseException:
            # Cancelled (the gateway stops, an upstream is removed): a normal end, nothing to report.
            self._forget(record)
            raise
        if record.state is not TaskState.STOPPED:
            self._forget(record)

    def _failed(self, record: TaskRecord, exc: Exception, delay: float) -> None:
        description = describe(exc)
        repeated = record.last_error == description
        record.state = TaskState.RESTARTING
        record.failures += 1
        record.last_error = description
        record.last_failure_at = self._clock()
        if repeated:
            # The traceback was logged with the first occurrence; repeats get one line.
            logger.warning(
                "background task %s failed again (%d times): %s; restarting in %.1fs",
                record.name,
                record.failures,
                description,
                delay,
            )
        else:
            logger.error(
                "background task %s failed: %s; restarting in %.1fs", record.name, description, delay, exc_info=exc
            )

    def _forget(self, record: TaskRecord) -> None:
        self._tasks.pop(id(record), None)

    # --- what readiness needs -----------------------------------------------------------------

    def state_of(self, record: TaskRecord) -> TaskState:
        recent = record.last_failure_at is not None and self._clock() - record.last_failure_at < self._stable_after
        return TaskState.RECOVERING if record.state is TaskState.RUNNING and recent else record.state

    @property
    def healthy(self) -> bool:
        """Every required task is running and has not failed lately."""
        return all(self.state_of(r) is TaskState.RUNNING for r in self._tasks.values() if r.required)

    def summary(self) -> list[dict[str, Any]]:
        """Required tasks, and any task that has failed at least once (a healthy upstream monitor is noise)."""
        return [r.summary(self.state_of(r)) for r in self._tasks.values() if r.required or r.failures]

    # --- test hook ----------------------------------------------------------------------------

    def inject(self, pattern: str, times: int = 1) -> None:
        """Make the next `times` checkpoints of tasks matching `pattern` (a glob over names) raise; 0: until cleared."""
        self._faults[pattern] = times

    def clear_faults(self) -> None:
        self._faults.clear()

    def checkpoint(self, name: str) -> None:
        """Called once per iteration by supervised loops; raises `InjectedFault` when a test armed one."""
        if not self._faults:
            return
        for pattern, left in list(self._faults.items()):
            if fnmatch.fnmatchcase(name, pattern):
                if left == 1:
                    del self._faults[pattern]
                elif left > 1:
                    self._faults[pattern] = left - 1
                raise InjectedFault(f"fault injected into {name}")
