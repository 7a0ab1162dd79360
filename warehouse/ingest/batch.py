"""The fast path of a load: every new or changed file of a monthly source read in one parallel
scan and loaded in one transaction, as far as each file is clean.

A clean file is one whose every record loads: no line the CSV reader rejects, no value that is
not exactly of its type, no rule broken, no key twice, no reference missing. That is the usual
file, and proving it needs no reason per row, so the rows go straight from the reader into the
raw table (`clean_sql` decides, from the same patterns as the reasons): each row's typed
values (dates, numbers) as it is read, its text values (ids, names) once per distinct value
after, since a text value is loaded as it is written. Each file is then
checked as a whole inside the transaction: its rows loaded must equal its records counted; a
file that falls short, repeats a key or refers to a missing customer has its rows taken out
again and goes to the per-file path (`load.load_candidate`), which finds the line and reason of
every row not loaded. Only a file whose month no other file holds is read here, so a key can
repeat only within its own file.

The accounting is the per-file path's: one ledger entry per file with rows in = loaded (there
are no rejects), the file's totals by month and product line, and a restated file replacing
exactly its previous rows (restated files take the per-file path, so a refused restatement
keeps them).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import duckdb

from warehouse.ingest.landing import file_month
from warehouse.ingest.load import (
    Candidate,
    FileResult,
    Known,
    _changed_since,
    _rollback,
    clean_sql,
    clean_values_sql,
    rules_hold_sql,
    stat_key,
)
from warehouse.ingest.sources import SOURCES, Source

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


def load_batch(
    con: duckdb.DuckDBPyConnection, source: Source, candidates: list[Candidate], run_id: str
) -> tuple[list[FileResult], list[Candidate]]:
    """Load the candidates' clean files in one read and one transaction; returns the results
    of the files loaded and the candidates left for the per-file path."""
    if not candidates:
        return [], []
    by_display = {c.display: c for c in candidates}
    con.execute(
        "create or replace temp table _batch (path varchar, file varchar, file_month date, "
        "rows_in_file bigint)"
    )
    con.executemany(
        "insert into _batch values (?, ?, ?, ?)",
        [(str(c.path), c.display, file_month(c.path), c.facts.rows_in_file) for c in candidates],
    )
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in source.columns)
    typed = [name for name, type_ in source.columns.items() if type_ != "VARCHAR"]
    con.execute("drop table if exists _reject_errors; drop table if exists _reject_scans")
    con.execute("begin transaction")
    try:
        # Every field as text, as the per-file path reads it; the reader's own rejects are kept
        # so a file with any is sent to the per-file path, which reports them.
        con.execute(
            f"insert into raw.{source.table} "
            f"select {', '.join(source.columns)}, file, $run_id from ("
            f"  select {clean_values_sql(source)}, _batch.file, _batch.file_month "
            f"  from read_csv($paths, columns = {{{columns}}}, header = true, delim = ',', "
            "    quote = '\"', escape = '\"', auto_detect = false, filename = true, "
            "    store_rejects = true, rejects_table = '_reject_errors', "
            "    rejects_scan = '_reject_scans') as parsed "
            "  join _batch on parsed.filename = _batch.path "
            f"  where {clean_sql(source, typed)}"
            f") where {rules_hold_sql(source, 'file_month')}",
            {"paths": [str(c.path) for c in candidates], "run_id": run_id},
        )
        loaded = dict(
            con.execute(
                f"select _source_file, count(*) from raw.{source.table} "
                "where _source_file in (select file from _batch) group by all"
            ).fetchall()
        )
        unclean = {
            c.display for c in candidates if loaded.get(c.display, 0) != c.facts.rows_in_file
        }
        unclean |= _files_with_unclean_text(con, source)
        unclean |= _files_with_repeated_keys(con, source, set(by_display) - unclean)
        unclean |= _files_with_missing_references(con, source)
        unclean |= {c.display for c in candidates if _changed_since(c.path, c.before)}
        if unclean:
            con.execute(
                f"delete from raw.{source.table} where _source_file in (select unnest($files))",
                {"files": sorted(unclean)},
            )
        clean = [c for c in candidates if c.display not in unclean]
        _record_clean(con, source, clean, run_id)
        con.execute("commit")
    except BaseException:
        _rollback(con)
        raise
    finally:
        con.execute("drop table if exists _batch")
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


def _files_with_unclean_text(con: duckdb.DuckDBPyConnection, source: Source) -> set[str]:
    """The batch's files with a text value (an id, a name) that is not exactly allowed, judged
    once per distinct value: they repeat, so this costs one aggregation, not a pattern per row."""
    text = [name for name, type_ in source.columns.items() if type_ == "VARCHAR"]
    if not text:
        return set()
    values = ", ".join(f'"{name}"' for name in text)
    return {
        file
        for (file,) in con.execute(
            f"select distinct _source_file from (select distinct _source_file, {values} "
            f"from raw.{source.table} where _source_file in (select file from _batch)) "
            f"where not ({clean_sql(source, text)})"
        ).fetchall()
    }


def _files_with_repeated_keys(
    con: duckdb.DuckDBPyConnection, source: Source, files: set[str]
) -> set[str]:
    """The files among `files` in which a key repeats. One distinct count of the keys' hashes
    settles the usual case (no repeat); a collision only costs the exact search."""
    if not files:
        return set()
    key = ", ".join(source.key)
    in_files = "_source_file in (select unnest($files))"
    params = {"files": sorted(files)}
    repeats = con.execute(
        f"select count(*) - count(distinct hash(_source_file, {key})) "
        f"from raw.{source.table} where {in_files}",
        params,
    ).fetchone()[0]
    if not repeats:
        return set()
    return {
        file
        for (file,) in con.execute(
            f"select distinct _source_file from raw.{source.table} where {in_files} "
            f"group by _source_file, {key} having count(*) > 1",
            params,
        ).fetchall()
    }


def _files_with_missing_references(con: duckdb.DuckDBPyConnection, source: Source) -> set[str]:
    """The batch's files with a row whose reference (a customer) is not loaded."""
    found: set[str] = set()
    for ref in source.references:
        found |= {
            file
            for (file,) in con.execute(
                f"select distinct _source_file from raw.{source.table} "
                f"anti join raw.{ref.table} using ({ref.column}) "
                "where _source_file in (select file from _batch)"
            ).fetchall()
        }
    return found


def _record_clean(
    con: duckdb.DuckDBPyConnection, source: Source, clean: list[Candidate], run_id: str
) -> None:
    """The clean files' totals by month and product line, and their ledger entries."""
    if not clean:
        return
    files = {"files": [c.display for c in clean]}
    con.execute(
        "insert into ingest.file_totals select $source, _source_file, "
        "date_trunc('month', usage_date)::date, product_line, count(*), sum(amount_usd) "
        f"from raw.{source.table} where _source_file in (select unnest($files)) group by all",
        {"source": source.name, **files},
    )
    con.executemany(
        "insert into ingest.ledger (source, file_path, sha256, size_bytes, rows_in_file, "
        "rows_loaded, rows_rejected, rows_quarantined, action, run_id, stat_key) "
        "values (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
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
