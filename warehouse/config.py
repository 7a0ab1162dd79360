"""Where the warehouse reads and writes, from environment variables with fresh-clone defaults.

Relative paths resolve against the repository root, so a DAG run (whose working directory is
wherever Airflow started) and a shell in the repo agree on the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dir_from_env(variable: str, default: str) -> Path:
    path = Path(os.environ.get(variable) or default)
    return path if path.is_absolute() else REPO_ROOT / path


def landing_dir() -> Path:
    """The folder raw files land in (`customers.csv`, `earnings.csv`, `spend/*.csv`)."""
    return _dir_from_env("WAREHOUSE_LANDING_DIR", "seeds")


def data_dir() -> Path:
    """The folder that holds the build database, the published warehouse and its exports."""
    return _dir_from_env("WAREHOUSE_DATA_DIR", "data")


def build_db_path() -> Path:
    """The pipeline's own read-write database; users never open it."""
    return data_dir() / "build.duckdb"


# Airflow pool with one slot: every task that writes the build database runs in it, because
# DuckDB allows one read-write process per file.
WRITER_POOL = "duckdb_writer"


def retry_delay_seconds() -> int:
    """How long Airflow waits before retrying a failed task (WAREHOUSE_RETRY_DELAY_SECONDS)."""
    return int(os.environ.get("WAREHOUSE_RETRY_DELAY_SECONDS") or 60)
