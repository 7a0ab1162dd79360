"""The benchmark harness, run small (the committed seeds, one repetition) so it cannot rot: every
measurement runs, the floor gives the pipeline's marts, and the results file is complete."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

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

    assert report["usage_rows"] == 65_049
    assert set(report["results"]) == MEASUREMENTS
    for name, result in report["results"].items():
        # --repeats 1; the parse time is always taken three times (it is short and noisy).
        assert len(result["runs"]) == (3 if name == "DAG parse" else 1), name
        median = statistics.median(run["seconds"] for run in result["runs"])
        assert result["median_seconds"] == pytest.approx(median, abs=1e-3), name
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
    }
    # Each ratio is the quotient of the medians it names, as recorded.
    seconds = {name: result["median_seconds"] for name, result in report["results"].items()}
    assert report["ratios"]["nothing new / nothing new on the seeds"] == pytest.approx(
        seconds["DAG rerun, nothing new"] / report["seeds_nothing_new_seconds"], abs=1e-3
    )
    assert report["ratios"]["pipeline DAG run / floor"] == pytest.approx(
        seconds["pipeline DAG run"] / seconds["floor (one DuckDB script)"], abs=1e-3
    )
