"""The package's public names and its one exception tree (drawn in `mcp_gateway/errors.py`)."""

from __future__ import annotations

import mcp_gateway
import mcp_gateway.store
import mcp_gateway.vault
from mcp_gateway import errors
from mcp_gateway.errors import GatewayError


def test_all_is_sorted_and_every_name_is_exported() -> None:
    assert mcp_gateway.__all__ == sorted(mcp_gateway.__all__)
    for name in mcp_gateway.__all__:
        assert getattr(mcp_gateway, name) is not None


def test_every_exported_exception_is_a_gateway_error() -> None:
    exported = [getattr(mcp_gateway, name) for name in mcp_gateway.__all__]
    for exception in (e for e in exported if isinstance(e, type) and issubclass(e, BaseException)):
        assert issubclass(exception, GatewayError), exception


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_the_drawing_names_every_gateway_error_of_the_package() -> None:
    """A new exception that is not drawn in errors.py's docstring fails here (store and vault imported above)."""
    ours = {cls for cls in _subclasses(GatewayError) if cls.__module__.startswith("mcp_gateway.")}
    assert {"AuthError", "OAuthError", "UnknownTool", "StoreError", "VaultError"} <= {cls.__name__ for cls in ours}
    drawing = errors.__doc__ or ""
    undrawn = sorted(cls.__name__ for cls in ours if cls.__name__ not in drawing)
    assert not undrawn, f"add these to the hierarchy in mcp_gateway/errors.py: {undrawn}"
