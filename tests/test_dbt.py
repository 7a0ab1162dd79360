"""The dbt marts: they build and test clean on the seeds, agree with figures recomputed here
independently from the seed CSVs, and the incremental usage fact matches a full refresh."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ALL_MARTS, SEEDS, settings_for
from tests.ingesting import ingest_sources
from warehouse.transform.dbt import dbt_command, dbt_env


def dbt(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    settings = settings_for(SEEDS, data_dir)
    env = {**os.environ, **dbt_env(settings)}
    result = subprocess.run(dbt_command(settings, *args), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:]
    return result


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
    assert ingest_sources(settings_for(SEEDS, data_dir), "seed-run").refused == {}
    # This build's own target folder: its run_results.json is this build's, not a leftover.
    dbt(data_dir, "build", "--target-path", str(data_dir / "target"))
    return data_dir


def test_dbt_build_passes_with_every_mart_and_test(built):
    results = json.loads((built / "target" / "run_results.json").read_text())["results"]
    outcomes = Counter((r["unique_id"].split(".")[0], r["status"]) for r in results)
    # Every model built, every data and unit test passed; the exposures are documentation; the
    # on-run-start hook (registering the raw Parquet on Spark) is empty on DuckDB.
    assert outcomes == {
        ("operation", "success"): 1,
        ("model", "success"): 15,
        ("test", "pass"): 61,
        ("unit_test", "pass"): 5,
        ("exposure", "no-op"): 2,
    }
    tables = {
        name
        for (name,) in query(
            built, "select table_name from information_schema.tables where table_schema = 'marts'"
        )
    }
    assert tables == ALL_MARTS
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


@pytest.mark.slow  # two more dbt builds
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
    assert ingest_sources(settings_for(landing, incremental), "new-month").refused == {}
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


@pytest.mark.slow  # two more dbt builds
def test_restated_file_is_reflected_and_matches_a_full_refresh(built, tmp_path):
    incremental = copy_build(built, tmp_path / "incremental")
    landing = tmp_path / "landing"
    shutil.copytree(SEEDS, landing)
    march = landing / "spend" / "usage_2024_03.csv"
    # Restate March 2024 without TikTok: the month's concentration must change accordingly.
    lines = march.read_text().splitlines()
    march.write_text("\n".join(line for line in lines if ",cus_tiktok," not in line) + "\n")
    assert ingest_sources(settings_for(landing, incremental), "restated").refused == {}

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


@pytest.mark.slow  # dbt docs generate
def test_docs_are_one_offline_file_with_the_model_descriptions(built):
    from warehouse.transform.dbt import generate_docs

    page = generate_docs(settings_for(SEEDS, built))

    assert page == built / "docs" / "index.html"
    html = page.read_text()
    assert "fct_revenue_concentration" in html and "bi_concentration_dashboard" in html
    assert "<script src=" not in html  # everything inline: nothing fetched from a CDN


def cents(value: Decimal) -> Decimal:
    """Rounded to the cent as DuckDB casts DECIMAL to DECIMAL(18,2): half away from zero."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def exact_money(landing: Path) -> dict[str, dict[tuple, Decimal]]:
    """Every money column of every mart, recomputed here from the landing CSVs with Python's
    Decimal (no floating point anywhere), keyed as the marts are; values rounded to the cent."""
    customers = {r["customer_id"]: r for r in csv.DictReader((landing / "customers.csv").open())}
    spend: dict[tuple, Decimal] = defaultdict(Decimal)  # (month, customer, product line)
    for path in sorted((landing / "spend").glob("*.csv")):
        for row in csv.DictReader(path.open()):
            spend[(row["usage_date"][:7] + "-01", row["customer_id"], row["product_line"])] += (
                Decimal(row["amount_usd"])
            )
    money: dict[str, dict[tuple, Decimal]] = defaultdict(dict)
    lifetime, segments, spenders = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
    quarters = defaultdict(Decimal)
    for (month, customer, product), usd in spend.items():
        money["fct_customer_monthly_spend.spend_usd"][(month, customer, product)] = cents(usd)
        lifetime[customer] += usd
        segments[(month, customers[customer]["segment"], product)] += usd
        spenders[(month, product, "customer", customer)] += usd
        spenders[(month, product, "parent_company", customers[customer]["parent_company"])] += usd
        if product == "azure_openai":
            year, number = int(month[:4]), int(month[5:7])
            quarters[(year + (number >= 7), (number + 5) % 12 // 3 + 1)] += usd
    for customer, usd in lifetime.items():
        money["dim_customers.lifetime_spend_usd"][(customer,)] = cents(usd)
    for key, usd in segments.items():
        money["fct_segment_monthly_spend.spend_usd"][key] = cents(usd)
    reported = {
        (int(r["fiscal_year"]), int(r["fiscal_quarter"]))
        for r in csv.DictReader((landing / "earnings.csv").open())
    }
    for key, usd in quarters.items():
        if key in reported:  # the mart has a row per reported quarter
            money["fct_quarterly_earnings.azure_openai_spend_usd"][key] = cents(usd)
    months: dict[tuple, list[tuple[str, Decimal]]] = defaultdict(list)
    for (month, product, level, spender), usd in spenders.items():
        if usd > 0:
            months[(month, product, level)].append((spender, usd))
    for key, spent in months.items():
        total = sum(usd for _, usd in spent)
        _, top = min(spent, key=lambda pair: (-pair[1], pair[0]))  # ties: smallest id first
        money["fct_revenue_concentration.total_spend_usd"][key] = cents(total)
        money["fct_revenue_at_risk.total_spend_usd"][key] = cents(total)
        money["fct_revenue_at_risk.top_customer_spend_usd"][key] = cents(top)
        money["fct_revenue_at_risk.revenue_without_top_usd"][key] = cents(total - top)
        money["fct_revenue_at_risk.revenue_if_top_halved_usd"][key] = cents(total - top / 2)
    return money


MART_KEYS = {
    "dim_customers": "customer_id",
    "fct_customer_monthly_spend": "month::varchar, customer_id, product_line",
    "fct_segment_monthly_spend": "month::varchar, segment, product_line",
    "fct_revenue_concentration": "month::varchar, product_line, level",
    "fct_revenue_at_risk": "month::varchar, product_line, level",
    "fct_quarterly_earnings": "fiscal_year, fiscal_quarter",
}


def test_every_money_column_equals_an_exact_recomputation_to_the_cent(built):
    expected = exact_money(SEEDS)
    money_columns = query(
        built,
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'marts' and column_name like '%\\_usd' escape '\\' "
        "and column_name <> 'intelligent_cloud_revenue_usd' order by all",
    )
    # Every money column computed from usage is checked (the reported revenue is passed through).
    assert {f"{t}.{c}" for t, c in money_columns} == set(expected)
    for table, column in money_columns:
        rows = query(built, f"select {MART_KEYS[table]}, {column} from marts.{table}")
        actual = {tuple(row[:-1]): row[-1] for row in rows if row[-1] is not None}
        assert actual == expected[f"{table}.{column}"], f"{table}.{column}"
    # The case floating point got wrong (a half of an odd number of cents, 2024-07 copilot).
    halved = query(
        built,
        "select revenue_if_top_halved_usd from marts.fct_revenue_at_risk where month = "
        "date '2024-07-01' and product_line = 'copilot' and level = 'customer'",
    )
    assert halved == [(Decimal("19461454.30"),)]
