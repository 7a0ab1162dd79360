{#- The usage files whose current version (latest ledger load) is not yet in the incremental
    model `model`: new files, and restated ones. On a full build, every file. -#}
{% macro usage_files_to_process(model) -%}
    select
        latest.file_path as source_file,
        latest.file_loaded_at
    from (
        select
            file_path,
            max(loaded_at) as file_loaded_at
        from {{ source('ingest', 'ledger') }}
        where source = 'usage'
        group by file_path
    ) as latest
    {% if is_incremental() %}
        where not exists (
            select 1
            from {{ model }} as built
            where built.source_file = latest.file_path
              and built.file_loaded_at = latest.file_loaded_at
        )
    {% endif %}
{%- endmacro %}
