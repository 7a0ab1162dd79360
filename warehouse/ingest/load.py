"""Loading the landing folder into the `raw` schema of the build database, so that `raw` always
equals what the folder says now.

Each run, per source:

1. **Inventory**: every file under the landing folder is the source's, refused, or ignored
   (`landing.py`); ignored files are listed in `ingest.ignored_files`.
2. **Retract**: a file loaded before that is no longer in the folder has its rows removed (a
   ledger entry `retracted` says so). A renamed file is a retraction and an addition, so a
   restatement under a new name replaces the old rows instead of piling up duplicates.
3. **Load** each new or changed file in one transaction: DuckDB's CSV reader reads every field
   as text, and each value is converted only when it is exactly of its type. A row breaking an
   intrinsic rule goes to `ingest.rejects` with its line and reason; a row breaking a rule
   about other data (an unknown customer, a key another file holds) goes to the source's
   quarantine; the rest replace exactly the rows the file's previous version loaded. The load
   rolls back unless rows in the file = loaded + quarantined + rejected.
4. **Re-evaluate** the quarantine: rows whose rule now holds (the customer arrived, the file
   holding the key was restated or retracted) are loaded, and every remaining reason is true
   now. Their files get a ledger entry `re-evaluated`, so dbt rebuilds them.

A file that cannot be read as its source's shape is refused whole, naming the file and the
problem in one line; nothing of it is loaded and the other files still load.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import logging
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from warehouse.ingest.landing import (
    FileFacts,
    display_path,
    file_month,
    open_bytes,
    scan_file,
)
from warehouse.ingest.sources import DECIMAL, EXACT_TYPES, IDENTIFIER, SOURCES, Source

log = logging.getLogger(__name__)

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
alter table ingest.ledger add column if not exists rows_quarantined bigint default 0;
-- The file's size, times and inode when it was loaded: a file whose stat is unchanged is not
-- read again (a rewrite changes its ctime, which no program can set back).
alter table ingest.ledger add column if not exists stat_key varchar;
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
create table if not exists ingest.ignored_files (
    file_path varchar not null,
    reason varchar not null,
    run_id varchar not null
);
-- What each loaded usage file contributes, by month and product line (its rows that break no
-- intrinsic rule: loaded, or quarantined until they can be), kept for the audit's
-- reconciliation of the landing folder with raw, the usage fact and the marts.
create table if not exists ingest.file_totals (
    source varchar not null,
    file_path varchar not null,
    month date not null,
    product_line varchar not null,
    rows bigint not null,
    amount_usd decimal(38, 4) not null
);
"""

# The ledger's current state: each file's latest entry, unless that entry retracted it.
CURRENT_FILES_SQL = """
    select * from ingest.ledger
    qualify row_number() over (partition by file_path order by loaded_at desc) = 1
"""

# A ledger entry's columns (`loaded_at` is the time of the write).
LEDGER_INSERT = (
    "insert into ingest.ledger (source, file_path, sha256, size_bytes, rows_in_file, "
    "rows_loaded, rows_rejected, rows_quarantined, action, run_id, stat_key) "
)
# What a usage file's rows contribute, by month and product line: `ingest.file_totals` after
# its source and file, from rows with `usage_date`, `product_line` and `amount_usd`.
FILE_TOTALS = "date_trunc('month', usage_date)::date, product_line, count(*), sum(amount_usd)"

# What reading a broken file raises: bad gzip streams, undecodable text, a malformed header.
UNREADABLE = (gzip.BadGzipFile, EOFError, zlib.error, UnicodeError, csv.Error)

# Control characters (but tab) have no place in a value: a NUL byte in a name is a broken
# export, not data.
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f]"


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


