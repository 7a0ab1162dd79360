"""Loading one landing file of a source in one transaction, so that raw holds exactly its rows.

A file is first examined against the ledger: unchanged (its stat, or else its hash, is the
loaded one's), or a candidate to load, or refused whole when it cannot be read as its source's
shape (naming the file and the problem in one line; nothing of it is loaded). A candidate is
read by DuckDB's CSV reader with every field as text, and each value is converted only when it
is exactly of its type (`rules.py`). A row breaking an intrinsic rule goes to `ingest.rejects`
with its line and reason; a row breaking a rule about other data (an unknown customer, a key
another file holds) goes to the source's quarantine; the rest replace exactly the rows the
file's previous version loaded. The load rolls back unless rows in the file = loaded +
quarantined + rejected.
"""

from __future__ import annotations

import csv
import errno
import gzip
import logging
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.db import transaction
from warehouse.ingest.landing import (
    MAX_LINE_BYTES,
    FileFacts,
    display_path,
    file_month,
    open_bytes,
    scan_file,
)
from warehouse.ingest.ledger import (
    FileRefusedError,
    FileResult,
    Known,
    current_files,
    dependents,
    stat_key,
    write_counted_entry,
)
from warehouse.ingest.rules import checked_sql
from warehouse.ingest.sources import DATE_FORMAT, Source
from warehouse.ingest.tables import FILE_TOTALS, LOADED_TOTALS, file_tables, quarantine_table

log = logging.getLogger(__name__)

# What reading a broken file raises: bad gzip streams, undecodable text, a malformed header.
UNREADABLE = (gzip.BadGzipFile, EOFError, zlib.error, UnicodeError, csv.Error)
# How much of a line too long to read a reject keeps, and how many of a header's unexpected
# columns a refusal names: a hostile file's refusal or reject stays one readable line.
SHOWN_BYTES = 200
SHOWN_NAMES = 5


def read_header(path: Path, display: str) -> list[str]:
    """The file's header fields, or a refusal when there is no readable header."""
    with open_bytes(path) as handle:
        first = handle.readline(MAX_LINE_BYTES + 2)
    if not first.strip():
        raise FileRefusedError(display, "the file is empty (no header line)")
    if not first.endswith(b"\n") and len(first) > MAX_LINE_BYTES:
        raise FileRefusedError(
            display, f"the header line is longer than the maximum of {MAX_LINE_BYTES:,} bytes"
        )
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefusedError(display, "the header line is not UTF-8 text") from None
    return [name.strip() for name in next(csv.reader([text.rstrip("\r\n")]))]


def describe_header(found: list[str], expected: list[str]) -> str | None:
    """What is wrong with a header, naming the columns (schema drift), or None when it is right.

    The policy is to refuse the file: a new, missing or moved column means the producer changed
    the file's contract, which a person must look at before its rows are trusted.
    """
    if found == expected:
        return None
    if len(found) == 1 and any(sep in found[0] for sep in ";\t|"):
        return f"wrong delimiter: the header is one field, {found[0]!r}; fields are comma-separated"
    problems = [f"missing column {name!r}" for name in expected if name not in found]
    unexpected = list(dict.fromkeys(name for name in found if name not in expected))
    problems += [f"unexpected column {name[:40]!r}" for name in unexpected[:SHOWN_NAMES]]
    if len(unexpected) > SHOWN_NAMES:
        problems.append(f"{len(unexpected) - SHOWN_NAMES:,} more unexpected columns")
    if len(found) > len(set(found)):
        problems.append(f"{len(found) - len(set(found)):,} repeated column names")
    if not problems:
        problems = [f"columns in a different order: expected {expected}, found {found}"]
    return "wrong header: " + "; ".join(problems)


def csv_options(types: dict[str, str]) -> str:
    """`read_csv`'s options for a landing file whose columns are read as `types`, its rejects
    kept in `_reject_errors`. Explicit everything: the reader must never guess a type or a
    dialect."""
    columns = ", ".join(
        f"'{name}': '{type_.replace(chr(39), chr(39) * 2)}'" for name, type_ in types.items()
    )
    return (
        f"columns = {{{columns}}}, header = true, delim = ',', quote = '\"', escape = '\"', "
        f"auto_detect = false, dateformat = '{DATE_FORMAT}', max_line_size = {MAX_LINE_BYTES}, "
        "store_rejects = true, "
        "rejects_table = '_reject_errors', rejects_scan = '_reject_scans'"
    )


