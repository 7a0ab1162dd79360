{#- How the usage fact (`int_usage_months_aggregated`) is kept incrementally, per engine: the
    model asks for `usage_fact_config()` and dbt dispatches on the adapter, so no model checks
    the engine itself. Both replace exactly the landing files loaded (added or restated) since
    the last build, whose list `usage_files_to_process` reads from the ingestion ledger. -#}
{% macro usage_fact_config() -%}
    {{ return(adapter.dispatch('usage_fact_config', 'ai_revenue')()) }}
{%- endmacro %}

{#- DuckDB (and any engine with DELETE): delete a restated file's old rows first, then append
    the files to process. -#}
{% macro default__usage_fact_config() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'fail',
        'pre_hook': "
            {% if is_incremental() %}
            delete from {{ this }}
            where source_file in (
                select source_file from ({{ usage_files_to_process(this) }}) as changed
            )
            {% endif %}
        ",
    }) }}
{%- endmacro %}

{#- Spark: Parquet tables have no DELETE. The table is partitioned by landing file and each run
    overwrites only the partitions of the files it processes (dynamic partition overwrite), so
    a restated file replaces exactly its own partition. -#}
{% macro spark__usage_fact_config() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'insert_overwrite',
        'file_format': 'parquet',
        'partition_by': ['source_file'],
        'on_schema_change': 'fail',
    }) }}
{%- endmacro %}
