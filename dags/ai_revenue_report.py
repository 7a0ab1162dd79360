"""
### AI revenue report

Each publish by `ai_revenue_warehouse` triggers one run, which renders
`<data folder>/report/index.html` (one offline page) and its charts as PNG files from the
published `warehouse.duckdb`, opened read-only: no writer slot, never blocking the pipeline.
See README.md.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from warehouse import tasks
from warehouse.settings import REPORT_DAG_ID, Settings


@task
def render(triggering_asset_events=None) -> str:
    """Render the report of the published warehouse; returns the page's path."""
    return tasks.render_report((triggering_asset_events or {}).get(tasks.PUBLISHED_WAREHOUSE, []))


@dag(
    dag_id=REPORT_DAG_ID,
    schedule=[tasks.PUBLISHED_WAREHOUSE],
    **tasks.dag_settings(Settings.from_env()),
    doc_md=__doc__,
    tags=["warehouse", "report"],
)
def ai_revenue_report():
    render()


ai_revenue_report()
