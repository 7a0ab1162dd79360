"""The second publish target: the published marts served by PostgreSQL, for BI tools that speak
its protocol from other hosts (DuckDB has no server).

What PostgreSQL and psycopg do not give: loading a DuckDB file's marts with their types and
comments, and swapping them in whole. Each mart is written by DuckDB as CSV and loaded with
`COPY ... FROM STDIN` (psycopg's `cursor.copy`) into a new schema, `marts__next`, with the
publish's row in its `publication` table; then one transaction grants the read-only role
SELECT on it, renames the served `marts` away, renames the new one in and drops the old, so a
reader sees the previous publish or the new one, never a mix or an empty table. A failure
before that transaction leaves the served schema as it was (the next publish starts again).

Types come from the published file, whose marts dbt's contracts hold to their declared types
(money `decimal(18,2)` becomes `numeric(18,2)`, exact to the cent); comments are the dbt
descriptions the file carries. The read-only role and the `warehouse` database are made by
docker/postgres/init-warehouse-db.sh (compose's init and `make up`'s).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from warehouse.db import connect as duckdb_connect
from warehouse.settings import Settings

SERVED_SCHEMA = "marts"
NEXT_SCHEMA = "marts__next"
OLD_SCHEMA = "marts__previous"
PUBLICATION_TABLE = "publication"
# The BI logins' role: docker/postgres/init-warehouse-db.sh creates it; each publish grants it
# SELECT on the new schema's tables (and nothing else).
READER_ROLE = "warehouse_reader"
CONNECT_TIMEOUT_SECONDS = 10
# How long the swap tries for its locks (a reader's statement_timeout is 5 minutes), and how
# often.
SWAP_WAIT_SECONDS = 600
SWAP_RETRY_SECONDS = 0.05
COPY_CHUNK_BYTES = 1 << 20

# DuckDB's type names (as duckdb_columns() spells them) -> PostgreSQL's.
_TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "HUGEINT": "numeric(38,0)",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


class ServeError(RuntimeError):
    """The PostgreSQL publish failed; the one-line message names the target and the cause."""


def describe_target(url: str) -> str:
    """The target as a URL without its password (for messages, the manifest, `status`)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an invalid WAREHOUSE_SERVE_POSTGRES_URL"
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _pg_type(duckdb_type: str) -> str:
    if match := re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duckdb_type):
        return f"numeric({match[1]},{match[2]})"
    if duckdb_type not in _TYPES:
        raise ServeError(f"no PostgreSQL type for DuckDB's {duckdb_type}")
    return _TYPES[duckdb_type]


def connect(url: str) -> psycopg.Connection:
    """A connection in autocommit mode: each `transaction()` block is one transaction."""
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True)


def load_and_swap(settings: Settings, published_db: Path, publication: dict) -> None:
    """Load the marts of `published_db` (a staged publish file) into a new schema of the
    settings' serving database, then swap it for the served one; each mart's CSV is staged in
    the data folder for a moment. Raises ServeError (one line: target and cause); the served
    schema is then unchanged."""
    url = settings.serve_postgres_url
    try:
        with connect(url) as pg, duckdb_connect(published_db, settings, read_only=True) as con:
            _load(pg, con, publication, settings.data_dir)
            _swap(pg)
    except ServeError as error:
        raise ServeError(f"PostgreSQL publish to {describe_target(url)}: {error}") from None
    except (psycopg.Error, duckdb.Error, OSError) as error:
        raise ServeError(
            f"PostgreSQL publish to {describe_target(url)} failed: {_one_line(error)}"
        ) from None


def _load(
    pg: psycopg.Connection, con: duckdb.DuckDBPyConnection, publication: dict, staging: Path
) -> None:
    """Create NEXT_SCHEMA with every mart, its comments and the publication row; committed."""
    columns: dict[str, list[tuple[str, str, str | None]]] = {}
    for table, column, data_type, comment in con.execute(
        "select table_name, column_name, data_type, comment from duckdb_columns() "
        "where schema_name = 'marts' order by table_name, column_index"
    ).fetchall():
        columns.setdefault(table, []).append((column, _pg_type(data_type), comment))
    comments = dict(
        con.execute(
            "select table_name, comment from duckdb_tables() where schema_name = 'marts'"
        ).fetchall()
    )
    schema = sql.Identifier(NEXT_SCHEMA)
    with pg.transaction():
        pg.execute(sql.SQL("drop schema if exists {} cascade").format(schema))
        pg.execute(sql.SQL("create schema {}").format(schema))
        for table, cols in columns.items():
            name = sql.Identifier(NEXT_SCHEMA, table)
            definition = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(pg_type))
                for column, pg_type, _ in cols
            )
            pg.execute(sql.SQL("create table {} ({})").format(name, definition))
            _copy(pg, con, table, name, staging)
            if comments.get(table):
                pg.execute(sql.SQL("comment on table {} is {}").format(name, comments[table]))
            for column, _, comment in cols:
                if comment:
                    target = sql.Identifier(NEXT_SCHEMA, table, column)
                    pg.execute(sql.SQL("comment on column {} is {}").format(target, comment))
        _record_publication(pg, publication)


