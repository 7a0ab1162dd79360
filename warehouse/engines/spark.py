"""Apache Spark as a second engine for the same dbt models.

DuckDB stays the default. With ``WAREHOUSE_ENGINE=spark`` dbt builds the models on Spark
(``dbt_project/profiles.yml``, target ``spark``): ``WAREHOUSE_SPARK_METHOD=session`` runs Spark
inside dbt's process, ``thrift`` reaches a Spark Thrift server (a cluster, or the local one
:func:`thrift_start` runs from the pyspark wheel). The ``spark`` extra must be installed
(``make spark-setup``).

Raw data reaches Spark as Parquet: :func:`export_raw` writes DuckDB's raw tables and the
ingestion ledger under ``<data>/raw_parquet/``, partitioned by landing file
(``_source_file=<file>/``), rewriting only the partitions of files loaded since the last
export, so a restated file replaces exactly one partition. dbt's ``on-run-start`` hook
(``macros/raw_parquet.sql``) registers them on Spark as external tables, the sources the
staging models read. Spark writes the marts as Parquet under ``<data>/spark/warehouse``;
:func:`spark_marts` reads them through DuckDB, and :func:`compare_marts` holds them against
another build's (money to the cent, ratios to 1e-9).

In the pipeline DAG (``WAREHOUSE_ENGINE=spark``) :func:`export_raw` runs after ingestion and
:func:`load_spark_tables` after dbt: it copies the tables Spark built (the marts and the
intermediate usage fact) from their Parquet files into the build database, with dbt's
descriptions from its manifest (dbt-spark persists column comments only for Delta, Hudi and
Iceberg), so validation and publishing read the Spark-built data exactly as they read
DuckDB's.

Every function takes the one :class:`~warehouse.settings.Settings`; the command line builds it
with ``Settings.from_env()``. Run ``python -m warehouse.engines.spark --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import duckdb

from warehouse.db import connect
from warehouse.settings import Settings

# The raw tables Spark reads, each partitioned by the landing file its rows came from, and the
# ledger and its current files, which the incremental usage model reads (small, rewritten whole).
PARTITIONED_TABLES = (("raw", "customers"), ("raw", "earnings"), ("raw", "usage"))
LEDGER_TABLES = (("ingest", "ledger"), ("ingest", "current_files"))
PARTITION_COLUMN = "_source_file"
# Spark and Hadoop skip files whose names start with "_" or ".": the marker that records which
# version of its file a partition holds is invisible to both readers.
MARKER = "_loaded"
MARTS_SCHEMA = "marts"
# The schemas whose Spark-built tables the audit reads from the build database: the marts, and
# the intermediate usage fact the reconciliation holds against raw.
IMPORTED_SCHEMAS = ("intermediate", MARTS_SCHEMA)

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


# --- raw tables as Parquet, partitioned by landing file --------------------------------------


@dataclass
class ExportResult:
    written: dict[str, int] = field(default_factory=dict)  # table -> partitions (re)written
    kept: dict[str, int] = field(default_factory=dict)  # table -> partitions already current
    removed: dict[str, int] = field(default_factory=dict)  # table -> partitions of gone files
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "written": self.written,
            "kept": self.kept,
            "removed": self.removed,
            "seconds": round(self.seconds, 3),
        }


def partition_dir(table_dir: Path, source_file: str) -> Path:
    """Hive-style partition folder of one landing file; both Spark and DuckDB decode %XX."""
    return table_dir / f"{PARTITION_COLUMN}={quote(source_file, safe='')}"


def _replace_dir(new: Path, target: Path) -> None:
    """Swap a freshly written folder in for `target` (readers see old or new files, the old
    ones only until the second rename)."""
    old = target.with_name(f".old-{uuid.uuid4().hex}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def export_raw(settings: Settings, out: Path | None = None) -> ExportResult:
    """Write raw.customers, raw.earnings and raw.usage as Parquet partitioned by landing file,
    and ingest.ledger and ingest.current_files as one Parquet file each, under `out` (default
    `<data>/raw_parquet`).

    A partition is rewritten only when its file's latest ledger load (sha256 and time) differs
    from the one it holds, and removed when its file is no longer in the raw table, so after
    a restated file only that file's partition changes. Opens the build database read-only:
    run it after ingestion, in the writers' queue."""
    started = time.perf_counter()
    build_db = settings.build_db
    out = out or settings.raw_parquet_dir
    result = ExportResult()
    con = connect(build_db, settings, read_only=True)
    try:
        latest = dict(
            con.execute(
                """
                select file_path, sha256 || ' ' || strftime(loaded_at at time zone 'UTC',
                       '%Y-%m-%dT%H:%M:%S.%f')
                from ingest.current_files
                """
            ).fetchall()
        )
        for schema, table in PARTITIONED_TABLES:
            name = f"{schema}.{table}"
            table_dir = out / schema / table
            table_dir.mkdir(parents=True, exist_ok=True)
            files = [
                row[0]
                for row in con.execute(
                    f"select distinct {PARTITION_COLUMN} from {name} order by 1"
                ).fetchall()
            ]
            wanted = {partition_dir(table_dir, f).name for f in files}
            result.written[name] = result.kept[name] = result.removed[name] = 0
            for source_file in files:
                target = partition_dir(table_dir, source_file)
                version = latest.get(source_file, "unknown")
                marker = target / MARKER
                if marker.exists() and marker.read_text() == version:
                    result.kept[name] += 1
                    continue
                staging = table_dir / f".new-{uuid.uuid4().hex}"
                staging.mkdir()
                con.execute(
                    f"copy (select * exclude ({PARTITION_COLUMN}) from {name} "
                    f"where {PARTITION_COLUMN} = ?) "
                    f"to '{staging / 'part-00000.parquet'}' (format parquet)",
                    [source_file],
                )
                (staging / MARKER).write_text(version)
                _replace_dir(staging, target)
                result.written[name] += 1
            for stale in table_dir.iterdir():
                if stale.name.startswith(f"{PARTITION_COLUMN}=") and stale.name not in wanted:
                    shutil.rmtree(stale)
                    result.removed[name] += 1
                elif stale.name.startswith((".new-", ".old-")):
                    shutil.rmtree(stale, ignore_errors=True)
        for schema, table in LEDGER_TABLES:
            table_dir = out / schema / table
            table_dir.mkdir(parents=True, exist_ok=True)
            staging_file = table_dir / f".{table}-{uuid.uuid4().hex}.parquet"
            con.execute(f"copy {schema}.{table} to '{staging_file}' (format parquet)")
            os.replace(staging_file, table_dir / f"{table}.parquet")
    finally:
        con.close()
    result.seconds = time.perf_counter() - started
    return result


