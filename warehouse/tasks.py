"""What the DAG files share and what each task runs, so that they only declare: the published
Asset (a name that links the DAGs whatever the data folder), the `@dag(...)` settings, and a stage
under the data folder's writer lock (`warehouse.lock`), bad data (a refused file, a
failed audit, a failing model) as a failure Airflow does not retry, and no build to report on
as a skip.

Each stage is imported inside its function: a task process loads only its own stage.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from warehouse.lock import hold_data_lock
from warehouse.settings import Settings

PUBLISHED_WAREHOUSE = Asset(name="ai_revenue_warehouse_published")


def dag_settings(settings: Settings) -> dict:
    """Start date, one run at a time, no catch-up, and retries for the DAGs' `@dag(...)`."""
    return {
        "start_date": pendulum.datetime(2024, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {
            "retries": 2,
            "retry_delay": pendulum.duration(seconds=settings.retry_delay_seconds),
        },
    }


def load(source: str, run_id: str | None) -> dict:
    """Load one landing source; a refused file fails the task without retries (bad data)."""
    from warehouse.ingest import SourceRefusedError, ingest_source

    settings = Settings.from_env()
    try:
        with hold_data_lock(settings, f"ingest {source}", run_id):
            return ingest_source(source, run_id, settings).to_dict()
    except SourceRefusedError as refused:
        raise AirflowFailException(str(refused)) from refused


def export_raw() -> dict:
    """Spark only: the raw tables and the ledger as Parquet, one partition per landing file."""
    from warehouse.engines.spark.export import export_raw as export

    return export(Settings.from_env()).as_dict()


def load_spark_marts() -> dict:
    """Spark only: the marts and intermediate tables Spark built, into the build database."""
    from warehouse.engines.spark.load import load_spark_tables

    return load_spark_tables(Settings.from_env()).as_dict()


def transform_results(build: str | None) -> list[dict]:
    """Each model's outcome in dbt build `build`, from dbt's artifacts; a skip, saying why,
    when the target folder holds none of this build's (dbt died early, or never started)."""
    from warehouse.transform.results import NoResults, node_results

    try:
        nodes = node_results(Settings.from_env(), build)
    except NoResults as missing:
        raise AirflowSkipException(f"no per-model results: {missing}") from missing
    print(f"dbt build {build}: {len(nodes)} models, seeds, snapshots and tested sources")
    return nodes


def model(node: dict) -> None:
    """One model of the build: fails if it or one of its tests failed, is skipped if dbt
    skipped it (downstream of a failure)."""
    from warehouse.transform.results import describe, verdict

    print(describe(node))
    outcome, message = verdict(node)
    if outcome == "failed":
        raise AirflowFailException(message)
    if outcome == "skipped":
        raise AirflowSkipException(message)


def validate(run_id: str | None) -> dict:
    """Run the GX suites and the claims; a failure is bad data, so it is not retried."""
    from warehouse.audit.expectations import validate as run_suites
    from warehouse.publish import read_manifest

    settings = Settings.from_env()
    with hold_data_lock(settings, "validate", run_id):
        report = run_suites(settings, run_id=run_id, previous_manifest=read_manifest(settings))
    summary = report.summary()
    print(
        f"{summary['evaluated_expectations']} expectations, "
        f"{summary['failed_expectations']} failed, {summary['seconds']} s; "
        f"Data Docs: {report.data_docs}"
    )
    if not report.success:
        raise AirflowFailException(
            f"validation failed: {len(report.failures)} of {len(report.checks)} expectations; "
            f"nothing was published.\n{report.failure_table()}\nData Docs: {report.data_docs}"
        )
    return summary


def changes(run_id: str | None, full_refresh: bool = False) -> dict | None:
    """Whether anything changed since the last publish (`warehouse.publish.changes`): what the
    build will be built from when it did, None (the short-circuit's skip) when nothing did."""
    from warehouse.publish.changes import decide
    from warehouse.publish.release import remove_stale_staging

    settings = Settings.from_env()
    with hold_data_lock(settings, "changes", run_id):
        decision = decide(settings, full_refresh=full_refresh)
        if not decision.rebuild:
            remove_stale_staging(settings)
    print(decision.reason)
    return decision.inputs if decision.rebuild else None


def publish(validation: dict, run_id: str | None, inputs: dict | None = None) -> dict:
    """Publish the audited marts (readers of the old file keep their view), and to PostgreSQL
    when it is set; returns what the published Asset's event carries: the run, the time, the
    row counts, the file (and the PostgreSQL target)."""
    from warehouse.publish import publish as publish_build

    settings = Settings.from_env()
    with hold_data_lock(settings, "publish", run_id):
        manifest = publish_build(settings, run_id, validation, inputs)
    published = {key: manifest[key] for key in ("run_id", "published_at", "row_counts")}
    published["warehouse"] = str(settings.published_db)
    if "postgres" in manifest:  # the second target: the same run's marts on PostgreSQL
        published["postgres"] = manifest["postgres"]["target"]
    return published


def summarize(run_id: str | None) -> dict:
    """Log what the build database holds, what this run loaded, and the headline."""
    from warehouse.serve.summary import build_summary, format_summary

    settings = Settings.from_env()
    with hold_data_lock(settings, "summarize", run_id):
        summary = build_summary(settings, run_id=run_id)
    print(format_summary(summary))
    return summary


def render_report(events: list) -> str:
    """The report DAG's task: render the report of the published warehouse, after the publish
    events that triggered it; returns the page's path."""
    from warehouse.serve.report import render_report as render

    for event in events:
        print(f"triggered by the publish of run {event.extra.get('run_id')}")
    path = render(Settings.from_env())
    print(f"report: {path}")
    return str(path)


def freshness(run_id: str | None, logical_date) -> list[dict]:
    """Judge each source's freshness at the run's logical date, keep the verdict for the
    summary, the manifest and the alerts; with WAREHOUSE_STALE_SOURCES=fail, a source past its
    error threshold fails the run before publish (a retry cannot deliver a file)."""
    from warehouse.ingest.freshness import describe, judge, stale, write_report

    settings = Settings.from_env()
    as_of = (logical_date or pendulum.now("UTC")).date()
    with hold_data_lock(settings, "freshness", run_id):
        verdicts = judge(settings, as_of)
        write_report(settings, run_id, as_of, verdicts)
    for verdict in verdicts:
        print(describe(verdict))
    errors = stale(verdicts, "error")
    if errors and settings.stale_sources == "fail":
        raise AirflowFailException(
            "stale sources, nothing was published (WAREHOUSE_STALE_SOURCES=fail): "
            + "; ".join(describe(v) for v in errors)
        )
    return verdicts
