"""Third-party internals the command line relies on: each is reached through one module that names it,
and an upgrade that removes one fails here, not at a gateway's first shutdown.

`mcp_gateway/cli/_sse_starlette.py`: `serve` takes over when sse_starlette ends open event streams
(`AppStatus.disable_automatic_graceful_drain`, `AppStatus.should_exit`).
"""

from __future__ import annotations

import pytest
from sse_starlette.sse import AppStatus

from mcp_gateway.cli import _sse_starlette


def test_sse_starlette_has_the_shutdown_switch_serve_uses() -> None:
    gone = _sse_starlette.missing()
    assert gone == [], f"sse_starlette upgrade removed {', '.join(gone)}: update mcp_gateway/cli/_sse_starlette.py"
    assert _sse_starlette.AppStatus is AppStatus
    assert callable(AppStatus.disable_automatic_graceful_drain)
    assert isinstance(AppStatus.should_exit, bool)


def test_take_over_and_signal_exit_flip_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the real class, but restored afterwards: other tests run gateways in this process.
    monkeypatch.setattr(AppStatus, "enable_automatic_graceful_drain", True)
    monkeypatch.setattr(AppStatus, "should_exit", False)

    _sse_starlette.take_over_graceful_drain()
    assert AppStatus.enable_automatic_graceful_drain is False
    assert AppStatus.should_exit is False

    _sse_starlette.signal_exit()
    assert AppStatus.should_exit is True


def test_a_missing_internal_is_a_clear_error_naming_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    class Upgraded:  # an sse_starlette whose AppStatus lost the switch
        pass

    monkeypatch.setattr(_sse_starlette, "AppStatus", Upgraded)
    assert _sse_starlette.missing() == [
        "sse_starlette.sse.AppStatus.disable_automatic_graceful_drain",
        "sse_starlette.sse.AppStatus.should_exit",
    ]
    for call in (_sse_starlette.take_over_graceful_drain, _sse_starlette.signal_exit):
        with pytest.raises(RuntimeError, match=r"update mcp_gateway/cli/_sse_starlette\.py"):
            call()

    monkeypatch.setattr(_sse_starlette, "AppStatus", None)  # sse_starlette.sse.AppStatus itself is gone
    assert _sse_starlette.missing() == ["sse_starlette.sse.AppStatus"]
    with pytest.raises(RuntimeError, match=r"sse_starlette\.sse\.AppStatus.*_sse_starlette\.py"):
        _sse_starlette.take_over_graceful_drain()
