"""The benchmark harness, run small (the committed seeds, one repetition) so it cannot rot: every
measurement runs, the floor gives the pipeline's marts, and the results file is complete; and
the history's ratios and table from made-up results."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from benchmarks.harness import Bench, Sample, history_table
from tests.conftest import REPO, SEED_USAGE_ROWS

MEASUREMENTS = {
    "stage: ingest",
    "stage: dbt build",
    "stage: validate",
    "stage: publish",
    "publish to PostgreSQL",  # PostgreSQL 15 is installed here (`make test-packages`)
    "pipeline DAG run",
    "floor (one DuckDB script)",
    "peer: pandas + insert",
    "peer: dbt seed",
    "DAG rerun, one month added",
    "DAG rerun, nothing new",
    "DAG parse",
}


@pytest.mark.slow
def test_tiny_benchmark_measures_everything_and_the_floor_matches_the_pipeline(tmp_path):
    results = tmp_path / "results"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.harness",
            "--scales",
            "seeds",
            "--repeats",
            "1",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(results),
            "--no-readme",
        ],
        cwd=REPO,
        check=True,
    )
    report = json.loads((results / "seeds.json").read_text())

    assert report["usage_rows"] == SEED_USAGE_ROWS
    assert set(report["results"]) == MEASUREMENTS
    for name, result in report["results"].items():
        # --repeats 1; the parse time is always taken three times (it is short and noisy).
        assert len(result["runs"]) == (3 if name == "DAG parse" else 1), name
        median = statistics.median(run["seconds"] for run in result["runs"])
        assert result["median_seconds"] == pytest.approx(median, abs=1e-3), name
    # Each DAG run says where its time went: its tasks' seconds and the rest add up to its wall.
    (dag_run,) = report["results"]["pipeline DAG run"]["runs"]
    assert {"ingest.usage", "transform", "validate", "publish"} <= set(dag_run["tasks"])
    assert sum(dag_run["tasks"].values()) == pytest.approx(dag_run["seconds"], abs=0.1)
    assert 0 < dag_run["tasks"]["(outside the tasks)"] < dag_run["seconds"]
    assert "tasks" not in report["results"]["floor (one DuckDB script)"]["runs"][0]
    # The harness raises unless the floor's marts equal the pipeline's; here is what it compared.
    agreement = report["floor_equals_pipeline"]
    assert agreement["row_counts"] == {
        "dim_customers": 39,
        "fct_customer_monthly_spend": 800,
        "fct_segment_monthly_spend": 123,
        "fct_revenue_concentration": 76,
        "fct_quarterly_earnings": 14,
    }
    # Every mart's rows, the contract marts' and the others'.
    loaded = report["results"]["publish to PostgreSQL"]["rows"]
    assert loaded > sum(agreement["row_counts"].values())
    assert [row[:2] for row in agreement["headline"]] == [
        ["customer", "TikTok"],
        ["parent_company", "ByteDance"],
    ]
    assert set(report["ratios"]) == {
        "pipeline DAG run / floor",
        "pipeline stages / floor",
        "peer: dbt seed / our ingest",
        "peer: pandas + insert / our ingest",
        "one month added / full DAG run",
        "nothing new / nothing new on the seeds",
        "month added, 24 / 7 months of history",
        "nothing new, 24 / 7 months of history",
    }
    # Each ratio is the quotient of the medians it names, as recorded.
    seconds = {name: result["median_seconds"] for name, result in report["results"].items()}
    assert report["ratios"]["nothing new / nothing new on the seeds"] == pytest.approx(
        seconds["DAG rerun, nothing new"] / report["seeds_nothing_new_seconds"], abs=1e-3
    )
    assert report["ratios"]["pipeline DAG run / floor"] == pytest.approx(
        seconds["pipeline DAG run"] / seconds["floor (one DuckDB script)"], abs=1e-3
    )
    # The history: the seeds' 24 months, measured at 7, 12 and 24; the last point is the table's.
    history = report["history"]
    assert {point: history[point]["months"] for point in history} == {
        "7": "2024_01 to 2024_07",
        "12": "2024_01 to 2024_12",
        "24": "2023_01 to 2024_12",
    }
    assert history["24"]["history rows"] == SEED_USAGE_ROWS
    assert 0 < history["7"]["history rows"] < history["12"]["history rows"] < SEED_USAGE_ROWS
    # 12 and 24 add the same month, 2024-12.
    assert history["12"]["month rows"] == history["24"]["month rows"] > 0
    for name in ("one month added", "nothing new"):
        assert history["24"][name]["seconds"] == seconds[f"DAG rerun, {name}"]
        assert all(point[name]["seconds"] > 0 for point in history.values())
    assert report["ratios"]["nothing new, 24 / 7 months of history"] == pytest.approx(
        history["24"]["nothing new"]["seconds"] / history["7"]["nothing new"]["seconds"], abs=1e-3
    )


def _history_point(months: str, rows: int, held: int, added: float, nothing: float) -> dict:
    return {
        "months": months,
        "month rows": rows,
        "history rows": held,
        "one month added": {"seconds": added, "peak_mib": 600.0},
        "nothing new": {"seconds": nothing, "peak_mib": 350.0},
    }


def test_history_ratios_are_the_last_point_over_the_first(tmp_path):
    bench = Bench("seeds", tmp_path, 1)
    bench.history_points = {
        "7": _history_point("2024_01 to 2024_07", 10, 60, 20.0, 8.0),
        "12": _history_point("2024_01 to 2024_12", 20, 180, 21.0, 9.0),
        "24": _history_point("2023_01 to 2024_12", 20, 600, 25.0, 10.0),
    }
    bench.record("DAG rerun, nothing new", [Sample(10.0, 350.0)])
    ratios = bench.ratios(seeds_nothing_new=8.0)
    assert ratios["month added, 24 / 7 months of history"] == 1.25
    assert ratios["nothing new, 24 / 7 months of history"] == 1.25
    assert ratios["nothing new / nothing new on the seeds"] == 1.25
    # With one point of history there is no flatness to state.
    bench.history_points = {"24": bench.history_points["24"]}
    assert not any("months of history" in name for name in bench.ratios())


def test_history_table_has_a_column_per_scale_measured():
    seven = _history_point("2024_01 to 2024_07", 68_687, 365_000, 20.123, 8.0)
    reports = [
        {"scale": "1M", "history": {"7": seven}},
        {"scale": "10M", "history": {"7": {**seven, "month rows": 686_870}}},
        {"scale": "100M"},  # measured before the history was
    ]
    lines = history_table(reports).splitlines()
    assert lines[0] == "| months of history | | 1M | 10M |"
    rows = "| 7 (2024_01 to 2024_07) | usage rows: the month added / all |"
    assert f"{rows} 68,687 / 365,000 | 686,870 / 365,000 |" in lines
    assert "| | DAG rerun, one month added | 20.12 s, 600 MiB | 20.12 s, 600 MiB |" in lines
    assert "| | DAG rerun, nothing new | 8.00 s, 350 MiB | 8.00 s, 350 MiB |" in lines
    assert history_table([{"scale": "100M"}]) == "(no results file has the history yet)"
