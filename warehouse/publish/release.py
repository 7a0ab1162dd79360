"""Publishing an audited build: what users and BI tools read.

Every published file is written under a temporary name in its final folder and then moved into
place with `os.replace`, which is atomic on one file system: a reader sees the old file or the
new one, never half of either, and a reader that already had the old database open keeps its
consistent old view. The Parquet exports are replaced first, then `warehouse.duckdb`, and the
manifest last, so the manifest always describes published files. A failure before the swap
leaves the previous publish untouched. With a serving database configured, its schema is
loaded and swapped in just before the files are (warehouse.publish.postgres).

The published file is written in DuckDB's v1.4 storage format, so that the DuckDB CLI and BI
drivers that lag the Python package by a release or two can open it. It holds the marts in
schema `marts` and one row in `meta.publication` naming the run that published it, so a reader
can tell which publish it is looking at from inside its own snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psutil

from warehouse.db import bounds, connect
from warehouse.settings import REPO_ROOT, Settings

# Oldest DuckDB release whose readers must open the published file (the duckdb-cli on PyPI,
# BI drivers); the build database keeps the running DuckDB's own format.
PUBLISHED_STORAGE_VERSION = "v1.4.0"


def read_manifest(settings: Settings) -> dict | None:
    """The last publish's manifest, or None before the first publish."""
    path = settings.manifest
    return json.loads(path.read_text()) if path.exists() else None


def _git_revision() -> str | None:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None


def _copy_marts(settings: Settings, target: Path, publication: dict) -> dict[str, int]:
    """Copy every table of the build's `marts` schema into a new database file, with the
    `meta.publication` row; returns the row count of each mart."""
    with duckdb.connect(config=bounds(settings)) as con:
        con.execute(
            f"attach ? as published (storage_version '{PUBLISHED_STORAGE_VERSION}')",
            [str(target)],
        )
        con.execute("attach ? as build (read_only)", [str(settings.build_db)])
        con.execute("use published")
        marts = [
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() "
                "where database_name = 'build' and schema_name = 'marts' order by table_name"
            ).fetchall()
        ]
        if not marts:
            raise RuntimeError(f"{settings.build_db}: no marts to publish (schema marts is empty)")
        con.execute("create schema marts")
        counts = {}
        for name in marts:
            con.execute(f'create table marts."{name}" as select * from build.marts."{name}"')
            counts[name] = con.execute(f'select count(*) from marts."{name}"').fetchone()[0]
        _copy_comments(con)
        con.execute("create schema meta")
        con.execute(
            "create table meta.publication as select ?::varchar as run_id, "
            "?::timestamptz as published_at, ?::varchar as git_revision",
            [publication["run_id"], publication["published_at"], publication["git_revision"]],
        )
        con.execute(
            "comment on table meta.publication is 'The pipeline run that published this file "
            "(the same run_id as manifest.json).'"
        )
        con.execute("use memory")
        con.execute("detach build")
        con.execute("checkpoint published")
        con.execute("detach published")
    return counts


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy_comments(con: duckdb.DuckDBPyConnection) -> None:
    """Carry the marts' descriptions (dbt's persist_docs comments) into the published file."""
    tables = con.execute(
        "select table_name, comment from duckdb_tables() where database_name = 'build' "
        "and schema_name = 'marts' and comment is not null"
    ).fetchall()
    for table, comment in tables:
        con.execute(f'comment on table marts."{table}" is {_sql_string(comment)}')
    columns = con.execute(
        "select table_name, column_name, comment from duckdb_columns() "
        "where database_name = 'build' and schema_name = 'marts' and comment is not null"
    ).fetchall()
    for table, column, comment in columns:
        con.execute(f'comment on column marts."{table}"."{column}" is {_sql_string(comment)}')


