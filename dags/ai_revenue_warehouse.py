"""
### AI revenue warehouse pipeline

1. **ingest**: loads whatever landed in the landing folder (`WAREHOUSE_LANDING_DIR`, default
   `seeds/`) into the `raw` schema of `data/build.duckdb`: customers, earnings and daily usage.
   Unchanged files are skipped, changed files replace exactly their own rows, bad rows go to
   `ingest.rejects` with a reason, and a file of the wrong shape is refused whole (the task
   fails, naming it).
2. **transform**: one `dbt build` (astronomer-cosmos's `DbtBuildLocalOperator`) builds the
   staging views, the incremental usage fact and the marts; each model's data and unit tests
   run with it, and a failure skips everything downstream and fails the task.
3. **validate**: Great Expectations suites on every mart and the claims suite (the reported
   figures); a failure stops the run with a table of what failed, and nothing is published.
4. **publish**: copies the marts into a new DuckDB file and Parquet exports, then atomically
   replaces `data/warehouse.duckdb`, `data/exports/` and `data/manifest.json`; emits the
   published Asset, on which the `ai_revenue_report` DAG is scheduled.
5. **summarize**: logs what was loaded, the validation, the publish and the 2024-03 headline.

Every task that writes the build database runs in the one-slot `duckdb_writer` pool, because
DuckDB allows a single read-write process per file.
"""

from __future__ import annotations

from airflow.sdk import dag, task, task_group
from cosmos import ProfileConfig
from cosmos.constants import InvocationMode
from cosmos.operators.local import DbtBuildLocalOperator

from warehouse import config, dbt_project
from warehouse.airflow_common import PUBLISHED_WAREHOUSE, dag_settings
from warehouse.config import WRITER_POOL


@task(pool=WRITER_POOL)
def load(source: str, run_id: str | None = None) -> dict:
    """Load one landing source; a refused file fails the task without retries (bad data)."""
    from airflow.sdk.exceptions import AirflowFailException

    from warehouse.ingest import SourceRefusedError, ingest_source

    try:
        return ingest_source(source, run_id=run_id).to_dict()
    except SourceRefusedError as refused:
        raise AirflowFailException(str(refused)) from refused


@task(task_id="validate", pool=WRITER_POOL)
def validate_marts(run_id: str | None = None) -> dict:
    """Run the GX suites and the claims; a failure is bad data, so it is not retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from warehouse.publish import read_manifest
    from warehouse.validate import validate

    report = validate(run_id=run_id, previous_manifest=read_manifest())
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


@task(pool=WRITER_POOL, outlets=[PUBLISHED_WAREHOUSE])
def publish(validation: dict, run_id: str | None = None, outlet_events=None) -> dict:
    """Publish the audited marts; readers of the old file keep their view."""
    from warehouse.publish import publish as publish_build

    manifest = publish_build(run_id, validation)
    published = {key: manifest[key] for key in ("run_id", "published_at", "row_counts")}
    published["warehouse"] = str(config.data_dir() / manifest["warehouse"])
    outlet_events[PUBLISHED_WAREHOUSE].extra = published
    return published


@task(pool=WRITER_POOL)
def summarize(run_id: str | None = None) -> dict:
    """Log what the build database holds, what this run loaded, and the headline."""
    from warehouse.summary import build_summary, format_summary

    summary = build_summary(config.build_db_path(), run_id=run_id)
    print(format_summary(summary))
    return summary


@dag(
    dag_id="ai_revenue_warehouse",
    schedule="@daily",
    **dag_settings(),
    doc_md=__doc__,
    tags=["warehouse", "duckdb", "dbt"],
)
def ai_revenue_warehouse():
    @task_group(group_id="ingest")
    def ingest():
        # Customers first: later rules and models read them alongside usage.
        customers = load.override(task_id="customers")("customers")
        earnings = load.override(task_id="earnings")("earnings")
        usage = load.override(task_id="usage")("usage")
        customers >> [earnings, usage]

    # One `dbt build` over the whole project: every model with its unit and data tests, in
    # dependency order, a failure skipping everything downstream of it (and failing the task,
    # so nothing is validated or published). One dbt process, not one per model: rendered per
    # model, 16 tasks spent ~4 s each starting dbt for a few seconds of work in all
    # (benchmarks/README.md). dbt runs as a subprocess, holding DuckDB's single write handle
    # only while it builds, even when every task shares one process (dag.test()).
    transform = DbtBuildLocalOperator(
        task_id="transform",
        project_dir=dbt_project.PROJECT_DIR,
        profile_config=ProfileConfig(
            profile_name=dbt_project.PROFILE_NAME,
            target_name=dbt_project.TARGET_NAME,
            profiles_yml_filepath=dbt_project.PROFILES_YML,
        ),
        dbt_executable_path=dbt_project.DBT_EXECUTABLE,
        invocation_mode=InvocationMode.SUBPROCESS,
        install_deps=False,
        emit_datasets=False,
        env=dbt_project.dbt_env(),
        append_env=True,
        pool=WRITER_POOL,
    )

    validation = validate_marts()
    ingest() >> transform >> validation
    publish(validation) >> summarize()


ai_revenue_warehouse()
