"""The month reconciliation reads raw once, at the customer grain, and still catches a cent: a
customer mart row a cent off raw, and a raw row a cent off its landing file, each stop the
publish naming the month and product line (expectations/reconciliation.yml, reconcile_months)."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.audit.expectations import validate

ROW = "month = date '2024-03-01' and customer_id = 'cus_tiktok' and product_line = 'azure_openai'"


def reconcile_months_breaks(settings) -> list[str]:
    report = validate(settings, run_id="tampered")
    return [c.observed for c in report.failures if c.suite == "reconcile_months"]


@pytest.mark.slow  # the seeds' first DAG run, shared by the session
def test_an_untampered_build_reconciles(published):
    assert reconcile_months_breaks(published) == []


@pytest.mark.slow
def test_a_customer_mart_row_a_cent_off_raw_stops_the_publish(published):
    with duckdb.connect(str(published.build_db)) as con:
        con.execute(
            f"update marts.fct_customer_monthly_spend set spend_usd = spend_usd + 0.01 where {ROW}"
        )

    (observed,) = reconcile_months_breaks(published)

    assert "2024-03 azure_openai: 1 rows of fct_customer_monthly_spend differ from raw" in observed


@pytest.mark.slow
def test_a_raw_row_a_cent_off_its_landing_file_stops_the_publish(published):
    with duckdb.connect(str(published.build_db)) as con:
        con.execute(
            "update raw.usage set amount_usd = amount_usd + 0.01 where rowid = (select min(rowid) "
            "from raw.usage where usage_date = date '2024-03-01' and customer_id = 'cus_tiktok' "
            "and product_line = 'azure_openai')"
        )

    (observed,) = reconcile_months_breaks(published)

    assert "2024-03 azure_openai: the landing files say" in observed
