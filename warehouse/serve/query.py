"""Read-only access to the published warehouse, for the `warehouse query`, `status` and
`marts` commands.

Connections open `warehouse.duckdb` read-only with external access disabled, so a query can
neither change the warehouse nor read or write other files; the pipeline never writes that
file in place, so queries never block a run. `warehouse query` also has limits: one query per
call (several with `--multiple`), queries only (statements that are not SELECT or EXPLAIN are
refused before they run), a timeout, Ctrl-C that stops the query at once, and a memory limit
and thread count that SQL cannot raise (DuckDB's `lock_configuration`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from warehouse.db import storage_error
from warehouse.publish import read_manifest
from warehouse.settings import Settings


class QueryError(Exception):
    """A query that could not run, with a one-line reason for the user."""


# What `warehouse query` runs: queries. Everything else (writes, temporary tables, SET, PRAGMA,
# CHECKPOINT, ATTACH, LOAD, COPY, transactions) is refused before it runs.
ALLOWED_STATEMENTS = {
    duckdb.StatementType.SELECT: "SELECT",  # also WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE
    duckdb.StatementType.EXPLAIN: "EXPLAIN",
}
# How often the waiting thread wakes to notice Ctrl-C and the timeout.
_WAKE_SECONDS = 0.05
# Table functions a SELECT may not call.
REFUSED_FUNCTIONS = {"checkpoint", "force_checkpoint"}


@dataclass(frozen=True)
class QueryLimits:
    """What one `warehouse query` may use: SQL cannot raise these (DuckDB's configuration is
    locked on the connection)."""

    timeout_seconds: float = 300.0
    memory_limit: str = "2GB"
    threads: int = 2

    @classmethod
    def from_settings(cls, settings: Settings, timeout_seconds: float | None = None) -> QueryLimits:
        return cls(
            timeout_seconds=settings.query_timeout_seconds
            if timeout_seconds is None
            else timeout_seconds,
            memory_limit=settings.query_memory_limit,
            threads=settings.query_threads,
        )


def open_published(path: Path, limits: QueryLimits | None = None) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise QueryError(f"no published warehouse at {path}; run `make run` first")
    limits = limits or QueryLimits()
    config = {
        "enable_external_access": False,
        "memory_limit": limits.memory_limit,
        "threads": limits.threads,
        # Last: from here on no statement can change a setting (memory, threads, access).
        "lock_configuration": True,
    }
    try:
        return duckdb.connect(str(path), read_only=True, config=config)
    except (OSError, duckdb.Error) as error:
        described = storage_error(error, path, "opening it read-only")
        if described is None:
            raise QueryError(str(error).splitlines()[0]) from None
        raise QueryError(str(described)) from None


def _refusal(statement: duckdb.Statement) -> str | None:
    """Why a statement may not run here, or None."""
    if statement.type not in ALLOWED_STATEMENTS:
        words = statement.query.strip().rstrip(";").split()
        first = " ".join(words[:2] if words[:1] == ["create"] else words[:1]).upper()
        return (
            f"the published warehouse is read-only: {first or statement.type.name} is refused; "
            "`warehouse query` runs queries only (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, "
            "SUMMARIZE, EXPLAIN)"
        )
    return None


def check_statements(
    con: duckdb.DuckDBPyConnection, sql: str, multiple: bool = False
) -> list[duckdb.Statement]:
    """The statements of `sql`, or a QueryError saying why it may not run."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(str(error).splitlines()[0]) from None
    if not statements:
        raise QueryError("no SQL statement given")
    if len(statements) > 1 and not multiple:
        raise QueryError(
            f"{len(statements)} statements given; `warehouse query` runs one per call "
            "(pass --multiple to run several, each one a query)"
        )
    for statement in statements:
        if why := _refusal(statement):
            raise QueryError(why)
        if statement.type == duckdb.StatementType.SELECT:
            tree = con.execute("select json_serialize_sql(?)", [statement.query]).fetchone()[0]
            called = {name.lower() for name in re.findall(r'"function_name":"(\w+)"', tree)}
            if called & REFUSED_FUNCTIONS:
                name = sorted(called & REFUSED_FUNCTIONS)[0]
                raise QueryError(
                    f"the published warehouse is read-only: {name}() is refused; "
                    "`warehouse query` runs queries only"
                )
    return statements


