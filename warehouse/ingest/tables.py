"""The tables ingestion writes in the build database, created (and migrated) on every run, and
the one transaction every write of them runs in.

`ingest.current_files` is the ledger's current state, in one place for every reader (the
loader, the summary, the audit, dbt and the Spark export): each file the build database holds
now, with its latest ledger entry.
"""

from __future__ import annotations

import duckdb

from warehouse.ingest.sources import SOURCES, Source

TABLES_DDL = """
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
-- The ledger's current state: each file's latest entry, unless that entry retracted it (the
-- file left the landing folder). Created again on every run, so a build database from before
-- it has it too.
create or replace view ingest.current_files as
select * from ingest.ledger
qualify row_number() over (partition by file_path order by loaded_at desc) = 1
    and action <> 'retracted';
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
-- What each usage file's rows in raw sum to, at the customer mart's grain: written in the
-- transaction that writes the rows (and the quarantine's releases), so the audit compares the
-- marts with it instead of summing all of raw again. A key may have one row per release.
create table if not exists ingest.loaded_totals (
    file_path varchar not null,
    month date not null,
    customer_id varchar not null,
    product_line varchar not null,
    rows bigint not null,
    amount_usd decimal(38, 4) not null
);
"""

# What a usage file's rows contribute, by month and product line: `ingest.file_totals` after
# its source and file, from rows with `usage_date`, `product_line` and `amount_usd`.
FILE_TOTALS = "date_trunc('month', usage_date)::date, product_line, count(*), sum(amount_usd)"

# The same at the customer grain: `ingest.loaded_totals` after its file.
LOADED_TOTALS = (
    "date_trunc('month', usage_date)::date, customer_id, product_line, count(*), sum(amount_usd)"
)


def quarantine_table(source: Source) -> str | None:
    """Where the source's rows wait for a rule about other data to hold, if it has such rules."""
    if source.references or source.unique_across_files:
        return f"ingest.{source.table}_quarantine"
    return None


def file_tables(source: Source) -> list[tuple[str, str]]:
    """Every table holding rows of a source's file, and the column naming the file."""
    tables = [
        (f"raw.{source.table}", "_source_file"),
        ("ingest.rejects", "file_path"),
        ("ingest.file_totals", "file_path"),
        ("ingest.loaded_totals", "file_path"),
    ]
    if quarantine := quarantine_table(source):
        tables.append((quarantine, "_source_file"))
    return tables


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    had = {
        name
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'ingest'"
        ).fetchall()
    }
    con.execute(TABLES_DDL)
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
    # A build database from before these tables: what each loaded file contributed is what raw
    # holds from it.
    if "file_totals" not in had:
        con.execute(
            f"insert into ingest.file_totals select 'usage', _source_file, {FILE_TOTALS} "
            "from raw.usage group by all"
        )
    if "loaded_totals" not in had:
        con.execute(
            f"insert into ingest.loaded_totals select _source_file, {LOADED_TOTALS} "
            "from raw.usage group by all"
        )
