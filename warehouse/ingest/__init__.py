"""Stage 1, ingest: landing files into the `raw` schema of the build database, with a ledger
of every file and a reason for every rejected row."""

from warehouse.ingest.ingest import ingest_source
from warehouse.ingest.landing import scan_file
from warehouse.ingest.ledger import FileRefusedError, SourceRefusedError, SourceResult
from warehouse.ingest.sources import SOURCES

__all__ = [
    "SOURCES",
    "FileRefusedError",
    "SourceRefusedError",
    "SourceResult",
    "ingest_source",
    "scan_file",
]
