"""The same dbt models on Apache Spark: the whole pipeline DAG with WAREHOUSE_ENGINE=spark
(dbt-spark's `session` method) publishes marts equal to DuckDB's build of the same landing
folder, money to the cent and ratios to 1e-9, audited and described; a build through a local
Thrift server gives the same marts; a restated month on Spark (insert_overwrite of one
landing-file partition) equals a full refresh.

Everything runs through the command line a user has (`warehouse run`, `warehouse ingest`,
`python -m warehouse.engines.spark`, `dbt build` with WAREHOUSE_ENGINE), in temporary data
folders. One Spark build of the seeds (the DAG's) is shared by the tests that follow it. The
`spark` extra is installed first (`make spark-setup`) when it is missing. Each test logs what
it measured (JVM start, per node, total) to `<data>/timings.json` and stdout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from benchmarks.compare import compare_marts, duckdb_marts, money_columns_exact, spark_marts
from warehouse.engines.spark.load import spark_tables
from warehouse.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SEEDS = REPO / "seeds"
PROJECT = REPO / "dbt_project"


@pytest.fixture(scope="session")
def spark_installed() -> None:
    """The `spark` extra in the project's environment (installed on demand, never by default)."""
    check = [str(BIN / "python"), "-c", "import pyspark, dbt.adapters.spark"]
    if subprocess.run(check, capture_output=True).returncode != 0:
        # The stamp may outlive the packages (a plain `uv sync` removes extras): sync again.
        (BIN.parent / ".synced-spark").unlink(missing_ok=True)
        subprocess.run(["make", "-C", str(REPO), "spark-setup"], check=True)
        subprocess.run(check, check=True)


def environment(landing: Path, data: Path, engine: str = "duckdb", **extra: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WAREHOUSE_SPARK_", "WAREHOUSE_ENGINE"))
    }
    env.update(
        WAREHOUSE_LANDING_DIR=str(landing),
        WAREHOUSE_DATA_DIR=str(data),
        WAREHOUSE_ENGINE=engine,
        # Each engine keeps its own dbt target folder (manifest, partial parse, run results).
        DBT_TARGET_PATH=str(data / f"target-{engine}"),
        DBT_LOG_PATH=str(data / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        DO_NOT_TRACK="1",
        **extra,
    )
    return env


def run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return result


def settings_of(data: Path) -> Settings:
    """The settings of a data folder, as the tests' commands see it (local Spark)."""
    return Settings.from_env({}).with_folders(data_dir=data)


def ingest_and_export(landing: Path, data: Path) -> dict:
    env = environment(landing, data)
    run([str(BIN / "warehouse"), "ingest"], env)
    exported = run([str(BIN / "python"), "-m", "warehouse.engines.spark", "export-raw"], env)
    return json.loads(exported.stdout)


def dbt_build(landing: Path, data: Path, engine: str, *args: str, **extra: str) -> dict:
    """`dbt build` on one engine; returns what run_results.json says it cost."""
    env = environment(landing, data, engine, **extra)
    started = time.perf_counter()
    result = run(
        [
            str(BIN / "dbt"),
            "build",
            *args,
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
        ],
        env,
    )
    wall = time.perf_counter() - started
    assert "ERROR=0" in result.stdout, result.stdout[-3000:]
    return timings(data / f"target-{engine}" / "run_results.json", wall)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def timings(run_results: Path, wall: float) -> dict:
    """From run_results.json: start-up (parsing, and on Spark the JVM and metastore, before
    the first node), the on-run-start hook (registering the raw Parquet on Spark), and per
    node kind the count, median, max and sum of execution times."""
    document = json.loads(run_results.read_text())
    results = document["results"]
    first = min(_instant(step["started_at"]) for node in results for step in node["timing"] if step)
    startup = (first - _instant(document["metadata"]["invocation_started_at"])).total_seconds()
    by_kind: dict[str, list[float]] = {}
    hook = 0.0
    for node in results:
        kind = node["unique_id"].split(".")[0]
        if kind == "operation":  # the on-run-start hook: on Spark, the JVM and metastore start
            hook += node["execution_time"]
        else:
            by_kind.setdefault(kind, []).append(node["execution_time"])
    return {
        "wall_s": round(wall, 1),
        "dbt_elapsed_s": round(document["elapsed_time"], 1),
        "startup_s": round(startup, 1),
        "on_run_start_s": round(hook, 1),
        "nodes": {
            kind: {
                "count": len(times),
                "median_s": round(statistics.median(times), 2),
                "max_s": round(max(times), 2),
                "sum_s": round(sum(times), 1),
            }
            for kind, times in sorted(by_kind.items())
        },
    }


def record(data: Path, name: str, measured: dict) -> None:
    path = data / "timings.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded[name] = measured
    path.write_text(json.dumps(recorded, indent=2))
    print(f"\n{name}: {json.dumps(measured)}")


def snapshot(relations: dict[str, str], folder: Path, attach: dict[str, Path] | None = None):
    """Copy marts to Parquet files, to compare with a later build of the same folder."""
    folder.mkdir(parents=True)
    con = duckdb.connect()
    for alias, path in (attach or {}).items():
        con.execute(f"attach '{path}' as {alias} (read_only)")
    for name, relation in relations.items():
        con.execute(f"copy (select * from {relation}) to '{folder / name}.parquet'")
    con.close()
    return {name: f"read_parquet('{folder / name}.parquet')" for name in relations}


def assert_equal_marts(expected: dict[str, str], actual: dict[str, str], attach=None) -> None:
    results = compare_marts(expected, actual, attach=attach)
    assert {r.mart for r in results} >= {
        "dim_customers",
        "fct_customer_monthly_spend",
        "fct_segment_monthly_spend",
        "fct_revenue_concentration",
        "fct_quarterly_earnings",
        "fct_revenue_at_risk",
    }
    different = {r.mart: r.problems[:5] for r in results if not r.equal}
    assert not different, different
    for r in results:
        print(f"  {r.mart}: {r.rows_expected} = {r.rows_actual} rows")


def published_marts(data: Path) -> dict[str, str]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        names = [
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'marts' order by 1"
            ).fetchall()
        ]
    return {name: f"published.marts.{name}" for name in names}


