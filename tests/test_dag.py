"""The pipeline DAG: it parses cleanly and lightly, and a whole run works through dag.test()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import duckdb
import pytest

from tests.conftest import SEED_USAGE_ROWS, published_files, run_pipeline
from warehouse.settings import DAG_ID, DAGS_FOLDER, DBT_PROJECT_DIR, REPORT_DAG_ID, WRITER_POOL

DAG_FILES = [DAGS_FOLDER / f"{dag_id}.py" for dag_id in (DAG_ID, REPORT_DAG_ID)]
# Every model of the project, and the sources with tests: one `model` task instance each.
MODELS = {path.stem for path in (DBT_PROJECT_DIR / "models").rglob("*.sql")}
TESTED_SOURCES = {"raw.customers", "ingest.current_files"}
HEAVY_MODULES = [
    "duckdb",
    "pandas",
    "matplotlib",
    "great_expectations",
    "dbt",
    "warehouse.ingest",
    "warehouse.audit.expectations",
    "warehouse.publish",
    "warehouse.serve.report",
]


def test_dagbag_imports_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {DAG_ID, REPORT_DAG_ID}


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.stem)
def test_dag_file_imports_nothing_heavy_at_module_level(dag_file):
    code = (
        "import json, sys, time, runpy;"
        "import airflow.sdk;"  # Airflow itself is loaded before the file, as in the parser
        "start = time.perf_counter();"
        f"runpy.run_path({str(dag_file)!r});"
        "elapsed = time.perf_counter() - start;"
        f"print(json.dumps({{'loaded': [m for m in {HEAVY_MODULES!r} if m in sys.modules],"
        "'seconds': elapsed}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=DAGS_FOLDER
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["loaded"] == []
    print(f"DAG file parse time: {report['seconds']:.3f} s")  # measured, not asserted


def test_report_dag_is_scheduled_on_the_published_asset():
    from warehouse.runtime.run import load_dag

    pipeline, report = load_dag(), load_dag(REPORT_DAG_ID)

    (published,) = pipeline.get_task("publish").outlets
    assert report.timetable.asset_condition.objects == (published,)
    assert report.catchup is False
    assert report.max_active_runs == 1
    # It reads only the published file, so it takes no writer slot.
    assert all(t.pool != WRITER_POOL for t in report.tasks)


def test_dag_declares_schedule_retries_and_one_writer():
    from warehouse.runtime.run import load_dag

    dag = load_dag()

    assert dag.schedule == "@daily"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    task_ids = {t.task_id for t in dag.tasks}
    assert {"ingest.customers", "ingest.earnings", "ingest.usage"} <= task_ids
    assert {"validate", "publish", "summarize"} <= task_ids
    # Publish records what the build was built from (the changes task's answer).
    assert dag.get_task("publish").upstream_task_ids == {"validate", "changes", "freshness"}
    # One dbt build, between ingestion and the audit (the whole runs below show what it builds),
    # unless nothing changed since the last publish: the short-circuit skips it, and through
    # the trigger rules the audit and publish, but not the summary.
    changes = dag.get_task("changes")
    assert changes.upstream_task_ids == {"ingest.earnings", "ingest.usage"}
    assert changes.ignore_downstream_trigger_rules is False
    assert dag.get_task("freshness").upstream_task_ids == {"ingest.earnings", "ingest.usage"}
    transform = dag.get_task("transform")
    assert transform.upstream_task_ids == {"changes"}
    assert dag.get_task("summarize").trigger_rule == "none_failed"
    # A failed freshness fails the run even when nothing new skipped the publish.
    assert dag.get_task("summarize").upstream_task_ids == {"publish", "freshness"}
    assert dag.params["full_refresh"] is False
    assert transform.full_refresh == "{{ params.full_refresh }}"
    assert dag.get_task("validate").upstream_task_ids == {"transform"}
    (asset,) = dag.get_task("publish").outlets
    assert asset.name == "ai_revenue_warehouse_published"
    # Each model of that one build as a task: read from dbt's results after the build, failed
    # or not, beside the audit (nothing waits for them), without a writer slot.
    results, model = dag.get_task("transform_results"), dag.get_task("model")
    assert results.upstream_task_ids == {"transform"}
    assert results.trigger_rule == "all_done"
    assert results.downstream_task_ids == {"model"}
    assert model.upstream_task_ids == {"transform_results"} and not model.downstream_task_ids
    reporting = {"transform_results", "model"}
    for t in dag.tasks:
        assert (t.pool != WRITER_POOL) if t.task_id in reporting else (t.pool == WRITER_POOL)
        # Transient faults are retried; a failing dbt model or test is not (bad data).
        assert t.retries == (0 if t.task_id in {"transform", *reporting} else 2)
        assert t.retry_delay == timedelta(seconds=1)  # WAREHOUSE_RETRY_DELAY_SECONDS (tests)
    assert dag.get_task("ingest.customers").downstream_task_ids >= {
        "ingest.earnings",
        "ingest.usage",
    }


def a_model(status: str, tests: list[tuple[str, str, int]] = ()) -> dict:
    """One model's results as the `transform_results` task hands them to its `model` task."""
    return {
        "resource_type": "model",
        "name": "stg_a",
        "status": status,
        "seconds": 0.25,
        "rows": 7,
        "message": None,
        "tests": [
            {"name": name, "kind": "data", "status": state, "failures": rows, "message": None}
            for name, state, rows in tests
        ],
    }


