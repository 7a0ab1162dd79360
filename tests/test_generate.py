"""The seed generator: deterministic, calibrated to the reported claims, and streaming."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, SEEDS
from warehouse.synthetic.generate import write_landing


def monthly(landing: Path, sql: str) -> list[tuple]:
    """Run `sql` over `spend` (azure_openai spend by customer and month) of a landing folder."""
    with duckdb.connect() as con:
        con.execute(
            "create table spend as select date_trunc('month', usage_date)::date as month, "
            "customer_id, sum(amount_usd)::double as usd from read_csv($p, header = true) "
            "where product_line = 'azure_openai' group by all",
            {"p": str(landing / "spend" / "*.csv")},
        )
        con.execute(
            "create table customers as select * from read_csv($p, header = true)",
            {"p": str(landing / "customers.csv")},
        )
        return con.execute(sql).fetchall()


def test_committed_seeds_are_what_the_generator_writes(tmp_path):
    write_landing(tmp_path)

    names = ["customers.csv", "earnings.csv"] + [
        f"spend/{p.name}" for p in sorted((SEEDS / "spend").glob("*.csv"))
    ]
    assert len(names) == 26
    _, mismatch, errors = filecmp.cmpfiles(SEEDS, tmp_path, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run `make seeds` and commit the result"


def test_tiktok_is_just_under_20m_and_about_a_quarter_in_march_2024():
    (row,) = monthly(
        SEEDS,
        "select sum(usd), max_by(customer_id, usd), max(usd) from spend "
        "where month = date '2024-03-01'",
    )
    total, top, tiktok = row
    assert top == "cus_tiktok"
    assert 19e6 <= tiktok < 20e6
    assert 0.24 <= tiktok / total <= 0.26
    assert 75e6 <= total <= 85e6


def test_business_grows_to_about_1b_annualised_by_mid_2024():
    totals = monthly(SEEDS, "select month, sum(usd) from spend group by month order by month")
    assert [m.isoformat()[:7] for m, _ in totals][:1] == ["2023-01"]
    assert len(totals) == 24
    by_month = {m.isoformat()[:7]: usd for m, usd in totals}
    assert 12 * by_month["2024-06"] >= 1.0e9
    assert by_month["2024-12"] > by_month["2024-06"] > by_month["2023-06"] > by_month["2023-01"]


def test_walmart_intuit_and_g42_spend_millions_a_month():
    rows = monthly(
        SEEDS,
        "select customer_id, min(usd), max(usd) from spend where customer_id in "
        "('cus_walmart', 'cus_intuit') and month between date '2024-01-01' and date '2024-03-01' "
        "group by 1 order by 1",
    )
    assert [r[0] for r in rows] == ["cus_intuit", "cus_walmart"]
    assert all(low >= 2e6 and high < 10e6 for _, low, high in rows)
    (g42,) = monthly(SEEDS, "select min(month), min(usd) from spend where customer_id = 'cus_g42'")
    assert g42[0].isoformat() == "2024-04-01"
    assert g42[1] >= 1e6


def test_a_synthetic_parent_is_major_only_as_a_group():
    rows = monthly(
        SEEDS,
        "with m as (select s.usd / sum(s.usd) over () as share, c.parent_company "
        "from spend s join customers c using (customer_id) where s.month = date '2024-03-01') "
        "select max(share), sum(share) from m where parent_company = 'Synthetic Holdings Group'",
    )
    largest_member, group = rows[0]
    assert largest_member < 0.10 <= group


def test_real_and_synthetic_customers_are_labelled():
    rows = monthly(SEEDS, "select customer_name, is_synthetic from customers")
    real = {name for name, synthetic in rows if not synthetic}
    assert real == {"TikTok", "Walmart", "Intuit", "G42"}
    assert all(name.startswith("Synthetic") for name, synthetic in rows if synthetic)


def test_generate_writes_exactly_n_rows_with_the_same_calibration(tmp_path):
    counts = write_landing(tmp_path, rows=150_000)

    assert sum(n for name, n in counts.items() if name.startswith("spend/")) == 150_000
    (share,) = monthly(
        tmp_path,
        "select max(usd) / sum(usd) from spend where month = date '2024-03-01'",
    )
    assert 0.24 <= share[0] <= 0.26


@pytest.mark.slow
def test_generator_memory_is_flat_in_the_row_count(tmp_path):
    """Peak memory writing 1M rows stays within a few MB of writing 50k rows (streaming)."""

    def peak_kib(rows: int) -> int:
        code = (
            "import resource, sys; from pathlib import Path;"
            "from warehouse.synthetic.generate import write_landing;"
            f"write_landing(Path(sys.argv[1]), rows={rows});"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / str(rows))],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout
        return int(out.split()[-1])

    small, large = peak_kib(50_000), peak_kib(1_000_000)
    assert large - small < 20 * 1024, f"peak RSS grew from {small} KiB to {large} KiB"


def test_categories_come_from_the_accepted_sets_and_reported_rows_cite_a_source(tmp_path):
    from warehouse.reference import ACCEPTED
    from warehouse.synthetic.reported import earnings_rows, real_customers

    write_landing(tmp_path, rows=20_000)
    with duckdb.connect() as con:
        segments = con.execute(
            "select distinct segment from read_csv(?)", [str(tmp_path / "customers.csv")]
        ).fetchall()
        products = con.execute(
            "select distinct product_line from read_csv(?)", [str(tmp_path / "spend" / "*.csv")]
        ).fetchall()
    assert {s for (s,) in segments} <= set(ACCEPTED["segments"])
    assert {p for (p,) in products} <= set(ACCEPTED["product_lines"])
    assert all(row["source"].strip() for row in real_customers() + earnings_rows())
