"""
### AI revenue report

Scheduled on the published warehouse: each publish by `ai_revenue_warehouse` triggers one run,
which renders `<data folder>/report/index.html` (one offline page, charts embedded, no CDN)
and the same charts as PNG files beside it, from the published `warehouse.duckdb` opened read-only:

- the largest customer's share and the HHI over time, by customer and by parent company;
- the top customers' monthly spend;
- the segment mix;
- quarterly Azure growth against consensus, next to `azure_openai` revenue.

It reads only the published file, so it needs no writer slot and never blocks the pipeline.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from warehouse.runtime.dags import PUBLISHED_WAREHOUSE, dag_settings
from warehouse.settings import REPORT_DAG_ID, Settings


@task
def render(triggering_asset_events=None) -> str:
    """Render the report of the published warehouse; returns the page's path."""
    from warehouse.serve.report import render_report

    for event in (triggering_asset_events or {}).get(PUBLISHED_WAREHOUSE, []):
        print(f"triggered by the publish of run {event.extra.get('run_id')}")
    path = render_report(Settings.from_env())
    print(f"report: {path}")
    return str(path)


@dag(
    dag_id=REPORT_DAG_ID,
    schedule=[PUBLISHED_WAREHOUSE],
    **dag_settings(Settings.from_env()),
    doc_md=__doc__,
    tags=["warehouse", "report"],
)
def ai_revenue_report():
    render()


ai_revenue_report()