def quarantine_table(source: Source) -> str | None:
    """Where the source's rows wait for a rule about other data to hold, if it has such rules."""
    if source.references or source.unique_across_files:
        return f"ingest.{source.table}_quarantine"
    return None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    had_totals = con.execute(
        "select count(*) from duckdb_tables() where schema_name = 'ingest' "
        "and table_name = 'file_totals'"
    ).fetchone()[0]
    con.execute(LEDGER_DDL)
    for source in SOURCES.values():
        columns = ", ".join(f"{name} {type_}" for name, type_ in source.columns.items())
        con.execute(
            f"create table if not exists raw.{source.table} "
            f"({columns}, _source_file varchar not null, _run_id varchar not null)"
        )
        if table := quarantine_table(source):
            con.execute(
                f"create table if not exists {table} ({columns}, _source_file varchar not null, "
                "_line_number bigint not null, _reason varchar not null, _raw_line varchar, "
                "_run_id varchar not null)"
            )
    if not had_totals:
        # A build database from before the file totals: what each loaded file contributed is
        # what raw holds from it.
        con.execute(
            f"insert into ingest.file_totals select 'usage', _source_file, {FILE_TOTALS} "
            "from raw.usage group by all"
        )


def read_header(path: Path, display: str) -> list[str]:
    """The file's header fields, or a refusal when there is no readable header."""
    with open_bytes(path) as handle:
        first = handle.readline()
    if not first.strip():
        raise FileRefusedError(display, "the file is empty (no header line)")
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
    problems += [f"unexpected column {name!r}" for name in found if name not in expected]
    if not problems:
        problems = [f"columns in a different order: expected {expected}, found {found}"]
    return "wrong header: " + "; ".join(problems)


def _csv_options(source: Source, path: Path) -> str:
    # Every field as text: values are converted in SQL only when exactly of their type, so the
    # reader never rounds `1000000.5` into a BIGINT or reads `0x10` as 16. Explicit everything:
    # the reader must never guess a type or a dialect.
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in source.columns)
    compression = "gzip" if path.name.lower().endswith(".gz") else "none"
    return (
        f"columns = {{{columns}}}, header = true, delim = ',', quote = '\"', escape = '\"', "
        f"auto_detect = false, compression = '{compression}', store_rejects = true, "
        "rejects_table = '_reject_errors', rejects_scan = '_reject_scans'"
    )


def _shown(column_sql: str) -> str:
    """SQL for a value as a reject reason shows it: quoted, cut at 40 characters."""
    return (
        f"'''' || left({column_sql}, 40) || case when length({column_sql}) > 40 "
        "then '…' else '' end || ''''"
    )


def _conversion(name: str, type_: str) -> tuple[str, list[str]]:
    """The SQL of a column's typed value from its text, and the `when` branches giving the
    reason for text that is not exactly of the type (evaluated only on non-blank text)."""
    text = f'"{name}"'
    if type_ == "VARCHAR":
        # A blank value is a missing one: a parent company of two spaces is not a company.
        value = f"case when trim({text}) = '' then null else {text} end"
        return value, [
            f"when regexp_matches({text}, '{_CONTROL}') then '{name} holds a control character'"
        ]
    value = f"try_cast({text} as {type_})"
    if decimal := DECIMAL.fullmatch(type_):
        whole, scale = int(decimal[1]) - int(decimal[2]), int(decimal[2])
        return value, [
            f"when regexp_full_match({text}, '-?[0-9]+\\.[0-9]{{{scale + 1},}}') "
            f"then '{name} has more than {scale} decimal places: ' || {_shown(text)}",
            f"when not regexp_full_match({text}, '-?[0-9]{{1,{whole}}}(\\.[0-9]{{1,{scale}}})?') "
            f"then '{name} is not a decimal number of at most {whole} digits: ' || {_shown(text)}",
        ]
    pattern, description = EXACT_TYPES[type_]
    return value, [
        f"when not regexp_full_match({text}, '{pattern}') or {value} is null "
        f"then '{name} is not {description}: ' || {_shown(text)}"
    ]


