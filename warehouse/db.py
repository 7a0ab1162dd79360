"""Opening DuckDB files the way the pipeline needs them."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

# DuckDB spills to this folder beyond its memory limit, so large loads run in flat memory.
DEFAULT_MEMORY_LIMIT = "4GB"


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with a bounded memory limit and a spill folder beside it."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        str(path),
        read_only=read_only,
        config={
            "memory_limit": os.environ.get("WAREHOUSE_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
            "temp_directory": str(path.parent / "duckdb_tmp"),
            "preserve_insertion_order": True,
        },
    )
    return con
