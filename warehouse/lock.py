"""One writer per data folder (Airflow orders a run's tasks, not two runs on the same files).

A `flock(2)` on `<data>/.run.lock`, dropped by the kernel when its holder dies; the holder's
record in the file names it to others, and a record under a free lock, a dead holder. Re-entrant
in a process (`dag.test()` runs the tasks in the run's own). A new holder waits for the children
lock, which dbt's launchers hold, so nothing a dead run started still writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from warehouse.settings import Settings

# How long a new holder waits for the children of a dead run to end (they die with their
# parent at once; this only bounds the wait if something is stuck).
CHILDREN_WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.2


class LockHeldError(Exception):
    """The data folder is in use by another run; the message names it in one line."""


# Lock file -> this process's descriptor and record (re-entrant: tasks inside `warehouse run`).
_HELD: dict[Path, tuple[int, dict]] = {}


def describe_holder(record: dict | None) -> str:
    """`pid 123 (run manual__…, warehouse run, since 2026-11-28T08:00:00+00:00)`."""
    if not record:
        return "another process (starting)"
    details = [f"run {record['run_id']}"] if record.get("run_id") else []
    details += [record.get("what") or "", f"since {record.get('since', '?')}"]
    host = record.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {record.get('pid', '?')}{where} ({', '.join(d for d in details if d)})"


def read_holder(path: Path) -> dict | None:
    """What the lock file says about its holder (None when empty or unreadable)."""
    try:
        text = path.read_text().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _write_record(fd: int, record: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    os.fsync(fd)


def _lock_within(fd: int, seconds: float) -> bool:
    """Take the exclusive flock on `fd`, trying for up to `seconds`; whether it was taken."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)


def _take(settings: Settings, wait_seconds: float, say: Callable[[str], None]) -> int:
    """The run lock's descriptor, locked once it is free (waiting up to `wait_seconds`) and no
    process an earlier run started holds the children lock (bounded)."""
    path, data_dir = settings.run_lock, settings.data_dir
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        from warehouse.db import storage_error

        raise storage_error(error, path, "taking the data folder's lock") or error from error
    try:
        if not _lock_within(fd, 0):
            holder = describe_holder(read_holder(path))
            if wait_seconds <= 0:
                raise LockHeldError(
                    f"{data_dir} is in use by {holder}; wait for it to finish, or set "
                    "WAREHOUSE_LOCK_WAIT_SECONDS to wait for it"
                )
            say(f"{data_dir} is in use by {holder}; waiting up to {wait_seconds:g} s")
            if not _lock_within(fd, wait_seconds):
                raise LockHeldError(
                    f"{data_dir} is still in use by {describe_holder(read_holder(path))} after "
                    f"waiting {wait_seconds:g} s (WAREHOUSE_LOCK_WAIT_SECONDS); try again later"
                )
        if stale := read_holder(path):
            say(
                f"cleared a stale lock on {data_dir}: {describe_holder(stale)} ended without "
                "releasing it (killed?)"
            )
        children = os.open(settings.children_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:  # closed at once: the barrier is passed, not held
            if not _lock_within(children, 0):
                say(f"waiting for processes of an earlier run on {data_dir} to end ...")
                if not _lock_within(children, CHILDREN_WAIT_SECONDS):
                    raise LockHeldError(
                        f"processes started by an earlier run still hold {settings.children_lock}"
                        f" after {CHILDREN_WAIT_SECONDS:.0f} s; find them with `fuser "
                        f"{settings.children_lock}` and stop them"
                    )
        finally:
            os.close(children)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def hold_data_lock(
    settings: Settings,
    what: str,
    run_id: str | None = None,
    *,
    wait_seconds: float | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> Iterator[dict]:
    """Hold the data folder's writer lock for the block; waits up to `wait_seconds` (the
    settings' `lock_wait_seconds` by default) for another holder, then raises LockHeldError
    naming it. Re-entrant within a process; an inner holder adds its run id to the record."""
    path = settings.run_lock
    if path in _HELD:
        fd, record = _HELD[path]
        if run_id and record.get("run_id") != run_id:
            record["run_id"] = run_id
            with contextlib.suppress(OSError):
                _write_record(fd, record)
        yield record
        return
    fd = _take(settings, settings.lock_wait_seconds if wait_seconds is None else wait_seconds, say)
    since = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"pid": os.getpid(), "run_id": run_id, "what": what, "since": since}
    record["host"] = socket.gethostname()
    _HELD[path] = (fd, record)
    try:
        _write_record(fd, record)
        yield record
    finally:
        del _HELD[path]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # an empty file: released cleanly, not by a death
        os.close(fd)  # closing the only descriptor drops the flock
