"""Ending a process tree, SIGTERM then SIGKILL, in one call (psutil gives the parts, not this)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import psutil

# How long processes are given to end after SIGTERM before SIGKILL.
TERM_GRACE_SECONDS = 10.0


def tree(pid: int) -> list[psutil.Process]:
    """The process `pid` and every process below it; empty when it is gone."""
    with contextlib.suppress(psutil.NoSuchProcess):
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    return []


def terminate(
    processes: Iterable[psutil.Process], grace: float = TERM_GRACE_SECONDS
) -> list[psutil.Process]:
    """SIGTERM each process, wait up to `grace` seconds for all to end (reaping our children),
    then SIGKILL the survivors and wait for them; returns the processes that had to be killed."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, survivors = psutil.wait_procs(processes, timeout=grace)
    for process in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(survivors, timeout=grace)
    return survivors
