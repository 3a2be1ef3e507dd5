"""What the command line prints, and how a command ends with one error line.

Every command writes through `console` (stdout) and `errors` (stderr) from here, so width,
wrapping and markup behave the same in every group: as wide as the terminal, and unbounded in a
pipe or a file, where rich would otherwise assume 80 columns and fold ids and grants a few
characters per line.

A command that cannot go on calls `fail`: one `error:` line on stderr, then exit `code`. Work run
inside the store (`_state.with_store`) raises `Failure` instead, so that the store is closed
before the command ends the same way.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from mcp_gateway.store import AuditEventRecord, VirtualKeyRecord


def _console(*, stderr: bool = False) -> Console:
    """A console as wide as the terminal, or unbounded for a pipe or file: rich would otherwise assume
    80 columns there and fold ids and grants a few characters per line (COLUMNS still wins). soft_wrap: an
    error line stays one line in CI logs and pipes."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH if piped else None)


PIPE_WIDTH = 4000
console = _console()
errors = _console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class Failure(Exception):
    """Raised inside a store command to end it with one `error:` line and `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    """End the command: `error: MESSAGE` on stderr (printed as is, never read as markup), exit `code`."""
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def json_default(value: object) -> str:
    """`json.dumps`'s `default`: datetimes as ISO 8601, as the admin API writes them."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=json_default))


def record_json(record: VirtualKeyRecord | AuditEventRecord) -> dict[str, Any]:
    """The same fields as the admin API's bodies; a key record never holds the key itself."""
    return asdict(record)


def when(value: datetime | None, never: str = "never") -> str:
    """A time for a table cell, to the second (the store keeps UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else never
