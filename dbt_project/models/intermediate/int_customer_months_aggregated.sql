-- Spend per customer, product line and month, over every landing file and model: the grain
-- of every mart.

with

usage_months as (
    select * from {{ ref('int_usage_months_aggregated') }}
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
)

select * from aggregated