# --- reading and comparing marts --------------------------------------------------------------


def spark_tables(settings: Settings, schema: str = MARTS_SCHEMA) -> dict[str, str]:
    """The tables Spark built in `schema` (under its warehouse folder), as DuckDB
    `read_parquet` calls (a partitioned table's partition column comes back, last, as Spark
    puts it)."""
    schema_dir = settings.spark_warehouse_dir / f"{schema}.db"
    if not schema_dir.is_dir():
        return {}
    return {
        table.name: f"read_parquet('{table}/**/*.parquet', hive_partitioning = true, "
        "hive_types_autocast = false)"
        for table in sorted(schema_dir.iterdir())
        if table.is_dir() and any(table.glob("**/*.parquet"))
    }


def spark_marts(settings: Settings) -> dict[str, str]:
    """The marts Spark built, as DuckDB `read_parquet` calls."""
    return spark_tables(settings, MARTS_SCHEMA)


def dbt_descriptions(manifest: Path) -> dict[tuple[str, str], tuple[str, dict[str, str]]]:
    """(schema, table) -> (the model's description, {column: description}) from dbt's
    manifest, for models with a description or described columns."""
    document = json.loads(manifest.read_text())
    described = {}
    for node in document.get("nodes", {}).values():
        if node.get("resource_type") != "model":
            continue
        columns = {
            name: column["description"]
            for name, column in node.get("columns", {}).items()
            if column.get("description")
        }
        if node.get("description") or columns:
            table = node.get("alias") or node["name"]
            described[(node["schema"], table)] = (node.get("description") or "", columns)
    return described


