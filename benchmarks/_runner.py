"""The orchestrator side shared by the benchmarks: child processes, CPU sampling, load-client runs.

Why a module of its own, next to ``_load.py``: ``_load.py`` is what runs *inside* a load-client process (the SDK
client and the marker protocol), and it must stay light because every measurement starts it afresh. This module is
what the orchestrators (``proxy_overhead.py``, ``peers.py``, ``governance.py``, ``soak.py``, ``per_user.py``,
``llm_overhead.py``) do *around* it: start and stop the servers under test, spawn one worker per measurement,
sample the servers' CPU time exactly at the worker's :data:`~_load.MARK_START` / :data:`~_load.MARK_END` lines,
and parse its :data:`~_load.RESULT_PREFIX` line. What they report and write afterwards is in ``_results.py``.
Each benchmark used to carry its own copy of these blocks, and the copies had started to drift (different timeouts,
error messages, clean-up); one copy keeps the figures of different benchmarks comparable and a fix reaches all of
them at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _load import HEADERS_ENV, MARK_END, MARK_START, RESULT_PREFIX, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
LAB_SERVER = REPO_ROOT / "tests" / "upstreams" / "lab_server.py"
LOAD_CLIENT = Path(__file__).resolve().with_name("_load.py")

STARTUP_TIMEOUT = 30.0  # default seconds for an upstream or gateway to listen / become ready
WORKER_TIMEOUT = 600.0  # hard cap per measurement process, whatever N is: a wedged run fails instead of hanging

T = TypeVar("T")


class BenchmarkError(RuntimeError):
    """A setup or measurement failure with enough context (stderr tails) to act on."""


# --------------------------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Child:
    """A child process in its own session (so Ctrl-C reaches only us and we decide the shutdown order)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stderr_tail(self, lines: int = 30) -> str:
        """Last lines of the child's combined output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output captured)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it has not exited within ``grace`` seconds."""
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def check_alive(self) -> None:
        """Raise with the child's output if it has exited: a dead server would make the next figure meaningless."""
        if self.proc.poll() is not None:
            raise BenchmarkError(f"{self.name} exited with {self.proc.returncode}:\n{self.stderr_tail()}")