def clean_sql(source: Source, columns: list[str]) -> str:
    """SQL true for a parsed row (its fields as text) whose values in `columns` are exactly of
    their types and allowed: what `_checked_sql` would give no type reason, found without
    finding reasons.

    A sufficient condition built from the same patterns, cheap enough for every row of a large
    load; a row it does not pass goes to `_checked_sql`, which says why.
    """
    conditions = []
    for name in columns:
        type_, text = source.columns[name], f'"{name}"'
        if name in source.identifiers:
            exact = f"regexp_full_match({text}, '{IDENTIFIER[0]}')"
        elif name in source.accepted:
            listed = ", ".join(f"'{v}'" for v in source.accepted[name])
            exact = f"{text} in ({listed})"
        elif type_ == "VARCHAR":
            # Not blank, and no control character (the class of _CONTROL, negated).
            exact = f"trim({text}) <> '' and regexp_full_match({text}, '[^{_CONTROL[1:-1]}]*')"
        elif decimal := DECIMAL.fullmatch(type_):
            whole, scale = int(decimal[1]) - int(decimal[2]), int(decimal[2])
            exact = f"regexp_full_match({text}, '-?[0-9]{{1,{whole}}}(\\.[0-9]{{1,{scale}}})?')"
        else:
            pattern = EXACT_TYPES[type_][0]
            value = _conversion(name, type_)[0]
            exact = f"regexp_full_match({text}, '{pattern}') and {value} is not null"
        conditions.append(exact if name in source.required else f"{text} is null or ({exact})")
    return " and ".join(f"({condition})" for condition in conditions)


def clean_values_sql(source: Source) -> str:
    """The select list of a clean row's typed values, by column name: a clean row's text is
    its value (never blank), cast when the column is not text (`try_cast`: a filter on the
    values may be evaluated before the one on the text)."""
    return ", ".join(
        f'"{name}" as {name}' if type_ == "VARCHAR" else f'try_cast("{name}" as {type_}) as {name}'
        for name, type_ in source.columns.items()
    )


def rules_hold_sql(source: Source, file_month: str) -> str:
    """SQL true for a row of typed values that breaks none of the source's row rules, with
    `file_month` the SQL of the month named in its file's name."""
    return (
        " and ".join(
            f"not coalesce({rule.violated_when.replace('$file_month', file_month)}, false)"
            for rule in source.rules
        )
        or "true"
    )


def _checked_sql(source: Source) -> str:
    """Parsed rows with their typed values, `_reason` (the first intrinsic rule the row breaks,
    or NULL) and `_hold` (for a row without `_reason`: the first rule about other data it
    breaks, or NULL for a row to load).

    Duplicates within the file are judged among rows that break no rule, so a bad row never
    makes a later good row with the same key look like a duplicate.
    """
    values, whens = [], []
    for name in source.required:
        whens.append(f"when nullif(trim(\"{name}\"), '') is null then 'missing {name}'")
    for name, type_ in source.columns.items():
        value, reasons = _conversion(name, type_)
        values.append(f"{value} as {name}")
        for reason in reasons:
            condition, outcome = reason.removeprefix("when ").split(" then ", 1)
            whens.append(f'when "{name}" is not null and ({condition}) then {outcome}')
    for name in source.identifiers:
        pattern, description = IDENTIFIER
        whens.append(
            f"when not regexp_full_match(\"{name}\", '{pattern}') "
            f"then '{name} must be {description}: ' || {_shown(chr(34) + name + chr(34))}"
        )
    for name, accepted in source.accepted.items():
        listed = ", ".join(f"'{v}'" for v in accepted)
        whens.append(
            f"when \"{name}\" not in ({listed}) then '{name} ' || "
            f"{_shown(chr(34) + name + chr(34))} || ' is not one of {', '.join(accepted)}'"
        )
    rules = " ".join(f"when {rule.violated_when} then '{rule.reason}'" for rule in source.rules)
    key = ", ".join(source.key)
    holds = [
        f"when {ref.column} not in (select {ref.column} from raw.{ref.table}) then '{ref.reason}'"
        for ref in source.references
    ]
    elsewhere, join, other = "", "", "null"
    if source.unique_across_files:
        holds.append(
            "when _other_file is not null "
            "then 'duplicate of a row already loaded from ' || _other_file"
        )
        # The semi join scans raw.<table> only for the file's keys (DuckDB pushes the file's
        # key range into the scan), not the whole table.
        elsewhere = f"""
        elsewhere as (
            select {key}, min(_source_file) as _other_file
            from raw.{source.table} semi join valued using ({key})
            where _source_file <> $file
            group by {key}
        ),"""
        join, other = f"left join elsewhere using ({key})", "elsewhere._other_file"
    hold = f"case {' '.join(holds)} end" if holds else "null"
    return f"""
        with parsed as (
            -- With insertion order preserved, rowid is the record's position in the file.
            select rowid as _ordinal, * from _parsed
        ),
        typed as (
            select _ordinal, case {" ".join(whens)} end as _type_reason, {", ".join(values)}
            from parsed
        ),
        valued as (
            -- Rules judge typed values, so only rows whose values are all exact.
            select * exclude (_type_reason),
                coalesce(_type_reason, {f"case {rules} end" if rules else "null"}) as _rule_reason
            from typed
        ),{elsewhere}
        ruled as (
            select valued.*, {other} as _other_file,
                case
                    when _rule_reason is not null then _rule_reason
                    when row_number() over (
                        partition by _rule_reason is null, {key} order by _ordinal
                    ) > 1 then 'duplicate of an earlier row with the same {key}'
                end as _reason
            from valued {join}
        )
        select * exclude (_rule_reason),
            case when _reason is null then {hold} end as _hold
        from ruled
    """