def _bounded_lines(path: Path) -> Iterator[bytes]:
    """The file's lines, each cut after MAX_LINE_BYTES + 2 bytes: a longer line, which the
    reader never reads, is never held in memory whole either."""
    limit = MAX_LINE_BYTES + 2
    with open_bytes(path) as handle:
        while line := handle.readline(limit):
            if len(line) == limit and not line.endswith(b"\n"):
                while (rest := handle.readline(limit)) and not rest.endswith(b"\n"):
                    pass
            yield line


def _locate_lines(
    path: Path, ordinals: set[int], skip_lines: set[int], long_lines: set[int]
) -> tuple[dict[int, tuple[int, str]], dict[int, str]]:
    """Map ordinals of parsed records (0-based) to their line number and raw text, and the
    long lines' numbers to their first SHOWN_BYTES.

    Parsed records are the non-blank lines after the header that the CSV reader did not
    reject; only the rows rejected or quarantined need this, so it is an early-exiting scan.
    """
    found: dict[int, tuple[int, str]] = {}
    starts: dict[int, str] = {}
    if not ordinals and not long_lines:
        return found, starts
    ordinal = -1
    for line_number, raw in enumerate(_bounded_lines(path), start=1):
        if line_number in long_lines:
            starts[line_number] = raw[:SHOWN_BYTES].decode("utf-8", "replace") + "…"
        elif line_number > 1 and raw.strip(b"\r\n") and line_number not in skip_lines:
            ordinal += 1
            if ordinal in ordinals:
                found[ordinal] = (line_number, raw.rstrip(b"\r\n").decode("utf-8", "replace"))
        if len(found) == len(ordinals) and len(starts) == len(long_lines):
            break
    return found, starts


STILL_WRITTEN = (
    "the file changed while it was read (still being written?); it loads on the next run "
    "once complete"
)


def changed_since(path: Path, before: os.stat_result) -> bool:
    after = os.stat(path)
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


@dataclass(frozen=True)
class Candidate:
    """A new or changed file that passed every check made before its rows are read."""

    path: Path
    display: str
    before: os.stat_result  # its stat before it was read: a change since means still written
    facts: FileFacts
    action: str  # added | replaced


