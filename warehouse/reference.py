"""The accepted values of the warehouse's categories, read from their one home: the `accepted`
var of dbt_project.yml, which dbt's tests use too. The generator draws from them, ingestion
checks reference data against them."""

from __future__ import annotations

import yaml

from warehouse.settings import DBT_PROJECT_DIR


def _accepted() -> dict[str, list[str]]:
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return project["vars"]["accepted"]


# {"segments": [...], "product_lines": [...]}
ACCEPTED: dict[str, list[str]] = _accepted()
