"""Where the dbt project lives, and keeping its manifest current.

Cosmos renders the dbt task group from `target/manifest.json` when it exists, so a
DAG parse reads one JSON file instead of running dbt. The manifest is rebuilt with `dbt parse`
whenever a file of the project is newer than it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from warehouse import config

PROJECT_DIR = config.REPO_ROOT / "dbt_project"
MANIFEST = PROJECT_DIR / "target" / "manifest.json"
PROFILES_YML = PROJECT_DIR / "profiles.yml"
PROFILE_NAME = "ai_revenue"
TARGET_NAME = "build"
_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
# The dbt installed beside the running Python (the project's virtual environment), unless
# WAREHOUSE_DBT_EXECUTABLE names another (the container image installs it elsewhere).
DBT_EXECUTABLE = Path(
    os.environ.get("WAREHOUSE_DBT_EXECUTABLE") or Path(sys.executable).with_name("dbt")
)


def dbt_env() -> dict[str, str]:
    """What dbt needs in its environment: the data folder as an absolute path (Cosmos runs dbt
    from a temporary copy of the project, so relative defaults would point elsewhere)."""
    return {
        "WAREHOUSE_DATA_DIR": str(config.data_dir()),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in _SOURCES:
        path = PROJECT_DIR / name
        files = [path] if path.is_file() else path.rglob("*")
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


def dbt_command(*args: str) -> list[str]:
    return [
        str(DBT_EXECUTABLE),
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
    ]


def run_dbt(*args: str) -> None:
    """Run a dbt command on the project with the pipeline's environment; fail with its output."""
    result = subprocess.run(
        dbt_command(*args),
        env={**os.environ, **dbt_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
        )


def ensure_manifest() -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project's files."""
    if not MANIFEST.exists() or MANIFEST.stat().st_mtime < _newest_source_mtime():
        run_dbt("parse")
    return MANIFEST


def generate_docs() -> Path:
    """Write dbt's documentation site as one self-contained HTML file (no CDN, works offline)
    to `data/docs/index.html`, with the catalog read from the build database."""
    run_dbt("docs", "generate", "--static")
    out = config.data_dir() / "docs" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_DIR / "target" / "static_index.html", out)
    return out
