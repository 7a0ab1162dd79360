"""Shared fixtures: a temporary landing folder, data folder and Airflow home per test session.

Airflow reads AIRFLOW_HOME when it is first imported, so it is set here, before any test
module can import airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"

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