class Children:
    """Owns every process a benchmark starts; ``close()`` stops them all in reverse start order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start ``argv`` in its own session with stdout+stderr going to ``<workdir>/<name>.log``."""
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        child = Child(name, proc, log_path)
        self.items.append(child)
        return child

    def close(self) -> None:
        """Stop all children, then whatever they started that outlived them; never raises (runs on error paths).

        The descendants are collected first because a child that started its own session (a gateway's stdio
        upstream, a peer's forked workers) is not in the child's process group and would survive ``stop()``.
        """
        leftovers = [pid for child in self.items if child.proc.poll() is None for pid in descendants(child.proc.pid)]
        for child in reversed(self.items):
            with contextlib.suppress(Exception):
                child.stop()
        self.items.clear()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def run_with_children(prefix: str, body: Callable[[Path, Children], T], *, failure: str = "benchmark failed") -> T:
    """Run ``body(workdir, children)`` in a temp dir, with every child stopped however it ends.

    On a :class:`BenchmarkError` the message is printed as ``<failure>: …`` and the process exits with 1; on Ctrl-C
    or SIGTERM (turned into ``KeyboardInterrupt`` here, so both take the same clean-up path) it exits with 130.
    Exiting rather than returning a code keeps each benchmark's ``orchestrate`` to its success path.
    """
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (nohup, `&`)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        children = Children(workdir)
        try:
            return body(workdir, children)
        except BenchmarkError as exc:
            print(f"{failure}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("interrupted; stopping child processes", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            children.close()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM takes the same clean-up path as Ctrl-C."""
    raise KeyboardInterrupt


def mcpgw_command() -> str:
    """``mcpgw`` next to this python (the project's venv) or on PATH."""
    local = Path(sys.executable).parent / "mcpgw"
    found = str(local) if local.exists() else shutil.which("mcpgw")
    if found is None:
        raise BenchmarkError("mcpgw not found next to this python nor on PATH; run with the project's venv python")
    return found


def checkout_env() -> dict[str, str]:
    """This checkout's `mcp_gateway` first on the path: the venv may hold an editable install of another worktree."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else "")}


def lab_argv(port: int) -> list[str]:
    """The lab upstream (``echo``, ``progress``, generated tools) over streamable HTTP on ``port``."""
    return [sys.executable, str(LAB_SERVER), "--transport", "http", "--port", str(port)]


def start_lab(
    children: Children,
    name: str,
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> Child:
    """Start a lab upstream on ``port`` (``env`` added to ours) and wait until it listens."""
    child = children.start(name, lab_argv(port), env={**os.environ, **env} if env else None)
    wait_for_port(child, port, timeout)
    return child


# --------------------------------------------------------------------------------------------------------------
# Waiting for a child
# --------------------------------------------------------------------------------------------------------------


class NotYet(Exception):
    """Raised by a :func:`poll_child` probe: not there yet; the message says why and is shown on timeout."""


def poll_child(child: Child, probe: Callable[[], T], *, timeout: float, interval: float, waiting_for: str) -> T:
    """Call ``probe`` every ``interval`` s until it returns, failing fast (with the child's output) if it dies."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            return probe()
        except NotYet as exc:
            last = str(exc)
        time.sleep(interval)
    raise BenchmarkError(
        f"{child.name} not {waiting_for} within {timeout:.0f}s (last: {last}); its output:\n{child.stderr_tail()}"
    )


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on the loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(child: Child, port: int, timeout: float) -> None:
    """Wait until ``port`` accepts TCP connections."""

    def probe() -> None:
        if not port_open(port):
            raise NotYet("connection refused")

    poll_child(child, probe, timeout=timeout, interval=0.1, waiting_for=f"listening on port {port}")


def wait_for_http(child: Child, url: str, timeout: float, *, interval: float = 0.2) -> bytes:
    """Poll ``GET url`` until it answers 200; returns the body."""

    def probe() -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                if response.status == 200:
                    return body
                raise NotYet(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            raise NotYet(f"HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except OSError as exc:
            raise NotYet(repr(exc)) from None

    return poll_child(child, probe, timeout=timeout, interval=interval, waiting_for=f"answering {url}")


def wait_for_ready(child: Child, base_url: str, timeout: float, *, interval: float = 0.2) -> dict[str, Any]:
    """Poll a gateway's ``GET /readyz`` until 200 (its upstreams connected, their tools in the catalog)."""
    body: dict[str, Any] = json.loads(wait_for_http(child, base_url + "/readyz", timeout, interval=interval))
    return body


def start_gateway_for_lab(
    children: Children,
    workdir: Path,
    upstream_url: str,
    *,
    name: str = "gateway",
    server: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> tuple[Child, str]:
    """``mcpgw serve`` in front of one lab upstream over streamable HTTP (named ``lab``, so its tools are ``lab-…``),
    with no virtual keys (inference calls need none) and a throwaway SQLite store instead of ``.mcpgw/`` in the
    repo; ``server`` adds ``server:`` settings. Returns the child and its base URL once ``/readyz`` is 200 and the
    lab's tools are in the catalog. ``env``: the child's whole environment (default: this checkout's code first)."""
    port = free_port()
    config = workdir / f"{name}.yaml"
    server_lines = "".join(f"  {key}: {value}\n" for key, value in (server or {}).items())
    config.write_text(
        f"server:\n  host: 127.0.0.1\n{server_lines}auth:\n  enforce_auth_on_inference: false\n"
        f"database_url: sqlite:///{workdir / f'{name}.db'}\n"
        f"upstreams:\n  lab:\n    transport: http\n    url: {upstream_url}\n    allow_on_all_virtual_keys: true\n"
    )
    child = children.start(
        name,
        [mcpgw_command(), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
        env=env if env is not None else checkout_env(),
    )
    base = f"http://127.0.0.1:{port}"
    ready = wait_for_ready(child, base, timeout)
    if ready.get("tools", 0) < 1:
        raise BenchmarkError(f"gateway is ready but lists no tools: {ready}")
    return child, base


# --------------------------------------------------------------------------------------------------------------
# CPU time of processes (Linux /proc; NaN elsewhere, which then shows as n/a)
# --------------------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process from /proc/<pid>/stat; NaN if it is gone or this is not Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid``, from the ppid of every process in /proc."""
    tree: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            tree.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    found, stack = [], list(tree.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants: a peer may fork workers (gunicorn, uvicorn --workers)."""
    return sum(cpu for p in (pid, *descendants(pid)) if not math.isnan(cpu := cpu_seconds(p)))


# --------------------------------------------------------------------------------------------------------------
# One measurement process
# --------------------------------------------------------------------------------------------------------------


def load_client_argv(
    url: str, tool: str, *, op: str = "call", concurrency: int = 1, calls: int, warmup: int, payload: int = 64
) -> list[str]:
    """The command of one ``_load.py`` measurement (the load client every HTTP benchmark shares).

    ``warmup`` is for ``tools/call`` runs; a ``tools/list`` run warms up with a fifth of it (at least 10), because a
    listing costs more and has no upstream connection to warm.
    """
    return [
        sys.executable,
        str(LOAD_CLIENT),
        "--url",
        url,
        "--tool",
        tool,
        "--op",
        op,
        "--concurrency",
        str(concurrency),
        "--calls",
        str(calls),
        "--warmup",
        str(warmup if op == "call" else max(10, warmup // 5)),
        "--payload",
        str(payload),
    ]


def worker_env(headers: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment for a worker, plus ``extra``, with ``headers`` in :data:`~_load.HEADERS_ENV`.

    Secrets (bearer tokens, virtual keys) go to workers this way, never on a command line where ``ps`` shows them;
    an inherited :data:`~_load.HEADERS_ENV` is dropped so that one target's credentials never reach another.
    """
    env = {k: v for k, v in os.environ.items() if k != HEADERS_ENV}
    if headers:
        env[HEADERS_ENV] = json.dumps(dict(headers))
    return env | dict(extra or {})


@dataclass(frozen=True)
class WorkerRun:
    """A worker's ``@@result`` object, and per sampled process the CPU ms it used per call in the measured phase."""

    result: dict[str, Any]
    cpu_ms_per_call: tuple[float, ...]


def run_worker(
    argv: Sequence[str],
    *,
    workdir: Path,
    what: str,
    sample: Callable[[], Sequence[float]] = tuple,
    env: Mapping[str, str] | None = None,
    deadline: float | None = None,
    watch: Sequence[Child] = (),
    show_output_of: Child | None = None,
) -> WorkerRun:
    """Run one worker process and sample the servers' CPU exactly over its measured phase.

    ``sample()`` returns the CPU seconds of the processes under test; it is called when the worker prints
    :data:`~_load.MARK_START` and :data:`~_load.MARK_END`, so warm-up and session set-up never count. The worker is
    killed after :data:`WORKER_TIMEOUT` s or at ``deadline`` (the benchmark's overall budget), whichever is first,
    and on any error here. ``watch`` lists servers that must still be alive before it starts; on failure the error
    carries the worker's stderr and, if given, the tail of ``show_output_of`` (the server it was talking to).
    """
    limit = WORKER_TIMEOUT
    if deadline is not None:
        limit = min(limit, deadline - time.monotonic())
        if limit <= 5:
            raise BenchmarkError("overall time budget exhausted (raise --max-seconds or make the runs smaller)")
    for child in watch:
        child.check_alive()
    stderr_path = workdir / "worker.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=dict(env) if env is not None else worker_env(),
        )
    timer = threading.Timer(limit, proc.kill)
    timer.start()
    cpu: dict[str, Sequence[float]] = {}
    result: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line in (MARK_START, MARK_END):
                cpu[line] = sample()
            elif line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
        proc.wait(timeout=30)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    if proc.returncode != 0 or result is None:
        tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-25:])
        message = f"{what} failed (exit {proc.returncode}; killed if it ran past {limit:.0f}s):\n{tail}"
        if show_output_of is not None:
            message += f"\n--- {show_output_of.name} output ---\n{show_output_of.stderr_tail(15)}"
        raise BenchmarkError(message)
    if len(cpu) == 2:
        spent = zip(cpu[MARK_START], cpu[MARK_END], strict=True)
        per_call = tuple((end - start) * 1000 / result["calls"] for start, end in spent)
    else:  # the worker never marked a measured phase: nothing to attribute
        per_call = tuple(math.nan for _ in sample())
    return WorkerRun(result, per_call)
