"""Where the dbt project lives, and running dbt on it with the pipeline's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from warehouse import config

PROJECT_DIR = config.REPO_ROOT / "dbt_project"
PROFILES_YML = PROJECT_DIR / "profiles.yml"
PROFILE_NAME = "ai_revenue"
TARGET_NAME = "build"
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


def generate_docs() -> Path:
    """Write dbt's documentation site as one self-contained HTML file (no CDN, works offline)
    to `data/docs/index.html`, with the catalog read from the build database."""
    run_dbt("docs", "generate", "--static")
    out = config.data_dir() / "docs" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_DIR / "target" / "static_index.html", out)
    return out
