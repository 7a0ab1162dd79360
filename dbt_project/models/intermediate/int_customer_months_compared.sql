{#-
    Each customer's month on a product line with what the customer mart publishes: who the
    customer is, its share and rank in the month (as the concentration marts see them), and
    its growth against the month before and the same month a year before (not the previous
    row: a customer with no spend last month has no month-on-month growth). Incremental by
    month: a month is compared again when a month it reads changed, so a new month also
    recomputes nothing else, and a restated month recomputes itself, the month after and the
    month a year after (macros/months.sql). fct_customer_monthly_spend publishes it without
    its version columns.
-#}
with

months_to_build as (
    {{ month_model(
        'growth_month_versions',
        ['read_usage_files', 'read_usage_loaded_at', 'customers_loaded_at']
    ) }}
),

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
),

current_months as (
    select * from customer_months
    where month in (select months_to_build.month from months_to_build)
),

-- The months before (a month and a year) of the months built: only these are read.
earlier_months as (
    select * from customer_months
    where month in (
        select {{ add_months('months_to_build.month', -1) }} from months_to_build
        union all
        select {{ add_months('months_to_build.month', -12) }} from months_to_build
    )
),

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

ranked as (
    select * from {{ ref('int_spenders_ranked') }}
    where
        level = 'customer'
        and month in (select months_to_build.month from months_to_build)
),

with_history as (
    select
        current_month.*,
        ranked.share,
        ranked.spender_rank as rank_in_month,
        previous_month.spend_usd as previous_month_spend_usd,
        previous_year.spend_usd as previous_year_spend_usd
    from current_months as current_month
    inner join ranked
        on
            current_month.customer_id = ranked.spender_id
            and current_month.product_line = ranked.product_line
            and current_month.month = ranked.month
    left join earlier_months as previous_month
        on
            current_month.customer_id = previous_month.customer_id
            and current_month.product_line = previous_month.product_line
            and previous_month.month = {{ add_months('current_month.month', -1) }}
    left join earlier_months as previous_year
        on
            current_month.customer_id = previous_year.customer_id
            and current_month.product_line = previous_year.product_line
            and previous_year.month = {{ add_months('current_month.month', -12) }}
),

compared as (
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
),

versioned as (
    select
        compared.*,
        months_to_build.read_usage_files,
        months_to_build.read_usage_loaded_at,
        months_to_build.customers_loaded_at
    from compared
    inner join months_to_build using (month)
)

select * from versioned
