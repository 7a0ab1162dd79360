-- Spend per customer, product line and month, over every landing file and model: the grain
-- of every mart. Incremental by month: only the months whose landing files changed are
-- aggregated again (macros/months.sql).
with

months_to_build as (
    {{ month_model('customer_month_versions', ['usage_files', 'usage_loaded_at']) }}
),

usage_months as (
    select * from {{ ref('int_usage_months_aggregated') }}
    where month in (select months_to_build.month from months_to_build)
),

aggregated as (
    select
        month,
        customer_id,
        product_line,
        sum(spend_usd) as spend_usd,
        cast(sum(tokens) as bigint) as tokens
    from usage_months
    group by month, customer_id, product_line
),

versioned as (
    select
        aggregated.*,
        months_to_build.usage_files,
        months_to_build.usage_loaded_at
    from aggregated
    inner join months_to_build using (month)
)

select * from versioned
