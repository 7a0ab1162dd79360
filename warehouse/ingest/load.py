"""Idempotent loading of landing files into the `raw` schema of the build database.

Each file is one transaction: its rows are read by DuckDB's CSV reader with explicit types,
checked against the source's row rules, and replace exactly the rows an earlier version of the
same file loaded. A ledger row records every load; every input row is either loaded or stored
in `ingest.rejects` with its line number and reason, and the load is rolled back if the two
do not add up to the rows counted independently in the file.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import NoReturn

import duckdb

from warehouse.db import connect, storage_error
from warehouse.ingest.sources import FILE_MONTH, SOURCES, Source
from warehouse.settings import Settings

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
# A line that starts with something other than a line break is a record (blank lines are not).
_RECORD_START = re.compile(rb"\n[^\r\n]")

LEDGER_DDL = """
create schema if not exists raw;
create schema if not exists ingest;
create table if not exists ingest.ledger (
    source varchar not null,
    file_path varchar not null,
    sha256 varchar not null,
    size_bytes bigint not null,
    rows_in_file bigint not null,
    rows_loaded bigint not null,
    rows_rejected bigint not null,
    action varchar not null,
    run_id varchar not null,
    loaded_at timestamptz not null default current_timestamp
);
create table if not exists ingest.refused_files (
    source varchar not null,
    file_path varchar not null,
    problem varchar not null,
    run_id varchar not null,
    refused_at timestamptz not null default current_timestamp
);
create table if not exists ingest.rejects (
    source varchar not null,
    file_path varchar not null,
    sha256 varchar not null,
    line_number bigint not null,
    reason varchar not null,
    raw_line varchar,
    run_id varchar not null
);
"""


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


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size_bytes: int
    rows_in_file: int  # non-blank lines after the header


@dataclass
class FileResult:
    file_path: str
    action: str  # added | replaced | unchanged
    rows_in_file: int
    rows_loaded: int = 0
    rows_rejected: int = 0


@dataclass
class SourceResult:
    source: str
    files: list[FileResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def scan_file(path: Path) -> FileFacts:
    """Hash the file and count its records in one streaming pass (flat memory at any size)."""
    digest = hashlib.sha256()
    size = 0
    records = 0
    previous = b"\n"  # the first line starts a record like any line after a break
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            records += len(_RECORD_START.findall(previous + chunk))
            previous = chunk[-1:]
    return FileFacts(digest.hexdigest(), size, max(records - 1, 0))


def read_header(path: Path, display: str) -> list[str]:
    """The file's header fields, or a refusal when there is no readable header."""
    with path.open("rb") as handle:
        first = handle.readline()
    if not first.strip():
        raise FileRefusedError(display, "the file is empty (no header line)")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefusedError(display, "the header line is not UTF-8 text") from None
    return [name.strip() for name in next(csv.reader([text]))]


def file_month(path: Path) -> date | None:
    match = FILE_MONTH.search(path.name)
    if not match:
        return None
    year, month = int(match[1]), int(match[2])
    return date(year, month, 1) if 1 <= month <= 12 else None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
    for source in SOURCES.values():
        columns = ", ".join(f"{name} {type_}" for name, type_ in source.columns.items())
        con.execute(
            f"create table if not exists raw.{source.table} "
            f"({columns}, _source_file varchar not null, _run_id varchar not null)"
        )


def _csv_options(source: Source) -> str:
    columns = ", ".join(f"'{name}': '{type_}'" for name, type_ in source.columns.items())
    # Explicit everything: the reader must never guess a type or a dialect.
    return (
        f"columns = {{{columns}}}, header = true, delim = ',', quote = '\"', escape = '\"', "
        "auto_detect = false, store_rejects = true, "
        "rejects_table = '_reject_errors', rejects_scan = '_reject_scans', "
        "dateformat = '%Y-%m-%d'"
    )


