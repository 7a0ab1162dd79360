"""Engines other than the embedded DuckDB default that build the same dbt models."""