def build_table_rows(data: Path, relation: str) -> int:
    with duckdb.connect(str(data / "build.duckdb"), read_only=True) as con:
        return con.execute(f"select count(*) from {relation}").fetchone()[0]


@pytest.fixture(scope="session")
def seeds_on_both(spark_installed, tmp_path_factory) -> dict:
    """The whole pipeline DAG on Spark (session method) over the seeds, then dbt on DuckDB over
    the same build database. The published (Spark-built) marts and the DuckDB marts are
    snapshotted, as later tests change this folder; Spark's own tables stay, for the tests
    that continue from this build."""
    data = tmp_path_factory.mktemp("spark-seeds")
    env = environment(SEEDS, data, "spark", AIRFLOW_HOME=str(data / "airflow"))
    env.pop("DBT_TARGET_PATH")  # the DAG keeps dbt's target folder in the data folder
    started = time.perf_counter()
    run([str(BIN / "warehouse"), "run", "--no-report"], env)
    record(
        data, "spark_session_whole_dag_seeds", {"wall_s": round(time.perf_counter() - started, 1)}
    )
    dag_build = timings(settings_of(data).dbt_target_dir / "run_results.json", 0.0)
    record(data, "spark_session_build_seeds_in_the_dag", dag_build)
    manifest = json.loads((data / "manifest.json").read_text())
    # What the audit read in the build database was Spark's usage fact, row for row.
    spark_fact = spark_tables(settings_of(data), "intermediate")
    fact_rows = {
        "build": build_table_rows(data, "intermediate.int_usage_months_aggregated"),
        "spark": duckdb.sql(
            f"select count(*) from {spark_fact['int_usage_months_aggregated']}"
        ).fetchall()[0][0],
    }
    published = snapshot(
        published_marts(data),
        data / "published-marts",
        attach={"published": data / "warehouse.duckdb"},
    )
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        described = con.execute(
            "select table_name, count(comment) from duckdb_columns() where schema_name = 'marts' "
            "group by all order by all"
        ).fetchall()
    # A full refresh: the usage fact in the build database is Spark's now (its column types
    # are Spark's), and DuckDB's incremental model refuses another engine's schema.
    duck = dbt_build(SEEDS, data, "duckdb", "--full-refresh")
    record(data, "duckdb_build_seeds", duck)
    built_on_duckdb = snapshot(
        duckdb_marts(data / "build.duckdb"),
        data / "duckdb-marts",
        attach={"build": data / "build.duckdb"},
    )
    return {
        "data": data,
        "duckdb_marts": built_on_duckdb,
        "published": published,
        "manifest": manifest,
        "fact_rows": fact_rows,
        "described": dict(described),
    }


def test_the_dag_on_spark_publishes_the_marts_duckdb_builds(seeds_on_both):
    """WAREHOUSE_ENGINE=spark: ingest, export, dbt build on Spark, load, validate (every suite,
    the reconciliation included), publish; the published file equals DuckDB's marts."""
    manifest = seeds_on_both["manifest"]
    assert manifest["validation"]["success"], manifest["validation"]["failures"]
    assert manifest["validation"]["suites"]["reconcile_files"]["failed"] == 0
    assert {"reconcile_files"} < set(manifest["validation"]["suites"])
    fact = seeds_on_both["fact_rows"]
    assert fact["build"] == fact["spark"] > 0
    assert_equal_marts(seeds_on_both["duckdb_marts"], seeds_on_both["published"])
    # dbt-spark drops column comments on Parquet: the descriptions come from dbt's manifest.
    described = seeds_on_both["described"]
    assert set(described) == set(seeds_on_both["published"])
    assert all(count > 0 for count in described.values()), described


