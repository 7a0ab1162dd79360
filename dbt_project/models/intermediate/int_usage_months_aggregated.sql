{#-
    The usage fact the marts read, incremental by landing file: a run processes only the files
    loaded (added, restated, or with quarantined rows loaded) since the last build, replacing
    a restated file's old rows and removing a retracted file's, so one new month file costs one
    month of work. Grain: source file x month x customer x product line x model.
-#}
{#- Materialisation per engine (DuckDB: delete + append; Spark: insert_overwrite of the files'
    partitions): macros/incremental.sql. -#}
{{ config(**usage_fact_config()) }}

with

files_to_process as (
    {{ usage_files_to_process(this) }}
),

usage as (
    select * from {{ ref('stg_raw__usage') }}
    where source_file in (select files_to_process.source_file from files_to_process)
),

aggregated as (
    select
        source_file,
        {{ month_start('usage_date') }} as month,
        customer_id,
        product_line,
        model,
        sum(spend_usd) as spend_usd,
        cast(sum(tokens) as bigint) as tokens,
        -- One row per day: ingestion keeps (usage_date, customer_id, product_line, model)
        -- unique across the loaded files (warehouse/ingest/sources.py, USAGE.key), so the
        -- rows of a group are its days. A count(distinct) here cost a second hash aggregation
        -- over every raw row, six times the rest of the model.
        count(*) as active_days,
        count(*) as usage_rows
    from usage
    group by source_file, {{ month_start('usage_date') }}, customer_id, product_line, model
),

stamped as (
    select
        aggregated.*,
        files_to_process.file_loaded_at,
        '{{ invocation_id }}' as dbt_invocation_id
    from aggregated
    inner join files_to_process using (source_file)
)

select * from stamped
