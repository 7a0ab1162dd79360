"""The raw tables and the ingestion ledger as Parquet for Spark, one partition per landing file,
rewritten only when its file changed (dbt on Spark reads Parquet; it cannot open a DuckDB file).

A restated file replaces exactly one partition; dbt's ``on-run-start`` hook
(``macros/raw_parquet.sql``) registers the folders on Spark as the sources' external tables.
Run after ingestion: ``python -m warehouse.engines.spark export-raw``, or the DAG's
``export_raw`` task.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

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
