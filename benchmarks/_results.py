"""What the benchmarks report and keep: tables, machine and commit, and the results JSON files.

Why a module of its own: every benchmark ends the same way (a table on stdout, then
``results/<benchmark>-<UTC timestamp>.json`` and ``<benchmark>-latest.json``), and other code and docs read those
files (``summary.rows`` and the like), so their header, NaN handling and layout are kept in one place rather than in
a copy per script. The process side (children, workers, CPU sampling) is ``_runner.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _runner import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def median_of(values: Sequence[float]) -> float:
    """Median ignoring unmeasured (NaN) values; NaN if nothing was measured."""
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def spec_width(spec: str) -> int:
    """The field width of a format spec: ``"9.1f"`` → 9, ``"<8"`` → 8, ``">12,"`` → 12, ``"+8.2f"`` → 8, ``".2f"`` → 0.

    A sign (``+``) may stand between the alignment and the width, as in ``format``.
    """
    match = re.match(r"[<>^=]?[-+ ]?(\d*)", spec)
    return int(match[1]) if match and match[1] else 0


def fmt(value: Any, spec: str) -> str:
    """``format`` that shows unmeasured figures (None, NaN) as a right-aligned "n/a" of the same width."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a".rjust(spec_width(spec))
    return format(value, spec)


@dataclass(frozen=True)
class Column:
    """One column of a report table: ``row[key]`` formatted with ``spec`` (``"<8"``, ``"9.1f"``, ``">12,"``)."""

    title: str
    key: str
    spec: str
    suffix: str = ""  # printed right after the value, e.g. "x" for a ratio; counts towards the width

    @property
    def width(self) -> int:
        return spec_width(self.spec) + len(self.suffix)


def print_table(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header (titles aligned like their values), a rule as wide as it, then one line per row."""
    header = " ".join(f"{c.title:<{c.width}}" if c.spec.startswith("<") else f"{c.title:>{c.width}}" for c in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(" ".join(fmt(row[c.key], c.spec) + c.suffix for c in columns))


def nan_to_none(obj: Any) -> Any:
    """JSON has no NaN; unmeasurable figures become null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj


def machine_info() -> dict[str, Any]:
    """What the figures depend on; taken at the start, because the load average then says how busy the box was."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "mcp": version("mcp"),
        "httpx2": version("httpx2"),
        "mcpgw": version("mcpgw"),
        "uvicorn": version("uvicorn"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def machine_line(machine: Mapping[str, Any], packages: Sequence[str] = ("mcp",)) -> str:
    """The one-line machine summary every report starts with."""
    versions = "".join(f", {name} {machine[name]}" for name in packages)
    return (
        f"machine: {machine['cpu_count']} CPUs, {machine['platform']}, python {machine['python']}{versions}, "
        f"load avg at start {machine['loadavg_start']}"
    )


def git_info() -> dict[str, Any]:
    """Commit and dirty flag if this is a git checkout with commits; None values otherwise (not an error)."""

    def git(*argv: str) -> str | None:
        try:
            out = subprocess.run(["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def utc_stamp(moment: datetime | None = None) -> str:
    """``20261126T032415Z``: sorts by time and is safe in a file name."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_results(benchmark: str, payload: Mapping[str, Any], stamp: str) -> Path:
    """Write ``results/<benchmark>-<stamp>.json`` and ``…-latest.json`` (NaN as null) and say where."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(nan_to_none(dict(payload)), indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"
    path = RESULTS_DIR / f"{benchmark}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{benchmark}-latest.json").write_text(text)
    print(f"results: {path.relative_to(REPO_ROOT)} (and {benchmark}-latest.json)")
    return path


class BenchmarkRun:
    """One invocation of a benchmark: when it started, on what machine and commit; builds and saves its record.

    Every results file starts with the same header (``benchmark``, ``timestamp``, ``git``, ``machine``) and ends with
    ``total_runtime_s``, so tools reading several benchmarks' results find these in one place.
    """

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.started = time.monotonic()
        self.wall_start = datetime.now(UTC)
        self.machine = machine_info()
        self.git = git_info()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def record(self, **fields: Any) -> dict[str, Any]:
        """The results object: the common header, then ``fields`` in order, then the total runtime."""
        return {
            "benchmark": self.benchmark,
            "timestamp": self.wall_start.isoformat(),
            "git": self.git,
            "machine": self.machine,
            **fields,
            "total_runtime_s": self.elapsed(),
        }

    def save(self, payload: Mapping[str, Any]) -> Path:
        """Write ``payload`` (see :meth:`record`) as this run's results file and the ``-latest`` copy."""
        return write_results(self.benchmark, payload, utc_stamp(self.wall_start))
