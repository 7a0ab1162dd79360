{#-
    Revenue at risk and growth concentration: what each product line's month would look like
    if its largest customer (or parent company) stopped or halved its spend, and how much of
    the year-on-year growth that customer brought. Money stays exact DECIMAL throughout: a
    half is `* 0.5`, never `/ 2` (which DuckDB computes in floating point).
-#}
with

measured as (
    select * from {{ ref('int_revenue_months_measured') }}
),

spenders as (
    select * from {{ ref('int_spenders_ranked') }}
),

with_previous_year as (
    select
        measured.*,
        previous_year.total_spend_usd as previous_year_spend_usd,
        coalesce(top_previous_year.spend_usd, 0) as top_spender_previous_year_spend_usd
    from measured
    left join measured as previous_year
        on
            previous_year.month = {{ add_months('measured.month', -12) }}
            and measured.product_line = previous_year.product_line
            and measured.level = previous_year.level
    left join spenders as top_previous_year
        on
            top_previous_year.month = {{ add_months('measured.month', -12) }}
            and measured.product_line = top_previous_year.product_line
            and measured.level = top_previous_year.level
            and measured.top_spender_id = top_previous_year.spender_id
),

final as (
    select
        month,
        product_line,
        level,
        cast(total_spend_usd as decimal(18, 2)) as total_spend_usd,
        top_spender_name as top_customer_name,
        cast(top_spender_spend_usd as decimal(18, 2)) as top_customer_spend_usd,
        top1_share,
        cast(total_spend_usd - top_spender_spend_usd as decimal(18, 2))
            as revenue_without_top_usd,
        -- Exact: a DECIMAL times a DECIMAL literal stays DECIMAL on every engine (dividing by
        -- an integer falls to DOUBLE on DuckDB, a cent off in some rows).
        cast(total_spend_usd - top_spender_spend_usd * 0.5 as decimal(18, 2))
            as revenue_if_top_halved_usd,
        {{ safe_ratio('total_spend_usd', 'previous_year_spend_usd') }} - 1 as yoy_growth,
        {{ safe_ratio(
            'total_spend_usd - top_spender_spend_usd',
            'previous_year_spend_usd - top_spender_previous_year_spend_usd'
        ) }} - 1 as yoy_growth_without_top,
        {{ safe_ratio(
            'top_spender_spend_usd - top_spender_previous_year_spend_usd',
            'total_spend_usd - previous_year_spend_usd'
        ) }} as top_customer_growth_share
    from with_previous_year
)

select * from final
