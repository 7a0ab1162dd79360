{#-
    How dependent each product line's monthly revenue is on its largest customers, by customer
    and by parent company. HHI is the sum of squared percentage shares (0-10,000); its grade
    follows the 2023 US Merger Guidelines' thresholds, an analogy when applied to customers.
-#}
with

spenders as (
    select * from {{ ref('int_spenders_ranked') }}
),

measured as (
    select
        month,
        product_line,
        level,
        sum(spend_usd) as total_spend_usd,
        count(*) as active_customers,
        max(case when spender_rank = 1 then spender_name end) as top_customer_name,
        sum(case when spender_rank = 1 then share else 0 end) as top1_share,
        sum(case when spender_rank <= 5 then share else 0 end) as top5_share,
        sum(case when spender_rank <= 10 then share else 0 end) as top10_share,
        sum((share * 100) * (share * 100)) as hhi,
        sum(case when share >= {{ var('major_customer_share') }} then 1 else 0 end)
            as major_customers
    from spenders
    group by month, product_line, level
),

final as (
    select
        month,
        product_line,
        level,
        cast(total_spend_usd as decimal(18, 2)) as total_spend_usd,
        active_customers,
        top_customer_name,
        top1_share,
        top5_share,
        top10_share,
        hhi,
        cast(major_customers as bigint) as major_customers,
        {{ concentration_level('hhi') }} as concentration_level
    from measured
)

select * from final
