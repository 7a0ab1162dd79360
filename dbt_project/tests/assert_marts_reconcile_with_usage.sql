-- Every dollar of the usage fact reaches the customer mart, and the concentration mart's
-- totals equal the customer mart's, at both levels. The mart rounds each row to cents, so the
-- sums may differ by at most half a cent per mart row. The fact, not the daily rows: that it
-- holds every loaded row is assert_usage_fact_holds_every_loaded_row, and that its money
-- equals what loaded per month and product line is the audit's reconciliation
-- (reconcile_months), so this test need not rescan the whole history on every run.
with

usage_total as (
    select product_line, sum(spend_usd) as spend_usd
    from {{ ref('int_usage_months_aggregated') }}
    group by product_line
),

customer_total as (
    select product_line, sum(spend_usd) as spend_usd, count(*) as mart_rows
    from {{ ref('fct_customer_monthly_spend') }}
    group by product_line
),

concentration_total as (
    select product_line, level, sum(total_spend_usd) as spend_usd
    from {{ ref('fct_revenue_concentration') }}
    group by product_line, level
),

differences as (
    select
        usage_total.product_line,
        'usage vs fct_customer_monthly_spend' as comparison,
        abs(usage_total.spend_usd - coalesce(customer_total.spend_usd, 0)) as difference_usd,
        0.005 * coalesce(customer_total.mart_rows, 0) as tolerance_usd
    from usage_total
    left join customer_total using (product_line)

    union all

    select
        concentration_total.product_line,
        'fct_revenue_concentration (' || concentration_total.level || ') vs customer mart',
        abs(concentration_total.spend_usd - customer_total.spend_usd),
        0.005 * customer_total.mart_rows
    from concentration_total
    inner join customer_total using (product_line)
)

select * from differences where difference_usd > tolerance_usd
