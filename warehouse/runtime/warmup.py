"""Work a later task of the run needs, done while this process waits for dbt.

Under `warehouse run` every task of a DAG run shares one process (Airflow's `dag.test()`), so
the audit's imports (pandas and Great Expectations: seconds of CPU) can run on the second core
while the transform task waits for its dbt process, instead of after it. The run registers
that work (`during_waits`); the transform task starts it (`start`) as dbt starts. Under a
scheduler each task has its own process, where that work would be wasted: nothing is
registered there, and `start` does nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

_registered: list[Callable[[], object]] = []
_lock = threading.Lock()


@contextlib.contextmanager
def during_waits(*work: Callable[[], object]) -> Iterator[None]:
    """Register `work` for the next `start()` in this process while the block runs."""
    with _lock:
        _registered.extend(work)
    try:
        yield
    finally:
        with _lock:
            for item in work:
                with contextlib.suppress(ValueError):
                    _registered.remove(item)


def start() -> threading.Thread | None:
    """Start the registered work in a background thread, once; None when there is none. A
    failure there is ignored: the task that needs the work does it again, and reports it."""
    with _lock:
        work = list(_registered)
        _registered.clear()
    if not work:
        return None

    def run() -> None:
        for item in work:
            with contextlib.suppress(Exception):
                item()

    thread = threading.Thread(target=run, name="warehouse-warmup", daemon=True)
    thread.start()
    return thread
