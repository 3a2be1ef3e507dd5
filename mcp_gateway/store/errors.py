"""Exceptions raised by the store.

Hierarchy::

    GatewayError
    └── StoreError             a database operation failed (message never contains the URL's password)
        ├── StoreUnavailable       the database cannot be reached or migrated at startup
        └── RecordNotFound         a write referred to a row that does not exist

Errors from SQLAlchemy, aiosqlite and asyncpg are translated into these inside the store, so
callers never import a driver to handle a database problem.
"""

from __future__ import annotations

from mcp_gateway.errors import GatewayError


class StoreError(GatewayError):
    """Raised when a database operation fails; the original driver error is chained as `__cause__`."""


class StoreUnavailable(StoreError):
    """Raised by `open_store` when the database cannot be reached or its schema cannot be migrated."""


class RecordNotFound(StoreError):
    """Raised when a write refers to a row that does not exist, e.g. a virtual key for an unknown user."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} does not exist")
        self.kind = kind
        self.key = key
