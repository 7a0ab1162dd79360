"""The pipeline's stages after ingest, one per process, as the harness runs them (ingest is
`warehouse ingest`). Each does what the DAG's task does, without Airflow around it."""

from __future__ import annotations

import json

from warehouse import dbt_project
from warehouse.publish import publish as publish_build
from warehouse.validate import report_path
from warehouse.validate import validate as run_validation

RUN_ID = "benchmark"


def dbt_build() -> None:
    dbt_project.run_dbt("build")


def validate() -> None:
    report = run_validation(run_id=RUN_ID)
    if not report.success:
        raise SystemExit(f"validation failed:\n{report.failure_table()}")


def publish() -> None:
    publish_build(RUN_ID, json.loads(report_path().read_text()))