def _regular_file_stat(path: Path, display: str, landing: Path) -> os.stat_result:
    """The stat of the regular file in the landing folder that `path` is or links to; anything
    else (a link loop, to nothing, to a folder, outside the folder; a pipe or device) is
    refused by name, before anything opens it."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        if not path.is_symlink():
            raise FileRefusedError(display, "removed while the folder was read") from None
        missing = os.readlink(path)
        raise FileRefusedError(display, f"a link to {missing}, which does not exist") from None
    except (RuntimeError, OSError) as error:  # a loop: RuntimeError up to Python 3.12
        if isinstance(error, OSError) and error.errno != errno.ELOOP:
            raise
        raise FileRefusedError(display, "a symbolic link that leads back to itself") from None
    if not target.is_relative_to(landing.resolve()):
        raise FileRefusedError(display, f"a link to {target}, outside the landing folder")
    found = os.stat(target)
    if stat.S_ISDIR(found.st_mode):
        raise FileRefusedError(display, f"a link to a folder ({target}), not a file")
    if not stat.S_ISREG(found.st_mode):
        raise FileRefusedError(display, "not a regular file (a pipe, socket or device)")
    return found  # what os.stat(path) gives: it follows the links


def examine_file(
    source: Source, landing: Path, path: Path, current: dict[str, Known]
) -> FileResult | Candidate:
    """The file as the ledger sees it: unchanged (its stat, or else its hash, is the loaded
    one's), or a candidate to load; a file that cannot be loaded is refused."""
    display = display_path(path, landing)
    try:
        before = _regular_file_stat(path, display, landing)
        known = current.get(display)
        if known and known.stat_key == stat_key(before):
            return FileResult(display, "unchanged", known.rows_in_file)
        facts = scan_file(path)
    except OSError as error:  # the landing file's own (permissions): never a transient fault
        raise FileRefusedError(display, f"cannot be read ({error.strerror})") from None
    if known and known.sha256 == facts.sha256:
        return FileResult(display, "unchanged", facts.rows_in_file)
    if problem := facts.line_break_problem():
        raise FileRefusedError(display, problem)
    twin = next(
        (p for p, other in current.items() if other.sha256 == facts.sha256 and p != display), None
    )
    if facts.rows_in_file and twin:
        raise FileRefusedError(
            display, f"the same content as {twin}, already loaded (delivered twice?)"
        )
    header_problem = describe_header(read_header(path, display), source.header)
    if header_problem:
        raise FileRefusedError(display, header_problem)
    return Candidate(path, display, before, facts, "replaced" if known else "added")


def load_file(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    landing: Path,
    path: Path,
    run_id: str,
) -> FileResult:
    """Load one file in one transaction, or skip it when its content is already loaded."""
    examined = examine_file(source, landing, path, current_files(con, source))
    if isinstance(examined, FileResult):
        return examined
    return load_candidate(con, source, examined, run_id)


def load_candidate(
    con: duckdb.DuckDBPyConnection, source: Source, candidate: Candidate, run_id: str
) -> FileResult:
    """Load one examined file in one transaction, with a reason and line for each row not
    loaded."""
    path, display, before, action = (
        candidate.path,
        candidate.display,
        candidate.before,
        candidate.action,
    )
    params = {"file": display, "file_month": file_month(path) if source.monthly else None}
    checked = checked_sql(source)
    try:
        # Parsing happens in connection-local temp tables, outside the transaction that
        # changes the database: there, rowids are the records' positions 0..n-1 in the file.
        con.execute("drop table if exists _reject_errors; drop table if exists _reject_scans")
        try:
            # Every field as text: a value is converted in SQL only when exactly of its type,
            # and a reject's reason says which value is not.
            text = dict.fromkeys(source.columns, "VARCHAR")
            compression = "gzip" if path.name.lower().endswith(".gz") else "none"
            con.execute(
                "create or replace temp table _parsed as select * from read_csv($path, "
                f"{csv_options(text)}, compression = '{compression}')",
                {"path": str(path)},
            )
        except duckdb.Error as error:
            first_line = str(error).strip().splitlines()[0]
            raise FileRefusedError(display, f"not readable as CSV ({first_line})") from None
        con.execute(
            f"create or replace temp table _checked as {checked}",
            {name: value for name, value in params.items() if f"${name}" in checked},
        )
        try:
            with transaction(con):
                counts = _replace_file_rows(con, source, candidate, run_id)
                if changed_since(path, before):
                    raise FileRefusedError(display, STILL_WRITTEN)
        except FileRefusedError:
            if changed_since(path, before):  # a miscount, too, is then the producer's write
                raise FileRefusedError(display, STILL_WRITTEN) from None
            raise
    finally:
        con.execute("drop table if exists _parsed; drop table if exists _checked")
    loaded, quarantined, rejected = counts
    log.info(
        "%s: %s, %d loaded, %d quarantined, %d rejected",
        display,
        action,
        loaded,
        quarantined,
        rejected,
    )
    return FileResult(
        display, action, candidate.facts.rows_in_file, loaded, rejected + quarantined, quarantined
    )


def _replace_file_rows(
    con: duckdb.DuckDBPyConnection, source: Source, candidate: Candidate, run_id: str
) -> tuple[int, int, int]:
    """In the caller's open transaction, swap the file's old rows, quarantined rows and rejects
    for the checked ones and write its ledger entry; returns (rows loaded, quarantined,
    rejected)."""
    path, display, facts = candidate.path, candidate.display, candidate.facts
    columns = ", ".join(source.columns)
    quarantine = quarantine_table(source)
    _refuse_removing_referenced(con, source, display)
    for table, column in file_tables(source):
        con.execute(f"delete from {table} where {column} = ?", [display])
    con.execute(
        f"insert into raw.{source.table} select {columns}, $file, $run_id "
        "from _checked where _reason is null and _hold is null order by _ordinal",
        {"file": display, "run_id": run_id},
    )
    loaded = con.execute(
        "select count(*) from _checked where _reason is null and _hold is null"
    ).fetchone()[0]
    # Lines the CSV reader itself rejected (wrong field counts, bad encoding); a line longer
    # than it reads is rejected by its length, which the scan measured.
    long_lines = dict(facts.long_lines)
    con.execute(
        "insert into ingest.rejects select $source, $file, $sha, line, "
        "string_agg(error_type || coalesce(' in ' || column_name, '') || ': ' "
        "|| error_message, '; '), any_value(trim(csv_line, e'\\r\\n')), $run_id "
        "from _reject_errors where not list_contains($long, line) group by line",
        {
            "source": source.name,
            "file": display,
            "sha": facts.sha256,
            "run_id": run_id,
            "long": list(long_lines),
        },
    )
    reader_rejected = {
        line for (line,) in con.execute("select distinct line from _reject_errors").fetchall()
    } | set(long_lines)
    # Rows that parsed but break a rule or wait in quarantine; their lines are found in
    # the file itself.
    flagged = con.execute(
        "select _ordinal, _reason, _hold from _checked "
        "where _reason is not null or _hold is not null order by _ordinal"
    ).fetchall()
    located, starts = _locate_lines(
        path, {ordinal for ordinal, _, _ in flagged}, reader_rejected, set(long_lines)
    )
    if long_lines:
        con.executemany(
            "insert into ingest.rejects values (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    source.name,
                    display,
                    facts.sha256,
                    line,
                    f"the line is {length:,} bytes, longer than the {MAX_LINE_BYTES:,} the "
                    "reader reads; not read",
                    starts.get(line),
                    run_id,
                )
                for line, length in long_lines.items()
            ],
        )
    rejected = [(o, why) for o, why, _ in flagged if why is not None]
    held = [(o, why) for o, _, why in flagged if why is not None]
    if rejected:
        con.executemany(
            "insert into ingest.rejects values (?, ?, ?, ?, ?, ?, ?)",
            [
                (source.name, display, facts.sha256, located[o][0], why, located[o][1], run_id)
                for o, why in rejected
            ],
        )
    if held:
        con.execute(
            "create or replace temp table _lines (_ordinal bigint, _line_number bigint, "
            "_raw_line varchar, _why varchar)"
        )
        con.executemany(
            "insert into _lines values (?, ?, ?, ?)",
            [(o, located[o][0], located[o][1], why) for o, why in held],
        )
        con.execute(
            f"insert into {quarantine} select {columns}, $file, _line_number, _why, "
            "_raw_line, $run_id from _checked join _lines using (_ordinal) order by _ordinal",
            {"file": display, "run_id": run_id},
        )
    if source.monthly:
        con.execute(
            f"insert into ingest.file_totals select $source, $file, {FILE_TOTALS} "
            "from _checked where _reason is null group by all",
            {"source": source.name, "file": display},
        )
        con.execute(
            f"insert into ingest.loaded_totals select $file, {LOADED_TOTALS} "
            "from _checked where _reason is null and _hold is null group by all",
            {"file": display},
        )
    total_rejected = len(reader_rejected) + len(rejected)
    if loaded + len(held) + total_rejected != facts.rows_in_file:
        raise FileRefusedError(
            display,
            f"{facts.rows_in_file} rows in the file but {loaded} loaded, {len(held)} "
            f"quarantined and {total_rejected} rejected: the reader found other records than "
            "the file's lines (a quoted field spanning lines is not supported)",
        )
    _write_ledger(con, source, candidate, run_id)
    return loaded, len(held), total_rejected


def _write_ledger(
    con: duckdb.DuckDBPyConnection, source: Source, candidate: Candidate, run_id: str
) -> None:
    """The file's ledger entry, with its counts as the tables hold them now."""
    write_counted_entry(
        con,
        source,
        {
            "file": candidate.display,
            "sha": candidate.facts.sha256,
            "size": candidate.facts.size_bytes,
            "rows": candidate.facts.rows_in_file,
            "action": candidate.action,
            "run_id": run_id,
            "stat_key": stat_key(candidate.before),
        },
    )


def _refuse_removing_referenced(
    con: duckdb.DuckDBPyConnection, source: Source, display: str
) -> None:
    """Refuse a new version of a file that drops a key other sources' loaded rows refer to
    (a customer removed while usage depends on it)."""
    kept = "select * from _checked where _reason is null"
    if why := dependents(con, source, display, kept):
        raise FileRefusedError(display, f"it removes {why}; restore them")