def test_bad_data_fails_a_task_for_good_and_nothing_to_report_skips_it(tmp_path, monkeypatch):
    """What the tasks tell Airflow: a refused landing file and a failing model are failures it
    does not retry (AirflowFailException); no build to report on, and a model dbt skipped after
    a failure upstream, are skips; a model built with its tests passing is a success."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from warehouse import tasks

    (tmp_path / "landing" / "spend").mkdir(parents=True)
    (tmp_path / "landing" / "spend" / "usage_2025_01.csv").write_text("usage_date;customer_id\n")
    monkeypatch.setenv("WAREHOUSE_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(tmp_path / "data"))

    with pytest.raises(AirflowFailException, match=r"usage_2025_01\.csv: refused, wrong delimiter"):
        tasks.load("usage", "run")
    with pytest.raises(AirflowSkipException, match="no per-model results: the transform task"):
        tasks.transform_results(None)
    with pytest.raises(AirflowFailException) as failed:
        tasks.model(a_model("success", [("not_null_stg_a_id", "fail", 3)]))
    assert str(failed.value) == (
        "model stg_a failed; failing tests: not_null_stg_a_id (fail, 3 failing rows)"
    )
    with pytest.raises(AirflowSkipException, match="dbt skipped it after a failure upstream"):
        tasks.model(a_model("skipped"))
    assert tasks.model(a_model("success", [("not_null_stg_a_id", "pass", 0)])) is None


def ledger_counts(data_dir) -> dict[str, tuple[int, int]]:
    with duckdb.connect(str(data_dir / "build.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select source, count(*), sum(rows_loaded) from ingest.ledger group by 1"
        ).fetchall()
    return {source: (files, rows) for source, files, rows in rows}


@pytest.mark.slow
def test_dag_run_loads_builds_validates_and_publishes(first_run):
    from warehouse.serve.summary import build_summary

    run, settings = first_run

    counts = ledger_counts(settings.data_dir)
    assert counts["customers"][0] == 1 and counts["earnings"][0] == 1
    assert counts["usage"] == (24, SEED_USAGE_ROWS)
    summary = build_summary(settings, run.run_id)
    assert {s["source"]: s["files_loaded_this_run"] for s in summary["sources"]} == {
        "customers": 1,
        "earnings": 1,
        "usage": 24,
    }
    customer_level = summary["headline"][0]
    assert customer_level["level"] == "customer"
    assert customer_level["top_customer_name"] == "TikTok"
    assert 0.24 <= customer_level["top1_share"] <= 0.26
    assert summary["validation"]["success"] and summary["validation"]["run_id"] == run.run_id
    assert summary["published"]["run_id"] == run.run_id
    # One task instance per model (and tested source), named by it, each a success.
    modelled = {task: state for task, state in run.task_states.items() if task.startswith("model")}
    assert modelled == {f"model[{name}]": "success" for name in MODELS | TESTED_SOURCES}
    assert run.task_states["transform_results"] == "success"
    # The scheduled build runs the data tests; the unit tests are tests/test_dbt.py's.
    results = json.loads(settings.dbt_run_results.read_text())["results"]
    kinds = {r["unique_id"].split(".")[0] for r in results}
    assert "test" in kinds and "unit_test" not in kinds
    # Where the run's time went: every task that ran has its seconds, the build's among them.
    assert set(run.task_seconds) == {t for t, s in run.task_states.items() if s == "success"}
    assert "ingest.usage" in run.slowest(len(run.task_seconds))
    assert run.task_seconds["transform"] > 1


@pytest.mark.slow
def test_rerun_with_nothing_new_loads_nothing_and_publishes_the_same_marts(published):
    from warehouse.serve.summary import build_summary, format_summary

    before = ledger_counts(published.data_dir)
    published_before = published_files(published.data_dir)

    run = run_pipeline(published, "second")

    assert run.succeeded
    assert ledger_counts(published.data_dir) == before
    summary = build_summary(published, run.run_id)
    assert all(s["files_loaded_this_run"] == 0 for s in summary["sources"])
    # Nothing new, nothing rebuilt: the publish kept is the first run's (tests/test_changes.py).
    assert summary["published"]["run_id"] != run.run_id
    assert published_files(published.data_dir) == published_before
    assert "published (kept from run" in format_summary(summary)


@pytest.mark.slow
def test_dag_run_with_a_refused_file_fails_and_names_it(airflow_home, settings):
    from warehouse.serve.summary import build_summary

    (settings.landing_dir / "spend" / "usage_2025_01.csv").write_text("usage_date;customer_id\n")

    run = run_pipeline(settings, "refused")

    assert not run.succeeded
    assert "ingest.usage (failed)" in run.failed_tasks
    assert "summarize (upstream_failed)" in run.failed_tasks
    assert "transform (upstream_failed)" in run.failed_tasks
    # No build in this run, so no per-model results (ALL_DONE runs the reader all the same).
    assert run.task_states["transform_results"] == "skipped"
    assert run.task_states["model"] == "skipped"  # mapped over nothing
    log = run.log_file.read_text()
    assert "no per-model results: the transform task started no dbt build in this run" in log
    assert "spend/usage_2025_01.csv: refused, wrong delimiter" in log
    assert log.count("AirflowFailException") >= 1  # bad data is not retried
    refused = build_summary(settings, run.run_id)["refused"]
    assert [r["file_path"] for r in refused] == ["spend/usage_2025_01.csv"]
    assert ledger_counts(settings.data_dir)["usage"] == (24, SEED_USAGE_ROWS)


@pytest.mark.slow
def test_a_failing_dbt_test_fails_its_models_task_and_skips_the_models_after_it(published):
    """One dbt build, yet each model's own outcome: the model whose test fails is a failed task,
    the models dbt skipped after it are skipped tasks, the others succeed; the run fails and
    publishes nothing (the transform failed). Fixed, the next run on the same data folder (dbt
    starts from its partial parse) shows every model's task a success."""
    customer = "(select min(customer_id) from raw.customers)"
    with duckdb.connect(str(published.build_db)) as con:  # a customer without a parent company
        (parent,) = con.execute(
            f"select parent_company from raw.customers where customer_id = {customer}"
        ).fetchone()
        con.execute(
            f"update raw.customers set parent_company = null where customer_id = {customer}"
        )

    # Raw changed behind the ledger's back: only a full refresh rebuilds from it.
    run = run_pipeline(published, "failing-model", conf={"full_refresh": True})

    assert not run.succeeded
    assert "transform (failed)" in run.failed_tasks
    assert "publish (upstream_failed)" in run.failed_tasks
    assert run.task_states["transform_results"] == "success"
    modelled = {
        task[len("model[") : -1]: state
        for task, state in run.task_states.items()
        if task.startswith("model[")
    }
    assert set(modelled) == MODELS | TESTED_SOURCES
    assert {name for name, state in modelled.items() if state == "failed"} == {"stg_raw__customers"}
    # Everything that reads the customers, as dbt's graph has it.
    assert {name for name, state in modelled.items() if state == "skipped"} == {
        "int_spenders_ranked",
        "int_revenue_months_measured",
        "int_customer_months_compared",
        "dim_customers",
        "fct_customer_monthly_spend",
        "fct_segment_monthly_spend",
        "fct_revenue_concentration",
        "fct_revenue_at_risk",
    }
    assert all(s == "success" for s in modelled.values() if s not in ("failed", "skipped"))
    log = run.log_file.read_text()
    assert (
        "AirflowFailException: model stg_raw__customers failed; failing tests: "
        "not_null_stg_raw__customers_parent_company (fail, 1 failing row)"
    ) in log
    assert "model dim_customers was not built: dbt skipped it after a failure upstream" in log

    with duckdb.connect(str(published.build_db)) as con:
        con.execute(
            f"update raw.customers set parent_company = ? where customer_id = {customer}", [parent]
        )
    fixed = run_pipeline(published, "fixed-model", conf={"full_refresh": True})

    assert fixed.succeeded
    assert {t: s for t, s in fixed.task_states.items() if t.startswith("model[")} == {
        f"model[{name}]": "success" for name in MODELS | TESTED_SOURCES
    }


