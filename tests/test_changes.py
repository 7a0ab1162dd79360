"""Nothing new, nothing rebuilt: a run whose landing files, dbt project and expectations are
those of the last publish skips the build, the audit and the publish (`warehouse.publish.changes`);
any change to one of them, a retraction or a full refresh rebuilds."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import duckdb
import pytest

from tests.conftest import published_files, run_pipeline
from tests.ingesting import ingest_sources
from warehouse.publish import changes

SKIPPED = ("transform", "validate", "publish")


def published_stat(data_dir) -> dict[str, tuple[str, int]]:
    """Each published file's hash and modification time (ns)."""
    return {
        name: (digest, os.stat(data_dir / name).st_mtime_ns)
        for name, digest in published_files(data_dir).items()
    }


def asset_events(run_id: str) -> int:
    """The published Asset's events the run `run_id` emitted, in Airflow's metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from warehouse.tasks import PUBLISHED_WAREHOUSE

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == PUBLISHED_WAREHOUSE.name)
            .where(AssetEvent.source_run_id == run_id)
        )


def built_by(settings) -> set[str]:
    """The dbt invocations whose rows the incremental usage fact holds."""
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        rows = con.execute(
            "select distinct dbt_invocation_id from intermediate.int_usage_months_aggregated"
        ).fetchall()
    return {stamp for (stamp,) in rows}


def a_publish_of_now(settings) -> dict:
    """A manifest as a publish of the build's current inputs writes it, with its files."""
    inputs = changes.current_inputs(settings)
    settings.published_db.write_bytes(b"published")
    manifest = {"run_id": "first", "published_at": "2026-12-03T05:00:00+00:00", "exports": {}}
    settings.manifest.write_text(json.dumps({**manifest, "inputs": inputs}))
    return manifest


def test_only_what_the_build_reads_decides(settings, tmp_path, monkeypatch):
    ingest_sources(settings)
    assert changes.decide(settings).rebuild  # no publish yet
    manifest = a_publish_of_now(settings)

    decision = changes.decide(settings)
    assert not decision.rebuild
    assert decision.reason == (
        "nothing changed since run first, published at 2026-12-03T05:00:00+00:00"
    )
    assert changes.decide(settings, full_refresh=True).rebuild

    # dbt's own output in the project folder is not the project.
    original = changes.DBT_PROJECT_DIR
    project = shutil.copytree(original, tmp_path / "dbt_project")
    monkeypatch.setattr(changes, "DBT_PROJECT_DIR", project)
    (project / "target").mkdir(exist_ok=True)
    (project / "target" / "manifest.json").write_text("{}")
    assert not changes.decide(settings).rebuild
    model = project / "models" / "marts" / "fct_revenue_concentration.sql"
    model.write_text(model.read_text() + "\n-- a change\n")
    assert changes.decide(settings).reason == (
        "the dbt project changed since run first: rebuilding"
    )
    monkeypatch.setattr(changes, "DBT_PROJECT_DIR", original)

    expectations = shutil.copytree(changes.EXPECTATIONS_DIR, tmp_path / "expectations")
    monkeypatch.setattr(changes, "EXPECTATIONS_DIR", expectations)
    assert not changes.decide(settings).rebuild
    (expectations / "marts.yml").write_text((expectations / "marts.yml").read_text() + "\n")
    assert changes.decide(settings).reason == (
        "the expectations changed since run first: rebuilding"
    )
    monkeypatch.undo()

    # A newly configured serving database gets this build's marts (the password is no input).
    served = dataclasses.replace(settings, serve_postgres_url="postgresql://a:secret@h:5/warehouse")
    assert changes.decide(served).reason == (
        "the PostgreSQL serving target changed since run first: rebuilding"
    )
    assert "secret" not in json.dumps(changes.current_inputs(served))

    # A retraction changes the ledger's current state.
    (settings.landing_dir / "spend" / "usage_2024_11.csv").unlink()
    ingest_sources(settings, "retract")
    assert changes.decide(settings).reason.startswith(
        "landing files changed (loaded, restated, re-evaluated or retracted) since run first"
    )
    settings.published_db.unlink()
    a_publish_of_now(settings)
    assert not changes.decide(settings).rebuild
    settings.published_db.unlink()  # the published file gone: rebuild it
    assert changes.decide(settings).reason.startswith("published files missing")
    assert manifest["run_id"] == "first"


