with

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
),

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

with_totals as (
    select
        customer_months.*,
        sum(customer_months.spend_usd)
            over (partition by customer_months.month, customer_months.product_line)
            as product_line_spend_usd,
        -- row_number() is BIGINT on DuckDB, INT on Spark: the contract says bigint.
        cast(row_number() over (
            partition by customer_months.month, customer_months.product_line
            order by customer_months.spend_usd desc, customer_months.customer_id asc
        ) as bigint) as rank_in_month
    from customer_months
),

with_history as (
    -- Growth against the same calendar month, not the previous row: a customer with no
    -- spend last month has no month-on-month growth.
    select
        current_month.*,
        previous_month.spend_usd as previous_month_spend_usd,
        previous_year.spend_usd as previous_year_spend_usd
    from with_totals as current_month
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
        {{ safe_ratio('with_history.spend_usd', 'with_history.product_line_spend_usd') }} as share,
        with_history.rank_in_month,
        {{ safe_ratio('with_history.spend_usd', 'with_history.previous_month_spend_usd') }} - 1
            as mom_growth,
        {{ safe_ratio('with_history.spend_usd', 'with_history.previous_year_spend_usd') }} - 1
            as yoy_growth
    from with_history
    left join customers using (customer_id)
)

select * from final