def _checked_sql(source: Source) -> str:
    """Parsed rows with `_reason`: the first rule the row breaks, or NULL for a good row.

    Duplicates are judged among rows that pass every other rule, so a bad row never makes a
    later good row with the same key look like a duplicate. Where the source's key must be
    unique across its files, a row whose key another file already loaded is rejected too.
    """
    whens = [f"when {col} is null then 'missing {col}'" for col in source.required]
    whens += [f"when {rule.violated_when} then '{rule.reason}'" for rule in source.rules]
    key = ", ".join(source.key)
    elsewhere, join = "", ""
    if source.unique_across_files:
        whens.append(
            "when elsewhere._other_file is not null "
            "then 'duplicate of a row already loaded from ' || elsewhere._other_file"
        )
        # The semi join scans raw.<table> only for the file's keys (DuckDB pushes the file's
        # key range into the scan), not the whole table.
        elsewhere = f"""
        elsewhere as (
            select {key}, min(_source_file) as _other_file
            from raw.{source.table} semi join parsed using ({key})
            where _source_file <> $file
            group by {key}
        ),"""
        join = f"left join elsewhere using ({key})"
    return f"""
        with parsed as (
            -- With insertion order preserved, rowid is the record's position in the file.
            select rowid as _ordinal, * from _parsed
        ),{elsewhere}
        ruled as (
            select parsed.*, case {" ".join(whens)} end as _rule_reason
            from parsed {join}
        )
        select
            * exclude (_rule_reason),
            case
                when _rule_reason is not null then _rule_reason
                when row_number() over (
                    partition by _rule_reason is null, {key} order by _ordinal
                ) > 1 then 'duplicate of an earlier row with the same {key}'
            end as _reason
        from ruled
    """


def _locate_lines(
    path: Path, ordinals: set[int], skip_lines: set[int]
) -> dict[int, tuple[int, str]]:
    """Map ordinals of parsed records (0-based) to their line number and raw text.

    Parsed records are the non-blank lines after the header that the CSV reader did not
    reject; only the few rows that break a rule need this, so it is a short, early-exiting scan.
    """
    found: dict[int, tuple[int, str]] = {}
    ordinal = -1
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 or not raw.strip(b"\r\n") or line_number in skip_lines:
                continue
            ordinal += 1
            if ordinal in ordinals:
                found[ordinal] = (
                    line_number,
                    raw.rstrip(b"\r\n").decode("utf-8", "replace"),
                )
                if len(found) == len(ordinals):
                    break
    return found


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
    problems += [f"unexpected column {name!r}" for name in found if name not in expected]
    if not problems:
        problems = [f"columns in a different order: expected {expected}, found {found}"]
    return "wrong header: " + "; ".join(problems)


def _loaded_twin(con: duckdb.DuckDBPyConnection, file_path: str, sha256: str) -> str | None:
    """Another file whose current version has exactly this content."""
    row = con.execute(
        "select file_path from (select file_path, arg_max(sha256, loaded_at) as sha256 "
        "from ingest.ledger group by file_path) where sha256 = ? and file_path <> ? limit 1",
        [sha256, file_path],
    ).fetchone()
    return row[0] if row else None


def _last_sha(con: duckdb.DuckDBPyConnection, file_path: str) -> str | None:
    row = con.execute(
        "select sha256 from ingest.ledger where file_path = ? order by loaded_at desc limit 1",
        [file_path],
    ).fetchone()
    return row[0] if row else None


def load_file(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    landing: Path,
    path: Path,
    run_id: str,
) -> FileResult:
    """Load one file in one transaction, or skip it when its content is already loaded."""
    display = path.relative_to(landing).as_posix()
    target = path.resolve()
    if not target.is_relative_to(landing.resolve()):
        raise FileRefusedError(display, f"a link to {target}, outside the landing folder")
    facts = scan_file(path)
    previous_sha = _last_sha(con, display)
    if previous_sha == facts.sha256:
        return FileResult(display, "unchanged", facts.rows_in_file)
    if facts.rows_in_file and (twin := _loaded_twin(con, display, facts.sha256)):
        raise FileRefusedError(
            display, f"the same content as {twin}, already loaded (delivered twice?)"
        )

    header_problem = describe_header(read_header(path, display), source.header)
    if header_problem:
        raise FileRefusedError(display, header_problem)

    action = "added" if previous_sha is None else "replaced"
    checked = _checked_sql(source)
    params = {
        name: value
        for name, value in (("file_month", file_month(path)), ("file", display))
        if f"${name}" in checked
    }

    try:
        # Parsing happens in connection-local temp tables, outside the transaction that
        # changes the database: there, rowids are the records' positions 0..n-1 in the file.
        con.execute("drop table if exists _reject_errors; drop table if exists _reject_scans")
        try:
            con.execute(
                "create or replace temp table _parsed as "
                f"select * from read_csv($path, {_csv_options(source)})",
                {"path": str(path)},
            )
        except duckdb.Error as error:
            raise FileRefusedError(display, f"not readable as CSV ({error})") from None
        con.execute(f"create or replace temp table _checked as {checked}", params)
        loaded, rejected = _replace_file_rows(con, source, path, display, facts, action, run_id)
    finally:
        con.execute("drop table if exists _parsed; drop table if exists _checked")
    log.info("%s: %s, %d loaded, %d rejected", display, action, loaded, rejected)
    return FileResult(display, action, facts.rows_in_file, loaded, rejected)