@dataclass
class ImportResult:
    tables: dict[str, int] = field(default_factory=dict)  # schema.table -> rows
    described_columns: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "tables": self.tables,
            "described_columns": self.described_columns,
            "seconds": round(self.seconds, 3),
        }


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_spark_tables(settings: Settings) -> ImportResult:
    """Copy the tables dbt built on Spark (the marts and the intermediate tables, from their
    Parquet files under Spark's warehouse folder) into the same schemas of the build database,
    replacing what an earlier build left there, and describe them from dbt's manifest: what
    validation and publishing read is then the Spark-built data, with its descriptions. Marts
    Spark did not build are dropped, so nothing stale is published. Runs in the writers'
    queue (it writes the build database)."""
    started = time.perf_counter()
    result = ImportResult()
    tables = {schema: spark_tables(settings, schema) for schema in IMPORTED_SCHEMAS}
    if not tables[MARTS_SCHEMA]:
        raise RuntimeError(
            f"no marts under {settings.spark_warehouse_dir / (MARTS_SCHEMA + '.db')}: did dbt "
            "build on Spark, and is Spark's warehouse folder (WAREHOUSE_SPARK_WAREHOUSE_DIR) "
            "readable here?"
        )
    manifest = settings.dbt_manifest
    descriptions = dbt_descriptions(manifest) if manifest.exists() else {}
    with connect(settings.build_db, settings) as con:
        con.execute("begin")
        for schema, relations in tables.items():
            con.execute(f'create schema if not exists "{schema}"')
            existing = dict(
                con.execute(
                    "select table_name, table_type from information_schema.tables "
                    "where table_catalog = current_database() and table_schema = ?",
                    [schema],
                ).fetchall()
            )
            for name, kind in existing.items():
                # A DuckDB build's view of the same name, or a mart Spark no longer builds.
                if kind == "VIEW" and name in relations:
                    con.execute(f'drop view "{schema}"."{name}"')
                elif schema == MARTS_SCHEMA and name not in relations:
                    con.execute(f'drop {"view" if kind == "VIEW" else "table"} marts."{name}"')
            for name, relation in relations.items():
                con.execute(f'create or replace table "{schema}"."{name}" as from {relation}')
                (rows,) = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
                result.tables[f"{schema}.{name}"] = rows
                comment, columns = descriptions.get((schema, name), ("", {}))
                if comment:
                    con.execute(f'comment on table "{schema}"."{name}" is {_sql_string(comment)}')
                present = {
                    row[0] for row in con.execute(f'describe "{schema}"."{name}"').fetchall()
                }
                for column, text in columns.items():
                    if column in present:
                        con.execute(
                            f'comment on column "{schema}"."{name}"."{column}" is '
                            f"{_sql_string(text)}"
                        )
                        result.described_columns += 1
        con.execute("commit")
    result.seconds = time.perf_counter() - started
    return result


def duckdb_marts(build_db: Path) -> dict[str, str]:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        names = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = ? "
                "order by 1",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
    finally:
        con.close()
    return {name: f"build.{MARTS_SCHEMA}.{name}" for name in names}


def _rows(
    con: duckdb.DuckDBPyConnection, relation: str
) -> tuple[list[str], list[str], list[tuple]]:
    described = con.execute(f"describe select * from {relation}").fetchall()
    names = [row[0] for row in described]
    types = [row[1] for row in described]
    return names, types, con.execute(f"select * from {relation}").fetchall()


def _is_float(type_: str) -> bool:
    return type_ in ("DOUBLE", "FLOAT", "REAL")


@dataclass
class MartComparison:
    mart: str
    rows_expected: int
    rows_actual: int
    problems: list[str]

    @property
    def equal(self) -> bool:
        return not self.problems


