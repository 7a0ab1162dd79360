"""Apache Spark as a second engine for the same dbt models.

DuckDB stays the default. With ``WAREHOUSE_ENGINE=spark`` dbt builds the models on Spark
(``dbt_project/profiles.yml``, target ``spark``): ``WAREHOUSE_SPARK_METHOD=session`` runs Spark
inside dbt's process, ``thrift`` reaches a Spark Thrift server (a cluster, or the local one
:mod:`.thrift` runs from the pyspark wheel). The ``spark`` extra must be installed
(``make spark-setup``).

The pipeline DAG's tasks on Spark, and the module each Spark step lives in::

    ingest ─> export_raw ─> transform ───────────────> load_spark_marts ─> validate ─> publish
              export.py     dbt build, target spark    load.py
                            (macros/raw_parquet.sql)

- :mod:`.export`: DuckDB's raw tables and the ingestion ledger as Parquet under
  ``<data>/raw_parquet/``, partitioned by landing file (``_source_file=<file>/``), rewriting
  only the partitions of files loaded since the last export, so a restated file replaces
  exactly one partition. dbt's ``on-run-start`` hook (``macros/raw_parquet.sql``) registers
  them on Spark as external tables, the sources the staging models read.
- :mod:`.load`: Spark writes its tables as Parquet under ``<data>/spark/warehouse``; the marts
  and the intermediate usage fact are copied from there into the build database, with dbt's
  descriptions from its manifest (dbt-spark persists column comments only for Delta, Hudi and
  Iceberg), so validation and publishing read the Spark-built data exactly as they read
  DuckDB's.
- :mod:`.thrift`: a local Spark Thrift server for the ``thrift`` method.

Every function takes the one :class:`~warehouse.settings.Settings`; the command line builds it
with ``Settings.from_env()``. Run ``python -m warehouse.engines.spark --help``.
(``benchmarks/compare.py`` holds a Spark build's marts against a DuckDB build's.)
"""