def _copy(
    pg: psycopg.Connection,
    con: duckdb.DuckDBPyConnection,
    table: str,
    name: sql.Composable,
    staging: Path,
) -> None:
    """One mart: DuckDB writes it as CSV (exact decimals, ISO dates, NULL as an empty field,
    an empty string quoted), PostgreSQL reads the file through COPY."""
    path = staging / f".{table}.csv.tmp-{os.getpid()}"
    try:
        target = str(path).replace("'", "''")
        con.execute(f"copy marts.\"{table}\" to '{target}' (format csv, header false)")
        with (
            pg.cursor() as cursor,
            cursor.copy(sql.SQL("copy {} from stdin (format csv)").format(name)) as copy,
            path.open("rb") as file,
        ):
            while chunk := file.read(COPY_CHUNK_BYTES):
                copy.write(chunk)
    finally:
        path.unlink(missing_ok=True)


def _record_publication(pg: psycopg.Connection, publication: dict) -> None:
    table = sql.Identifier(NEXT_SCHEMA, PUBLICATION_TABLE)
    pg.execute(
        sql.SQL(
            "create table {} (run_id text not null, published_at timestamptz not null, "
            "git_revision text)"
        ).format(table)
    )
    pg.execute(
        sql.SQL("insert into {} values (%s, %s, %s)").format(table),
        [publication["run_id"], publication["published_at"], publication["git_revision"]],
    )
    pg.execute(
        sql.SQL("comment on table {} is {}").format(
            table,
            "The pipeline run that published these marts (the same run_id as manifest.json).",
        )
    )


def _swap(pg: psycopg.Connection) -> None:
    """In one transaction: every served table locked, the served schema renamed away, the new
    one (SELECT granted to the reader role) renamed in, the old dropped.

    The locks are taken all at once without waiting (NOWAIT), retried until no reader holds
    any: a swap that waited holding some would deadlock with a reader holding the others
    (one statement over several marts). Readers that arrive meanwhile wait for the commit, then
    PostgreSQL resolves their names again, to the new tables."""
    served, old = sql.Identifier(SERVED_SCHEMA), sql.Identifier(OLD_SCHEMA)
    deadline = time.monotonic() + SWAP_WAIT_SECONDS
    while True:
        try:
            with pg.transaction():
                pg.execute(sql.SQL("drop schema if exists {} cascade").format(old))
                tables = [
                    sql.Identifier(SERVED_SCHEMA, name)
                    for (name,) in pg.execute(
                        "select tablename from pg_tables where schemaname = %s order by 1",
                        [SERVED_SCHEMA],
                    ).fetchall()
                ]
                if tables:
                    pg.execute(
                        sql.SQL("lock table {} in access exclusive mode nowait").format(
                            sql.SQL(", ").join(tables)
                        )
                    )
                    pg.execute(sql.SQL("alter schema {} rename to {}").format(served, old))
                _grant_reader(pg)
                pg.execute(
                    sql.SQL("alter schema {} rename to {}").format(
                        sql.Identifier(NEXT_SCHEMA), served
                    )
                )
                pg.execute(sql.SQL("drop schema if exists {} cascade").format(old))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise ServeError(
                    f"readers held the served marts for {SWAP_WAIT_SECONDS} s; not swapped"
                ) from None
            time.sleep(SWAP_RETRY_SECONDS)


def _grant_reader(pg: psycopg.Connection) -> None:
    """USAGE on the new schema and SELECT on its tables for the BI logins' role (when the
    database has it)."""
    if pg.execute("select 1 from pg_roles where rolname = %s", [READER_ROLE]).fetchone():
        schema, role = sql.Identifier(NEXT_SCHEMA), sql.Identifier(READER_ROLE)
        pg.execute(sql.SQL("grant usage on schema {} to {}").format(schema, role))
        pg.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, role))


def served_run(url: str) -> dict:
    """Which run the served schema holds (its publication row), or why it cannot be read."""
    target = describe_target(url)
    try:
        with connect(url) as pg:
            row = pg.execute(
                sql.SQL("select run_id, published_at from {}").format(
                    sql.Identifier(SERVED_SCHEMA, PUBLICATION_TABLE)
                )
            ).fetchone()
    except psycopg.Error as error:
        return {"target": target, "error": _one_line(error)}
    return {"target": target, "run_id": row[0], "published_at": row[1].isoformat()}
