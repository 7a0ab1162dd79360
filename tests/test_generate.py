"""The seed generator: deterministic, calibrated to the reported claims, and streaming."""

from __future__ import annotations

import filecmp
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.conftest import REPO, SEEDS
from warehouse.synthetic.generate import MODELS, _Batch, _expand, _Tables, write_landing

GENERATED_ROWS = 150_000


@pytest.fixture(scope="module", params=["seeds", "generated"])
def landing(request, tmp_path_factory) -> Path:
    """The committed seeds, and a folder of GENERATED_ROWS rows (the scaled plan): the
    calibration must hold in both."""
    if request.param == "seeds":
        return SEEDS
    out = tmp_path_factory.mktemp("generated")
    write_landing(out, rows=GENERATED_ROWS)
    return out


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


def assert_tiktok_is_a_quarter_of_march_2024(landing) -> float:
    """TikTok is 2024-03's largest customer, just under $20M and about a quarter of the month;
    returns the month's total."""
    (row,) = monthly(
        landing,
        "select sum(usd), max_by(customer_id, usd), max(usd) from spend "
        "where month = date '2024-03-01'",
    )
    total, top, tiktok = row
    assert top == "cus_tiktok"
    assert 19e6 <= tiktok < 20e6
    assert 0.24 <= tiktok / total <= 0.26
    return total


def test_tiktok_is_just_under_20m_and_about_a_quarter_in_march_2024(landing):
    total = assert_tiktok_is_a_quarter_of_march_2024(landing)
    assert 75e6 <= total <= 85e6


def test_business_grows_to_about_1b_annualised_by_mid_2024(landing):
    totals = monthly(landing, "select month, sum(usd) from spend group by month order by month")
    assert [m.isoformat()[:7] for m, _ in totals][:1] == ["2023-01"]
    assert len(totals) == 24
    by_month = {m.isoformat()[:7]: usd for m, usd in totals}
    assert 12 * by_month["2024-06"] >= 1.0e9
    assert by_month["2024-12"] > by_month["2024-06"] > by_month["2023-06"] > by_month["2023-01"]


def test_walmart_intuit_and_g42_spend_millions_a_month(landing):
    rows = monthly(
        landing,
        "select customer_id, min(usd), max(usd) from spend where customer_id in "
        "('cus_walmart', 'cus_intuit') and month between date '2024-01-01' and date '2024-03-01' "
        "group by 1 order by 1",
    )
    assert [r[0] for r in rows] == ["cus_intuit", "cus_walmart"]
    assert all(low >= 2e6 and high < 10e6 for _, low, high in rows)
    (g42,) = monthly(
        landing, "select min(month), min(usd) from spend where customer_id = 'cus_g42'"
    )
    assert g42[0].isoformat() == "2024-04-01"
    assert g42[1] >= 1e6


def test_a_synthetic_parent_is_major_only_as_a_group(landing):
    rows = monthly(
        landing,
        "with m as (select s.usd / sum(s.usd) over () as share, c.parent_company "
        "from spend s join customers c using (customer_id) where s.month = date '2024-03-01') "
        "select max(share), sum(share) from m where parent_company = 'Synthetic Holdings Group'",
    )
    largest_member, group = rows[0]
    assert largest_member < 0.10 <= group


def test_real_and_synthetic_customers_are_labelled(landing):
    rows = monthly(landing, "select customer_name, is_synthetic from customers")
    real = {name for name, synthetic in rows if not synthetic}
    assert real == {"TikTok", "Walmart", "Intuit", "G42"}
    assert all(name.startswith("Synthetic") for name, synthetic in rows if synthetic)


@pytest.mark.parametrize("rows", [1, 20_000, 65_049, 150_001])
def test_generate_writes_exactly_n_rows(tmp_path, rows):
    counts = write_landing(tmp_path, rows=rows)

    assert sum(n for name, n in counts.items() if name.startswith("spend/")) == rows
    with duckdb.connect() as con:
        (read,) = con.execute(
            "select count(*) from read_csv(?, header = true)", [str(tmp_path / "spend" / "*.csv")]
        ).fetchone()
    assert read == rows


