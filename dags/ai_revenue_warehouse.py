"""
### AI revenue warehouse pipeline

Loads whatever is in the landing folder, rebuilds what changed, audits, and publishes only an
audited build (the architecture: README.md, *What a run does*).

- **ingest**: one task per source (customers first) into `raw` of the build database; bad rows
  are rejected with a reason, a file of the wrong shape is refused whole (no retry: bad data).
- **transform**: one `dbt build` of the whole project (Cosmos), models with their tests, on the
  engine the settings choose (`WAREHOUSE_ENGINE`: DuckDB by default, or Spark). On Spark,
  **export_raw** first writes the raw tables as Parquet partitioned by landing file (Spark's
  sources), and **load_spark_marts** then copies the tables Spark built into the build
  database, described from dbt's manifest, so validation and publishing are the same on both.
- **transform_results** and **model**: each model (seed, snapshot, and source with tests) of
  that one build as a task of its own, named by the model, read from dbt's run results after
  the build, whether it failed or not: it fails when the model or one of its tests failed, and
  is skipped when dbt skipped the model after a failure upstream. They only read two files
  (no writer slot, no lock), and nothing waits for them.
- **validate**: the GX suites and the reported claims; a failure publishes nothing.
- **publish**: atomically replaces `warehouse.duckdb`, the exports and the manifest, and emits
  the published Asset, on which `ai_revenue_report` is scheduled.
- **summarize**: what was loaded, the validation, the publish and the 2024-03 headline.

Tasks that write the build database share the one-slot `duckdb_writer` pool: DuckDB allows one
read-write process per file. Each also holds the data folder's lock (`<data>/.run.lock`), which
orders them with a `make run` or another Airflow on the same data folder; dbt ends with its task.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, dag, task, task_group
from cosmos import ProfileConfig
from cosmos.constants import InvocationMode

from warehouse.runtime.dags import PUBLISHED_WAREHOUSE, dag_settings
from warehouse.runtime.lock import hold_data_lock
from warehouse.settings import DAG_ID, WRITER_POOL, Settings
from warehouse.transform import dbt
from warehouse.transform.operator import OwnedDbtBuildOperator

# The DAG's settings at parse time (retries, dbt's environment); each task builds its own from
# its process's environment when it runs, as every entry point does.
SETTINGS = Settings.from_env()


@task(pool=WRITER_POOL)
def load(source: str, run_id: str | None = None) -> dict:
    """Load one landing source; a refused file fails the task without retries (bad data)."""
    from airflow.sdk.exceptions import AirflowFailException

    from warehouse.ingest import SourceRefusedError, ingest_source

    settings = Settings.from_env()
    try:
        with hold_data_lock(settings, f"ingest {source}", run_id):
            return ingest_source(source, run_id, settings).to_dict()
    except SourceRefusedError as refused:
        raise AirflowFailException(str(refused)) from refused


@task(pool=WRITER_POOL)
def export_raw() -> dict:
    """Spark only: the raw tables and the ledger as Parquet, one partition per landing file
    (only files loaded since the last export are rewritten)."""
    from warehouse.engines.spark.export import export_raw as export

    return export(Settings.from_env()).as_dict()


@task(pool=WRITER_POOL, retries=0)
def load_spark_marts() -> dict:
    """Spark only: the marts and intermediate tables Spark built, into the build database."""
    from warehouse.engines.spark.load import load_spark_tables

    return load_spark_tables(Settings.from_env()).as_dict()


# No retries for either: they report dbt's verdict on the build, which a retry cannot change.
@task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
def transform_results(ti=None) -> list[dict]:
    """Each model's outcome in this run's dbt build, from dbt's artifacts; skipped, saying why,
    when the target folder holds none of this build's (dbt died early, or never started)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from warehouse.transform.results import BUILD_XCOM, NoResults, node_results

    build = ti.xcom_pull(task_ids="transform", key=BUILD_XCOM)
    try:
        nodes = node_results(Settings.from_env(), build)
    except NoResults as missing:
        raise AirflowSkipException(f"no per-model results: {missing}") from missing
    print(f"dbt build {build}: {len(nodes)} models, seeds, snapshots and tested sources")
    return nodes


# Named by the model in the UI; from the task's argument, so the name shows while it runs too.
@task(retries=0, map_index_template="{{ task.op_kwargs['node']['name'] }}")
def model(node: dict) -> None:
    """One model of the build: fails if it or one of its tests failed, is skipped if dbt
    skipped it (downstream of a failure)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from warehouse.transform.results import describe, verdict

    print(describe(node))
    outcome, message = verdict(node)
    if outcome == "failed":
        raise AirflowFailException(message)
    if outcome == "skipped":
        raise AirflowSkipException(message)


@task(task_id="validate", pool=WRITER_POOL)
def validate_marts(run_id: str | None = None) -> dict:
    """Run the GX suites and the claims; a failure is bad data, so it is not retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from warehouse.audit.expectations import validate
    from warehouse.publish import read_manifest

    settings = Settings.from_env()
    with hold_data_lock(settings, "validate", run_id):
        report = validate(settings, run_id=run_id, previous_manifest=read_manifest(settings))
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

    settings = Settings.from_env()
    with hold_data_lock(settings, "publish", run_id):
        manifest = publish_build(settings, run_id, validation)
    published = {key: manifest[key] for key in ("run_id", "published_at", "row_counts")}
    published["warehouse"] = str(settings.published_db)
    outlet_events[PUBLISHED_WAREHOUSE].extra = published
    return published


@task(pool=WRITER_POOL)
def summarize(run_id: str | None = None) -> dict:
    """Log what the build database holds, what this run loaded, and the headline."""
    from warehouse.serve.summary import build_summary, format_summary

    settings = Settings.from_env()
    with hold_data_lock(settings, "summarize", run_id):
        summary = build_summary(settings, run_id=run_id)
    print(format_summary(summary))
    return summary


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    **dag_settings(SETTINGS),
    doc_md=__doc__,
    tags=["warehouse", SETTINGS.engine, "dbt"],
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
    # only while it builds, even when every task shares one process (dag.test()); the
    # operator holds the data folder's lock and makes dbt end with the task, however it ends.
    transform = OwnedDbtBuildOperator(
        task_id="transform",
        project_dir=dbt.DBT_PROJECT_DIR,
        profile_config=ProfileConfig(
            profile_name=dbt.PROFILE_NAME,
            target_name=SETTINGS.dbt_target,
            profiles_yml_filepath=dbt.PROFILES_YML,
        ),
        dbt_executable_path=SETTINGS.dbt_executable,
        invocation_mode=InvocationMode.SUBPROCESS,
        install_deps=False,
        emit_datasets=False,
        env=dbt.dbt_env(SETTINGS),
        append_env=True,
        pool=WRITER_POOL,
        # A failing model or test is bad data or a bad model, not a transient fault: no retry.
        # The summary names the failing test and a few of its rows.
        retries=0,
    )

    # Beside the audit, not before it: a successful build is validated and published without
    # waiting for its per-model tasks, and a failing model already fails the run (transform).
    results = transform_results()
    transform >> results
    model.expand(node=results)

    validation = validate_marts()
    if SETTINGS.engine == "spark":
        # Parse-time choice: on DuckDB (the default) the DAG has neither task, and costs nothing.
        ingest() >> export_raw() >> transform >> load_spark_marts() >> validation
    else:
        ingest() >> transform >> validation
    publish(validation) >> summarize()


ai_revenue_warehouse()