def _locate_lines(
    path: Path, ordinals: set[int], skip_lines: set[int]
) -> dict[int, tuple[int, str]]:
    """Map ordinals of parsed records (0-based) to their line number and raw text.

    Parsed records are the non-blank lines after the header that the CSV reader did not
    reject; only the rows rejected or quarantined need this, so it is an early-exiting scan.
    """
    found: dict[int, tuple[int, str]] = {}
    if not ordinals:
        return found
    ordinal = -1
    with open_bytes(path) as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 or not raw.strip(b"\r\n") or line_number in skip_lines:
                continue
            ordinal += 1
            if ordinal in ordinals:
                found[ordinal] = (line_number, raw.rstrip(b"\r\n").decode("utf-8", "replace"))
                if len(found) == len(ordinals):
                    break
    return found


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
    """The source's files the build database holds now (not retracted), by path."""
    rows = con.execute(
        f"select file_path, sha256, stat_key, rows_in_file, action from ({CURRENT_FILES_SQL}) "
        "where source = ?",
        [source.name],
    ).fetchall()
    return {
        path: Known(sha, key, rows)
        for path, sha, key, rows, action in rows
        if action != "retracted"
    }


def retract_missing(
    con: duckdb.DuckDBPyConnection, source: Source, present: set[str], run_id: str
) -> tuple[list[FileResult], list[FileRefusedError]]:
    """Remove the rows of every file of the source that is no longer in the landing folder,
    unless other loaded rows depend on them (customers.csv deleted while usage is loaded)."""
    results, refusals = [], []
    for path, known in sorted(current_files(con, source).items()):
        if path in present:
            continue
        if dependents := _dependents(con, source, path, kept="select null where false"):
            refusals.append(FileRefusedError(path, f"it is gone, but {dependents}; restore it"))
            continue
        con.execute("begin transaction")
        try:
            for table, column in _file_tables(source):
                con.execute(f"delete from {table} where {column} = ?", [path])
            con.execute(
                LEDGER_INSERT + "values (?, ?, ?, 0, 0, 0, 0, 0, 'retracted', ?, null)",
                [source.name, path, known.sha256, run_id],
            )
            con.execute("commit")
        except BaseException:
            rollback(con)
            raise
        log.warning("%s: retracted (no longer in the landing folder); its rows are removed", path)
        results.append(FileResult(path, "retracted", 0))
    return results, refusals


STILL_WRITTEN = (
    "the file changed while it was read (still being written?); it loads on the next run "
    "once complete"
)


def changed_since(path: Path, before: os.stat_result) -> bool:
    after = os.stat(path)
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


def _file_tables(source: Source) -> list[tuple[str, str]]:
    """Every table holding rows of a source's file, and the column naming the file."""
    tables = [
        (f"raw.{source.table}", "_source_file"),
        ("ingest.rejects", "file_path"),
        ("ingest.file_totals", "file_path"),
    ]
    if quarantine := quarantine_table(source):
        tables.append((quarantine, "_source_file"))
    return tables


@dataclass(frozen=True)
class Candidate:
    """A new or changed file that passed every check made before its rows are read."""

    path: Path
    display: str
    before: os.stat_result  # its stat before it was read: a change since means still written
    facts: FileFacts
    action: str  # added | replaced


