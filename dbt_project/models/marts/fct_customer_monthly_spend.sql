with

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
),

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

ranked as (
    -- Share of the product line's month and rank within it, as the concentration marts see them.
    select * from {{ ref('int_spenders_ranked') }}
    where level = 'customer'
),

with_history as (
    -- Growth against the same calendar month, not the previous row: a customer with no
    -- spend last month has no month-on-month growth.
    select
        current_month.*,
        ranked.share,
        ranked.spender_rank as rank_in_month,
        previous_month.spend_usd as previous_month_spend_usd,
        previous_year.spend_usd as previous_year_spend_usd
    from customer_months as current_month
    inner join ranked
        on
            current_month.customer_id = ranked.spender_id
            and current_month.product_line = ranked.product_line
            and current_month.month = ranked.month
    left join customer_months as previous_month
        on
            current_month.customer_id = previous_month.customer_id
            and current_month.product_line = previous_month.product_line
            and previous_month.month = {{ add_months('current_month.month', -1) }}
    left join customer_months as previous_year
        on
            current_month.customer_id = previous_year.customer_id
            and current_month.product_line = previous_year.product_line
            and previous_year.month = {{ add_months('current_month.month', -12) }}
),

final as (
    select
        with_history.month,
        with_history.customer_id,
        customers.customer_name,
        customers.parent_company,
        customers.segment,
        with_history.product_line,
        cast(with_history.spend_usd as decimal(18, 2)) as spend_usd,
        with_history.tokens,
        with_history.share,
        with_history.rank_in_month,
        {{ safe_ratio('with_history.spend_usd', 'with_history.previous_month_spend_usd') }} - 1
            as mom_growth,
        {{ safe_ratio('with_history.spend_usd', 'with_history.previous_year_spend_usd') }} - 1
            as yoy_growth
    from with_history
    left join customers using (customer_id)
)

select * from final