def _replace_file_rows(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    path: Path,
    display: str,
    facts: FileFacts,
    action: str,
    run_id: str,
) -> tuple[int, int]:
    """In one transaction, swap the file's old rows and rejects for the checked ones and
    write its ledger entry; returns (rows loaded, rows rejected)."""
    columns = ", ".join(source.columns)
    con.execute("begin transaction")
    try:
        con.execute(f"delete from raw.{source.table} where _source_file = ?", [display])
        con.execute(
            f"insert into raw.{source.table} select {columns}, $file, $run_id "
            "from _checked where _reason is null order by _ordinal",
            {"file": display, "run_id": run_id},
        )
        loaded = con.execute("select count(*) from _checked where _reason is null").fetchone()[0]

        con.execute("delete from ingest.rejects where file_path = ?", [display])
        # Lines the CSV reader itself rejected (bad types, wrong field count, bad encoding).
        con.execute(
            "insert into ingest.rejects select $source, $file, $sha, line, "
            "string_agg(error_type || coalesce(' in ' || column_name, '') || ': ' "
            "|| error_message, '; '), any_value(trim(csv_line, e'\\r\\n')), $run_id "
            "from _reject_errors group by line",
            {
                "source": source.name,
                "file": display,
                "sha": facts.sha256,
                "run_id": run_id,
            },
        )
        reader_rejected = {
            line for (line,) in con.execute("select distinct line from _reject_errors").fetchall()
        }
        # Rows that parsed but break a row rule; their lines are found in the file itself.
        rule_rejects = con.execute(
            "select _ordinal, _reason from _checked where _reason is not null order by _ordinal"
        ).fetchall()
        if rule_rejects:
            located = _locate_lines(path, {ordinal for ordinal, _ in rule_rejects}, reader_rejected)
            con.executemany(
                "insert into ingest.rejects values (?, ?, ?, ?, ?, ?, ?)",
                [
                    (source.name, display, facts.sha256, located[o][0], why, located[o][1], run_id)
                    for o, why in rule_rejects
                ],
            )
        rejected = len(reader_rejected) + len(rule_rejects)
        if loaded + rejected != facts.rows_in_file:
            raise FileRefusedError(
                display,
                f"{facts.rows_in_file} rows in the file but {loaded} loaded and "
                f"{rejected} rejected (a quoted field spanning lines is not supported)",
            )
        con.execute(
            "insert into ingest.ledger (source, file_path, sha256, size_bytes, rows_in_file, "
            "rows_loaded, rows_rejected, action, run_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                source.name,
                display,
                facts.sha256,
                facts.size_bytes,
                facts.rows_in_file,
                loaded,
                rejected,
                action,
                run_id,
            ],
        )
        con.execute("commit")
    except BaseException:
        # A commit that failed (disk full) has already ended the transaction; the error to
        # report is the commit's, not "cannot rollback - no transaction is active".
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    return loaded, rejected


def landing_files(source: Source, landing: Path) -> list[Path]:
    """The source's files; hidden names (`.usage_2024_03.csv.tmp`, `.part`) are files still
    being written by a producer that renames them when complete, so they wait."""
    return sorted(
        p for p in landing.glob(source.pattern) if p.is_file() and not p.name.startswith(".")
    )


def _raise_storage_error(error: BaseException, settings: Settings, doing: str) -> NoReturn:
    """Re-raise a disk-full, permission or corruption error as one line naming its cause."""
    path = Path(error.filename) if isinstance(error, OSError) and error.filename else None
    described = storage_error(error, path or settings.build_db, doing)
    if described is None:
        raise error
    raise described from error


def ingest_source(name: str, run_id: str, settings: Settings) -> SourceResult:
    """Load every landing file of one source; refused files are reported after the rest load."""
    source = SOURCES[name]
    landing = settings.landing_dir
    result = SourceResult(name)
    refusals: list[FileRefusedError] = []
    with connect(settings.build_db, settings) as con:
        try:
            ensure_schema(con)
        except (duckdb.Error, OSError) as error:
            _raise_storage_error(error, settings, "preparing its schemas")
        for path in landing_files(source, landing):
            try:
                result.files.append(load_file(con, source, landing, path, run_id))
            except (duckdb.Error, OSError) as error:
                _raise_storage_error(error, settings, f"loading {path}")
            except FileRefusedError as refusal:
                log.error("%s", refusal)
                # Recorded apart from the data, so `warehouse summary` can say what was refused.
                con.execute(
                    "insert into ingest.refused_files (source, file_path, problem, run_id) "
                    "values (?, ?, ?, ?)",
                    [name, refusal.file_path, refusal.problem, run_id],
                )
                refusals.append(refusal)
                result.refused.append(refusal.file_path)
    if refusals:
        raise SourceRefusedError(name, refusals)
    return result
