"""Opening DuckDB files the way the pipeline needs them, and saying in one line why a file
cannot be opened or written (disk full, permission denied, corrupt, in use)."""

from __future__ import annotations

import contextlib
import errno
import getpass
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb

from warehouse.settings import Settings


class StorageError(Exception):
    """A database file that could not be opened or written: one line naming the file, the
    cause and what to do."""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def storage_error(error: BaseException, path: Path, doing: str) -> StorageError | None:
    """The one-line StorageError for a recognised storage failure while `doing` something to
    `path` (an OSError or a DuckDB error), or None for any other error."""
    text = str(error)
    code = error.errno if isinstance(error, OSError) else None
    folder = path.parent
    if code == errno.ENOSPC or "No space left on device" in text:
        return StorageError(
            f"{path}: disk full while {doing} (No space left on device); nothing of it was "
            f"committed: free space on the file system of {folder} and run again"
        )
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return StorageError(
            f"{path}: permission denied while {doing}; give the user running the warehouse "
            f"({getpass.getuser()}) read and write access to {folder} and the files in it"
        )
    if code == errno.EROFS or "Read-only file system" in text:
        return StorageError(
            f"{path}: the file system is read-only while {doing}; point WAREHOUSE_DATA_DIR "
            "at a writable folder"
        )
    if "not a valid DuckDB database file" in text or "Corrupt database file" in text:
        return StorageError(
            f"{path}: not a readable DuckDB database ({_first_line(error)}); move it aside "
            "and run `make run` to rebuild it from the landing folder (the published "
            "warehouse is not affected)"
        )
    if "Could not set lock" in text or "Conflicting lock" in text:
        holder = re.search(r"\(PID (\d+)\)", text)
        who = f"process {holder[1]}" if holder else "another process"
        return StorageError(
            f"{path}: open in {who} while {doing}; the build database belongs to the pipeline "
            "(open the published warehouse.duckdb instead), so stop that process and run again"
        )
    return None


def bounds(settings: Settings) -> dict[str, str | bool]:
    """The configuration every DuckDB connection of a run opens with: the settings' memory
    limit, beyond which it spills to the spill folder."""
    return {
        "memory_limit": settings.duckdb_memory_limit,
        "temp_directory": str(settings.spill_dir),
        "preserve_insertion_order": True,
    }


def connect(
    path: Path, settings: Settings, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with the settings' memory limit and spill folder, so large loads run
    in bounded memory; a file that cannot be opened raises a one-line StorageError."""
    doing = "opening it" + (" read-only" if read_only else "")
    try:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(path), read_only=read_only, config=bounds(settings))
    except (OSError, duckdb.Error) as error:
        described = storage_error(error, path, doing)
        if described is None:
            raise
        raise described from error


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block in one transaction: committed when it ends, rolled back when it raises.

    A commit that failed (disk full) has already ended the transaction: the error to report is
    the commit's, not "cannot rollback - no transaction is active", so a failing rollback is
    silent."""
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
