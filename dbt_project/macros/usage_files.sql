{#- The usage files as the ingestion ledger holds them now (its current state,
    `ingest.current_files`: a file that left the landing folder is not there). -#}
{% macro current_usage_files() -%}
    select
        file_path as source_file,
        loaded_at as file_loaded_at
    from {{ source('ingest', 'current_files') }}
    where source = 'usage'
{%- endmacro %}

{#- The current usage files whose latest version (ledger entry) is not yet in the incremental
    model `model`: new files, restated ones, and ones whose quarantined rows were loaded since.
    On a full build, every current file. The model's versions are read distinct first: DuckDB
    would otherwise hash every row of the fact to probe a few dozen files (0.4 s at 100M rows). -#}
{% macro usage_files_to_process(model) -%}
    select current_files.source_file, current_files.file_loaded_at
    from ({{ current_usage_files() }}) as current_files
    {% if is_incremental() %}
        where not exists (
            select 1
            from (
                select distinct
                    source_file,
                    file_loaded_at
                from {{ model }}
            ) as built
            where built.source_file = current_files.source_file
              and built.file_loaded_at = current_files.file_loaded_at
        )
    {% endif %}
{%- endmacro %}

{#- The landing files whose rows the incremental model `model` must drop before new rows are
    appended: those about to be processed again, and those no longer current (retracted). -#}
{% macro usage_files_to_remove(model) -%}
    select source_file from ({{ usage_files_to_process(model) }}) as changed
    union
    select distinct built.source_file
    from {{ model }} as built
    where built.source_file not in (
        select current_files.source_file from ({{ current_usage_files() }}) as current_files
    )
{%- endmacro %}
