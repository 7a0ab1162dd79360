"""The marts served by PostgreSQL (Debian's 15, a throwaway server): loaded equal to the DuckDB
file, swapped in whole under a polling reader, read-only for the BI role, and a failed load
that leaves the previous publish served; then `warehouse run` and `psql` as a BI user would."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
from decimal import Decimal

import duckdb
import psycopg
import pytest

from benchmarks.postgres_server import postgres_server
from tests.conftest import ALL_MARTS, REPO, published_files
from warehouse.publish import publish, read_manifest
from warehouse.publish.postgres import PUBLICATION_TABLE, READER_ROLE, ServeError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    with postgres_server(("airflow", "superset")) as started:
        yield started


def serving(settings, server):
    return dataclasses.replace(settings, serve_postgres_url=server.url())


def publish_again(settings, run_id: str) -> dict:
    return publish(settings, run_id, read_manifest(settings)["validation"])


def marts_in_duckdb(settings) -> dict[str, list[tuple]]:
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        return {
            mart: sorted(con.execute(f"select * from marts.{mart}").fetchall(), key=repr)
            for mart in ALL_MARTS
        }


def test_every_mart_equals_the_duckdb_file_with_types_and_comments(published, server):
    settings = serving(published, server)
    manifest = publish_again(settings, "serve-equal")
    assert manifest["postgres"]["run_id"] == "serve-equal"
    assert manifest["postgres"]["target"].startswith("postgresql://airflow@127.0.0.1:")
    assert server.password not in json.dumps(manifest)
    expected = marts_in_duckdb(settings)
    with psycopg.connect(server.reader_url) as pg:
        tables = {
            name
            for (name,) in pg.execute(
                "select tablename from pg_tables where schemaname = 'marts'"
            ).fetchall()
        }
        assert tables == ALL_MARTS | {PUBLICATION_TABLE}
        for mart, rows in expected.items():
            served = sorted(pg.execute(f"select * from marts.{mart}").fetchall(), key=repr)
            assert len(served) == manifest["row_counts"][mart] > 0, mart
            assert served == rows, mart  # Decimal, date, int, float, text: exactly
        money = pg.execute(
            "select data_type, numeric_precision, numeric_scale from information_schema.columns "
            "where table_schema = 'marts' and column_name = 'spend_usd' "
            "and table_name = 'fct_customer_monthly_spend'"
        ).fetchone()
        assert money == ("numeric", 18, 2)
        total = pg.execute("select sum(spend_usd) from marts.fct_customer_monthly_spend").fetchone()
        assert isinstance(total[0], Decimal)
        comments = pg.execute(
            "select obj_description('marts.fct_revenue_concentration'::regclass), "
            "col_description('marts.fct_revenue_concentration'::regclass, 1)"
        ).fetchone()
        run = pg.execute(f"select run_id from marts.{PUBLICATION_TABLE}").fetchone()
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        described = con.execute(
            "select (select comment from duckdb_tables() where table_name = ?), "
            "(select comment from duckdb_columns() where table_name = ? and column_index = 1)",
            ["fct_revenue_concentration"] * 2,
        ).fetchone()
    assert comments == described and all(comments)
    assert run == ("serve-equal",)


def test_a_reader_polling_through_publishes_sees_one_whole_publish_each_time(published, server):
    """Each publish serves fewer rows (its build loses a month); one statement of the reader
    reads the run id and every mart's count, which must be exactly that run's counts."""
    settings = serving(published, server)
    expected: dict[str, dict[str, int]] = {}
    expected["serve-poll-0"] = publish_again(settings, "serve-poll-0")["row_counts"]
    marts = sorted(ALL_MARTS)
    counts = ", ".join(f"(select count(*) from marts.{mart})" for mart in marts)
    query = f"select (select run_id from marts.{PUBLICATION_TABLE}), {counts}"
    seen, errors, stop = [], [], threading.Event()

    def poll():
        with psycopg.connect(server.reader_url, autocommit=True) as pg:
            while not stop.is_set():
                try:
                    seen.append(pg.execute(query).fetchone())
                except psycopg.Error as error:
                    errors.append(error)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for n in range(1, 5):
            with duckdb.connect(str(settings.build_db)) as build:
                build.execute(
                    "delete from marts.fct_customer_monthly_spend where month = "
                    "(select max(month) from marts.fct_customer_monthly_spend)"
                )
            run_id = f"serve-poll-{n}"
            expected[run_id] = publish_again(settings, run_id)["row_counts"]
    finally:
        stop.set()
        reader.join(timeout=60)
    assert errors == []
    by_run = {run: 0 for run in expected}
    for run_id, *row_counts in seen:
        assert dict(zip(marts, row_counts, strict=True)) == expected[run_id], run_id
        by_run[run_id] += 1
    print(f"reader: {len(seen)} reads, by publish {by_run}")
    assert len({tuple(c.values()) for c in expected.values()}) == len(expected)
    assert sum(1 for n in by_run.values() if n) >= 2  # it read through at least one swap


WRITES = [
    "insert into marts.dim_customers (customer_id) values ('x')",
    "update marts.dim_customers set customer_name = 'x'",
    "delete from marts.dim_customers",
    "truncate marts.dim_customers",
    "create table marts.mine (x int)",
    "create table public.mine (x int)",
    "create schema mine",
    "drop table marts.dim_customers",
    "drop schema marts cascade",
    "create temporary table mine (x int)",
    "alter table marts.dim_customers add column x int",
]


def test_the_reader_role_cannot_write_nor_reach_the_metadata_databases(published, server):
    publish_again(serving(published, server), "serve-readonly")
    denied = []
    with psycopg.connect(server.reader_url, autocommit=True) as pg:
        assert pg.execute("show statement_timeout").fetchone() == ("5min",)
        assert pg.execute("select count(*) from marts.dim_customers").fetchone()[0] > 0
        for statement in WRITES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                pg.execute(statement)
            denied.append(str(refused.value).splitlines()[0])
    assert all("permission denied" in line or "must be owner" in line for line in denied)
    for database in ("airflow", "superset", "postgres"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(server.url(READER_ROLE, database))
    # The publisher (their owner) still connects.
    psycopg.connect(server.url(database="airflow")).close()


def test_a_failed_load_fails_the_publish_in_one_line_and_keeps_the_previous(published, server):
    settings = serving(published, server)
    publish_again(settings, "serve-before")
    before = published_files(settings.data_dir)
    bad = dataclasses.replace(settings, serve_postgres_url=server.url(database="no_such_db"))
    with pytest.raises(ServeError) as failed:
        publish_again(bad, "serve-bad-url")
    message = str(failed.value)
    assert "\n" not in message and f"127.0.0.1:{server.port}/no_such_db" in message
    assert 'database "no_such_db" does not exist' in message
    assert server.password not in message
    server.stop()
    try:
        with pytest.raises(ServeError) as stopped:
            publish_again(settings, "serve-stopped")
    finally:
        server.start()
    message = str(stopped.value)
    assert "\n" not in message and "PostgreSQL publish to postgresql://airflow@127.0.0" in message
    assert "Connection refused" in message
    # Neither target changed: the files are the previous publish's, and so is the schema.
    assert published_files(settings.data_dir) == before
    assert server.psql("select run_id from marts.publication").stdout.strip() == "serve-before"
    assert not list(settings.data_dir.glob(".*.tmp-*"))
    # The next run retries, and both targets then serve it.
    assert publish_again(settings, "serve-after")["postgres"]["run_id"] == "serve-after"
    assert server.psql("select run_id from marts.publication").stdout.strip() == "serve-after"


def test_warehouse_run_serves_postgres_and_psql_reads_tiktoks_share(tmp_path, landing, server):
    """The issue's done-when: `make run` (`warehouse run`) with the serving database set
    publishes both targets, and psql as the read-only role reads TikTok's 2024-03 share."""
    from tests.conftest import settings_for

    settings = dataclasses.replace(
        settings_for(landing, tmp_path / "data"),
        airflow_home=tmp_path / "airflow",
        serve_postgres_url=server.url(),
    )
    result = subprocess.run(
        [str(REPO / ".venv/bin/warehouse"), "run", "--no-report"],
        env={**os.environ, **settings.environment()},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = read_manifest(settings)
    assert manifest["postgres"]["run_id"] == manifest["run_id"]
    share = server.psql(
        "select top_customer_name || ' ' || round(100 * top1_share::numeric, 2) || '%' "
        "from marts.fct_revenue_concentration where month = '2024-03-01' "
        "and product_line = 'azure_openai' and level = 'customer'",
        server.reader_url,
    )
    assert share.returncode == 0, share.stderr
    assert share.stdout.strip() == "TikTok 24.65%"
    status = subprocess.run(
        [str(REPO / ".venv/bin/warehouse"), "status"],
        env={**os.environ, **settings.environment()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert f"postgresql://airflow@127.0.0.1:{server.port}/warehouse serves run" in status.stdout
    assert f"serves run {manifest['run_id']}" in status.stdout
