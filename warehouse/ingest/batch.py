"""The fast path of a load: the new files of a monthly source read in parallel scans, a part
of about PART_BYTES at a time, each part written once, straight from the reader into raw, in
one transaction.

A clean file is one whose every record loads: no line the CSV reader rejects, no value that is
not exactly of its type, no rule broken, no key twice, no reference missing. That is the usual
file, and proving it needs no reason per row: the reader parses what it proves exact (dates,
accepted values) and rejects the rest's lines, and the rows that also pass `clean_sql` (built
from the same patterns as the reasons; an id that refers to another source's ids is checked by
finding it there) and every rule are written to raw. Then, in the same transaction, each file
is checked as a whole: its rows in raw must equal its records counted and no key may repeat.
A clean file's rows stay and its ledger entry is written; any other file's rows are taken out
again, and it goes to the per-file path (`load.load_candidate`), which finds the line and reason
of every row not loaded. Only a file whose month no other file holds is read here, so a key can
repeat only within its own file.

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
from warehouse.ingest.load import Candidate, changed_since, csv_options
from warehouse.ingest.rules import clean_sql, clean_values_sql, reader_types, rules_hold_sql
from warehouse.ingest.sources import SOURCES, Source
from warehouse.ingest.tables import LOADED_TOTALS

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
    another candidate's content (the second is refused), a file the reader's compression
    detection might misread (an upper-case or gzip name), and a file with a line too long to
    read (its reject is the scan's)."""
    months = Counter(file_month(c.path) for c in candidates)
    loaded_months = Counter(
        file_month(Path(path)) for path in current if path not in {c.display for c in candidates}
    )
    hashes = Counter(c.facts.sha256 for c in candidates)
    together, alone = [], []
    for c in candidates:
        month = file_month(c.path)
        shared = months[month] > 1 or loaded_months[month] > 0 or hashes[c.facts.sha256] > 1
        plain = c.action == "added" and c.path.name.endswith(".csv") and not c.facts.long_lines
        (together if plain and not shared else alone).append(c)
    return together, alone


# How much CSV one part of a batch reads in one transaction: DuckDB writes a large insert's
# rows to the database file before the commit, but one part's transaction-local state stays
# bounded however many rows land.
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


class _ReadFailed(Exception):
    """The read of a whole part failed (a file the reader cannot read at all, a full disk)."""


def _load_part(
    con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate], run_id: str
) -> tuple[list[FileResult], list[Candidate]]:
    con.execute("create or replace temp table _batch (path varchar, file varchar, file_month date)")
    con.executemany(
        "insert into _batch values (?, ?, ?)",
        [(str(c.path), c.display, file_month(c.path)) for c in candidates],
    )
    con.execute("drop table if exists _reject_errors; drop table if exists _reject_scans")
    # Rows of a file need no order in raw (a reject's line comes from the per-file path), and
    # without one the parallel read holds less in memory.
    con.execute("set preserve_insertion_order = false")
    try:
        with transaction(con):
            try:
                _write_rows(con, source, candidates, run_id)
            except duckdb.Error as error:
                raise _ReadFailed(str(error).splitlines()[0]) from error
            unclean = _unclean_files(con, source, candidates)
            unclean |= {c.display for c in candidates if changed_since(c.path, c.before)}
            if unclean:
                con.execute(
                    f"delete from raw.{source.table} where _source_file in (select unnest($files))",
                    {"files": sorted(unclean)},
                )
            clean = [c for c in candidates if c.display not in unclean]
            if clean:
                _account(con, source, clean, run_id)
    except _ReadFailed as failed:
        # Each file then loads alone, where a file's problem refuses only that file.
        log.info("reading %d files together failed (%s); each loads alone", len(candidates), failed)
        return [], list(candidates)
    finally:
        con.execute("drop table if exists _batch")
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
    return results, [c for c in candidates if c.display in unclean]


def _write_rows(
    con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate], run_id: str
) -> None:
    """In the caller's open transaction, the candidates' rows that pass the clean check,
    straight from the reader into raw (dates and accepted values typed by the reader, the rest
    proven by their patterns), each with its file. A row that does not pass, a line the reader
    rejects and a row whose reference (a customer) is not loaded are left out, so that its file
    falls short of its count."""
    types = reader_types(source)
    per_row = [name for name in source.columns if name not in checked_by_reference(source)]
    references = " and ".join(
        f"{ref.column} in (select {ref.column} from raw.{ref.table})" for ref in source.references
    )
    con.execute(
        f"insert into raw.{source.table} "
        f"select {', '.join(source.columns)}, file, $run_id from ("
        f"  select {clean_values_sql(source, types)}, _batch.file, _batch.file_month "
        f"  from read_csv($paths, {csv_options(types)}, filename = true) as parsed "
        "  join _batch on parsed.filename = _batch.path "
        f"  where {clean_sql(source, per_row, types)}"
        f") where {rules_hold_sql(source, 'file_month')} and {references or 'true'}",
        {"paths": [str(c.path) for c in candidates], "run_id": run_id},
    )


def _unclean_files(
    con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate]
) -> set[str]:
    """The files whose rows in raw are fewer than their records, or in which a key repeats (a
    key cannot repeat across them: each holds its own month). A key's 64-bit hash stands for
    it, which halves the cost of grouping by four columns; two keys sharing a hash (well under
    one file in a million at 4M rows each) only send their file to the per-file path, which
    compares the keys themselves. One file at a time: a file's keys fit in the CPU's caches,
    a part's do not (half the time of one query for the part)."""
    key = ", ".join(source.key)
    unclean = set()
    for c in candidates:
        rows, most = con.execute(
            "select coalesce(sum(n), 0), coalesce(max(n), 1) from ("
            f"  select count(*) as n from raw.{source.table} where _source_file = $file "
            f"  group by hash({key}))",
            {"file": c.display},
        ).fetchone()
        if (rows, most) != (c.facts.rows_in_file, 1):
            unclean.add(c.display)
    return unclean


def _account(
    con: duckdb.DuckDBPyConnection, source: Source, clean: list[Candidate], run_id: str
) -> None:
    """In the caller's open transaction: the clean files' totals (every row of a clean file is
    loaded, so its file totals are its loaded totals summed by month), and their ledger
    entries."""
    files = {"files": [c.display for c in clean]}
    con.execute(
        f"insert into ingest.loaded_totals select _source_file, {LOADED_TOTALS} "
        f"from raw.{source.table} where _source_file in (select unnest($files)) group by all",
        files,
    )
    con.execute(
        "insert into ingest.file_totals select $source, file_path, month, product_line, "
        "sum(rows), sum(amount_usd) from ingest.loaded_totals "
        "where file_path in (select unnest($files)) group by all",
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
