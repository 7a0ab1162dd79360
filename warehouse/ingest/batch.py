"""The fast path of a load: the new files of a monthly source read in parallel scans, a part
of about PART_BYTES at a time, and each part's clean files appended in one transaction.

A clean file is one whose every record loads: no line the CSV reader rejects, no value that is
not exactly of its type, no rule broken, no key twice, no reference missing. That is the usual
file, and proving it needs no reason per row, so the reader's rows that pass `clean_sql` (built
from the same patterns as the reasons; an id that refers to another source's ids is checked by
finding it there) are staged in a temporary table and each file is checked there as a whole:
its staged rows must equal its records counted, no key may repeat, every customer must be
known. A clean file's rows are appended to raw; any other file goes to the per-file path
(`load.load_candidate`), which finds the line and reason of every row not loaded. Only a file
whose month no other file holds is read here, so a key can repeat only within its own file.

The accounting is the per-file path's: one ledger entry per file with rows in = loaded (there
are no rejects) and the file's totals by month and product line. Restated files take the
per-file path, so a refused restatement keeps its previous rows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb

from warehouse.db import transaction
from warehouse.ingest.landing import file_month
from warehouse.ingest.ledger import LEDGER_INSERT, FileResult, Known, stat_key
from warehouse.ingest.load import Candidate, changed_since
from warehouse.ingest.rules import clean_sql, clean_values_sql, rules_hold_sql
from warehouse.ingest.sources import SOURCES, Source
from warehouse.ingest.tables import FILE_TOTALS

log = logging.getLogger(__name__)


def can_batch(source: Source) -> bool:
    """Whether the source's files may load together: monthly files (a file's rows are all of
    its month) that no other source's rows refer to (removing a row needs no dependents check)."""
    referred = any(ref.table == source.table for s in SOURCES.values() for ref in s.references)
    return source.monthly and not referred


def split_batch(
    candidates: list[Candidate], current: dict[str, Known]
) -> tuple[list[Candidate], list[Candidate]]:
    """The candidates that may load together, and those that must load one by one: a restated
    file (its previous rows stay if the new version is refused), a file whose month another
    file holds (a key may repeat across them, and which loads first matters), a file with
    another candidate's content (the second is refused), and a file the reader's compression
    detection might misread (an upper-case or gzip name)."""
    months = Counter(file_month(c.path) for c in candidates)
    loaded_months = Counter(
        file_month(Path(path)) for path in current if path not in {c.display for c in candidates}
    )
    hashes = Counter(c.facts.sha256 for c in candidates)
    together, alone = [], []
    for c in candidates:
        month = file_month(c.path)
        shared = months[month] > 1 or loaded_months[month] > 0 or hashes[c.facts.sha256] > 1
        plain = c.action == "added" and c.path.name.endswith(".csv")
        (together if plain and not shared else alone).append(c)
    return together, alone


# How much CSV one part of a batch reads: its checked rows are held in memory (spilling beyond
# DuckDB's memory limit) until they are appended, so memory stays flat however many rows land.
PART_BYTES = 512 * 2**20


def parts(candidates: list[Candidate]) -> Iterator[list[Candidate]]:
    """The candidates in consecutive parts of at most PART_BYTES of CSV (or one larger file)."""
    part: list[Candidate] = []
    for c in candidates:
        if part and sum(p.facts.size_bytes for p in part) + c.facts.size_bytes > PART_BYTES:
            yield part
            part = []
        part.append(c)
    if part:
        yield part


def load_batch(
    con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate], run_id: str
) -> tuple[list[FileResult], list[Candidate]]:
    """Load the candidates' clean files, part by part, each part in one read and one
    transaction; returns the results of the files loaded and the candidates left for the
    per-file path."""
    results: list[FileResult] = []
    left: list[Candidate] = []
    for part in parts(candidates):
        loaded, unclean = _load_part(con, source, part, run_id)
        results += loaded
        left += unclean
    return results, left


def checked_by_reference(source: Source) -> set[str]:
    """The source's id columns that refer to another source's id column: a value found there
    passed the same pattern when it loaded, so the reference check stands for the pattern."""
    ids = {(s.table, name) for s in SOURCES.values() for name in s.identifiers}
    return {
        ref.column
        for ref in source.references
        if ref.column in source.identifiers and (ref.table, ref.column) in ids
    }


