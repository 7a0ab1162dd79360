"""
### AI revenue warehouse pipeline

1. **ingest**: loads whatever landed in the landing folder (`WAREHOUSE_LANDING_DIR`, default
   `seeds/`) into the `raw` schema of `data/build.duckdb`: customers, earnings and daily usage.
   Unchanged files are skipped, changed files replace exactly their own rows, bad rows go to
   `ingest.rejects` with a reason, and a file of the wrong shape is refused whole (the task
   fails, naming it).
2. **transform**: dbt (through astronomer-cosmos) builds the staging views, the incremental
   usage fact and the marts; each model's data and unit tests run with it and gate the models
   downstream.
3. **summarize**: logs what was loaded and the 2024-03 concentration headline.

Every task that writes the build database runs in the one-slot `duckdb_writer` pool, because
DuckDB allows a single read-write process per file.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task, task_group
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from warehouse import dbt_project
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


@task(pool=WRITER_POOL)
def summarize(run_id: str | None = None) -> dict:
    """Log what the build database holds, what this run loaded, and the headline."""
    from warehouse import config
    from warehouse.summary import build_summary, format_summary

    summary = build_summary(config.build_db_path(), run_id=run_id)
    print(format_summary(summary))
    return summary


@dag(
    dag_id="ai_revenue_warehouse",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
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

    transform = DbtTaskGroup(
        group_id="transform",
        project_config=ProjectConfig(
            dbt_project_path=dbt_project.PROJECT_DIR, manifest_path=dbt_project.MANIFEST
        ),
        profile_config=ProfileConfig(
            profile_name=dbt_project.PROFILE_NAME,
            target_name=dbt_project.TARGET_NAME,
            profiles_yml_filepath=dbt_project.PROFILES_YML,
        ),
        # dbt in its own process: it holds DuckDB's single write handle only while it runs,
        # even when every task shares one process (dag.test()).
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.SUBPROCESS,
            dbt_executable_path=dbt_project.DBT_EXECUTABLE,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # `dbt build` per model: its unit and data tests run with it, and a failure stops
            # the models downstream. Tests spanning several models run after all their parents.
            test_behavior=TestBehavior.BUILD,
            should_detach_multiple_parents_tests=True,
        ),
        operator_args={
            "pool": WRITER_POOL,
            "install_deps": False,
            "emit_datasets": False,
            "env": dbt_project.dbt_env(),
            "append_env": True,
        },
    )

    ingest() >> transform >> summarize()


ai_revenue_warehouse()
