"""Shared fixtures: a temporary landing folder, data folder and Airflow home per test session.

Airflow reads AIRFLOW_HOME when it is first imported, so it is set here, before any test
module can import airflow.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
# The marts DESIGN.md promises users, and the extra ones the README documents.
CONTRACT_MARTS = {
    "dim_customers",
    "fct_customer_monthly_spend",
    "fct_segment_monthly_spend",
    "fct_revenue_concentration",
    "fct_quarterly_earnings",
}
DOCUMENTED_EXTRA_MARTS = {"fct_revenue_at_risk"}

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="warehouse-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        # Retries still happen in the tests' DAG runs, without the production wait.
        "WAREHOUSE_RETRY_DELAY_SECONDS": "1",
    }
)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture
def landing(tmp_path, monkeypatch) -> Path:
    """A copy of the committed seeds as the landing folder."""
    folder = tmp_path / "landing"
    shutil.copytree(SEEDS, folder, ignore=shutil.ignore_patterns("README.md"))
    monkeypatch.setenv("WAREHOUSE_LANDING_DIR", str(folder))
    return folder


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """A migrated Airflow metadata DB with the writer pool, shared by the session's DAG runs."""
    from warehouse.pipeline import prepare_airflow_home

    return prepare_airflow_home()


def published_files(data_dir: Path) -> dict[str, str]:
    """sha256 of every published file: the warehouse, the exports and the manifest (not the
    hidden files a publish stages before replacing them)."""
    files = [data_dir / "warehouse.duckdb", data_dir / "manifest.json"]
    files += sorted(p for p in (data_dir / "exports").iterdir() if not p.name.startswith("."))
    return {
        p.relative_to(data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
    }


def run_pipeline(landing: Path, data_dir: Path, log_name: str):
    """One whole DAG run (dag.test()) over `landing` into `data_dir`; returns the PipelineRun."""
    from warehouse.pipeline import run_once

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAREHOUSE_LANDING_DIR", str(landing))
        patch.setenv("WAREHOUSE_DATA_DIR", str(data_dir))
        return run_once(data_dir / "logs" / f"{log_name}.log")


@pytest.fixture(scope="session")
def first_run(airflow_home, tmp_path_factory):
    """The seeds run through the whole DAG once (ingest, dbt, validate, publish), shared by the
    tests that start from a published warehouse; they copy `data_dir` before changing it."""
    root = tmp_path_factory.mktemp("first-run")
    landing = root / "landing"
    shutil.copytree(SEEDS, landing, ignore=shutil.ignore_patterns("README.md"))
    data_dir = root / "data"
    run = run_pipeline(landing, data_dir, "first")
    assert run.succeeded, run.log_file.read_text()[-5000:]
    return run, landing, data_dir


@pytest.fixture
def published(first_run, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A private copy of the first run's landing and data folders, set as the environment's."""
    _, landing, data_dir = first_run
    shutil.copytree(landing, tmp_path / "landing")
    shutil.copytree(data_dir, tmp_path / "data", ignore=shutil.ignore_patterns("logs"))
    monkeypatch.setenv("WAREHOUSE_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "landing", tmp_path / "data"