def _load_part(
    con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate], run_id: str
) -> tuple[list[FileResult], list[Candidate]]:
    # Files are numbered in the part: a small integer is cheaper to carry and group by than
    # a path on every row.
    con.execute(
        "create or replace temp table _batch "
        "(file_id integer, path varchar, file varchar, file_month date)"
    )
    con.executemany(
        "insert into _batch values (?, ?, ?, ?)",
        [(i, str(c.path), c.display, file_month(c.path)) for i, c in enumerate(candidates)],
    )
    con.execute("drop table if exists _reject_errors; drop table if exists _reject_scans")
    # Rows of a file need no order in raw (a reject's line comes from the per-file path), and
    # without one the parallel read holds less in memory.
    con.execute("set preserve_insertion_order = false")
    clean: list[Candidate] = []
    try:
        try:
            _stage(con, source, candidates)
        except duckdb.Error as error:
            # A file the reader cannot read at all (or a full disk) stops the whole read: each
            # file then loads alone, where a file's problem refuses only that file.
            log.info(
                "reading %d files together failed (%s); each loads alone",
                len(candidates),
                str(error).splitlines()[0],
            )
            return [], list(candidates)
        staged = dict(con.execute("select file_id, count(*) from _staged group by all").fetchall())
        unclean = {i for i, c in enumerate(candidates) if staged.get(i, 0) != c.facts.rows_in_file}
        unclean |= _files_with_repeated_keys(con, source)
        unclean |= _files_with_missing_references(con, source)
        unclean |= {i for i, c in enumerate(candidates) if changed_since(c.path, c.before)}
        clean = [c for i, c in enumerate(candidates) if i not in unclean]
        if clean:
            _append_clean(con, source, clean, run_id)
    finally:
        con.execute("drop table if exists _batch; drop table if exists _staged")
        con.execute("set preserve_insertion_order = true")  # as db.connect opens it
    for c in clean:
        log.info(
            "%s: %s, %d loaded (read with %d other files)",
            c.display,
            c.action,
            c.facts.rows_in_file,
            len(candidates) - 1,
        )
    results = [
        FileResult(c.display, c.action, c.facts.rows_in_file, c.facts.rows_in_file) for c in clean
    ]
    return results, [c for i, c in enumerate(candidates) if i in unclean]


def _stage(con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate]) -> None:
    """The candidates' rows that pass the clean check, typed, with their file's number, in the
    temporary table `_staged`, outside the database's transaction, to be checked as files there.
    Every field is read as text, as the per-file path reads it; the reader's own rejects are
    kept, so a file with any falls short of its count and goes to the per-file path."""
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in source.columns)
    per_row = [name for name in source.columns if name not in checked_by_reference(source)]
    con.execute(
        "create or replace temp table _staged as "
        f"select {', '.join(source.columns)}, file_id from ("
        f"  select {clean_values_sql(source)}, _batch.file_id, _batch.file_month "
        f"  from read_csv($paths, columns = {{{columns}}}, header = true, delim = ',', "
        "    quote = '\"', escape = '\"', auto_detect = false, filename = true, "
        "    store_rejects = true, rejects_table = '_reject_errors', "
        "    rejects_scan = '_reject_scans') as parsed "
        "  join _batch on parsed.filename = _batch.path "
        f"  where {clean_sql(source, per_row)}"
        f") where {rules_hold_sql(source, 'file_month')}",
        {"paths": [str(c.path) for c in candidates]},
    )


def _files_with_repeated_keys(con: duckdb.DuckDBPyConnection, source: Source) -> set[int]:
    """The staged files in which a key repeats (a key cannot repeat across them: each holds
    its own month). A key's 64-bit hash stands for it, which halves the cost of grouping by
    four columns; two keys sharing a hash (well under one file in a million at 4M rows each)
    only send their file to the per-file path, which compares the keys themselves."""
    key = ", ".join(source.key)
    return {
        file_id
        for (file_id,) in con.execute(
            f"select distinct file_id from _staged group by file_id, hash({key}) "
            "having count(*) > 1"
        ).fetchall()
    }


def _files_with_missing_references(con: duckdb.DuckDBPyConnection, source: Source) -> set[int]:
    """The staged files with a row whose reference (a customer) is not loaded."""
    found: set[int] = set()
    for ref in source.references:
        found |= {
            file_id
            for (file_id,) in con.execute(
                f"select distinct file_id from _staged anti join raw.{ref.table} "
                f"using ({ref.column})"
            ).fetchall()
        }
    return found


def _append_clean(
    con: duckdb.DuckDBPyConnection, source: Source, clean: list[Candidate], run_id: str
) -> None:
    """In one transaction: the clean files' rows into raw, their totals by month and product
    line, and their ledger entries."""
    files = {"files": [c.display for c in clean]}
    staged = "_staged join _batch using (file_id) where file in (select unnest($files))"
    with transaction(con):
        con.execute(
            f"insert into raw.{source.table} select {', '.join(source.columns)}, file, $run_id "
            f"from {staged}",
            {"run_id": run_id, **files},
        )
        con.execute(
            f"insert into ingest.file_totals select $source, file, {FILE_TOTALS} "
            f"from {staged} group by all",
            {"source": source.name, **files},
        )
        _write_ledger_entries(con, source, clean, run_id)


def _write_ledger_entries(
    con: duckdb.DuckDBPyConnection, source: Source, clean: list[Candidate], run_id: str
) -> None:
    """One ledger entry per clean file: every record loaded, none rejected or held."""
    con.executemany(
        LEDGER_INSERT + "values (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
        [
            (
                source.name,
                c.display,
                c.facts.sha256,
                c.facts.size_bytes,
                c.facts.rows_in_file,
                c.facts.rows_in_file,
                c.action,
                run_id,
                stat_key(c.before),
            )
            for c in clean
        ],
    )
