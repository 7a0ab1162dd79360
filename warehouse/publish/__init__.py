"""Stage 4, publish: an audited build's marts into `warehouse.duckdb`, Parquet exports and a
manifest, each replaced atomically, so readers see the old publish or the new one."""

from warehouse.publish.release import PUBLISHED_STORAGE_VERSION, publish, read_manifest

__all__ = ["PUBLISHED_STORAGE_VERSION", "publish", "read_manifest"]
