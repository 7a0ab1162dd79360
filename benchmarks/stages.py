"""The pipeline's stages after ingest, one per process, as the harness runs them (ingest is
`warehouse ingest`): `python -m benchmarks.stages <dbt_build|validate|publish>`. Each does what
the DAG's task does, without Airflow around it, with the settings of its environment.

Run as a module, not with `python -c`: with the `spark` extra installed, importing Great
Expectations imports pyspark, which takes a `-c` program for its own doctests and exits 0."""

from __future__ import annotations

import json
import sys

from warehouse.settings import Settings

RUN_ID = "benchmark"

# Each stage imports only what its DAG task imports: a stage's time is its own work and
# imports, not another stage's (the audit's pandas alone is about 1.5 s).


def dbt_build() -> None:
    from warehouse.transform.dbt import run_dbt

    run_dbt(Settings.from_env(), "build")


def validate() -> None:
    from warehouse.audit.expectations import validate as run_validation

    report = run_validation(Settings.from_env(), run_id=RUN_ID)
    if not report.success:
        raise SystemExit(f"validation failed:\n{report.failure_table()}")


def publish() -> None:
    from warehouse.publish import publish as publish_build

    settings = Settings.from_env()
    publish_build(settings, RUN_ID, json.loads(settings.validation_report.read_text()))


def serve_postgres() -> None:
    """The PostgreSQL publish alone (WAREHOUSE_SERVE_POSTGRES_URL): the published file's marts
    loaded and swapped in, as the publish does before it replaces the file."""
    from warehouse.publish.postgres import load_and_swap

    settings = Settings.from_env()
    manifest = json.loads(settings.manifest.read_text())
    publication = {key: manifest[key] for key in ("run_id", "published_at", "git_revision")}
    load_and_swap(settings, settings.published_db, publication)


if __name__ == "__main__":
    stages = {"dbt_build": dbt_build, "validate": validate, "publish": publish}
    {**stages, "serve_postgres": serve_postgres}[sys.argv[1]]()
