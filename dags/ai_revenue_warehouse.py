"""
### AI revenue warehouse pipeline

Loads whatever landed in the landing folder (`WAREHOUSE_LANDING_DIR`, default `seeds/`) into
the `raw` schema of `data/build.duckdb`: customers, earnings and daily usage. Unchanged files
are skipped, changed files replace exactly their own rows, bad rows go to `ingest.rejects`
with a reason, and a file of the wrong shape is refused whole (the task fails, naming it).

Every task that writes the build database runs in the one-slot `duckdb_writer` pool, because
DuckDB allows a single read-write process per file.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task, task_group

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
    """Log what the build database holds and what this run loaded."""
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
    tags=["warehouse", "duckdb"],
)
def ai_revenue_warehouse():
    @task_group(group_id="ingest")
    def ingest():
        # Customers first: later rules and models read them alongside usage.
        customers = load.override(task_id="customers")("customers")
        earnings = load.override(task_id="earnings")("earnings")
        usage = load.override(task_id="usage")("usage")
        customers >> [earnings, usage]

    ingest() >> summarize()


ai_revenue_warehouse()
