"""Faults, tried for real: the process doing the work is killed with SIGKILL during ingest,
during the dbt build, and between writing and replacing the published files. After each, the
published warehouse, exports and manifest are the previous ones, the build database opens, and a
rerun publishes marts identical to the floor script's (an independent computation of what a run
with no fault publishes), with every row loaded exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, assert_marts_equal_the_floor, published_files, run_pipeline
from tests.new_work import restate_and_add_a_month
from warehouse.ingest import scan_file
from warehouse.settings import Settings
from warehouse.transform.dbt import dbt_command, dbt_env

pytestmark = pytest.mark.slow

# Runs one stage in a child process that kills itself with SIGKILL at a chosen point: as
# abrupt as the OOM killer or a lost machine, and at the worst moment, not a random one.
# Killed inside a load's open transaction (rows deleted and inserted, the ledger written, not
# yet committed), on either path: the new month read with others (batch: just after the reader
# wrote its rows into raw, or once its ledger entry is written), or the restated one alone
# (load), after the new month's transaction committed.
KILL_DURING_INGEST = """
import os, signal, sys
import importlib
from warehouse.ingest import ingest_source
from warehouse.settings import Settings
module = importlib.import_module(sys.argv[1])
real = getattr(module, sys.argv[2])
def killed_before_commit(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(module, sys.argv[2], killed_before_commit)
ingest_source("usage", "killed-run", Settings.from_env())
"""

KILL_BEFORE_SWAP = """
import json, os, signal
import warehouse.publish.release as release
from warehouse.settings import Settings
settings = Settings.from_env()
release._swap_in = lambda moves: os.kill(os.getpid(), signal.SIGKILL)
release.publish(settings, "killed-run", json.loads(settings.validation_report.read_text()))
"""


def child(code: str, settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.environment()}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO, check=False)


def assert_build_db_opens(data_dir: Path) -> int:
    """The build database opens read-write after the crash (DuckDB replays or drops its WAL);
    returns its usage row count."""
    with duckdb.connect(str(data_dir / "build.duckdb")) as con:
        return con.execute("select count(*) from raw.usage").fetchone()[0]


def assert_rerun_equals_the_floor(settings: Settings, tmp_path: Path) -> None:
    """A rerun publishes, every row loaded once, and its marts equal the floor's exactly."""
    landing, data_dir = settings.landing_dir, settings.data_dir
    rerun = run_pipeline(settings, "rerun")
    assert rerun.succeeded, rerun.failed_tasks
    in_files = sum(scan_file(p).rows_in_file for p in (landing / "spend").glob("*.csv"))
    assert assert_build_db_opens(data_dir) == in_files  # no row twice, none lost
    assert_marts_equal_the_floor(settings, tmp_path)
    assert [p.name for p in data_dir.rglob("*") if ".tmp-" in p.name] == []


@pytest.mark.parametrize(
    "module, step",
    [
        ("warehouse.ingest.batch", "_write_rows"),
        ("warehouse.ingest.batch", "_write_ledger_entries"),
        ("warehouse.ingest.load", "_replace_file_rows"),
    ],
    ids=["new files' rows written, unchecked", "new files read together", "a restated file alone"],
)
def test_sigkill_during_ingest_loses_nothing_and_the_rerun_is_exact(
    published, tmp_path, module, step
):
    data_dir = published.data_dir
    before = published_files(data_dir)
    rows_before = assert_build_db_opens(data_dir)
    restate_and_add_a_month(published.landing_dir)
    new_month = scan_file(published.landing_dir / "spend" / "usage_2025_01.csv").rows_in_file

    killed = child(KILL_DURING_INGEST, published, module, step)

    assert killed.returncode == -signal.SIGKILL, killed
    assert published_files(data_dir) == before
    # The open transaction is gone; only the new month's, committed before it, remains.
    committed = new_month if module.endswith("load") else 0
    assert assert_build_db_opens(data_dir) == rows_before + committed
    assert_rerun_equals_the_floor(published, tmp_path)


def test_sigkill_during_the_dbt_build_leaves_the_publish_and_the_rerun_is_exact(
    published, tmp_path
):
    data_dir = published.data_dir
    before = published_files(data_dir)
    restate_and_add_a_month(published.landing_dir)
    subprocess.run(
        [sys.executable, "-m", "warehouse.cli", "ingest"],
        env={**os.environ, **published.environment()},
        check=True,
        capture_output=True,
    )
    build = subprocess.Popen(
        dbt_command(published, "build"),
        env={**os.environ, **dbt_env(published)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # Kill it once it is writing: the incremental usage fact has started.
    for line in build.stdout:
        if "START sql incremental model" in line:
            time.sleep(0.2)
            os.killpg(build.pid, signal.SIGKILL)
            break
    build.wait(timeout=60)

    assert build.returncode == -signal.SIGKILL
    assert published_files(data_dir) == before
    assert_build_db_opens(data_dir)
    assert_rerun_equals_the_floor(published, tmp_path)


def test_sigkill_between_writing_and_replacing_keeps_the_previous_publish(published, tmp_path):
    data_dir = published.data_dir
    before = published_files(data_dir)

    killed = child(KILL_BEFORE_SWAP, published)

    assert killed.returncode == -signal.SIGKILL
    assert published_files(data_dir) == before
    # The killed process's staged files are left behind; the next publish clears them.
    assert [p.name for p in data_dir.rglob("*") if ".tmp-" in p.name]
    assert_build_db_opens(data_dir)
    assert_rerun_equals_the_floor(published, tmp_path)
