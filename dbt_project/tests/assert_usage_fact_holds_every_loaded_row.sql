-- The incremental usage fact holds every loaded usage row, file by file: its rows of each
-- current landing file add up to the rows the ledger's latest entry says are loaded from it,
-- and it holds nothing of a file that is not current (retracted or never loaded). Read at the
-- ledger's and the fact's grain, never the daily rows; the audit checks that raw holds what
-- the ledger says (expectations/reconciliation.yml, reconcile_files).
with

current_files as (
    select
        file_path as source_file,
        rows_loaded
    from {{ source('ingest', 'current_files') }}
    where source = 'usage'
),

fact_files as (
    select
        source_file,
        sum(usage_rows) as usage_rows
    from {{ ref('int_usage_months_aggregated') }}
    group by source_file
),

differences as (
    select
        coalesce(current_files.source_file, fact_files.source_file) as source_file,
        current_files.rows_loaded as ledger_rows_loaded,
        fact_files.usage_rows as fact_usage_rows
    from current_files
    full outer join fact_files on current_files.source_file = fact_files.source_file
    where coalesce(current_files.rows_loaded, 0) <> coalesce(fact_files.usage_rows, 0)
)

select * from differences