def compare_marts(
    expected: dict[str, str],
    actual: dict[str, str],
    *,
    attach: dict[str, Path] | None = None,
    tolerance: float = 1e-9,
) -> list[MartComparison]:
    """Hold every mart of `expected` against the one of the same name in `actual` (relations
    as DuckDB SQL, e.g. from :func:`duckdb_marts` and :func:`spark_marts`; `attach` names
    DuckDB files to attach read-only under an alias). Rows are matched on their exact columns
    (everything but floating point); DECIMAL money must be equal to the cent, doubles
    (shares, growth, HHI) within `tolerance`, relative or absolute."""
    con = duckdb.connect()
    for alias, path in (attach or {}).items():
        con.execute(f"attach '{path}' as {alias} (read_only)")
    results = []
    try:
        for mart, relation in expected.items():
            problems: list[str] = []
            if mart not in actual:
                results.append(MartComparison(mart, 0, 0, ["missing"]))
                continue
            e_names, e_types, e_rows = _rows(con, relation)
            a_names, a_types, a_rows = _rows(con, actual[mart])
            if sorted(e_names) != sorted(a_names):
                problems.append(f"columns differ: {e_names} vs {a_names}")
                results.append(MartComparison(mart, len(e_rows), len(a_rows), problems))
                continue
            for name, e_type in zip(e_names, e_types, strict=True):
                a_type = a_types[a_names.index(name)]
                if e_type != a_type:
                    problems.append(f"type of {name}: {e_type} vs {a_type}")
            order = [a_names.index(n) for n in e_names]
            a_rows = [tuple(row[i] for i in order) for row in a_rows]
            exact = [i for i, t in enumerate(e_types) if not _is_float(t)]
            floats = [i for i, t in enumerate(e_types) if _is_float(t)]

            def key(row: tuple, exact: list[int] = exact) -> tuple:
                return tuple((row[i] is None, str(row[i])) for i in exact)

            e_index: dict[tuple, list[tuple]] = {}
            for row in e_rows:
                e_index.setdefault(key(row), []).append(row)
            unmatched = 0
            for row in a_rows:
                candidates = e_index.get(key(row))
                if not candidates:
                    unmatched += 1
                    if unmatched <= 3:
                        problems.append(f"row not expected: {dict(zip(e_names, row, strict=True))}")
                    continue
                best = candidates.pop()
                for i in floats:
                    x, y = best[i], row[i]
                    if (x is None) != (y is None) or (
                        x is not None
                        and not math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance)
                    ):
                        where = dict(zip(e_names, row, strict=True))
                        problems.append(f"{e_names[i]}: {x!r} vs {y!r} in {where}")
            if unmatched > 3:
                problems.append(f"... {unmatched} rows not expected in all")
            missing = sum(len(rows) for rows in e_index.values())
            if missing:
                problems.append(f"{missing} expected rows missing")
            results.append(MartComparison(mart, len(e_rows), len(a_rows), problems))
        for mart in actual:
            if mart not in expected:
                results.append(MartComparison(mart, 0, 0, ["not expected"]))
    finally:
        con.close()
    return results


def money_columns_exact(relations: dict[str, str]) -> list[str]:
    """Every `*_usd` column of the marts is DECIMAL with two places (never floating point)."""
    con = duckdb.connect()
    problems = []
    try:
        for mart, relation in relations.items():
            for name, type_, *_ in con.execute(f"describe select * from {relation}").fetchall():
                if name.endswith("_usd") and type_ != "DECIMAL(18,2)":
                    problems.append(f"{mart}.{name} is {type_}")
    finally:
        con.close()
    return problems


# --- a local Spark Thrift server, from the pyspark wheel --------------------------------------


def spark_home() -> Path:
    """The pyspark wheel's folder: its jars include the Thrift server's, its bin spark-submit
    (the wheel has no sbin/start-thriftserver.sh)."""
    import pyspark  # the `spark` extra

    return Path(pyspark.__file__).resolve().parent


def _pid_file(settings: Settings) -> Path:
    return settings.spark_dir / "thrift-server.pid"