def examine_file(
    source: Source, landing: Path, path: Path, current: dict[str, Known]
) -> FileResult | Candidate:
    """The file as the ledger sees it: unchanged (its stat, or else its hash, is the loaded
    one's), or a candidate to load; a file that cannot be loaded is refused."""
    display = display_path(path, landing)
    target = path.resolve()
    if not target.is_relative_to(landing.resolve()):
        raise FileRefusedError(display, f"a link to {target}, outside the landing folder")
    before = os.stat(path)
    known = current.get(display)
    if known and known.stat_key == stat_key(before):
        return FileResult(display, "unchanged", known.rows_in_file)
    facts = scan_file(path)
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
    checked = _checked_sql(source)
    try:
        # Parsing happens in connection-local temp tables, outside the transaction that
        # changes the database: there, rowids are the records' positions 0..n-1 in the file.
        con.execute("drop table if exists _reject_errors; drop table if exists _reject_scans")
        try:
            con.execute(
                "create or replace temp table _parsed as "
                f"select * from read_csv($path, {_csv_options(source, path)})",
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
            counts = _replace_file_rows(con, source, candidate, run_id)
        except FileRefusedError:
            if changed_since(path, before):  # the miscount is the producer's write
                raise FileRefusedError(display, STILL_WRITTEN) from None
            raise
        if changed_since(path, before):
            con.execute("rollback")
            raise FileRefusedError(display, STILL_WRITTEN)
        con.execute("commit")
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
    """In one transaction (left open for the caller to commit), swap the file's old rows,
    quarantined rows and rejects for the checked ones and write its ledger entry; returns
    (rows loaded, quarantined, rejected)."""
    path, display, facts = candidate.path, candidate.display, candidate.facts
    columns = ", ".join(source.columns)
    quarantine = quarantine_table(source)
    con.execute("begin transaction")
    try:
        _refuse_removing_referenced(con, source, display)
        for table, column in _file_tables(source):
            con.execute(f"delete from {table} where {column} = ?", [display])
        con.execute(
            f"insert into raw.{source.table} select {columns}, $file, $run_id "
            "from _checked where _reason is null and _hold is null order by _ordinal",
            {"file": display, "run_id": run_id},
        )
        loaded = con.execute(
            "select count(*) from _checked where _reason is null and _hold is null"
        ).fetchone()[0]
        # Lines the CSV reader itself rejected (wrong field counts, bad encoding, long lines).
        con.execute(
            "insert into ingest.rejects select $source, $file, $sha, line, "
            "string_agg(error_type || coalesce(' in ' || column_name, '') || ': ' "
            "|| error_message, '; '), any_value(trim(csv_line, e'\\r\\n')), $run_id "
            "from _reject_errors group by line",
            {"source": source.name, "file": display, "sha": facts.sha256, "run_id": run_id},
        )
        reader_rejected = {
            line for (line,) in con.execute("select distinct line from _reject_errors").fetchall()
        }
        # Rows that parsed but break a rule or wait in quarantine; their lines are found in
        # the file itself.
        flagged = con.execute(
            "select _ordinal, _reason, _hold from _checked "
            "where _reason is not null or _hold is not null order by _ordinal"
        ).fetchall()
        located = _locate_lines(path, {ordinal for ordinal, _, _ in flagged}, reader_rejected)
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
        total_rejected = len(reader_rejected) + len(rejected)
        if loaded + len(held) + total_rejected != facts.rows_in_file:
            raise FileRefusedError(
                display,
                f"{facts.rows_in_file} rows in the file but {loaded} loaded, {len(held)} "
                f"quarantined and {total_rejected} rejected (a quoted field spanning lines is "
                "not supported)",
            )
        _write_ledger(con, source, candidate, run_id)
    except BaseException:
        rollback(con)
        raise
    return loaded, len(held), total_rejected


def _write_ledger(
    con: duckdb.DuckDBPyConnection, source: Source, candidate: Candidate, run_id: str
) -> None:
    """The file's ledger entry, with its counts as the tables hold them now."""
    _write_counted_ledger_entry(
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


def _write_counted_ledger_entry(
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


def _refuse_removing_referenced(
    con: duckdb.DuckDBPyConnection, source: Source, display: str
) -> None:
    """Refuse a new version of a file that drops a key other sources' loaded rows refer to
    (a customer removed while usage depends on it)."""
    kept = "select * from _checked where _reason is null"
    if dependents := _dependents(con, source, display, kept):
        raise FileRefusedError(display, f"it removes {dependents}; restore them")


def _dependents(
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


def reevaluate(con: duckdb.DuckDBPyConnection, source: Source, run_id: str) -> list[FileResult]:
    """Judge every quarantined row of the source again: load the rows whose rule holds now,
    and keep every other row's reason true. Returns the files whose rows changed."""
    quarantine = quarantine_table(source)
    if quarantine is None:
        return []
    key = ", ".join(source.key)
    holds = [
        f"when q.{ref.column} not in (select {ref.column} from raw.{ref.table}) then '{ref.reason}'"
        for ref in source.references
    ]
    owners, join = "", ""
    if source.unique_across_files:
        holds.append(
            "when owners._owner is not null "
            "then 'duplicate of a row already loaded from ' || owners._owner"
        )
        # The loaded row that holds each quarantined key, if any.
        owners = (
            f"owners as (select {key}, min(_source_file) as _owner from raw.{source.table} "
            f"semi join {quarantine} using ({key}) group by {key}),"
        )
        join = f"left join owners using ({key})"
    con.execute(
        f"""
        create or replace temp table _judged as
        with {owners}
        judged as (
            select q.*, case {" ".join(holds)} end as _now
            from {quarantine} as q {join}
        )
        select * exclude (_now),
            -- Of rows free to load with the same key, the first by file and line loads.
            coalesce(_now, case when row_number() over (
                partition by _now is null, {key} order by _source_file, _line_number) > 1
                then 'duplicate of a row already loaded from ' || first_value(_source_file) over (
                    partition by _now is null, {key} order by _source_file, _line_number)
            end) as _now
        from judged
        """
    )
    changed = [
        path
        for (path,) in con.execute(
            "select distinct _source_file from _judged where _now is null or _now <> _reason"
        ).fetchall()
    ]
    if not changed:
        return []
    columns = ", ".join(source.columns)
    results = []
    con.execute("begin transaction")
    try:
        con.execute(
            f"insert into raw.{source.table} select {columns}, _source_file, $run_id "
            "from _judged where _now is null order by _source_file, _line_number",
            {"run_id": run_id},
        )
        con.execute(
            f"delete from {quarantine} as q using _judged as j "
            "where q._source_file = j._source_file and q._line_number = j._line_number "
            "and j._now is null"
        )
        con.execute(
            f"update {quarantine} as q set _reason = j._now from _judged as j "
            "where q._source_file = j._source_file and q._line_number = j._line_number "
            "and j._now <> j._reason"
        )
        for path in changed:
            sha, size, rows, key = con.execute(
                f"select sha256, size_bytes, rows_in_file, stat_key from ({CURRENT_FILES_SQL}) "
                "where file_path = ?",
                [path],
            ).fetchone()
            _write_counted_ledger_entry(
                con,
                source,
                {
                    "file": path,
                    "sha": sha,
                    "size": size,
                    "rows": rows,
                    "action": "re-evaluated",
                    "run_id": run_id,
                    "stat_key": key,
                },
            )
            loaded, rejected, held = con.execute(
                f"select rows_loaded, rows_rejected, rows_quarantined from ({CURRENT_FILES_SQL}) "
                "where file_path = ?",
                [path],
            ).fetchone()
            results.append(FileResult(path, "re-evaluated", rows, loaded, rejected, held))
        con.execute("commit")
    except BaseException:
        rollback(con)
        raise
    log.info("%s quarantine re-evaluated: %d file(s) changed", source.name, len(results))
    return results


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back after an error. A commit that failed (disk full) has already ended the
    transaction: the error to report is the commit's, not "cannot rollback - no transaction is
    active", so a failing rollback is silent."""
    with contextlib.suppress(duckdb.Error):
        con.execute("rollback")
