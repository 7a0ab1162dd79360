"""The audit reconciles without summing the landing files or all of raw again, and still catches
a cent: a customer mart row a cent off the rows loaded, loaded totals a cent off their landing
file, and a raw row altered behind ingestion's back (once its month is rebuilt) each stop the
publish naming the month and product line; a raw row removed or added behind its back stops it
naming the file (expectations/reconciliation.yml)."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.audit.expectations import validate
from warehouse.transform.dbt import run_dbt

ROW = "month = date '2024-03-01' and customer_id = 'cus_tiktok' and product_line = 'azure_openai'"
RAW_ROW = (
    "rowid = (select min(rowid) from raw.usage where usage_date = date '2024-03-01' "
    "and customer_id = 'cus_tiktok' and product_line = 'azure_openai')"
)


def breaks(settings, suite: str) -> list[str]:
    report = validate(settings, run_id="tampered")
    return [c.observed for c in report.failures if c.suite == suite]


def tamper(settings, sql: str) -> None:
    with duckdb.connect(str(settings.build_db)) as con:
        con.execute(sql)


@pytest.mark.slow  # the seeds' first DAG run, shared by the session
def test_an_untampered_build_reconciles(published):
    report = validate(published, run_id="untampered")
    assert [c.suite for c in report.failures] == []


@pytest.mark.slow
def test_a_customer_mart_row_a_cent_off_the_rows_loaded_stops_the_publish(published):
    tamper(
        published,
        f"update marts.fct_customer_monthly_spend set spend_usd = spend_usd + 0.01 where {ROW}",
    )

    (observed,) = breaks(published, "reconcile_months")

    assert (
        "2024-03 azure_openai: 1 rows of fct_customer_monthly_spend differ from the rows loaded"
        in observed
    )


@pytest.mark.slow
def test_loaded_totals_a_cent_off_their_landing_file_stop_the_publish(published):
    tamper(published, f"update ingest.loaded_totals set amount_usd = amount_usd + 0.01 where {ROW}")

    (observed,) = breaks(published, "reconcile_months")

    assert "2024-03 azure_openai: the landing files say" in observed


@pytest.mark.slow
def test_a_raw_row_altered_behind_ingestions_back_stops_the_publish_once_rebuilt(published):
    tamper(published, f"update raw.usage set amount_usd = amount_usd + 0.01 where {RAW_ROW}")
    run_dbt(published, "run", "--full-refresh")

    (observed,) = breaks(published, "reconcile_months")

    assert "2024-03 azure_openai: loaded" in observed
    assert "the usage fact holds" in observed


@pytest.mark.slow
def test_a_raw_row_removed_or_added_behind_ingestions_back_stops_the_publish(published):
    tamper(published, f"delete from raw.usage where {RAW_ROW}")
    tamper(
        published,
        "insert into raw.usage select usage_date, customer_id, product_line, model, tokens, "
        "amount_usd, 'spend/usage_2022_12.csv', 'ghost' from raw.usage limit 2",
    )

    (observed,) = breaks(published, "reconcile_files")

    assert "spend/usage_2024_03.csv: the ledger says" in observed
    assert "spend/usage_2022_12.csv: not in the landing folder nor the ledger, yet raw holds 2" in (
        observed
    )
