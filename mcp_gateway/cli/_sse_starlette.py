"""sse_starlette's process-wide shutdown switch, reached in one place.

Why: on SIGTERM/SIGINT sse_starlette ends every open event stream by itself, on its own timer,
racing the answers `serve` still wants to send (calls waiting on upstreams are failed first, and
those results must reach their clients). `serve` takes that decision over with two members of
`sse_starlette.sse.AppStatus`, a class sse_starlette documents but does not type:

- `disable_automatic_graceful_drain()`: a signal no longer ends the streams.
- `should_exit`: set to True, it ends them; once drain is disabled nothing else will, so a
  gateway that could not set it would hang on shutdown until uvicorn's timeout.

If an sse_starlette upgrade removes either, `take_over_graceful_drain` raises at start-up (not
at the first shutdown), naming this module, and `tests/test_cli_internals.py` fails on `missing()`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_sse: ModuleType | None
try:
    _sse = importlib.import_module("sse_starlette.sse")
except ImportError:  # pragma: no cover - a future sse_starlette moved it
    _sse = None
AppStatus: Any = getattr(_sse, "AppStatus", None)  # untyped in sse_starlette

_MEMBERS = ("disable_automatic_graceful_drain", "should_exit")


def missing() -> list[str]:
    """What `serve` needs from sse_starlette and the installed version lacks; [] when all is there."""
    if AppStatus is None:
        return ["sse_starlette.sse.AppStatus"]
    return [f"sse_starlette.sse.AppStatus.{name}" for name in _MEMBERS if not hasattr(AppStatus, name)]


def _app_status() -> Any:
    gone = missing()
    if gone:
        raise RuntimeError(
            f"the installed sse_starlette has no {', '.join(gone)}, which `mcpgw serve` uses to end open event "
            f"streams on shutdown: update mcp_gateway/cli/_sse_starlette.py for this sse_starlette version"
        )
    return AppStatus


def take_over_graceful_drain() -> None:
    """From now on a signal does not end open event streams; `signal_exit` does (and must, on shutdown)."""
    _app_status().disable_automatic_graceful_drain()


def signal_exit() -> None:
    """End every open sse_starlette event stream in this process."""
    _app_status().should_exit = True