def thrift_command(settings: Settings, host: str = "127.0.0.1") -> list[str]:
    """spark-submit starting HiveThriftServer2 on `host:port`, with the same warehouse folder
    and Derby metastore a `session` build of this data folder uses (one at a time: Derby is
    single-process), sized for one machine."""
    home = spark_home()
    spark = settings.spark_dir
    return [
        str(home / "bin" / "spark-submit"),
        "--class",
        THRIFT_SERVER_CLASS,
        "--name",
        "warehouse-thrift-server",
        "--master",
        settings.spark_master,
        "--driver-memory",
        settings.spark_driver_memory,
        "--conf",
        f"spark.sql.warehouse.dir={settings.spark_warehouse_dir}",
        "--conf",
        "spark.hadoop.javax.jdo.option.ConnectionURL="
        f"jdbc:derby:;databaseName={spark / 'metastore_db'};create=true",
        "--conf",
        f"spark.driver.extraJavaOptions=-Dderby.system.home={spark}",
        "--conf",
        f"spark.sql.shuffle.partitions={settings.spark_shuffle_partitions}",
        "--conf",
        "spark.sql.session.timeZone=UTC",
        "--conf",
        "spark.sql.sources.partitionOverwriteMode=dynamic",
        "--conf",
        "spark.ui.enabled=false",
        "--hiveconf",
        f"hive.server2.thrift.bind.host={host}",
        "--hiveconf",
        f"hive.server2.thrift.port={settings.spark_port}",
        "--hiveconf",
        "hive.server2.transport.mode=binary",
        "spark-internal",
    ]


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def thrift_start(settings: Settings, timeout: float = 240) -> tuple[int, float]:
    """Start the Thrift server on 127.0.0.1 at the settings' Spark port, in its own session
    (so it can be stopped as a group), and wait until it accepts connections. Returns its pid
    and the seconds it took to start. The log goes to `<data>/spark/thrift-server.log`."""
    port = settings.spark_port
    host = "127.0.0.1"
    if _port_open(host, port):
        raise RuntimeError(f"port {port} is already in use; set WAREHOUSE_SPARK_PORT")
    spark = settings.spark_dir
    spark.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": host,
    }
    started = time.perf_counter()
    with open(spark / "thrift-server.log", "ab") as log:
        process = subprocess.Popen(
            thrift_command(settings, host),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=spark,
            env=env,
            start_new_session=True,
        )
    _pid_file(settings).write_text(str(process.pid))
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(
                f"the Thrift server exited with status {process.returncode}; "
                f"see {spark / 'thrift-server.log'}"
            )
        if _port_open(host, port):
            return process.pid, time.perf_counter() - started
        time.sleep(0.5)
    thrift_stop(settings)
    raise RuntimeError(f"the Thrift server did not listen on {port} in {timeout:.0f} s")


def thrift_stop(settings: Settings, timeout: float = 60) -> bool:
    """Stop the Thrift server `thrift_start` started for this data folder (its process group,
    SIGTERM then SIGKILL). Returns False when none was running."""
    pid_file = _pid_file(settings)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):  # reap it when it is our child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.3)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.engines.spark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("export-raw", help="write the raw tables as Parquet for Spark")
    commands.add_parser(
        "load-marts", help="copy the marts Spark built into the build database, described"
    )
    start = commands.add_parser("thrift-start", help="start a local Spark Thrift server")
    start.add_argument("--port", type=int, default=None)
    commands.add_parser("thrift-stop", help="stop the Thrift server thrift-start started")
    compare = commands.add_parser("compare", help="compare Spark's marts with a DuckDB build's")
    compare.add_argument("--duckdb", type=Path, required=True, help="a build.duckdb")
    compare.add_argument("--spark-data", type=Path, required=True, help="Spark's data folder")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "export-raw":
        print(json.dumps(export_raw(settings).as_dict()))
    elif args.command == "load-marts":
        print(json.dumps(load_spark_tables(settings).as_dict()))
    elif args.command == "thrift-start":
        if args.port:
            settings = replace(settings, spark_port=args.port)
        pid, seconds = thrift_start(settings)
        print(json.dumps({"pid": pid, "port": settings.spark_port, "seconds": seconds}))
    elif args.command == "thrift-stop":
        print(json.dumps({"stopped": thrift_stop(settings)}))
    elif args.command == "compare":
        results = compare_marts(
            duckdb_marts(args.duckdb),
            spark_marts(settings.with_folders(data_dir=args.spark_data)),
            attach={"build": args.duckdb},
        )
        for result in results:
            state = "equal" if result.equal else "DIFFERENT"
            print(f"{result.mart}: {result.rows_expected} vs {result.rows_actual} rows, {state}")
            for problem in result.problems[:10]:
                print(f"    {problem}")
        return 0 if all(r.equal for r in results) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
