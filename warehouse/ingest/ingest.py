"""One source's ingestion, end to end, so that its raw table always equals what the landing
folder says now. Each run, per source:

1. **Inventory**: every file under the landing folder is the source's, refused, or ignored
   (`landing.py`); ignored files are listed in `ingest.ignored_files`.
2. **Retract**: a file loaded before that is no longer in the folder has its rows removed (a
   ledger entry `retracted` says so, `ledger.py`). A renamed file is a retraction and an
   addition, so a restatement under a new name replaces the old rows instead of piling up
   duplicates.
3. **Load** each new or changed file in one transaction: the clean ones of a monthly source
   together (`batch.py`), the rest one by one (`load.py`), each row loaded, quarantined or
   rejected with its line and reason by the source's rules as SQL (`rules.py`).
4. **Re-evaluate** the quarantine (`quarantine.py`): rows whose rule now holds are loaded, and
   every remaining reason is true now.

A file that cannot be read as its source's shape is refused whole, naming the file and the
problem in one line; nothing of it is loaded and the other files still load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import duckdb

from warehouse.db import connect, storage_error, transaction
from warehouse.ingest.batch import can_batch, load_batch, split_batch
from warehouse.ingest.landing import Inventory, display_path, take_inventory
from warehouse.ingest.ledger import (
    FileRefusedError,
    FileResult,
    SourceRefusedError,
    SourceResult,
    current_files,
    retract_missing,
)
from warehouse.ingest.load import UNREADABLE, Candidate, examine_file, load_file
from warehouse.ingest.quarantine import reevaluate
from warehouse.ingest.sources import SOURCES
from warehouse.ingest.tables import ensure_schema
from warehouse.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def _record_ignored(con: duckdb.DuckDBPyConnection, inventory: Inventory, run_id: str) -> None:
    """The files the landing folder holds that no source reads, each with why (current state)."""
    with transaction(con):
        con.execute("delete from ingest.ignored_files")
        if inventory.ignored:
            con.executemany(
                "insert into ingest.ignored_files values (?, ?, ?)",
                [(path, why, run_id) for path, why in inventory.ignored],
            )


def _raise_storage_error(error: BaseException, settings: Settings, doing: str) -> NoReturn:
    """Re-raise a disk-full, permission or corruption error as one line naming its cause."""
    path = Path(error.filename) if isinstance(error, OSError) and error.filename else None
    described = storage_error(error, path or settings.build_db, doing)
    if described is None:
        raise error
    raise described from error


def ingest_source(name: str, run_id: str, settings: Settings) -> SourceResult:
    """Make the source's raw table equal what the landing folder says now: retract vanished
    files, load new and changed ones, re-evaluate the quarantine. Refused files are reported
    (and the error raised) after everything else is done."""
    source = SOURCES[name]
    landing = settings.landing_dir
    inventory = take_inventory(landing)
    files = inventory.files[name]
    result = SourceResult(name)
    refusals = [
        FileRefusedError(display_path(path, landing), why)
        for path, why in inventory.refused.get(name, [])
    ]

    def each(paths: list[Path], do: Callable[[Path], T]) -> Iterator[T]:
        """`do` for each file; a file's own problem refuses that file, said in one line, and
        never stops the others. (A full disk is not a file's problem: it stops the run.)"""
        for path in paths:
            try:
                yield do(path)
            except FileRefusedError as refusal:
                refusals.append(refusal)
            except UNREADABLE as error:
                problem = f"not readable ({type(error).__name__}: {error})".splitlines()[0]
                refusals.append(FileRefusedError(display_path(path, landing), problem))
            except (duckdb.Error, OSError) as error:
                # Disk full, permission denied, a corrupt database: one line naming the cause.
                _raise_storage_error(error, settings, f"loading {path}")

    with connect(settings.build_db, settings) as con:
        try:
            ensure_schema(con)
            _record_ignored(con, inventory, run_id)
            present = {display_path(path, landing) for path in files}
            present |= {refusal.file_path for refusal in refusals}  # refused now, kept as loaded
            retracted, kept = retract_missing(con, source, present, run_id)
            current = current_files(con, source)
        except (duckdb.Error, OSError) as error:
            _raise_storage_error(error, settings, f"retracting vanished {name} files")
        result.files += retracted
        refusals += kept
        # Each file as the ledger sees it: unchanged, or a candidate to load.
        examined = list(each(files, lambda path: examine_file(source, landing, path, current)))
        result.files += [e for e in examined if isinstance(e, FileResult)]
        candidates = [e for e in examined if isinstance(e, Candidate)]
        together, alone = (
            split_batch(candidates, current) if can_batch(source) else ([], candidates)
        )
        try:
            loaded, left = load_batch(con, source, together, run_id)
        except (duckdb.Error, OSError) as error:
            _raise_storage_error(error, settings, f"loading {len(together)} {name} files")
        result.files += loaded
        # The rest one by one, in the folder's order, each examined again against the ledger
        # as it is now (a file may be the twin of one loaded just before it).
        one_by_one = {c.path for c in alone + left}
        ordered = [path for path in files if path in one_by_one]
        result.files += each(ordered, lambda path: load_file(con, source, landing, path, run_id))
        try:
            result.files += reevaluate(con, source, run_id)
        except (duckdb.Error, OSError) as error:
            _raise_storage_error(error, settings, f"re-evaluating the {name} quarantine")
        for refusal in refusals:
            log.error("%s", refusal)
            # Recorded apart from the data, so `warehouse summary` can say what was refused.
            con.execute(
                "insert into ingest.refused_files (source, file_path, problem, run_id) "
                "values (?, ?, ?, ?)",
                [name, refusal.file_path, refusal.problem, run_id],
            )
            result.refused.append(refusal.file_path)
    if refusals:
        raise SourceRefusedError(name, refusals)
    return result
