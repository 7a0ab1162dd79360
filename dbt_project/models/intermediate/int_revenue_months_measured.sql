{#-
    How concentrated each product line's month is, at both levels (customer, parent company):
    the total, the largest spender, the top-N shares, the HHI (sum of squared percentage
    shares, 0-10,000) and the spenders at or above the major-customer share. Only spenders
    with positive spend count. The concentration and revenue-at-risk marts both read it.
-#}
with

spenders as (
    select * from {{ ref('int_spenders_ranked') }}
    where spend_usd > 0
),

measured as (
    select
        month,
        product_line,
        level,
        sum(spend_usd) as total_spend_usd,
        count(*) as active_customers,
        max(case when spender_rank = 1 then spender_id end) as top_spender_id,
        max(case when spender_rank = 1 then spender_name end) as top_spender_name,
        sum(case when spender_rank = 1 then spend_usd else 0 end) as top_spender_spend_usd,
        sum(case when spender_rank = 1 then share else 0 end) as top1_share,
        sum(case when spender_rank <= 5 then share else 0 end) as top5_share,
        sum(case when spender_rank <= 10 then share else 0 end) as top10_share,
        sum((share * 100) * (share * 100)) as hhi,
        sum(case when share >= {{ var('major_customer_share') }} then 1 else 0 end)
            as major_customers
    from spenders
    group by month, product_line, level
)

select * from measured
