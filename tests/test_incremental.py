"""A month costs a month, and the incremental build is the full one: after each case of a
landing folder's life (a new month, a restated month, a retracted month, a late customer whose
quarantined rows then load, a renamed parent company), the marts `dbt build` keeps
incrementally equal exactly those a full refresh builds from the same raw tables; and the
month-incremental models build a new month alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from benchmarks.compare import compare_marts, duckdb_marts
from tests.conftest import copy_seeds, settings_for
from tests.ingesting import add_customer, ingest_sources
from warehouse.transform.dbt import run_dbt


def marts(build_db: Path) -> dict[str, list[tuple]]:
    """Every mart's rows, ordered."""
    with duckdb.connect(str(build_db), read_only=True) as con:
        names = con.execute(
            "select table_name from duckdb_tables() where schema_name = 'marts' order by 1"
        ).fetchall()
        return {
            n: con.execute(f"select * from marts.{n} order by all").fetchall() for (n,) in names
        }


def fact_files(build_db: Path) -> set[str]:
    with duckdb.connect(str(build_db), read_only=True) as con:
        rows = con.execute(
            "select distinct source_file from intermediate.int_usage_months_aggregated"
        ).fetchall()
    return {file for (file,) in rows}


def assert_equals_a_full_refresh(settings, tmp_path: Path, case: str) -> None:
    full = settings_for(settings.landing_dir, tmp_path / f"full-{case}")
    full.data_dir.mkdir()
    shutil.copy2(settings.build_db, full.build_db)
    run_dbt(full, "build", "--full-refresh")
    assert marts(settings.build_db) == marts(full.build_db), case
    compared = compare_marts(
        duckdb_marts(full.build_db),
        {
            name: relation.replace("build.", "incremental.", 1)
            for name, relation in duckdb_marts(settings.build_db).items()
        },
        attach={"build": full.build_db, "incremental": settings.build_db},
    )
    assert [c.mart for c in compared if not c.equal] == [], case


# What marks a month's rows in each month-incremental model.
MARKS = {
    "int_customer_months_aggregated": "tokens = -1",
    "int_spenders_ranked": "spender_name = 'marked'",
    "int_revenue_months_measured": "top_spender_name = 'marked'",
    "int_customer_months_compared": "customer_name = 'marked'",
}


def built_alone(settings, tmp_path: Path, new: str, old: str) -> bool:
    """On a copy of the build database: mark month `old`'s rows of each month-incremental
    model, build, and say whether the marks survived while month `new` was built."""
    probe = settings_for(settings.landing_dir, tmp_path / "probe")
    probe.data_dir.mkdir()
    shutil.copy2(settings.build_db, probe.build_db)
    with duckdb.connect(str(probe.build_db)) as con:
        for model, mark in MARKS.items():
            con.execute(f"update intermediate.{model} set {mark} where month = '{old}'")
    run_dbt(probe, "build")
    with duckdb.connect(str(probe.build_db), read_only=True) as con:
        kept = [
            con.execute(
                f"select bool_and({mark}), count(*) from intermediate.{model} where month = ?",
                [old],
            ).fetchone()
            for model, mark in MARKS.items()
        ]
        built = [
            con.execute(
                f"select count(*) from intermediate.{model} where month = ?", [new]
            ).fetchone()[0]
            for model in MARKS
        ]
    shutil.rmtree(probe.data_dir)
    return all(marked and rows for marked, rows in kept) and all(built)


@pytest.mark.slow  # thirteen dbt builds on the seeds
def test_after_each_lifecycle_case_the_incremental_marts_equal_a_full_refresh(tmp_path):
    landing = copy_seeds(tmp_path / "landing")
    settings = settings_for(landing, tmp_path / "data")
    spend = landing / "spend"
    december = (spend / "usage_2024_12.csv").read_text().splitlines()
    (spend / "usage_2024_12.csv").rename(tmp_path / "december.csv")
    assert ingest_sources(settings, "first").refused == {}
    run_dbt(settings, "build")

    # A new month: the month-incremental models build it alone (a probe's marks on an older
    # month survive the build), and the marts equal a full refresh.
    (tmp_path / "december.csv").rename(spend / "usage_2024_12.csv")
    ingest_sources(settings, "new-month")
    assert built_alone(settings, tmp_path, "2024-12-01", "2023-01-01")
    run_dbt(settings, "build")
    assert "spend/usage_2024_12.csv" in fact_files(settings.build_db)
    assert_equals_a_full_refresh(settings, tmp_path, "new month")

    # An old month restated: a year before the latest, so next year's growth reads it.
    november = spend / "usage_2023_12.csv"
    lines = november.read_text().splitlines()
    november.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    ingest_sources(settings, "restated")
    run_dbt(settings, "build")
    assert_equals_a_full_refresh(settings, tmp_path, "restatement")

    # A month retracted (its file left the landing folder); and a month left stale by a build
    # that failed half-way (its rows and version of an older build): the next build catches up.
    (spend / "usage_2024_06.csv").unlink()
    ingest_sources(settings, "retracted")
    with duckdb.connect(str(settings.build_db)) as con:
        con.execute(
            "update intermediate.int_customer_months_aggregated "
            "set spend_usd = 0, usage_files = usage_files + 1 where month = '2023-05-01'"
        )
    run_dbt(settings, "build")
    assert "spend/usage_2024_06.csv" not in fact_files(settings.build_db)
    assert_equals_a_full_refresh(settings, tmp_path, "retraction")

    # A late customer: its rows wait in quarantine, then load when customers.csv names it.
    late = [
        line.replace("cus_tiktok", "cus_late_co").replace("2024-12-", "2024-12-")
        for line in december[1:]
        if ",cus_tiktok," in line
    ]
    (spend / "usage_2025_01.csv").write_text(
        "\n".join([december[0]] + [line.replace("2024-12-", "2025-01-") for line in late]) + "\n"
    )
    ingest_sources(settings, "late-rows")
    run_dbt(settings, "build")
    assert_equals_a_full_refresh(settings, tmp_path, "late rows quarantined")
    add_customer(landing, "cus_late_co")
    ingest_sources(settings, "late-customer")
    run_dbt(settings, "build")
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        (spend_usd,) = con.execute(
            "select sum(spend_usd) from marts.fct_customer_monthly_spend "
            "where customer_id = 'cus_late_co'"
        ).fetchone()
    assert spend_usd > 0
    assert_equals_a_full_refresh(settings, tmp_path, "late customer")

    # A customer's parent company renamed: every month's ranks at the parent level change.
    customers = landing / "customers.csv"
    customers.write_text(customers.read_text().replace(",ByteDance,", ",ByteDance Ltd,"))
    ingest_sources(settings, "renamed-parent")
    run_dbt(settings, "build")
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        renamed, tiktok, old_name = con.execute(
            "select count(distinct month) filter (where spender_id = 'ByteDance Ltd'), "
            "count(distinct month) filter (where spender_id = 'cus_tiktok'), "
            "count(*) filter (where spender_id = 'ByteDance') "
            "from intermediate.int_spenders_ranked"
        ).fetchone()
    assert renamed == tiktok > 12 and old_name == 0  # every month TikTok spent in
    assert_equals_a_full_refresh(settings, tmp_path, "renamed parent company")