def _execute(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    cursor = con.execute(sql)
    if cursor.description is None:
        return [], []
    return [d[0] for d in cursor.description], cursor.fetchall()


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[list[int]]:
    """While the block runs, Ctrl-C (SIGINT) is noted in the list it gives rather than raised:
    a KeyboardInterrupt raised inside `threading.Event.wait` can leave the event's lock held,
    and the worker's `done.set()` then waits for it forever. Off the main thread (where no
    signal is handled) nothing changes."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def run_query(
    sql: str,
    path: Path,
    limits: QueryLimits | None = None,
    *,
    multiple: bool = False,
) -> tuple[list[str], list[tuple]]:
    """Run one query (or, with `multiple`, several; the last one's rows are returned) against
    the published warehouse, within `limits`; returns (columns, rows).

    The query runs in a worker thread while this thread waits, so that Ctrl-C (SIGINT, noted
    while it waits) and the timeout reach it at once: both call DuckDB's own interrupt."""
    limits = limits or QueryLimits()
    with open_published(path, limits) as con:
        statements = check_statements(con, sql, multiple)
        outcome: dict = {}

        done = threading.Event()  # not Thread.join: an interrupted join can lose the thread

        def work() -> None:
            try:
                for statement in statements:
                    outcome["result"] = _execute(con, statement.query)
            except BaseException as error:  # handed to the waiting thread
                outcome["error"] = error
            finally:
                done.set()

        worker = threading.Thread(target=work, name="warehouse-query", daemon=True)
        started = time.monotonic()
        stopped_by = None
        deadline = started + limits.timeout_seconds if limits.timeout_seconds > 0 else None
        with _ctrl_c_noted() as ctrl_c:
            worker.start()
            # Short waits: a signal may be delivered to one of DuckDB's threads, and Python
            # runs its handler only when this thread wakes up.
            while not done.wait(_WAKE_SECONDS):
                if ctrl_c:
                    stopped_by = "interrupted (Ctrl-C)"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stopped_by = f"timed out after {limits.timeout_seconds:g} s (--timeout)"
                    break
        if stopped_by:
            while not done.wait(_WAKE_SECONDS):  # until DuckDB has stopped the query
                con.interrupt()
            seconds = time.monotonic() - started
            raise QueryError(f"query {stopped_by}; stopped after {seconds:.1f} s") from None
        error = outcome.get("error")
        if error is not None:
            if isinstance(error, duckdb.Error):
                message = str(error).splitlines()[0]
                if "read-only" in message or "read only" in message:
                    raise QueryError(f"the published warehouse is read-only: {message}") from None
                if isinstance(error, duckdb.OutOfMemoryException):
                    message += (
                        f" (the query's memory limit is {limits.memory_limit}: "
                        "WAREHOUSE_QUERY_MEMORY_LIMIT)"
                    )
                raise QueryError(message) from None
            raise error
        return outcome["result"]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_rows(columns: list[str], rows: list[tuple], fmt: str = "table") -> str:
    """Rows as an aligned table (numbers right-aligned), CSV, or JSON (a list of objects)."""
    if fmt == "json":

        def plain(value):
            if isinstance(value, Decimal):
                return float(value)
            if isinstance(value, date | datetime):
                return value.isoformat()
            return value

        records = [{c: plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        return json.dumps(records, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_text(v) for v in row] for row in rows)
        return out.getvalue().rstrip("\n")
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    body = [line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
    body.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(body)


def describe_marts(path: Path) -> list[dict]:
    """Every published mart with its description and its columns' types and descriptions
    (dbt's docs, carried into the published file as comments)."""
    with open_published(path) as con:
        tables = con.execute(
            "select table_name, coalesce(comment, '') from duckdb_tables() "
            "where schema_name = 'marts' order by table_name"
        ).fetchall()
        columns = con.execute(
            "select table_name, column_name, data_type, coalesce(comment, '') "
            "from duckdb_columns() where schema_name = 'marts' "
            "order by table_name, column_index"
        ).fetchall()
    return [
        {
            "mart": table,
            "description": " ".join(description.split()),
            "columns": [
                {"name": name, "type": type_, "description": " ".join(text.split())}
                for owner, name, type_, text in columns
                if owner == table
            ],
        }
        for table, description in tables
    ]


def status(settings: Settings) -> dict:
    """The last publish, from its manifest."""
    manifest = read_manifest(settings)
    if manifest is None:
        raise QueryError(f"nothing published yet (no {settings.manifest}); run `make run` first")
    return manifest
