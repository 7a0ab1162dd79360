"""What both DAG files share (Airflow has no shared DAG defaults): the published Asset, a name
that links them whatever the data folder, and the `@dag(...)` settings."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset

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
