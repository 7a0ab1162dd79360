"""Spark's tables back into the build database, described from dbt's manifest (dbt-spark
persists column comments only for Delta, Hudi and Iceberg), so validation and publishing read
the Spark-built data exactly as they read DuckDB's.

Spark writes its tables as Parquet under its warehouse folder (``<data>/spark/warehouse``);
DuckDB reads them there. Run after dbt: ``python -m warehouse.engines.spark load-marts``, or the
DAG's ``load_spark_marts`` task.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from warehouse.db import connect, transaction
from warehouse.settings import Settings

MARTS_SCHEMA = "marts"
# The schemas whose Spark-built tables the audit reads from the build database: the marts, and
# the intermediate usage fact the reconciliation holds against raw.
IMPORTED_SCHEMAS = ("intermediate", MARTS_SCHEMA)


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
    with connect(settings.build_db, settings) as con, transaction(con):
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
    result.seconds = time.perf_counter() - started
    return result
