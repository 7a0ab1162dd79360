"""Opening DuckDB files the way the pipeline needs them."""

from __future__ import annotations

from pathlib import Path

import duckdb

from warehouse.settings import Settings


def connect(
    path: Path, settings: Settings, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with the settings' memory limit and spill folder, so large loads run
    in bounded memory."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        str(path),
        read_only=read_only,
        config={
            "memory_limit": settings.duckdb_memory_limit,
            "temp_directory": str(settings.spill_dir),
            "preserve_insertion_order": True,
        },
    )
