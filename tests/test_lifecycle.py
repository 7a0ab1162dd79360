"""The landing folder is the truth: however files arrive, change or vanish, raw holds exactly what
the folder says now, every file is loaded, refused or ignored with a reason, and every row is
loaded, quarantined (until what it depends on arrives) or rejected with a reason true now.

Each test is one finding of the lifecycle review (RELIABILITY.md, "The landing folder is the
truth"); the last ones run the whole DAG, where reconciliation gates the publish."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import duckdb
import pytest

from tests.conftest import SEED_USAGE_ROWS, run_pipeline, settings_for
from tests.ingesting import (
    USAGE_HEADER,
    add_customer,
    ingest_sources,
    landing_folder,
    quarantined,
    query,
    usage_by_file,
)
from warehouse.settings import Settings


@pytest.fixture
def small(tmp_path) -> Settings:
    """A landing folder with the seed customers and earnings and one small usage file."""
    landing = landing_folder(tmp_path / "landing", "customers.csv", "earnings.csv")
    (landing / "spend" / "usage_2024_03.csv").write_text(
        USAGE_HEADER
        + "2024-03-01,cus_tiktok,azure_openai,gpt-4o,1000,10.00\n"
        + "2024-03-01,cus_walmart,azure_openai,gpt-4o,2000,20.00\n"
    )
    return settings_for(landing, tmp_path / "data")


# -- 1. rejected rows that can become valid are re-evaluated ---------------------------------


def test_a_late_customers_usage_loads_once_the_customer_arrives(small):
    usage = small.landing_dir / "spend" / "usage_2024_03.csv"
    usage.write_text(usage.read_text() + "2024-03-02,cus_newco,azure_openai,gpt-4o,5,7.25\n")
    ingest_sources(small, "early")
    assert quarantined(small) == [
        ("spend/usage_2024_03.csv", 4, "customer_id is not in customers.csv")
    ]
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 2}

    add_customer(small.landing_dir, "cus_newco")  # the usage file itself is unchanged
    ingest_sources(small, "late")

    assert quarantined(small) == []
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 3}
    # The file's ledger says so, so the incremental model rebuilds it.
    assert query(
        small,
        "select action, rows_loaded, rows_quarantined from ingest.ledger "
        "where file_path = 'spend/usage_2024_03.csv' order by loaded_at",
    ) == [("added", 2, 1), ("re-evaluated", 3, 0)]


def test_a_duplicate_loads_once_the_file_holding_its_key_is_restated_without_it(small):
    spend = small.landing_dir / "spend"
    (spend / "usage_2024_03_late.csv").write_text(
        USAGE_HEADER + "2024-03-01,cus_walmart,azure_openai,gpt-4o,2000,21.00\n"
    )
    ingest_sources(small, "first")
    assert quarantined(small) == [
        (
            "spend/usage_2024_03_late.csv",
            2,
            "duplicate of a row already loaded from spend/usage_2024_03.csv",
        )
    ]

    (spend / "usage_2024_03.csv").write_text(
        USAGE_HEADER + "2024-03-01,cus_tiktok,azure_openai,gpt-4o,1000,10.00\n"
    )
    ingest_sources(small, "restated")

    assert quarantined(small) == []
    assert usage_by_file(small) == {
        "spend/usage_2024_03.csv": 1,
        "spend/usage_2024_03_late.csv": 1,
    }


# -- 2. a file removed or renamed: its rows go with it ---------------------------------------


def test_a_deleted_file_is_retracted(small):
    ingest_sources(small, "first")
    (small.landing_dir / "spend" / "usage_2024_03.csv").unlink()

    ingest_sources(small, "after-delete")

    assert usage_by_file(small) == {}
    assert query(
        small,
        "select action, run_id from ingest.ledger where file_path like 'spend/%' "
        "order by loaded_at",
    ) == [("added", "first"), ("retracted", "after-delete")]


def test_a_renamed_file_with_a_corrected_amount_is_a_restatement(small):
    ingest_sources(small, "first")
    spend = small.landing_dir / "spend"
    content = (spend / "usage_2024_03.csv").read_text().replace("20.00", "22.50")
    (spend / "usage_2024_03.csv").unlink()
    (spend / "usage_2024_03_v2.csv").write_text(content)

    assert ingest_sources(small, "renamed").refused == {}

    assert usage_by_file(small) == {"spend/usage_2024_03_v2.csv": 2}
    assert quarantined(small) == []
    assert query(small, "select sum(amount_usd)::varchar from raw.usage") == [("32.5000",)]


def test_a_renamed_file_with_the_same_content_is_not_a_twin(small):
    ingest_sources(small, "first")
    spend = small.landing_dir / "spend"
    (spend / "usage_2024_03.csv").rename(spend / "usage_2024_03_final.csv")

    assert ingest_sources(small, "renamed").refused == {}
    assert usage_by_file(small) == {"spend/usage_2024_03_final.csv": 2}


# -- the loaded totals the audit reads instead of raw follow raw through every case ----------

RAW_TOTALS = (
    "select _source_file, date_trunc('month', usage_date)::date, customer_id, product_line, "
    "count(*), sum(amount_usd) from raw.usage group by all order by all"
)
LOADED_TOTALS = (
    "select file_path, month, customer_id, product_line, sum(rows), sum(amount_usd) "
    "from ingest.loaded_totals group by all order by all"
)


def test_the_loaded_totals_follow_raw_through_every_case(small):
    """The audit compares the marts with ingest.loaded_totals instead of summing raw again, so
    they must hold what raw holds, file by file and customer by customer: after a load by
    either path (a clean file, a file with held rows), the release of a late customer's row and
    of a duplicate, a rename with a corrected amount and a retraction."""
    spend = small.landing_dir / "spend"
    march = spend / "usage_2024_03.csv"
    march.write_text(march.read_text() + "2024-03-02,cus_newco,azure_openai,gpt-4o,5,7.25\n")
    (spend / "usage_2024_03_late.csv").write_text(
        USAGE_HEADER + "2024-03-01,cus_walmart,azure_openai,gpt-4o,2000,21.00\n"
    )
    april = USAGE_HEADER + "2024-04-01,cus_intuit,copilot,m365-copilot,3,4.50\n"
    (spend / "usage_2024_04.csv").write_text(april)

    def follow(run_id: str) -> list[tuple]:
        ingest_sources(small, run_id)
        loaded = query(small, LOADED_TOTALS)
        assert loaded == query(small, RAW_TOTALS), run_id
        return loaded

    assert len(follow("first")) == 3  # two of March's customers, April's; two rows held
    add_customer(small.landing_dir, "cus_newco")
    assert len(follow("late-customer")) == 4
    march.write_text(USAGE_HEADER + "2024-03-01,cus_tiktok,azure_openai,gpt-4o,1000,10.00\n")
    assert len(follow("restated")) == 3  # Walmart's row now loads from the late file
    (spend / "usage_2024_04.csv").unlink()
    (spend / "usage_2024_04_v2.csv").write_text(april.replace("4.50", "5.25"))
    assert ("spend/usage_2024_04_v2.csv",) in {row[:1] for row in follow("renamed")}
    (spend / "usage_2024_03_late.csv").unlink()
    assert len(follow("retracted")) == 2


# -- 3. every file is accounted for ----------------------------------------------------------


def test_compressed_and_upper_case_names_load_and_other_files_are_listed(small):
    spend = small.landing_dir / "spend"
    row = "2024-{m}-01,cus_tiktok,azure_openai,gpt-4o,1,1.00\n"
    with gzip.open(spend / "usage_2024_06.csv.gz", "wt") as handle:
        handle.write(USAGE_HEADER + row.format(m="06"))
    (spend / "Usage_2024_05.CSV").write_text(USAGE_HEADER + row.format(m="05"))
    (spend / "2024").mkdir()
    (spend / "2024" / "usage_2024_07.csv").write_text(USAGE_HEADER + row.format(m="07"))
    (small.landing_dir / "README.md").write_text("notes\n")
    (spend / ".usage_2024_08.csv.part").write_text(USAGE_HEADER)

    refused = ingest_sources(small).refused

    assert usage_by_file(small) == {
        "spend/Usage_2024_05.CSV": 1,
        "spend/usage_2024_03.csv": 2,
        "spend/usage_2024_06.csv.gz": 1,
    }
    assert list(refused) == ["spend/2024/usage_2024_07.csv"]
    assert "not a landing file's place" in refused["spend/2024/usage_2024_07.csv"]
    assert query(small, "select file_path, reason from ingest.ignored_files order by 1") == [
        ("README.md", "not a CSV file (.csv or .csv.gz)"),
        ("spend/.usage_2024_08.csv.part", "hidden: a file still being written, or not data"),
    ]


# -- 4. month names are enforced -------------------------------------------------------------


@pytest.mark.parametrize("name", ["usage_2024_13.csv", "usage-march.csv"])
def test_a_usage_file_without_a_valid_month_in_its_name_is_refused(small, name):
    (small.landing_dir / "spend" / name).write_text(
        USAGE_HEADER + "2024-03-05,cus_tiktok,azure_openai,gpt-4o,1,1.00\n"
    )

    refused = ingest_sources(small).refused

    assert refused == {
        f"spend/{name}": "no valid month in the name (expected e.g. usage_2024_03.csv)"
    }
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 2}


# -- 5. one odd file never blocks the others -------------------------------------------------

LINE_BREAKS = {
    "CR only": (b"\r", "line breaks are a lone CR"),
    "CRLF with one LF": (None, "mixed line breaks (2 CRLF and 1 LF)"),
    "LF ending in CRLF": (b"mixed-end", "mixed line breaks (1 CRLF and 2 LF)"),
}


@pytest.mark.parametrize("kind", LINE_BREAKS, ids=LINE_BREAKS.keys())
def test_a_file_with_unreadable_line_breaks_is_refused_in_one_line_and_the_rest_load(small, kind):
    rows = [USAGE_HEADER.strip(), "2024-02-01,cus_tiktok,azure_openai,gpt-4o,1,1.00"]
    rows.append("2024-02-02,cus_tiktok,azure_openai,gpt-4o,1,1.00")
    breaks, problem = LINE_BREAKS[kind]
    if breaks == b"\r":
        content = "\r".join(rows).encode() + b"\r"
    elif breaks is None:
        content = (rows[0] + "\r\n" + rows[1] + "\n" + rows[2] + "\r\n").encode()
    else:
        content = (rows[0] + "\n" + rows[1] + "\n" + rows[2] + "\r\n").encode()
    # Sorted before the good file: it must not stop it.
    (small.landing_dir / "spend" / "usage_2024_02.csv").write_bytes(content)

    refused = ingest_sources(small).refused

    assert list(refused) == ["spend/usage_2024_02.csv"]
    assert problem in refused["spend/usage_2024_02.csv"]
    assert "\n" not in refused["spend/usage_2024_02.csv"]
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 2}


def test_a_file_growing_while_it_is_read_is_refused_and_loads_when_complete(small, monkeypatch):
    import warehouse.ingest.load as load

    growing = small.landing_dir / "spend" / "usage_2024_04.csv"
    growing.write_text(USAGE_HEADER + "2024-04-01,cus_tiktok,azure_openai,gpt-4o,1,1.00\n")
    real_scan = load.scan_file

    def scan_then_append(path):
        facts = real_scan(path)
        if path == growing:  # the producer appends a row while ingestion reads
            with growing.open("a") as handle:
                handle.write("2024-04-02,cus_tiktok,azure_openai,gpt-4o,1,1.00\n")
        return facts

    monkeypatch.setattr(load, "scan_file", scan_then_append)
    refused = ingest_sources(small, "while-growing").refused
    monkeypatch.undo()

    assert "changed while it was read" in refused["spend/usage_2024_04.csv"]
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 2}
    assert ingest_sources(small, "complete").refused == {}
    assert usage_by_file(small)["spend/usage_2024_04.csv"] == 2


# -- 6. reference data is checked at the door ------------------------------------------------

CUSTOMER_ROWS = {
    "segment outside the accepted set": (
        "cus_x,X,X,software,Enterprise,US,true,s",
        "segment 'Enterprise' is not one of enterprise, mid_market, digital_native, strategic",
    ),
    "upper-case id": (
        "CUS_TIKTOK,TikTok,ByteDance,media,digital_native,SG,false,s",
        "customer_id must be lowercase letters, digits and _: 'CUS_TIKTOK'",
    ),
    "blank parent company": ("cus_x,X,   ,software,enterprise,US,true,s", "missing parent_company"),
    "blank name": ("cus_x, ,X,software,enterprise,US,true,s", "missing customer_name"),
}


@pytest.mark.parametrize("row, reason", CUSTOMER_ROWS.values(), ids=CUSTOMER_ROWS.keys())
def test_bad_reference_rows_are_rejected_with_a_reason(small, row, reason):
    with (small.landing_dir / "customers.csv").open("a") as handle:
        handle.write(row + "\n")

    ingest_sources(small)

    assert query(small, "select reason from ingest.rejects where source = 'customers'") == [
        (reason,)
    ]


def test_removing_a_customer_who_still_has_usage_is_refused_naming_it(small):
    ingest_sources(small, "first")
    customers = small.landing_dir / "customers.csv"
    customers.write_text(
        "".join(line for line in customers.open() if not line.startswith("cus_walmart,"))
    )

    refused = ingest_sources(small, "removed").refused

    assert refused == {
        "customers.csv": "it removes 1 customer_id value(s) that loaded usage rows depend on: "
        "cus_walmart (1 usage rows); restore them"
    }
    assert query(small, "select count(*) from raw.customers where customer_id = 'cus_walmart'") == [
        (1,)
    ]
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 2}

    customers.unlink()  # the whole file gone: the same refusal, and nothing retracted
    refused = ingest_sources(small, "deleted").refused

    assert refused["customers.csv"].startswith("it is gone, but 2 customer_id value(s)")
    assert query(small, "select count(*) from raw.customers")[0][0] > 0


# -- 7. exact values or a reject -------------------------------------------------------------

EXACT = {
    "fractional tokens": ("1000000.5", "1.00", "tokens is not a whole number: '1000000.5'"),
    "hex tokens": ("0x10", "1.00", "tokens is not a whole number: '0x10'"),
    "scientific tokens": ("1e6", "1.00", "tokens is not a whole number: '1e6'"),
    "too many decimals": (
        "5",
        "1.12345678901234567890",
        "amount_usd has more than 4 decimal places: '1.12345678901234567890'",
    ),
}


@pytest.mark.parametrize("tokens, amount, reason", EXACT.values(), ids=EXACT.keys())
def test_inexact_values_are_rejected_never_coerced(small, tokens, amount, reason):
    usage = small.landing_dir / "spend" / "usage_2024_03.csv"
    usage.write_text(
        usage.read_text() + f"2024-03-03,cus_tiktok,azure_openai,gpt-4o,{tokens},{amount}\n"
    )

    ingest_sources(small)

    assert query(small, "select line_number, reason from ingest.rejects") == [(4, reason)]
    assert usage_by_file(small) == {"spend/usage_2024_03.csv": 2}


def test_a_control_character_in_a_field_is_rejected(small):
    usage = small.landing_dir / "spend" / "usage_2024_03.csv"
    with usage.open("ab") as handle:
        handle.write(b"2024-03-03,cus_tiktok,azure_openai,gpt\x01-4o,1,1.00\n")

    ingest_sources(small)

    assert query(small, "select line_number, reason from ingest.rejects") == [
        (4, "model holds a control character")
    ]


# -- 8. reconciliation on every run, through the whole DAG -----------------------------------


def reconciliation(settings: Settings) -> dict:
    return json.loads(settings.manifest.read_text())["validation"]["reconciliation"]


@pytest.mark.slow
def test_lifecycle_through_the_dag_reconciles_after_every_case(airflow_home, settings):
    """Late customer, retraction, rename and restatement, each followed by a whole run: each
    publishes, and the reconciliation counts every landing row (rows lost: 0)."""
    spend = settings.landing_dir / "spend"

    def run_and_reconcile(name: str) -> dict:
        run = run_pipeline(settings, name)
        assert run.succeeded, (name, run.failed_tasks, run.log_file.read_text()[-3000:])
        figures = reconciliation(settings)
        assert figures["rows_in_landing"] == (
            figures["rows_loaded"] + figures["rows_quarantined"] + figures["rows_rejected"]
        ), name
        assert Decimal(figures["landing_usd"]) == (
            Decimal(figures["loaded_usd"]) + Decimal(figures["quarantined_usd"])
        ), name
        return figures

    first = run_and_reconcile("seeds")
    assert (first["rows_in_landing"], first["rows_quarantined"]) == (SEED_USAGE_ROWS, 0)

    # A late customer: its usage waits, then loads with no re-delivery.
    december = spend / "usage_2024_12.csv"
    december.write_text(december.read_text() + "2024-12-31,cus_late,copilot,m365-copilot,1,5.00\n")
    waiting = run_and_reconcile("early-usage")
    assert waiting["rows_quarantined"] == 1
    add_customer(settings.landing_dir, "cus_late")
    arrived = run_and_reconcile("late-customer")
    assert (arrived["rows_quarantined"], arrived["rows_loaded"]) == (0, SEED_USAGE_ROWS + 1)

    # A retraction: the month's revenue leaves the marts.
    (spend / "usage_2023_01.csv").unlink()
    retracted = run_and_reconcile("retracted")
    assert retracted["usage_files"] == 23
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        assert con.execute(
            "select count(*) from marts.fct_revenue_concentration where month = '2023-01-01'"
        ).fetchone() == (0,)

    # A rename with a corrected amount, then a restatement in place.
    march = (spend / "usage_2024_03.csv").read_text().splitlines()
    march[1] = ",".join([*march[1].split(",")[:-1], "1.00"])
    (spend / "usage_2024_03.csv").unlink()
    (spend / "usage_2024_03_v2.csv").write_text("\n".join(march) + "\n")
    renamed = run_and_reconcile("renamed")
    assert renamed["rows_quarantined"] == 0
    april = spend / "usage_2024_04.csv"
    lines = april.read_text().splitlines()
    kept = [line for line in lines if ",cus_walmart," not in line]  # Walmart's April withdrawn
    april.write_text("\n".join(kept) + "\n")
    restated = run_and_reconcile("restated")
    assert restated["rows_loaded"] == renamed["rows_loaded"] - (len(lines) - len(kept))


@pytest.mark.slow
def test_reconciliation_fails_on_lingering_rows_and_on_missing_late_revenue(published):
    """Tampered behind ingestion's back: rows of a file the ledger never loaded, and a
    quarantined row whose customer exists. The audit stops the publish, naming the file and the
    row."""
    from warehouse.audit.expectations import validate

    with duckdb.connect(str(published.build_db)) as con:
        con.execute(
            "insert into raw.usage select usage_date, customer_id, product_line, model, tokens, "
            "amount_usd, 'spend/usage_2022_12.csv', 'ghost' from raw.usage "
            "where _source_file = 'spend/usage_2023_01.csv'"
        )
        con.execute(
            "insert into ingest.usage_quarantine values (date '2024-12-31', 'cus_tiktok', "
            "'copilot', 'm365-copilot', 1, 5.00, 'spend/usage_2024_12.csv', 9999, "
            "'customer_id is not in customers.csv', '', 'ghost')"
        )

    report = validate(published, run_id="tampered")

    assert not report.success
    failed = {check.suite: check.observed for check in report.failures}
    assert set(failed) >= {"reconcile_files", "reconcile_quarantine"}
    assert (
        "spend/usage_2022_12.csv: not in the landing folder nor the ledger, yet raw holds"
        in failed["reconcile_files"]
    )
    assert "cus_tiktok is in customers.csv now" in failed["reconcile_quarantine"]


@pytest.mark.slow
def test_data_docs_render_each_validation_once(published):
    """A validation renders its own pages and the index, never again the pages of earlier
    validations, which GX would otherwise re-render on every run (a cost growing with each)."""
    from warehouse.audit.expectations import validate

    site = published.data_docs.parent
    validate(published, run_id="first")
    earlier = {page: page.stat().st_mtime_ns for page in (site / "validations").rglob("*.html")}

    validate(published, run_id="second")

    pages = set((site / "validations").rglob("*.html"))
    assert earlier and len(pages) > len(earlier)  # the second validation's pages were added
    assert {page: page.stat().st_mtime_ns for page in earlier} == earlier  # none re-rendered
    index = published.data_docs.read_text()
    assert all(page.parent.name in index for page in pages)  # the index lists every one


@pytest.mark.slow
def test_a_mart_that_shrank_or_exploded_since_the_last_publish_stops_the_publish(published):
    """Each mart's row count must lie within bounds of the previous publish's (at least 95%,
    at most twice): a lost year of customer months, or customers loaded four times over,
    fail validation, and the checks name the counts."""
    from warehouse.audit.expectations import validate
    from warehouse.publish import read_manifest

    previous = read_manifest(published)["row_counts"]
    with duckdb.connect(str(published.build_db)) as con:
        con.execute("delete from marts.fct_customer_monthly_spend where month < date '2024-01-01'")
        for _ in range(2):
            con.execute("insert into marts.dim_customers select * from marts.dim_customers")
        shrunk = con.execute("select count(*) from marts.fct_customer_monthly_spend").fetchone()

    report = validate(published, run_id="tampered", previous_manifest=read_manifest(published))

    failed = {check.suite: check for check in report.failures}
    assert set(failed) >= {"fct_customer_monthly_spend", "dim_customers"}  # and the money lost
    assert failed["fct_customer_monthly_spend"].observed == str(shrunk[0])
    assert failed["dim_customers"].observed == str(4 * previous["dim_customers"])
    for suite in ("fct_customer_monthly_spend", "dim_customers"):
        assert "previous publish" in failed[suite].rule


def test_a_failing_dbt_test_is_reported_with_its_offending_rows(small):
    """What `warehouse run` prints when the transform fails: each failing test, its message and
    a few of the rows that broke it (its compiled query rerun on the build database)."""
    from warehouse.serve.summary import dbt_failures, format_dbt_failures

    ingest_sources(small)
    small.dbt_target_dir.mkdir(parents=True)
    small.dbt_run_results.write_text(
        json.dumps(
            {
                "results": [
                    {"unique_id": "model.ai_revenue.dim_customers", "status": "success"},
                    {
                        "unique_id": "test.ai_revenue.accepted_values_dim_customers_segment",
                        "status": "fail",
                        "failures": 1,
                        "message": "Got 1 result, configured to fail if != 0",
                        "compiled_code": "select customer_id, segment from raw.customers "
                        "where customer_id = 'cus_g42'",
                    },
                ]
            }
        )
    )

    report = format_dbt_failures(dbt_failures(small))

    assert report.splitlines() == [
        "dbt: test.ai_revenue.accepted_values_dim_customers_segment: "
        "Got 1 result, configured to fail if != 0",
        "    e.g. cus_g42, strategic",
    ]
