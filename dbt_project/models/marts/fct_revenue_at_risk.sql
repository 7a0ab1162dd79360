{#-
    Revenue at risk and growth concentration: what each product line's month would look like
    if its largest customer (or parent company) stopped or halved its spend, and how much of
    the year-on-year growth that customer brought.
-#}
with

spenders as (
    select * from {{ ref('int_spenders_ranked') }}
),

totals as (
    select
        month,
        product_line,
        level,
        sum(spend_usd) as total_spend_usd
    from spenders
    group by month, product_line, level
),

top_spenders as (
    select * from spenders
    where spender_rank = 1
),

measured as (
    select
        totals.month,
        totals.product_line,
        totals.level,
        totals.total_spend_usd,
        top_spenders.spender_name as top_customer_name,
        top_spenders.spend_usd as top_customer_spend_usd,
        top_spenders.share as top1_share,
        previous_totals.total_spend_usd as previous_year_spend_usd,
        coalesce(top_previous.spend_usd, 0) as top_customer_previous_year_spend_usd
    from totals
    inner join top_spenders
        on
            totals.month = top_spenders.month
            and totals.product_line = top_spenders.product_line
            and totals.level = top_spenders.level
    left join totals as previous_totals
        on
            previous_totals.month = {{ add_months('totals.month', -12) }}
            and totals.product_line = previous_totals.product_line
            and totals.level = previous_totals.level
    left join spenders as top_previous
        on
            top_previous.month = {{ add_months('totals.month', -12) }}
            and totals.product_line = top_previous.product_line
            and totals.level = top_previous.level
            and top_spenders.spender_id = top_previous.spender_id
),

final as (
    select
        month,
        product_line,
        level,
        cast(total_spend_usd as decimal(18, 2)) as total_spend_usd,
        top_customer_name,
        cast(top_customer_spend_usd as decimal(18, 2)) as top_customer_spend_usd,
        top1_share,
        cast(total_spend_usd - top_customer_spend_usd as decimal(18, 2))
            as revenue_without_top_usd,
        -- Exact: a DECIMAL times a DECIMAL literal stays DECIMAL on every engine (dividing by
        -- an integer falls to DOUBLE on DuckDB, a cent off in some rows).
        cast(total_spend_usd - top_customer_spend_usd * 0.5 as decimal(18, 2))
            as revenue_if_top_halved_usd,
        {{ safe_ratio('total_spend_usd', 'previous_year_spend_usd') }} - 1 as yoy_growth,
        {{ safe_ratio(
            'total_spend_usd - top_customer_spend_usd',
            'previous_year_spend_usd - top_customer_previous_year_spend_usd'
        ) }} - 1 as yoy_growth_without_top,
        {{ safe_ratio(
            'top_customer_spend_usd - top_customer_previous_year_spend_usd',
            'total_spend_usd - previous_year_spend_usd'
        ) }} as top_customer_growth_share
    from measured
)

select * from final
