"""The master key file: where it lives, reading it safely, creating and replacing it without exposure.

The file holds one line, the base64url of 32 random bytes. It is created with mode 0600 from the
first byte (never written first and chmod-ed after), and a file that group or others may access
is refused, as ssh refuses such a private key: a key that others can read protects nothing.

These are small blocking calls on a ~45-byte file: callers on the event loop run them in a worker
thread (`anyio.to_thread.run_sync`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from mcp_gateway.store.engine import DEFAULT_DIRECTORY, resolve_database_url, sqlite_path
from mcp_gateway.vault.errors import MasterKeyError

KEY_FILE_ENV = "MCPGW_MASTER_KEY_FILE"
KEY_FILE_NAME = "master.key"
PENDING_SUFFIX = ".new"
_MAX_KEY_FILE_BYTES = 4096  # a key is 45 bytes; anything much larger is the wrong file


def default_key_file(database_url: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the master key file is: `$MCPGW_MASTER_KEY_FILE`, else next to a SQLite database, else `./.mcpgw/`.

    Next to the SQLite file, because a key belongs with the database it unlocks (the default is
    `.mcpgw/master.key` beside `.mcpgw/mcpgw.db`). A PostgreSQL database has no folder, so the
    working directory's `.mcpgw/` is used; several gateways sharing one database must share the
    key, which is what MCPGW_MASTER_KEY is for.

    Raises:
        ConfigError: `database_url` (or `$DATABASE_URL`) is not a supported database URL.
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get(KEY_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    database = sqlite_path(resolve_database_url(database_url, environ=environ))
    if database is not None:
        return database.parent / KEY_FILE_NAME
    return Path.cwd() / DEFAULT_DIRECTORY / KEY_FILE_NAME


def pending_key_file(path: Path) -> Path:
    """Where `mcpgw vault rotate` stages a new key before the database depends on it."""
    return path.with_name(path.name + PENDING_SUFFIX)


def read_key_file(path: Path) -> str | None:
    """The file's text, or None when there is no such file.

    Raises:
        MasterKeyError: the file cannot be read, is not a regular file, or group/others may access it.
    """
    try:
        # O_NONBLOCK: a FIFO put where the key should be must not hang start-up.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # of what was opened, so a swap after a path check cannot fool it
        if not stat.S_ISREG(info.st_mode):
            raise MasterKeyError(f"the master key file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise MasterKeyError(
                f"permissions {mode:04o} for the master key file {path} are too open: group and others must "
                f"have no access to it; run: chmod 600 {path}"
            )
        data = b""
        while len(data) <= _MAX_KEY_FILE_BYTES and (chunk := os.read(fd, _MAX_KEY_FILE_BYTES + 1 - len(data))):
            data += chunk
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return ""  # not a key: the decoder reports what the file must hold, without its content


def create_key_file(path: Path, text: str) -> bool:
    """Write `text` to a new key file at `path`; False (and nothing written) when the file already exists.

    The complete file appears at once (written and synced under a temporary name, then hard-linked
    into place), so a second gateway starting at the same moment reads either no file or the whole
    key, never a half-written one; the link also never replaces a file that won the race.
    """
    _make_private_directory(path.parent)
    temporary = _write_private_temporary(path, text)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError:
        # A filesystem without hard links: exclusive creation is still atomic, just not all-or-nothing.
        return _create_exclusive(path, text)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    _sync_directory(path.parent)
    return True


def write_key_file(path: Path, text: str) -> None:
    """Replace (or create) the key file at `path` atomically: readers see the old key or the new one, whole."""
    _make_private_directory(path.parent)
    temporary = _write_private_temporary(path, text)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)


def replace_key_file(source: Path, target: Path) -> None:
    """Move a staged key file over `target` in one atomic rename, durably."""
    os.replace(source, target)
    _sync_directory(target.parent)


def _make_private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_private_temporary(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    if not _create_exclusive(temporary, text):
        raise FileExistsError(f"{temporary} already exists")
    return temporary


def _create_exclusive(path: Path, text: str) -> bool:
    # Mode 0600 at creation: the key is never readable by others, not even for an instant.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text.encode("ascii") + b"\n")
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return True


def _sync_directory(directory: Path) -> None:
    """Make a rename or link in `directory` survive a power cut (where the OS allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
