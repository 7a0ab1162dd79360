with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
),

lifetime as (
    select
        customer_id,
        min(month) as first_spend_month,
        max(month) as last_spend_month,
        sum(spend_usd) as lifetime_spend_usd
    from customer_months
    where spend_usd > 0
    group by customer_id
),

final as (
    select
        customers.customer_id,
        customers.customer_name,
        customers.parent_company,
        customers.industry,
        customers.segment,
        customers.hq_country,
        customers.is_synthetic,
        customers.provenance,
        lifetime.first_spend_month,
        lifetime.last_spend_month,
        cast(coalesce(lifetime.lifetime_spend_usd, 0) as decimal(18, 2)) as lifetime_spend_usd
    from customers
    left join lifetime using (customer_id)
)

select * from final