@pytest.mark.slow
def test_a_rerun_with_nothing_new_rebuilds_nothing_and_emits_no_asset_event(published):
    before = published_stat(published.data_dir)

    run = run_pipeline(published, "nothing-new")

    assert run.succeeded, run.failed_tasks
    assert {task: run.task_states[task] for task in SKIPPED} == dict.fromkeys(SKIPPED, "skipped")
    assert run.task_states["changes"] == "success"
    assert run.task_states["summarize"] == "success"
    assert all(run.task_states[t] == "success" for t in run.task_states if t.startswith("ingest."))
    assert published_stat(published.data_dir) == before
    assert asset_events(run.run_id) == 0
    log = run.log_file.read_text()
    manifest = changes.read_manifest(published)
    assert changes.nothing_changed(manifest) in log
    assert manifest["run_id"] != run.run_id


@pytest.mark.slow
def test_a_changed_expectation_or_model_or_a_full_refresh_rebuilds(
    published, tmp_path, monkeypatch
):
    expectations = shutil.copytree(changes.EXPECTATIONS_DIR, tmp_path / "expectations")
    (expectations / "marts.yml").write_text((expectations / "marts.yml").read_text() + "\n")
    monkeypatch.setattr(changes, "EXPECTATIONS_DIR", expectations)
    built_by_before = built_by(published)

    rebuilt = run_pipeline(published, "expectation-changed")

    assert rebuilt.succeeded, rebuilt.failed_tasks
    assert all(rebuilt.task_states[task] == "success" for task in SKIPPED)
    assert changes.read_manifest(published)["run_id"] == rebuilt.run_id
    assert asset_events(rebuilt.run_id) == 1
    assert "the expectations changed since run" in rebuilt.log_file.read_text()

    project = shutil.copytree(
        changes.DBT_PROJECT_DIR, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target")
    )
    model = project / "models" / "marts" / "fct_revenue_concentration.sql"
    model.write_text(model.read_text() + "\n-- a change\n")
    monkeypatch.setattr(changes, "DBT_PROJECT_DIR", project)

    model_changed = run_pipeline(published, "model-changed")

    assert all(model_changed.task_states[task] == "success" for task in SKIPPED)
    assert changes.read_manifest(published)["run_id"] == model_changed.run_id

    unchanged = run_pipeline(published, "unchanged")
    assert all(unchanged.task_states[task] == "skipped" for task in SKIPPED)

    full = run_pipeline(published, "full-refresh", conf={"full_refresh": True})

    assert all(full.task_states[task] == "success" for task in SKIPPED)
    assert "full refresh asked" in full.log_file.read_text()
    assert asset_events(full.run_id) == 1
    # dbt got --full-refresh: the incremental fact was rebuilt whole, by one invocation.
    with duckdb.connect(str(published.build_db), read_only=True) as con:
        stamps = con.execute(
            "select count(distinct dbt_invocation_id) from intermediate.int_usage_months_aggregated"
        ).fetchone()
    assert stamps == (1,) and built_by_before != built_by(published)


def test_warehouse_run_full_refresh_reaches_the_dag_and_nothing_new_renders_no_report(
    settings, tmp_path, monkeypatch, capsys
):
    """`warehouse run --full-refresh` passes the DAG's param in the run's conf; a run whose
    publish was skipped says so in one line and runs no report DAG."""
    import argparse

    from warehouse import cli
    from warehouse.runtime import run
    from warehouse.settings import DAG_ID

    started = []

    def run_once(settings, log_file=None, dag_id=DAG_ID, conf=None):
        started.append((dag_id, conf))
        seconds = {"ingest.usage": 2.0, "changes": 0.5, "publish": 0.0}
        return run.PipelineRun("now", "success", {"publish": "skipped"}, tmp_path / "log", seconds)

    monkeypatch.setattr(run, "run_once", run_once)
    settings.data_dir.mkdir(parents=True)
    settings.manifest.write_text(json.dumps({"run_id": "first", "published_at": "T"}))

    code = cli._run_pipeline(argparse.Namespace(full_refresh=True, no_report=False), settings)

    assert code == 0
    assert started == [(DAG_ID, {"full_refresh": True})]  # and no report DAG
    printed = capsys.readouterr().out
    assert "nothing changed since run first, published at T: nothing rebuilt or published" in (
        printed
    )
    assert "slowest tasks: ingest.usage 2.0 s, changes 0.5 s, publish 0.0 s\n" in printed