def test_the_same_seed_writes_the_same_bytes_with_any_number_of_processes(tmp_path):
    write_landing(tmp_path / "one", rows=300_000, workers=1)
    write_landing(tmp_path / "two", rows=300_000, workers=2)
    write_landing(tmp_path / "other", rows=300_000, seed=7, workers=1)

    names = ["customers.csv", "earnings.csv"] + [
        f"spend/{p.name}" for p in sorted((tmp_path / "one" / "spend").glob("*.csv"))
    ]
    assert len(names) == 26
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "one", tmp_path / "two", names, False)
    assert (mismatch, errors) == ([], [])
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "one", tmp_path / "other", names, False)
    assert "spend/usage_2024_03.csv" in mismatch


def test_rows_are_formatted_exactly_as_python_formats_them():
    """The vectorised writer against Python's own rounding and formatting, on random amounts
    and the hard cases: half cents, whole cents, zero, large values."""
    rng = random.Random(1)
    models = [(line, name, price) for line, ms in MODELS.items() for name, price, *_ in ms]
    count, days = 400, 30
    target = [rng.choice([0.0, 0.5, 1.0, 2.675, 1.005, 1e6, 123456.785]) for _ in range(40)]
    target += [10 ** rng.uniform(-3, 8) for _ in range(count - len(target))]
    weights = [[rng.random() for _ in range(days)] for _ in range(count)]
    weights = [[w / sum(row) for w in row] for row in weights]
    weights[:40] = [[1.0] + [0.0] * (days - 1)] * 40  # the hard targets as they are
    mixes = [rng.sample(range(5), rng.randint(1, 5)) for _ in range(count)]
    mix_weights = [[1.0] + [rng.random() for _ in mix[1:]] for mix in mixes]
    batch = _Batch(
        customer=np.array([i % 3 for i in range(count)]),
        product=np.zeros(count, dtype=np.int64),
        target=np.array(target),
        day_weights=np.array(weights),
        models=np.array([len(m) for m in mixes]),
        model_id=np.array([i for mix in mixes for i in mix]),
        model_weight=np.array([w for ws in mix_weights for w in ws]),
    )
    ids = ["cus_a", "cus_bb", "cus_synth_holdings_retail"]
    written = _Tables(ids).csv(date(2024, 4, 1), batch, _expand(batch))

    expected = []
    for i in range(count):
        for day in range(days):
            for model, weight in zip(mixes[i], mix_weights[i], strict=True):
                _, name, price = models[model]
                amount = round(target[i] * weights[i][day] * weight, 2)
                expected.append(
                    f"{date(2024, 4, day + 1).isoformat()},{ids[i % 3]},azure_openai,{name},"
                    f"{round(amount / price * 1000)},{amount:.2f}\n"
                )
    assert written.tobytes().decode() == "".join(expected)


@pytest.mark.slow
def test_generator_memory_is_flat_in_the_row_count(tmp_path):
    """Peak memory writing 1M rows stays within a few MB of writing 50k rows (streaming); at
    3M rows, written by worker processes, no process holds more than the 1M run's."""

    def peak_kib(rows: int) -> int:
        code = (
            "import resource, sys; from pathlib import Path;"
            "from warehouse.synthetic.generate import write_landing;"
            f"write_landing(Path(sys.argv[1]), rows={rows});"
            "print(max(resource.getrusage(r).ru_maxrss for r in "
            "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / str(rows))],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout
        return int(out.split()[-1])

    small, large, parallel = peak_kib(50_000), peak_kib(1_000_000), peak_kib(3_000_000)
    assert large - small < 20 * 1024, f"peak RSS grew from {small} KiB to {large} KiB"
    assert parallel - small < 60 * 1024, f"peak RSS grew from {small} KiB to {parallel} KiB"


@pytest.mark.slow
def test_calibration_holds_at_millions_of_rows_written_in_parallel(tmp_path):
    counts = write_landing(tmp_path, rows=3_000_000)

    assert sum(n for name, n in counts.items() if name.startswith("spend/")) == 3_000_000
    assert_tiktok_is_a_quarter_of_march_2024(tmp_path)
    (mid,) = monthly(tmp_path, "select sum(usd) from spend where month = date '2024-06-01'")
    assert 12 * mid[0] >= 1.0e9


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
