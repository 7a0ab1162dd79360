"""`warehouse run`: Airflow's `dag.test()` in this process, its output kept in a log file and its
outcome returned as task states (`airflow dags test` prints all and returns nothing)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from warehouse.runtime.services import prepare_airflow_home
from warehouse.settings import DAG_ID, DAGS_FOLDER, Settings


@dataclass
class PipelineRun:
    run_id: str
    state: str
    task_states: dict[str, str]  # by task id; a mapped task's as `task[its map index's name]`
    log_file: Path
    task_seconds: dict[str, float] = field(default_factory=dict)  # the tasks that ran

    def slowest(self, count: int = 5) -> str:
        """The tasks that took longest, as `task 12.3 s, ...`: where a run's time went."""
        ranked = sorted(self.task_seconds.items(), key=lambda item: -item[1])[:count]
        return ", ".join(f"{task} {seconds:.1f} s" for task, seconds in ranked)

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    @property
    def failed_tasks(self) -> list[str]:
        return sorted(
            f"{task} ({state})"
            for task, state in self.task_states.items()
            if state not in ("success", "skipped")
        )


# A text stream on file descriptor 1 that is never closed: logging handlers that Airflow
# creates during a run keep a reference to it, and must still work in the next run.
_FD1_STREAM = None


@contextlib.contextmanager
def _output_to(log_file: Path):
    """Send this process's stdout and stderr (file descriptors too) to `log_file`."""
    global _FD1_STREAM
    if _FD1_STREAM is None:
        _FD1_STREAM = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115 (kept open)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            # Python-level streams too, for when they are not the descriptors (pytest).
            with contextlib.redirect_stdout(_FD1_STREAM), contextlib.redirect_stderr(_FD1_STREAM):
                yield
        finally:
            _FD1_STREAM.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def load_dag(dag_id: str = DAG_ID):
    """A DAG, parsed from the DAGs folder the way Airflow parses it."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG files failed to import: {bag.import_errors}")
    return bag.dags[dag_id]


def run_once(
    settings: Settings,
    log_file: Path | None = None,
    dag_id: str = DAG_ID,
    conf: dict | None = None,
) -> PipelineRun:
    """Run the DAG once with `dag.test()` in this process, whose environment must already be
    the settings' (the DAG's tasks build their settings from it), with the run's `conf` (the
    DAG's params); says how the run ended."""
    from airflow.models.dagrun import DagRun

    log_file = log_file or settings.logs_dir / f"run_{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    prepare_airflow_home(settings)
    with settings.applied(), _output_to(log_file):
        run = load_dag(dag_id).test(run_conf=conf)
    states, seconds = {}, {}
    for ti in DagRun.fetch_task_instances(dag_id=dag_id, run_id=run.run_id):
        index = "" if ti.map_index < 0 else f"[{ti.rendered_map_index or ti.map_index}]"
        states[ti.task_id + index] = str(ti.state)
        if ti.start_date and ti.end_date:
            seconds[ti.task_id + index] = (ti.end_date - ti.start_date).total_seconds()
    return PipelineRun(run.run_id, str(run.state), states, log_file, seconds)
