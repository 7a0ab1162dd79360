"""The dbt marts: they build and test clean on the seeds, agree with figures recomputed here
independently from the seed CSVs, and the incremental usage fact matches a full refresh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from tests.conftest import CONTRACT_MARTS, DOCUMENTED_EXTRA_MARTS, SEEDS
from warehouse.dbt_project import dbt_command
from warehouse.ingest import ingest_source
from warehouse.sources import SOURCES

pytestmark = pytest.mark.slow


def dbt(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WAREHOUSE_DATA_DIR": str(data_dir), "DO_NOT_TRACK": "1"}
    result = subprocess.run(dbt_command(*args), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:]
    return result


def ingest_all(landing: Path, data_dir: Path, run_id: str) -> None:
    for name in SOURCES:
        ingest_source(name, run_id, landing, data_dir / "build.duckdb")


def query(data_dir: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(data_dir / "build.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def marts(data_dir: Path) -> dict[str, list[tuple]]:
    """Every mart's rows, ordered, to compare two builds."""
    names = [
        name
        for (name,) in query(
            data_dir,
            "select table_name from information_schema.tables where table_schema = 'marts'",
        )
    ]
    return {name: query(data_dir, f"select * from marts.{name} order by all") for name in names}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The seeds ingested and built once by `dbt build`, shared by the read-only tests here."""
    data_dir = tmp_path_factory.mktemp("built")
    ingest_all(SEEDS, data_dir, "seed-run")
    result = dbt(data_dir, "build")
    assert "ERROR=0" in result.stdout
    return data_dir


def test_dbt_build_passes_with_every_mart_and_test(built):
    run_results = Path(__file__).parent.parent / "dbt_project" / "target" / "run_results.json"
    assert run_results.exists()
    tables = {
        name
        for (name,) in query(
            built, "select table_name from information_schema.tables where table_schema = 'marts'"
        )
    }
    assert tables == CONTRACT_MARTS | DOCUMENTED_EXTRA_MARTS
    assert query(built, "select count(*) from marts.dim_customers") == [(39,)]


def test_headline_is_tiktok_at_about_a_quarter_in_march_2024(built):
    rows = query(
        built,
        "select level, top_customer_name, top1_share, hhi from marts.fct_revenue_concentration "
        "where month = date '2024-03-01' and product_line = 'azure_openai' order by level",
    )
    (customer, parent) = rows
    assert customer[:2] == ("customer", "TikTok") and 0.24 <= customer[2] <= 0.26
    assert parent[:2] == ("parent_company", "ByteDance")
    # The synthetic group counts as one customer at the parent level: concentration rises.
    assert parent[3] > customer[3]


INDEPENDENT_SQL = """
with usage as (
    select strftime(usage_date, '%Y-%m') as month, customer_id, product_line, amount_usd
    from read_csv($usage, header = true, columns = {
        'usage_date': 'DATE', 'customer_id': 'VARCHAR', 'product_line': 'VARCHAR',
        'model': 'VARCHAR', 'tokens': 'BIGINT', 'amount_usd': 'DECIMAL(18,4)'})
),
customers as (select * from read_csv($customers, header = true, all_varchar = true)),
by_spender as (
    select month, product_line,
        case when $level = 'customer' then customer_id else parent_company end as spender,
        sum(amount_usd)::double as usd
    from usage join customers using (customer_id)
    group by all
),
shares as (
    select month, product_line, usd / sum(usd) over (partition by month, product_line) as s
    from by_spender
)
select month, max(s) as top1, sum((100 * s) ^ 2) as hhi
from shares
where product_line = 'azure_openai' and month in ('2023-06', '2024-03', '2024-06', '2024-12')
group by month
order by month
"""


@pytest.mark.parametrize("level", ["customer", "parent_company"])
def test_marts_agree_with_an_independent_recomputation_from_the_seed_csvs(built, level):
    with duckdb.connect() as con:
        expected = con.execute(
            INDEPENDENT_SQL,
            {
                "usage": str(SEEDS / "spend" / "*.csv"),
                "customers": str(SEEDS / "customers.csv"),
                "level": level,
            },
        ).fetchall()
    actual = query(
        built,
        "select strftime(month, '%Y-%m'), top1_share, hhi from marts.fct_revenue_concentration "
        "where product_line = 'azure_openai' and level = ? "
        "and strftime(month, '%Y-%m') in ('2023-06', '2024-03', '2024-06', '2024-12') "
        "order by 1",
        [level],
    )
    assert [m for m, *_ in actual] == [m for m, *_ in expected] and len(actual) == 4
    for (month, top1, hhi), (_, want_top1, want_hhi) in zip(actual, expected, strict=True):
        assert top1 == pytest.approx(want_top1, rel=1e-9), month
        assert hhi == pytest.approx(want_hhi, rel=1e-9), month


def test_quarterly_earnings_carry_the_reference_quarter(built):
    (row,) = query(
        built,
        "select quarter_start, quarter_end, azure_growth_pct, azure_consensus_pct, "
        "azure_growth_surprise_pts, stock_move_pct, usage_months, top1_share "
        "from marts.fct_quarterly_earnings where fiscal_year = 2024 and fiscal_quarter = 4",
    )
    assert [str(row[0]), str(row[1])] == ["2024-04-01", "2024-06-30"]
    assert [float(v) for v in row[2:6]] == [29.0, 31.0, -2.0, -7.0]
    assert row[6] == 3 and 0.2 < row[7] < 0.3


def copy_build(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    shutil.copy2(source / "build.duckdb", target / "build.duckdb")
    return target


def test_new_month_is_processed_alone_and_matches_a_full_refresh(built, tmp_path):
    incremental = copy_build(built, tmp_path / "incremental")
    landing = tmp_path / "landing"
    shutil.copytree(SEEDS, landing)
    january = landing / "spend" / "usage_2025_01.csv"
    december = (landing / "spend" / "usage_2024_12.csv").read_text().splitlines()
    january.write_text(
        "\n".join([december[0]] + [line.replace("2024-12-", "2025-01-") for line in december[1:]])
        + "\n"
    )
    ingest_all(landing, incremental, "new-month")
    before = query(
        incremental,
        "select distinct dbt_invocation_id from intermediate.int_usage_months_aggregated",
    )

    dbt(incremental, "build")

    processed = query(
        incremental,
        "select distinct source_file from intermediate.int_usage_months_aggregated "
        "where dbt_invocation_id not in (select * from unnest($before))",
        {"before": [b for (b,) in before]},
    )
    assert processed == [("spend/usage_2025_01.csv",)]
    full = copy_build(incremental, tmp_path / "full")
    dbt(full, "build", "--full-refresh")
    assert marts(incremental) == marts(full)
    assert query(incremental, "select max(month) from marts.fct_revenue_concentration") == [
        (query(full, "select max(month) from marts.fct_revenue_concentration")[0][0],)
    ]


def test_restated_file_is_reflected_and_matches_a_full_refresh(built, tmp_path):
    incremental = copy_build(built, tmp_path / "incremental")
    landing = tmp_path / "landing"
    shutil.copytree(SEEDS, landing)
    march = landing / "spend" / "usage_2024_03.csv"
    # Restate March 2024 without TikTok: the month's concentration must change accordingly.
    lines = march.read_text().splitlines()
    march.write_text("\n".join(line for line in lines if ",cus_tiktok," not in line) + "\n")
    ingest_all(landing, incremental, "restated")

    dbt(incremental, "build")

    (top,) = query(
        incremental,
        "select top_customer_name from marts.fct_revenue_concentration where month = "
        "date '2024-03-01' and product_line = 'azure_openai' and level = 'customer'",
    )
    assert top[0] != "TikTok"
    full = copy_build(incremental, tmp_path / "full")
    dbt(full, "build", "--full-refresh")
    assert marts(incremental) == marts(full)


def test_docs_are_one_offline_file_with_the_model_descriptions(built, monkeypatch):
    from warehouse.dbt_project import generate_docs

    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(built))

    page = generate_docs()

    assert page == built / "docs" / "index.html"
    html = page.read_text()
    assert "fct_revenue_concentration" in html and "bi_concentration_dashboard" in html
    assert "<script src=" not in html  # everything inline: nothing fetched from a CDN
