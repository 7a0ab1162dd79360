"""Serving what was published, read-only: SQL (`warehouse query`, `marts`, `status`), the
report the report DAG renders, and the summary of a run."""
