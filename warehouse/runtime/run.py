"""Run a DAG once, end to end, in this process (Airflow's `dag.test()`).

`warehouse run` runs the pipeline DAG this way and then, if it published, the report DAG, as
the scheduler would on the published Asset's event (no scheduler runs here). Airflow's task
logs go to a log file, so that what a person sees at the end is the run's outcome and the
summary of what the build database holds. The caller applies its settings to the environment
(`Settings.apply()`) before Airflow is first imported, since Airflow reads its home once.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from warehouse.runtime import forkserver, warmup
from warehouse.runtime.children import launcher_command
from warehouse.settings import DAG_ID, DAGS_FOLDER, VENV_DBT, WRITER_POOL, Settings


@dataclass
class PipelineRun:
    run_id: str
    state: str
    # Each task instance's final state, by task id; a mapped one's as `task_id[name]`, its
    # name being its map index as the UI shows it (map_index_template), else the number.
    task_states: dict[str, str]
    log_file: Path

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


def prepare_airflow_home(
    settings: Settings, env: dict[str, str] | None = None, marker: Path | None = None
) -> Path:
    """Create Airflow's metadata database and the writer pool, once per database: the
    embedded SQLite one of the Airflow home by default, or the one `env` (the environment the
    services will run with) names, whose `marker` file says it is ready. The metadata files
    (SQLite's database, airflow.cfg with its generated secrets) are readable by their owner
    only."""
    env = {**os.environ, **settings.environment(), **(env or {})}
    home = settings.airflow_home
    marker = marker or home / ".warehouse-ready"
    if marker.exists():
        _owner_only(home)
        return home
    home.mkdir(parents=True, exist_ok=True)
    airflow = [sys.executable, "-m", "airflow"]
    with (home / "prepare.log").open("w") as log:
        for command in (
            ["db", "migrate"],
            ["pools", "set", WRITER_POOL, "1", "serialises writers of build.duckdb"],
        ):
            subprocess.run(  # through the launcher: it ends with this process
                launcher_command(airflow + command),
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
    _owner_only(home)
    marker.touch()
    return home


# Airflow's files that hold metadata or secrets (SQLite's journal files take the database's mode).
METADATA_FILES = ("airflow.db", "airflow.cfg", "webserver_config.py")


def _owner_only(home: Path) -> None:
    for name in METADATA_FILES:
        path = home / name
        if path.exists():
            path.chmod(0o600)


def load_dag(dag_id: str = DAG_ID):
    """A DAG, parsed from the DAGs folder the way Airflow parses it."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG files failed to import: {bag.import_errors}")
    return bag.dags[dag_id]


def run_once(settings: Settings, log_file: Path | None = None, dag_id: str = DAG_ID) -> PipelineRun:
    """Run the DAG once with `dag.test()` in this process, whose environment must already be
    the settings' (the DAG's tasks build their settings from it); says how the run ended."""
    log_file = log_file or settings.logs_dir / f"run_{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    prepare_airflow_home(settings)
    # Only the pipeline DAG runs dbt; the report DAG would leave the server's imports unused.
    dbt_ahead = _dbt_ahead(settings) if dag_id == DAG_ID else contextlib.nullcontext()
    with (
        settings.applied(),
        _output_to(log_file),
        warmup.during_waits(_import_the_audit),
        dbt_ahead,
    ):
        dag = load_dag(dag_id)
        dag_run = dag.test()
    states = _task_states(dag_id, dag_run.run_id)
    return PipelineRun(dag_run.run_id, str(dag_run.state), states, log_file)


def _dbt_ahead(settings: Settings) -> contextlib.AbstractContextManager:
    """A fork server that imports dbt and its adapter while the first tasks run, for the
    transform task to start dbt from (`warehouse.runtime.forkserver`): about 3.5 s of a run.
    Only for this Python's own dbt: another executable (`WAREHOUSE_DBT_EXECUTABLE`) runs as
    itself."""
    if settings.dbt_executable != VENV_DBT:
        return contextlib.nullcontext()
    return forkserver.serving(
        VENV_DBT, "dbt.cli.main:cli", preload=[f"dbt.adapters.{settings.engine}"]
    )


def _import_the_audit() -> None:
    """What the validate task imports first (pandas, Great Expectations): every task shares
    this process, so it is imported while the transform task waits for dbt."""
    from warehouse.audit.expectations import import_gx

    import_gx()


# The one-line causes the pipeline's own errors carry (disk full, permission, corrupt database,
# a data folder in use), as they appear in a task's log.
_CAUSE = re.compile(r"\b(?:StorageError|LockHeldError): (.+)")


def failure_cause(log_file: Path) -> str | None:
    """The last one-line cause a failed task logged (a StorageError's or LockHeldError's
    message), or None when the log holds none."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return None
    causes = [m[1].strip() for m in _CAUSE.finditer(text)]
    return causes[-1] if causes else None


def _task_states(dag_id: str, run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.rendered_map_index,
                TaskInstance.state,
            ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
    return {
        (task if index < 0 else f"{task}[{name or index}]"): str(state)
        for task, index, name, state in rows
    }
