{#- The sources (raw.customers, raw.earnings, raw.usage, ingest.ledger, ingest.current_files) on
    engines that do not read the build database: the Parquet copies ingestion writes under
    `<data>/raw_parquet/<schema>/<table>/`, the raw tables partitioned by landing file
    (warehouse/engines/spark/export.py), registered as external tables at the start of every run.
    WAREHOUSE_RAW_PARQUET_LOCATION overrides the folder (a path or URI the cluster reads).
    DuckDB reads its own tables: nothing to do. -#}
{% macro register_raw_sources() -%}
    {{ return(adapter.dispatch('register_raw_sources', 'ai_revenue')()) }}
{%- endmacro %}

{% macro default__register_raw_sources() -%}
{%- endmacro %}

{% macro raw_parquet_location() -%}
    {{- env_var('WAREHOUSE_RAW_PARQUET_LOCATION', env_var('WAREHOUSE_DATA_DIR', '../data') ~ '/raw_parquet') -}}
{%- endmacro %}

{% macro spark__register_raw_sources() -%}
    {%- if execute -%}
        {#- Landing file names are partition values: never let Spark read one as a number. -#}
        {%- do run_query('set spark.sql.sources.partitionColumnTypeInference.enabled = false') -%}
        {%- set root = raw_parquet_location() -%}
        {%- for schema_name, table_name, partitioned in [
            ('raw', 'customers', true),
            ('raw', 'earnings', true),
            ('raw', 'usage', true),
            ('ingest', 'ledger', false),
            ('ingest', 'current_files', false),
        ] -%}
            {%- do run_query('create database if not exists ' ~ schema_name) -%}
            {%- set relation = schema_name ~ '.' ~ table_name -%}
            {#- Schema and the `_source_file` partition column are read from the files. -#}
            {%- do run_query(
                'create table if not exists ' ~ relation ~ ' using parquet'
                ~ " location '" ~ root ~ '/' ~ schema_name ~ '/' ~ table_name ~ "'"
            ) -%}
            {#- Files added, restated or retracted since the last run: partitions in the
                metastore follow the folders, and cached file listings are dropped. -#}
            {%- if partitioned -%}
                {%- do run_query('msck repair table ' ~ relation ~ ' sync partitions') -%}
            {%- endif -%}
            {%- do run_query('refresh table ' ~ relation) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