def test_engine_is_configuration_the_same_dag_on_spark():
    """WAREHOUSE_ENGINE=spark: the same DAG exports the raw Parquet before dbt, builds on the
    profile's `spark` target, and loads Spark's marts into the build database before the audit;
    on DuckDB (the default) neither extra task exists and dbt builds on `build`."""
    code = (
        "import json, airflow.sdk, runpy;"
        f"dag = runpy.run_path({str(DAG_FILES[0])!r})['ai_revenue_warehouse']();"
        "t = dag.get_task('transform');"
        "print(json.dumps({'target': t.profile_config.target_name, 'tasks': "
        "{x.task_id: sorted(x.upstream_task_ids) for x in dag.tasks}, "
        "'pools': sorted({x.pool for x in dag.tasks})}))"
    )

    def parsed(engine: str) -> dict:
        env = {**os.environ, "WAREHOUSE_ENGINE": engine}
        result = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    spark, duck = parsed("spark"), parsed("duckdb")
    assert spark["target"] == "spark" and duck["target"] == "build"
    assert (
        spark["tasks"]["changes"] == duck["tasks"]["changes"] == ["ingest.earnings", "ingest.usage"]
    )
    assert spark["tasks"]["export_raw"] == ["changes"]
    assert spark["tasks"]["transform"] == ["export_raw"]
    assert spark["tasks"]["load_spark_marts"] == ["transform"]
    assert spark["tasks"]["validate"] == ["load_spark_marts"]
    assert (
        spark["tasks"]["transform_results"] == duck["tasks"]["transform_results"] == ["transform"]
    )
    # The per-model tasks only read dbt's results: the default pool.
    assert spark["pools"] == duck["pools"] == ["default_pool", WRITER_POOL]
    assert set(spark["tasks"]) - set(duck["tasks"]) == {"export_raw", "load_spark_marts"}
    assert duck["tasks"]["transform"] == ["changes"]
