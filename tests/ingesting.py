"""The ingestion tests' one harness: landing folders, every source ingested as the DAG orders
them, and what the build database then holds, with every row of every file accounted for."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tests.conftest import SEEDS
from warehouse.ingest import SOURCES, SourceRefusedError, ingest_source
from warehouse.ingest.ledger import FileResult
from warehouse.ingest.tables import quarantine_table
from warehouse.settings import Settings

USAGE_HEADER = "usage_date,customer_id,product_line,model,tokens,amount_usd\n"


def landing_folder(folder: Path, *seeds: str) -> Path:
    """A landing folder holding these seed files (e.g. `customers.csv`) and an empty `spend/`."""
    (folder / "spend").mkdir(parents=True)
    for name in seeds:
        shutil.copy(SEEDS / name, folder / name)
    return folder


def add_customer(landing: Path, customer_id: str, segment: str = "enterprise") -> None:
    with (landing / "customers.csv").open("a") as handle:
        handle.write(f"{customer_id},New Co,New Co,software,{segment},US,true,synthetic\n")


@dataclass
class Ingested:
    """One ingestion of every source: what became of each file of the sources that refused
    none, and every refusal's problem, by file."""

    files: dict[str, FileResult] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def ingest_sources(settings: Settings, run_id: str = "run") -> Ingested:
    """Every source, customers first, as the DAG orders them; a refusal stops no other source."""
    ingested = Ingested()
    for name in SOURCES:
        try:
            result = ingest_source(name, run_id, settings)
        except SourceRefusedError as error:
            ingested.refused |= {r.file_path: r.problem for r in error.refusals}
        else:
            ingested.files |= {f.file_path: f for f in result.files}
    return ingested


def query(settings: Settings, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    """Everything ingestion writes, ordered, to compare a database before and after."""
    tables = [f"raw.{s.table}" for s in SOURCES.values()] + ["ingest.ledger", "ingest.rejects"]
    return {t: query(settings, f"select * from {t} order by all") for t in tables}


def usage_by_file(settings: Settings) -> dict[str, int]:
    return dict(query(settings, "select _source_file, count(*) from raw.usage group by 1"))


def quarantined(settings: Settings) -> list[tuple[str, int, str]]:
    return query(
        settings,
        "select _source_file, _line_number, _reason from ingest.usage_quarantine order by all",
    )


@dataclass
class Accounted:
    """What the build database holds of a source's files now: each current file's rows loaded,
    the lines not loaded (rejected for good, or quarantined until what they depend on arrives)
    with their reasons, and the refused files with their problems."""

    loaded: dict[str, int]
    rejects: dict[str, list[tuple[int, str]]]
    refused: dict[str, str]

    def rejected_lines(self, file: str) -> dict[int, str]:
        return dict(self.rejects.get(file, []))


def accounted(settings: Settings, source: str = "usage") -> Accounted:
    """The source's files as the build database holds them, checking that no row is lost:
    per current file, rows in = loaded + rejected (quarantined ones included), raw holds the
    rows the ledger says were loaded, and raw holds rows of current files only (so none of a
    file refused before it ever loaded)."""
    table = SOURCES[source].table
    held = quarantine_table(SOURCES[source])
    not_loaded = "select file_path, line_number, reason from ingest.rejects where source = $source"
    if held:
        not_loaded += f" union all select _source_file, _line_number, _reason from {held}"
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        refused = dict(
            con.execute(
                "select file_path, problem from ingest.refused_files where source = ?", [source]
            ).fetchall()
        )
        current = con.execute(
            "select file_path, rows_in_file, rows_loaded, rows_rejected from ingest.current_files "
            "where source = ?",
            [source],
        ).fetchall()
        in_raw = dict(
            con.execute(f"select _source_file, count(*) from raw.{table} group by all").fetchall()
        )
        rejects: dict[str, list[tuple[int, str]]] = {}
        for file, line, reason in con.execute(
            f"{not_loaded} order by all", {"source": source}
        ).fetchall():
            rejects.setdefault(file, []).append((line, reason))
    for file, rows_in, rows_loaded, rows_rejected in current:
        assert rows_in == rows_loaded + rows_rejected, file
        assert in_raw.get(file, 0) == rows_loaded, file
        assert len(rejects.get(file, [])) == rows_rejected, file
    assert set(in_raw) <= {file for file, *_ in current}
    return Accounted({file: loaded for file, _, loaded, _ in current}, rejects, refused)
