"""The ledger: what became of each landing file (added, replaced, unchanged, re-evaluated,
retracted or refused), the entries that record it in `ingest.ledger`, the files the build
database holds now (`ingest.current_files`), and the retraction of files that left the landing
folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import duckdb

from warehouse.db import transaction
from warehouse.ingest.sources import SOURCES, Source
from warehouse.ingest.tables import file_tables, quarantine_table

log = logging.getLogger(__name__)

# A ledger entry's columns (`loaded_at` is the time of the write).
LEDGER_INSERT = (
    "insert into ingest.ledger (source, file_path, sha256, size_bytes, rows_in_file, "
    "rows_loaded, rows_rejected, rows_quarantined, action, run_id, stat_key) "
)


class FileRefusedError(Exception):
    """A landing file that cannot be read as its source's shape; nothing of it was loaded."""

    def __init__(self, file_path: str, problem: str):
        self.file_path = file_path
        self.problem = problem
        super().__init__(f"{file_path}: refused, {problem}; nothing from it was loaded")


class SourceRefusedError(Exception):
    """One or more files of a source were refused; the other files were loaded."""

    def __init__(self, source: str, refusals: list[FileRefusedError]):
        self.refusals = refusals
        lines = "\n".join(f"  - {r}" for r in refusals)
        super().__init__(f"source '{source}': {len(refusals)} file(s) refused:\n{lines}")


@dataclass
class FileResult:
    file_path: str
    action: str  # added | replaced | unchanged | retracted | re-evaluated
    rows_in_file: int
    rows_loaded: int = 0
    rows_rejected: int = 0  # rejected for good, or quarantined
    rows_quarantined: int = 0


@dataclass
class SourceResult:
    source: str
    files: list[FileResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Known:
    """A file as the ledger knows it: its content's hash, its stat then, its records."""

    sha256: str
    stat_key: str | None
    rows_in_file: int


def stat_key(stat: os.stat_result) -> str:
    """What a file's stat says of its content: size, modification and change times, inode."""
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_dev}:{stat.st_ino}"


def current_files(con: duckdb.DuckDBPyConnection, source: Source) -> dict[str, Known]:
    """The source's files the build database holds now, by path."""
    rows = con.execute(
        "select file_path, sha256, stat_key, rows_in_file from ingest.current_files "
        "where source = ?",
        [source.name],
    ).fetchall()
    return {path: Known(sha, key, rows) for path, sha, key, rows in rows}


def write_counted_entry(
    con: duckdb.DuckDBPyConnection, source: Source, entry: dict[str, object]
) -> None:
    """A ledger entry for `entry`'s file (its file, sha, size, rows, action, run_id and
    stat_key), with the rows loaded, rejected and held counted in the tables as they are now."""
    quarantine = quarantine_table(source)
    held = f"(select count(*) from {quarantine} where _source_file = $file)" if quarantine else "0"
    con.execute(
        LEDGER_INSERT + "select $source, $file, $sha, $size, $rows, "
        f"(select count(*) from raw.{source.table} where _source_file = $file), "
        f"(select count(*) from ingest.rejects where file_path = $file) + {held}, {held}, "
        "$action, $run_id, $stat_key",
        {"source": source.name, **entry},
    )


def dependents(
    con: duckdb.DuckDBPyConnection, source: Source, display: str, kept: str
) -> str | None:
    """Which keys of the file's loaded rows, missing from `kept` (the rows that would stay),
    other sources' loaded rows refer to, said in words; None when there are none."""
    for other in SOURCES.values():
        for ref in other.references:
            if ref.table != source.table:
                continue
            dropped = con.execute(
                f"select {ref.column}, count(*) from raw.{other.table} where {ref.column} in ("
                f"select {ref.column} from raw.{source.table} where _source_file = $file "
                f"except select {ref.column} from ({kept})) group by all order by 2 desc, 1",
                {"file": display},
            ).fetchall()
            if dropped:
                named = ", ".join(
                    f"{key} ({rows:,} {other.name} rows)" for key, rows in dropped[:5]
                )
                more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
                return (
                    f"{len(dropped)} {ref.column} value(s) that loaded {other.name} rows depend "
                    f"on: {named}{more}"
                )
    return None


def retract_missing(
    con: duckdb.DuckDBPyConnection, source: Source, present: set[str], run_id: str
) -> tuple[list[FileResult], list[FileRefusedError]]:
    """Remove the rows of every file of the source that is no longer in the landing folder,
    unless other loaded rows depend on them (customers.csv deleted while usage is loaded)."""
    results, refusals = [], []
    for path, known in sorted(current_files(con, source).items()):
        if path in present:
            continue
        if why := dependents(con, source, path, kept="select null where false"):
            refusals.append(FileRefusedError(path, f"it is gone, but {why}; restore it"))
            continue
        with transaction(con):
            for table, column in file_tables(source):
                con.execute(f"delete from {table} where {column} = ?", [path])
            con.execute(
                LEDGER_INSERT + "values (?, ?, ?, 0, 0, 0, 0, 0, 'retracted', ?, null)",
                [source.name, path, known.sha256, run_id],
            )
        log.warning("%s: retracted (no longer in the landing folder); its rows are removed", path)
        results.append(FileResult(path, "retracted", 0))
    return results, refusals
