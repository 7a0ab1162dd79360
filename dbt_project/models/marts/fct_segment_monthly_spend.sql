with

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
),

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

segments as (
    select
        customer_months.month,
        coalesce(customers.segment, 'unknown') as segment,
        customer_months.product_line,
        sum(customer_months.spend_usd) as spend_usd,
        count(distinct case when customer_months.spend_usd > 0 then customer_months.customer_id end)
            as active_customers
    from customer_months
    left join customers using (customer_id)
    group by 1, 2, 3
),

final as (
    select
        month,
        segment,
        product_line,
        cast(spend_usd as decimal(18, 2)) as spend_usd,
        {{ safe_ratio('spend_usd', 'sum(spend_usd) over (partition by month, product_line)') }}
            as share,
        active_customers
    from segments
)

select * from final