def _export_parquet(
    settings: Settings, database: Path, marts: list[str], suffix: str
) -> dict[Path, Path]:
    """Write each mart to `<mart>.parquet<suffix>`; returns temporary path -> final path."""
    folder = settings.exports_dir
    folder.mkdir(parents=True, exist_ok=True)
    moves = {}
    with connect(database, settings, read_only=True) as con:
        for name in marts:
            final = folder / f"{name}.parquet"
            temporary = folder / f".{name}.parquet{suffix}"
            target = str(temporary).replace("'", "''")
            con.execute(f"copy marts.\"{name}\" to '{target}' (format parquet, compression zstd)")
            moves[temporary] = final
    return moves


def _remove_stale_staging(*folders: Path) -> None:
    """Delete files staged by a publish whose process died before cleaning up (SIGKILL)."""
    for folder in folders:
        for path in folder.glob(".*.tmp-*"):
            pid = path.name.rsplit(".tmp-", 1)[1].split(".")[0]
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                path.unlink(missing_ok=True)


def remove_stale_staging(settings: Settings) -> None:
    """What publishes killed before cleaning up left staged, removed (also when no publish
    follows: a run with nothing new)."""
    _remove_stale_staging(settings.data_dir, settings.exports_dir)


def _swap_in(moves: dict[Path, Path]) -> None:
    """Move each temporary file over its final name, in order (atomic per file)."""
    for temporary, final in moves.items():
        os.replace(temporary, final)


def _freshness(settings: Settings, run_id: str) -> list[dict]:
    from warehouse.ingest.freshness import read_report

    report = read_report(settings)
    return report["sources"] if report and report["run_id"] == run_id else []


def _serve_postgres(settings: Settings, staged_db: Path, publication: dict) -> dict:
    """The second target (warehouse.publish.postgres), loaded and swapped in before any file is
    replaced: if it fails, the publish fails and both targets keep the previous run; what the
    manifest records of it."""
    from warehouse.publish.postgres import SERVED_SCHEMA, describe_target, load_and_swap

    load_and_swap(settings, staged_db, publication)
    return {
        "target": describe_target(settings.serve_postgres_url),
        "schema": SERVED_SCHEMA,
        "run_id": publication["run_id"],
    }


def publish(settings: Settings, run_id: str, validation: dict, inputs: dict | None = None) -> dict:
    """Publish the build's marts with the validation that passed them; returns the manifest.
    `inputs` is what the build was built from (`warehouse.publish.changes`), recorded so the
    next run can tell whether anything changed since."""
    data_dir = settings.data_dir
    suffix = f".tmp-{os.getpid()}"
    staged_db = data_dir / f".warehouse.duckdb{suffix}"
    staged_manifest = data_dir / f".manifest.json{suffix}"
    moves: dict[Path, Path] = {}
    publication = {
        "run_id": run_id,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": _git_revision(),
    }
    _remove_stale_staging(data_dir, settings.exports_dir)
    try:
        staged_db.unlink(missing_ok=True)
        counts = _copy_marts(settings, staged_db, publication)
        moves.update(_export_parquet(settings, staged_db, list(counts), suffix))
        moves[staged_db] = settings.published_db
        manifest = {
            **publication,
            # Paths relative to the data folder, so a copied folder stays self-consistent.
            "warehouse": settings.published_db.name,
            "exports": {
                name: (settings.exports_dir / f"{name}.parquet").relative_to(data_dir).as_posix()
                for name in counts
            },
            "row_counts": counts,
            "validation": validation,
            # Each source's freshness as this run judged it (warehouse/ingest/freshness.py).
            "freshness": _freshness(settings, run_id),
        }
        if inputs is not None:
            manifest["inputs"] = inputs
        if settings.serve_postgres_url:
            manifest["postgres"] = _serve_postgres(settings, staged_db, publication)
        staged_manifest.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        moves[staged_manifest] = settings.manifest
        _swap_in(moves)
    finally:
        for temporary in moves:
            temporary.unlink(missing_ok=True)
        staged_db.unlink(missing_ok=True)
        Path(f"{staged_db}.wal").unlink(missing_ok=True)
    return manifest
