"""One writer per data folder, by design: a lock on `<data>/.run.lock` for as long as a run (or
a writing task) works on the build database.

The lock is `flock(2)`, which the kernel drops when its holder dies, however it dies: a
SIGKILLed run never leaves a lock that blocks the next one. The holder writes who it is (pid,
run id, what it is doing, since when) into the file, so a second run can name it; a holder that
ends normally empties the file, so finding it non-empty when the lock is free means the last
holder died, and the new holder says so in one line.

`warehouse run` holds the lock for the whole run; every DAG task that opens the build database
takes it too. Under `dag.test()` the tasks run inside the run's own process, where taking it
again is a no-op (the lock is re-entrant per process); under a scheduler each task process
takes it for the task, so a `make run` and a scheduled run on the same data folder are ordered
task by task (each task is idempotent, and none ever overlaps another writer).

The processes a run starts (dbt, through `warehouse.runtime.children`) hold a shared lock on
`<data>/.children.lock` while they live. A new holder of the run lock waits for that file to be
free before it starts, so nothing a dead run started is still writing when the next one begins.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from warehouse.settings import Settings

# How long a new holder waits for the children of a dead run to end (they die with their
# parent at once; this only bounds the wait if something is stuck).
CHILDREN_WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.2


class LockHeldError(Exception):
    """The data folder is in use by another run; the message names it in one line."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class _Held:
    fd: int
    depth: int
    record: dict


# Lock file -> this process's hold on it (re-entrant: tasks inside `warehouse run`).
_HELD: dict[Path, _Held] = {}


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


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_children(settings: Settings, say: Callable[[str], None]) -> None:
    """Wait (bounded) until no process started by an earlier run still holds the children
    lock: dbt of a killed run is ending, and must not hold the build database any more."""
    path = settings.children_lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _try_lock(fd, fcntl.LOCK_EX):
            return
        say(f"waiting for processes of an earlier run on {settings.data_dir} to end ...")
        deadline = time.monotonic() + CHILDREN_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            if _try_lock(fd, fcntl.LOCK_EX):
                return
        raise LockHeldError(
            f"processes started by an earlier run still hold {path} after "
            f"{CHILDREN_WAIT_SECONDS:.0f} s; find them with `fuser {path}` and stop them"
        )
    finally:
        os.close(fd)  # closing drops the lock: the barrier is passed, not held


def _acquire(settings: Settings, record: dict, wait_seconds: float, say) -> int:
    path = settings.run_lock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        from warehouse.db import storage_error

        raise storage_error(error, path, "taking the data folder's lock") or error from error
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            holder = describe_holder(read_holder(path))
            if wait_seconds <= 0:
                raise LockHeldError(
                    f"{settings.data_dir} is in use by {holder}; wait for it to finish, or set "
                    "WAREHOUSE_LOCK_WAIT_SECONDS to wait for it"
                )
            say(f"{settings.data_dir} is in use by {holder}; waiting up to {wait_seconds:g} s")
            deadline = time.monotonic() + wait_seconds
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    holder = describe_holder(read_holder(path))
                    raise LockHeldError(
                        f"{settings.data_dir} is still in use by {holder} after waiting "
                        f"{wait_seconds:g} s (WAREHOUSE_LOCK_WAIT_SECONDS); try again later"
                    )
                time.sleep(_POLL_SECONDS)
        stale = read_holder(path)
        if stale:
            say(
                f"cleared a stale lock on {settings.data_dir}: {describe_holder(stale)} ended "
                "without releasing it (killed?)"
            )
        _wait_for_children(settings, say)
        _write_record(fd, record)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(path: Path) -> None:
    held = _HELD.pop(path)
    with contextlib.suppress(OSError):
        os.ftruncate(held.fd, 0)  # an empty file: released cleanly, not by a death
    os.close(held.fd)  # closing the only descriptor drops the flock


@contextlib.contextmanager
def hold_data_lock(
    settings: Settings,
    what: str,
    run_id: str | None = None,
    *,
    wait_seconds: float | None = None,
    say: Callable[[str], None] = _say,
) -> Iterator[dict]:
    """Hold the data folder's writer lock for the block; waits up to `wait_seconds` (the
    settings' `lock_wait_seconds` by default) for another holder, then raises LockHeldError
    naming it. Re-entrant within a process; an inner holder adds its run id to the record."""
    path = settings.run_lock
    held = _HELD.get(path)
    if held is not None:
        held.depth += 1
        if run_id and held.record.get("run_id") != run_id:
            held.record["run_id"] = run_id
            with contextlib.suppress(OSError):
                _write_record(held.fd, held.record)
        try:
            yield held.record
        finally:
            held.depth -= 1
        return
    record = {
        "pid": os.getpid(),
        "run_id": run_id,
        "what": what,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    wait = settings.lock_wait_seconds if wait_seconds is None else wait_seconds
    fd = _acquire(settings, record, wait, say)
    _HELD[path] = _Held(fd, 1, record)
    try:
        yield record
    finally:
        if path in _HELD:
            _release(path)


def release_all() -> None:
    """Release every lock this process holds (before it exits on a signal)."""
    for path in list(_HELD):
        _release(path)
