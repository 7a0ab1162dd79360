"""The quarantine judged again on every run: a row held for a rule about other data (an unknown
customer, a key another file holds) loads as soon as the rule holds, with no re-delivery of its
file, and every row still held keeps a reason that is true now. Each file whose rows changed
gets a ledger entry `re-evaluated`, so dbt rebuilds it.
"""

from __future__ import annotations

import logging

import duckdb

from warehouse.db import transaction
from warehouse.ingest.ledger import FileResult, write_counted_entry
from warehouse.ingest.sources import Source
from warehouse.ingest.tables import LOADED_TOTALS, quarantine_table

log = logging.getLogger(__name__)


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
    with transaction(con):
        con.execute(
            f"insert into raw.{source.table} select {columns}, _source_file, $run_id "
            "from _judged where _now is null order by _source_file, _line_number",
            {"run_id": run_id},
        )
        if source.monthly:
            con.execute(
                f"insert into ingest.loaded_totals select _source_file, {LOADED_TOTALS} "
                "from _judged where _now is null group by all"
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
                "select sha256, size_bytes, rows_in_file, stat_key from ingest.current_files "
                "where file_path = ?",
                [path],
            ).fetchone()
            write_counted_entry(
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
                "select rows_loaded, rows_rejected, rows_quarantined from ingest.current_files "
                "where file_path = ?",
                [path],
            ).fetchone()
            results.append(FileResult(path, "re-evaluated", rows, loaded, rejected, held))
    log.info("%s quarantine re-evaluated: %d file(s) changed", source.name, len(results))
    return results
