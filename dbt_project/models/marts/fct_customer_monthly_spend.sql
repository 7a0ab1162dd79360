-- The published columns of int_customer_months_compared, which is built incrementally by month
-- and carries the version columns the contract leaves out.
with

compared as (
    select * from {{ ref('int_customer_months_compared') }}
),

final as (
    select
        month,
        customer_id,
        customer_name,
        parent_company,
        segment,
        product_line,
        spend_usd,
        tokens,
        share,
        rank_in_month,
        mom_growth,
        yoy_growth
    from compared
)

select * from final
