{#- How the usage fact (`int_usage_months_aggregated`) is kept incrementally, per engine: the
    model asks for `usage_fact_config()` and dbt dispatches on the adapter, so no model checks
    the engine itself. Both replace exactly the landing files loaded (added, restated or
    re-evaluated) since the last build and remove the retracted ones, whose lists
    macros/usage_files.sql reads from the ingestion ledger. -#}
{% macro usage_fact_config() -%}
    {{ return(adapter.dispatch('usage_fact_config', 'ai_revenue')()) }}
{%- endmacro %}

{#- DuckDB (and any engine with DELETE): delete the old rows of the files to process and the
    rows of retracted files first, then append the files to process. -#}
{% macro default__usage_fact_config() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'fail',
        'pre_hook': "
            {% if is_incremental() %}
            delete from {{ this }}
            where source_file in (
                select source_file from ({{ usage_files_to_remove(this) }}) as removed
            )
            {% endif %}
        ",
    }) }}
{%- endmacro %}

{#- Spark: Parquet tables have no DELETE. The table is partitioned by landing file and each run
    overwrites only the partitions of the files it processes (dynamic partition overwrite), so
    a restated file replaces exactly its own partition. A restated file left with no valid
    rows, or a retracted one, would overwrite nothing: the pre-hook drops the partitions of
    the files to process and of the retracted files first, as DuckDB's delete does. -#}
{% macro spark__usage_fact_config() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'insert_overwrite',
        'file_format': 'parquet',
        'partition_by': ['source_file'],
        'on_schema_change': 'fail',
        'pre_hook': "{{ drop_usage_file_partitions(this) }}",
    }) }}
{%- endmacro %}

{% macro drop_usage_file_partitions(relation) -%}
    {%- if execute and is_incremental() -%}
        {%- set files = run_query(usage_files_to_remove(relation)).columns[0].values() -%}
        {%- for file in files -%}
            {%- do run_query(
                'alter table ' ~ relation ~ ' drop if exists partition (source_file = '
                ~ "'" ~ file | replace('\\', '\\\\') | replace("'", "\\'") ~ "')"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