def test_spark_session_build_gives_the_marts_duckdb_gives(seeds_on_both):
    data = seeds_on_both["data"]
    on_spark = spark_marts(settings_of(data))
    assert_equal_marts(seeds_on_both["duckdb_marts"], on_spark)
    # Money stays exact DECIMAL on both engines (no floating point in a *_usd column).
    assert money_columns_exact(on_spark) == []
    assert money_columns_exact(seeds_on_both["duckdb_marts"]) == []
    # The same comparison from the command line, against the build database DuckDB rebuilt.
    compared = run(
        [
            str(BIN / "python"),
            "-m",
            "benchmarks.compare",
            "--duckdb",
            str(data / "build.duckdb"),
            "--spark-data",
            str(data),
        ],
        environment(SEEDS, data),
    )
    lines = compared.stdout.splitlines()
    assert {line.split(":")[0] for line in lines} >= set(on_spark), compared.stdout
    assert all(line.endswith(", equal") for line in lines), compared.stdout


def test_spark_through_a_local_thrift_server_gives_the_same_marts(seeds_on_both, tmp_path_factory):
    data = tmp_path_factory.mktemp("spark-thrift")
    ingest_and_export(SEEDS, data)
    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = environment(SEEDS, data, "spark", WAREHOUSE_SPARK_PORT=str(port))
    started = json.loads(
        run([str(BIN / "python"), "-m", "warehouse.engines.spark", "thrift-start"], env).stdout
    )
    try:
        built = dbt_build(
            SEEDS,
            data,
            "spark",
            WAREHOUSE_SPARK_METHOD="thrift",
            WAREHOUSE_SPARK_PORT=str(port),
        )
        record(data, "thrift_server_start", {"seconds": round(started["seconds"], 1)})
        record(data, "spark_thrift_build_seeds", built)
    finally:
        stopped = run([str(BIN / "python"), "-m", "warehouse.engines.spark", "thrift-stop"], env)
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert_equal_marts(seeds_on_both["duckdb_marts"], spark_marts(settings_of(data)))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the Thrift server still listens"


def usage_fact(data: Path) -> list[tuple]:
    folder = (
        settings_of(data).spark_warehouse_dir / "intermediate.db" / "int_usage_months_aggregated"
    )
    with duckdb.connect() as con:
        return con.execute(
            "select source_file, dbt_invocation_id, count(*) from read_parquet(?, "
            "hive_partitioning = true) group by all order by all",
            [f"{folder}/**/*.parquet"],
        ).fetchall()


def test_restated_month_on_spark_equals_a_full_refresh(seeds_on_both, tmp_path):
    """March 2024 restated without TikTok, and January 2023 restated with every row rejected
    (negative amounts): ingestion rewrites March's Parquet partition and removes January's,
    Spark's incremental build overwrites March's partition of the usage fact and drops
    January's, and the marts equal both a full refresh on Spark and DuckDB's build of the same
    landing folder."""
    data = seeds_on_both["data"]
    landing = tmp_path / "landing"
    shutil.copytree(SEEDS, landing)
    march = landing / "spend" / "usage_2024_03.csv"
    lines = march.read_text().splitlines()
    march.write_text("\n".join(line for line in lines if ",cus_tiktok," not in line) + "\n")
    january = landing / "spend" / "usage_2023_01.csv"
    header, *rows = january.read_text().splitlines()
    amount = header.split(",").index("amount_usd")
    negated = [
        ",".join(f"-{v}" if i == amount else v for i, v in enumerate(row.split(",")))
        for row in rows
    ]
    january.write_text("\n".join([header, *negated]) + "\n")

    exported = ingest_and_export(landing, data)
    assert exported["written"] == {"raw.customers": 0, "raw.earnings": 0, "raw.usage": 1}
    assert exported["removed"]["raw.usage"] == 1
    before = {(f, i) for f, i, _ in usage_fact(data)}

    incremental = dbt_build(landing, data, "spark")
    record(data, "spark_session_incremental_restated_month", incremental)

    after = usage_fact(data)
    changed = {f for f, i, _ in after if (f, i) not in before}
    assert changed == {"spend/usage_2024_03.csv"}
    assert "spend/usage_2023_01.csv" not in {f for f, _, _ in after}
    after_incremental = snapshot(spark_marts(settings_of(data)), tmp_path / "incremental-marts")
    (top,) = duckdb.sql(
        f"select top_customer_name from {after_incremental['fct_revenue_concentration']} "
        "where month = date '2024-03-01' and product_line = 'azure_openai' "
        "and level = 'customer'"
    ).fetchall()
    assert top[0] != "TikTok"

    full = dbt_build(landing, data, "spark", "--full-refresh")
    record(data, "spark_session_full_refresh_restated", full)
    assert_equal_marts(spark_marts(settings_of(data)), after_incremental)

    dbt_build(landing, data, "duckdb")
    assert_equal_marts(
        duckdb_marts(data / "build.duckdb"),
        after_incremental,
        attach={"build": data / "build.duckdb"},
    )
