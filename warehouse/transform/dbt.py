"""The dbt project: where it lives, and running dbt on it with the pipeline's settings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from warehouse.runtime.children import launcher_command
from warehouse.settings import DBT_PROJECT_DIR, Settings

PROFILES_YML = DBT_PROJECT_DIR / "profiles.yml"
PROFILE_NAME = "ai_revenue"


def dbt_env(settings: Settings) -> dict[str, str]:
    """What dbt needs in its environment: the settings as variables, with the data folder as an
    absolute path (Cosmos runs dbt from a temporary copy of the project, so a relative default
    would point elsewhere), and its target folder in the data folder, where the run's results
    outlive Cosmos' copy and builds over different data folders never share one."""
    return {**settings.environment(), "DBT_TARGET_PATH": str(settings.dbt_target_dir)}


def dbt_command(settings: Settings, *args: str) -> list[str]:
    return [
        str(settings.dbt_executable),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]


def run_dbt(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """Run a dbt command on the project with the settings' environment; fail with its output.
    dbt runs through the launcher that ends it with this process, however this one ends."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        launcher_command(dbt_command(settings, *args), settings.children_lock),
        env={**os.environ, **dbt_env(settings)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
        )
    return result


def generate_docs(settings: Settings) -> Path:
    """Write dbt's documentation site as one self-contained HTML file (no CDN, works offline),
    with the catalog read from the build database."""
    run_dbt(settings, "docs", "generate", "--static")
    out = settings.dbt_docs
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.dbt_target_dir / "static_index.html", out)
    return out
