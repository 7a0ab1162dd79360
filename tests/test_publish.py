"""Write, audit, publish: a failed audit or a crash mid-publish never damages what is published,
and readers of the published file are never disturbed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest

from tests.conftest import ALL_MARTS, published_files, run_pipeline
from tests.new_work import add_tiktok_double
from warehouse.publish import PUBLISHED_STORAGE_VERSION

pytestmark = pytest.mark.slow


def test_published_file_holds_exactly_the_marts(first_run):
    _, settings = first_run
    data_dir = settings.data_dir
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() order by all"
        ).fetchall()
        views = con.execute("select count(*) from duckdb_views() where not internal").fetchone()
        publication = con.execute("select run_id from meta.publication").fetchall()
        storage = con.execute(
            "select tags['storage_version'] from duckdb_databases() where not internal"
        ).fetchone()[0]
    marts = {name for schema, name in tables if schema == "marts"}
    assert marts == ALL_MARTS
    assert set(tables) - {("marts", name) for name in marts} == {("meta", "publication")}
    assert views == (0,)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert publication == [(manifest["run_id"],)]
    # Readable by DuckDB 1.4 and later (the CLI from PyPI, BI drivers).
    assert storage == f"{PUBLISHED_STORAGE_VERSION}+"
    assert set(manifest["row_counts"]) == ALL_MARTS
    assert manifest["validation"]["success"] is True
    suites = manifest["validation"]["suites"]
    assert {"claims", *ALL_MARTS} <= set(suites)
    assert manifest["validation"]["evaluated_expectations"] == sum(
        suite["evaluated"] for suite in suites.values()
    )
    # Data Docs: the site, with a page for each suite's validation.
    assert settings.data_docs.exists()
    pages = list((settings.data_docs.parent / "validations").rglob("*.html"))
    assert len(pages) == len(suites)
    assert {p.name for p in (data_dir / "exports").iterdir()} == {
        f"{name}.parquet" for name in ALL_MARTS
    }
    with duckdb.connect() as con:
        rows = con.execute(
            "select count(*) from read_parquet(?)",
            [str(data_dir / "exports" / "fct_revenue_concentration.parquet")],
        ).fetchone()[0]
    assert rows == manifest["row_counts"]["fct_revenue_concentration"]


def test_a_broken_claim_fails_validation_and_publishes_nothing(published):
    data_dir = published.data_dir
    before = published_files(data_dir)
    add_tiktok_double(published.landing_dir)

    run = run_pipeline(published, "broken-claim")

    assert not run.succeeded
    assert "validate (failed)" in run.failed_tasks
    assert "publish (upstream_failed)" in run.failed_tasks
    assert published_files(data_dir) == before
    log = run.log_file.read_text()
    assert "validation failed" in log and "nothing was published" in log
    # The failed claim, with what was expected and what the warehouse computed.
    assert "tiktok_share_2024_03" in log and "0.24 <= x <= 0.26" in log
    assert "tiktok_spend_2024_03_usd" in log and "1.8e+07 <= x < 2e+07" in log
    result = json.loads((data_dir / "validation" / "result.json").read_text())
    failed = {f["expectation"].split()[-1]: f for f in result["failures"]}
    assert float(failed["tiktok_share_2024_03"]["observed"]) > 0.3
    assert "The Information" in failed["tiktok_share_2024_03"]["source"]


def test_a_crash_between_writing_and_replacing_keeps_the_previous_publish(published, monkeypatch):
    import warehouse.publish.release

    data_dir = published.data_dir
    before = published_files(data_dir)

    def crash(moves):
        raise RuntimeError("simulated crash between writing the new files and replacing")

    monkeypatch.setattr(warehouse.publish.release, "_swap_in", crash)
    run = run_pipeline(published, "crash", conf={"full_refresh": True})

    assert "publish (failed)" in run.failed_tasks
    assert published_files(data_dir) == before
    leftovers = [p.name for p in data_dir.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []

    monkeypatch.undo()
    rerun = run_pipeline(published, "rerun", conf={"full_refresh": True})

    assert rerun.succeeded
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["run_id"] == rerun.run_id


READER = """
import json, sys, time, duckdb
path, stop, out = sys.argv[1:4]
con = duckdb.connect(path, read_only=True)
reads, errors = [], []
while True:
    try:
        reads.append(con.execute(
            "select count(*), sum(total_spend_usd)::double from marts.fct_revenue_concentration"
        ).fetchone())
    except Exception as error:
        errors.append(repr(error))
    try:
        open(stop).close()
        break
    except FileNotFoundError:
        time.sleep(0.2)
json.dump({"reads": reads, "errors": errors}, open(out, "w"))
"""


def test_a_reader_keeps_its_snapshot_during_a_run_and_new_readers_see_the_new_one(
    published, tmp_path
):
    landing = published.landing_dir
    warehouse = published.published_db
    with duckdb.connect(str(warehouse), read_only=True) as con:
        old = con.execute(
            "select count(*), sum(total_spend_usd)::double from marts.fct_revenue_concentration"
        ).fetchone()
    december = (landing / "spend" / "usage_2024_12.csv").read_text().splitlines()
    (landing / "spend" / "usage_2025_01.csv").write_text(
        "\n".join([december[0]] + [r.replace("2024-12-", "2025-01-") for r in december[1:]]) + "\n"
    )
    stop, out = tmp_path / "stop", tmp_path / "reads.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(warehouse), str(stop), str(out)])
    try:
        time.sleep(1)
        run = run_pipeline(published, "with-reader")
    finally:
        stop.touch()
        reader.wait(timeout=60)

    assert run.succeeded
    observed = json.loads(out.read_text())
    assert observed["errors"] == []
    assert len(observed["reads"]) > 10
    assert {tuple(r) for r in observed["reads"]} == {tuple(old)}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        new = con.execute(
            "select count(*), sum(total_spend_usd)::double from marts.fct_revenue_concentration"
        ).fetchone()
    assert new[0] == old[0] + 4  # 2025-01: two product lines x two levels
