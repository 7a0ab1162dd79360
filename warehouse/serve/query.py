"""Read-only access to the published warehouse, for the `warehouse query`, `status` and
`marts` commands.

Connections open `warehouse.duckdb` read-only with external access disabled, so a query can
neither change the warehouse nor read or write other files; the pipeline never writes that
file in place, so queries never block a run.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from warehouse.publish import read_manifest
from warehouse.settings import Settings


class QueryError(Exception):
    """A query that could not run, with a one-line reason for the user."""


def open_published(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise QueryError(f"no published warehouse at {path}; run `make run` first")
    return duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})


def run_query(sql: str, path: Path) -> tuple[list[str], list[tuple]]:
    """Run one SQL statement against the published warehouse; returns (columns, rows)."""
    with open_published(path) as con:
        try:
            cursor = con.execute(sql)
        except duckdb.Error as error:
            message = str(error).splitlines()[0]
            if "read-only" in message or "read only" in message:
                raise QueryError(f"the published warehouse is read-only: {message}") from None
            raise QueryError(message) from None
        if cursor.description is None:
            return [], []
        return [d[0] for d in cursor.description], cursor.fetchall()


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
