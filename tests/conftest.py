"""Shared fixtures: settings over a temporary landing folder, data folder and Airflow home.

The tests build their settings as every entry point does (`Settings`), and apply the session's
before any test module imports Airflow, which reads its home once, at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from benchmarks.floor import CONTRACT_MARTS
from warehouse.settings import REPO_ROOT, Settings

REPO = REPO_ROOT
SEEDS = REPO / "seeds"
# The contract marts and the extra one docs/dbt.md documents.
DOCUMENTED_EXTRA_MARTS = {"fct_revenue_at_risk"}
ALL_MARTS = {*CONTRACT_MARTS, *DOCUMENTED_EXTRA_MARTS}
# Rows of the committed seeds (the generator's default).
SEED_USAGE_ROWS = 65_049

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="warehouse-airflow-"))
# Retries still happen in the tests' DAG runs, without the production wait.
SESSION_SETTINGS = dataclasses.replace(
    Settings.from_env({}), airflow_home=_AIRFLOW_HOME, retry_delay_seconds=1
)
SESSION_SETTINGS.apply()
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"  # real task runs, as in production


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


def settings_for(landing: Path, data_dir: Path) -> Settings:
    """The session's settings over these folders."""
    return SESSION_SETTINGS.with_folders(landing_dir=landing, data_dir=data_dir)


def copy_seeds(folder: Path) -> Path:
    shutil.copytree(SEEDS, folder, ignore=shutil.ignore_patterns("README.md"))
    return folder


@pytest.fixture
def landing(tmp_path) -> Path:
    """A copy of the committed seeds as the landing folder."""
    return copy_seeds(tmp_path / "landing")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(landing, data_dir) -> Settings:
    return settings_for(landing, data_dir)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """A migrated Airflow metadata DB with the writer pool, shared by the session's DAG runs."""
    from warehouse.runtime.run import prepare_airflow_home

    return prepare_airflow_home(SESSION_SETTINGS)


def published_files(data_dir: Path) -> dict[str, str]:
    """sha256 of every published file: the warehouse, the exports and the manifest (not the
    hidden files a publish stages before replacing them)."""
    files = [data_dir / "warehouse.duckdb", data_dir / "manifest.json"]
    files += sorted(p for p in (data_dir / "exports").iterdir() if not p.name.startswith("."))
    return {
        p.relative_to(data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
    }


def run_pipeline(settings: Settings, log_name: str, conf: dict | None = None):
    """One whole DAG run (dag.test()) with these settings and run `conf` (the DAG's params);
    returns the PipelineRun."""
    from warehouse.runtime.run import run_once

    return run_once(settings, settings.logs_dir / f"{log_name}.log", conf=conf)


@pytest.fixture(scope="session")
def first_run(airflow_home, tmp_path_factory):
    """The seeds run through the whole DAG once (ingest, dbt, validate, publish), shared by the
    tests that start from a published warehouse; they copy the data folder before changing it."""
    root = tmp_path_factory.mktemp("first-run")
    settings = settings_for(copy_seeds(root / "landing"), root / "data")
    run = run_pipeline(settings, "first")
    assert run.succeeded, run.log_file.read_text()[-5000:]
    return run, settings


@pytest.fixture
def published(first_run, tmp_path) -> Settings:
    """Settings over a private copy of the first run's landing and data folders."""
    _, settings = first_run
    shutil.copytree(settings.landing_dir, tmp_path / "landing")
    shutil.copytree(settings.data_dir, tmp_path / "data", ignore=shutil.ignore_patterns("logs"))
    return settings_for(tmp_path / "landing", tmp_path / "data")


def free_ports(count: int) -> list[int]:
    """`count` different ports free now (held together while chosen, so they differ)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def own_airflow(settings: Settings, home: Path) -> Settings:
    """`settings` with an Airflow of its own: `home`, free ports for its API and log servers,
    and passwords generated on start."""
    api_port, worker_log_port, trigger_log_port = free_ports(3)
    return dataclasses.replace(
        settings,
        airflow_home=home,
        airflow_port=api_port,
        airflow_worker_log_port=worker_log_port,
        airflow_trigger_log_port=trigger_log_port,
        airflow_password=None,
        airflow_viewer_password=None,
    )


@pytest.fixture
def stack_home():
    """A short (the PostgreSQL socket's path is bounded), private Airflow home for `make up`'s
    services that the cluster's own user may pass through (mode 0711: it cannot list it)."""
    from warehouse.runtime import services

    home = Path(tempfile.mkdtemp(prefix="wh-airflow-"))
    home.chmod(0o711)
    yield home
    services.stop(home)
    shutil.rmtree(home, ignore_errors=True)


def assert_marts_equal_the_floor(settings: Settings, tmp_path: Path) -> None:
    """The published contract marts equal the floor's (an independent recomputation of the
    landing folder), row for row."""
    import duckdb

    from benchmarks.floor import run_floor

    floor = run_floor(settings_for(settings.landing_dir, tmp_path / "floor"))
    with duckdb.connect(str(settings.published_db), read_only=True) as published:
        published.execute("attach ? as floor (read_only)", [str(floor)])
        for mart in CONTRACT_MARTS:
            differing = published.execute(
                f"select count(*) from ((select * from marts.{mart} except all "
                f"select * from floor.{mart}) union all (select * from floor.{mart} "
                f"except all select * from marts.{mart}))"
            ).fetchone()[0]
            assert differing == 0, mart
