{#-
    How dependent each product line's monthly revenue is on its largest customers, by customer
    and by parent company. HHI is the sum of squared percentage shares (0-10,000); its grade
    follows the 2023 US Merger Guidelines' thresholds, an analogy when applied to customers.
-#}
with

measured as (
    select * from {{ ref('int_revenue_months_measured') }}
),

final as (
    select
        month,
        product_line,
        level,
        cast(total_spend_usd as decimal(18, 2)) as total_spend_usd,
        active_customers,
        top_spender_name as top_customer_name,
        top1_share,
        top5_share,
        top10_share,
        hhi,
        cast(major_customers as bigint) as major_customers,
        {{ concentration_level('hhi') }} as concentration_level
    from measured
)

select * from final
