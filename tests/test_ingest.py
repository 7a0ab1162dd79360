"""Ingestion into the raw schema: idempotent, file-scoped, and every input row accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import settings_for
from tests.ingesting import USAGE_HEADER, ingest_sources, landing_folder, query, snapshot
from warehouse.ingest import SOURCES, SourceRefusedError, ingest_source, scan_file
from warehouse.ingest.landing import take_inventory
from warehouse.settings import Settings


def bare(folder: Path, data_dir: Path) -> Settings:
    """Settings over an empty landing folder (but `spend/`)."""
    return settings_for(landing_folder(folder), data_dir)


def known_customer(settings: Settings) -> None:
    """Customer c1 loaded, as the DAG loads customers before usage."""
    (settings.landing_dir / "customers.csv").write_text(
        "customer_id,customer_name,parent_company,industry,segment,hq_country,is_synthetic,"
        "source\nc1,Customer One,Customer One,software,enterprise,US,true,test\n"
    )
    ingest_source("customers", "run-0", settings)


def test_first_load_loads_every_seed_row(settings):
    ingested = ingest_sources(settings, "run-1")

    assert ingested.refused == {}
    assert len(ingested.files) == 26  # customers, earnings and 24 months of usage
    assert all(f.action == "added" for f in ingested.files.values())
    inventory = take_inventory(settings.landing_dir)
    for name, source in SOURCES.items():
        in_files = sum(scan_file(p).rows_in_file for p in inventory.files[name])
        assert query(settings, f"select count(*) from raw.{source.table}")[0][0] == in_files
    assert query(settings, "select count(*) from ingest.rejects")[0][0] == 0
    assert query(settings, "select count(distinct file_path), count(*) from ingest.ledger") == [
        (26, 26)
    ]


def test_rerun_with_nothing_changed_loads_nothing(settings):
    ingest_sources(settings, "run-1")
    before = snapshot(settings)

    ingested = ingest_sources(settings, "run-2")

    assert ingested.files and all(f.action == "unchanged" for f in ingested.files.values())
    assert snapshot(settings) == before


def test_changed_file_replaces_only_its_own_rows(settings):
    ingest_sources(settings, "run-1")
    march = settings.landing_dir / "spend" / "usage_2024_03.csv"
    lines = march.read_text().splitlines(keepends=True)
    march.write_text("".join(lines[:101]))  # header + 100 rows: a restated, shorter file
    others_before = query(
        settings,
        "select * from raw.usage where _source_file <> 'spend/usage_2024_03.csv' order by all",
    )

    result = ingest_source("usage", "run-2", settings)

    changed = [f for f in result.files if f.action != "unchanged"]
    assert [(f.file_path, f.action, f.rows_loaded) for f in changed] == [
        ("spend/usage_2024_03.csv", "replaced", 100)
    ]
    assert query(
        settings,
        "select count(*), min(_run_id) from raw.usage where _source_file = ?",
        [changed[0].file_path],
    ) == [(100, "run-2")]
    others_after = query(
        settings,
        "select * from raw.usage where _source_file <> 'spend/usage_2024_03.csv' order by all",
    )
    assert others_after == others_before
    ledger = query(
        settings,
        "select action, rows_loaded from ingest.ledger where file_path = ? order by loaded_at",
        ["spend/usage_2024_03.csv"],
    )
    assert ledger == [("added", len(lines) - 1), ("replaced", 100)]


def test_new_month_file_is_added(settings):
    ingest_sources(settings, "run-1")
    total_before = query(settings, "select count(*) from raw.usage")[0][0]
    (settings.landing_dir / "spend" / "usage_2025_01.csv").write_text(
        USAGE_HEADER
        + "2025-01-01,cus_tiktok,azure_openai,gpt-4o,1000,7.50\n"
        + "2025-01-02,cus_tiktok,azure_openai,gpt-4o,2000,15.00\n"
    )

    result = ingest_source("usage", "run-2", settings)

    assert [(f.file_path, f.action) for f in result.files if f.action != "unchanged"] == [
        ("spend/usage_2025_01.csv", "added")
    ]
    assert query(settings, "select count(*) from raw.usage")[0][0] == total_before + 2


BAD_ROWS = [
    # (line in file, content, reason it must be rejected with; None = loads)
    (2, "2024-03-01,c1,azure_openai,gpt-4,100,1.50", None),
    (3, "2024-03-02,c1,azure_openai,gpt-4,100,-1.50", "amount_usd is negative"),
    (4, "", None),  # a blank line is not a row
    (5, "2024-03-xx,c1,azure_openai,gpt-4,100,1.50", "usage_date is not a date (YYYY-MM-DD)"),
    (6, "2024-04-01,c1,azure_openai,gpt-4,100,1.50", "outside the month named in the file"),
    (7, "2024-03-01,c1,azure_openai,gpt-4,100,2.50", "duplicate of an earlier row"),
    (8, "2024-03-03,c1,azure_openai,gpt-4,100", "MISSING COLUMNS"),
    (9, "2024-03-03,,azure_openai,gpt-4,100,3", "missing customer_id"),
    (
        10,
        "2024-03-04,c1,azure_openai,gpt-4,100,99999999999999999999",
        "amount_usd is not a decimal",
    ),
    (11, "2024-03-04,c1,azure_openai,gpt-4,-5,1.00", "tokens is negative"),
    (12, "2024-03-05,c1,azure_openai,gpt-4,100,1.00,extra", "TOO MANY COLUMNS"),
    (13, "2024-03-05,c1,azure_openai,gpt-4,abc,1.00", "tokens is not a whole number"),
    (14, "2024-03-06,c1,azure_openai,gpt-4,100,2.00", None),
]


def test_bad_rows_are_rejected_with_line_number_and_reason(tmp_path, data_dir):
    settings = bare(tmp_path / "bad", data_dir)
    content = USAGE_HEADER + "\n".join(line for _, line, _ in BAD_ROWS) + "\n"
    (settings.landing_dir / "spend" / "usage_2024_03.csv").write_text(content)
    known_customer(settings)

    result = ingest_source("usage", "run-1", settings)

    rejects = query(settings, "select line_number, reason, raw_line from ingest.rejects order by 1")
    expected = [(n, line, why) for n, line, why in BAD_ROWS if why]
    assert [r[0] for r in rejects] == [n for n, _, _ in expected]
    for (line_number, reason, raw_line), (_, line, why) in zip(rejects, expected, strict=True):
        assert why in reason, f"line {line_number}: {reason!r} should mention {why!r}"
        assert raw_line == line
    loaded = query(
        settings, "select usage_date::varchar, amount_usd::double from raw.usage order by 1"
    )
    assert loaded == [("2024-03-01", 1.5), ("2024-03-06", 2.0)]
    (file,) = result.files
    assert (file.rows_in_file, file.rows_loaded, file.rows_rejected) == (12, 2, 10)


def test_accounting_identity_holds_for_every_file(settings):
    march = settings.landing_dir / "spend" / "usage_2024_03.csv"
    with march.open("a") as handle:
        handle.write("2024-03-31,cus_tiktok,azure_openai,gpt-4,1,-3.00\n")
        handle.write("not,a,valid,row\n")
    ingest_sources(settings, "run-1")

    rows = query(
        settings, "select file_path, rows_in_file, rows_loaded, rows_rejected from ingest.ledger"
    )
    assert all(loaded + rejected == total for _, total, loaded, rejected in rows)
    per_file = {path: (loaded, rejected) for path, _, loaded, rejected in rows}
    assert per_file["spend/usage_2024_03.csv"][1] == 2
    counted = query(
        settings,
        "select (select count(*) from raw.usage where _source_file = $f), "
        "(select count(*) from ingest.rejects where file_path = $f)",
        {"f": "spend/usage_2024_03.csv"},
    )
    assert counted == [per_file["spend/usage_2024_03.csv"]]


def test_refused_file_does_not_stop_the_other_files(tmp_path, data_dir):
    settings = bare(tmp_path / "mixed", data_dir)
    spend = settings.landing_dir / "spend"
    (spend / "usage_2024_01.csv").write_text("bad header\n")
    (spend / "usage_2024_02.csv").write_text(
        USAGE_HEADER + "2024-02-01,c1,azure_openai,gpt-4,100,1.50\n"
    )
    known_customer(settings)

    with pytest.raises(SourceRefusedError, match=r"usage_2024_01\.csv"):
        ingest_source("usage", "run-1", settings)

    assert query(settings, "select _source_file, count(*) from raw.usage group by 1") == [
        ("spend/usage_2024_02.csv", 1)
    ]


def test_earnings_rules_and_nulls(tmp_path, data_dir):
    settings = bare(tmp_path / "earnings", data_dir)
    header = ",".join(SOURCES["earnings"].header)
    (settings.landing_dir / "earnings.csv").write_text(
        header
        + "\n2024,4,2024-07-30,28520000000,19,pre,29,,31,reported,8,-7,after hours,src,\n"
        + "2024,5,2024-07-30,,,,,,,,,,,src,\n"
        + "2024,3,2024-03-01,,,,,,,,,,,src,\n"
    )

    ingest_source("earnings", "run-1", settings)

    assert query(settings, "select line_number, reason from ingest.rejects order by 1") == [
        (3, "fiscal_quarter must be 1 to 4"),
        (4, "reported_on is before the fiscal quarter ended"),
    ]
    assert query(settings, "select azure_growth_pct, azure_growth_cc_pct from raw.earnings") == [
        (29, None)
    ]


def test_scan_counts_records_not_blank_lines(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"h\r\na\r\n\r\nb\n\n\nc")  # CRLF, blank lines, no final newline

    assert scan_file(path).rows_in_file == 3
