{#-
    Who pays, ranked within each product line and month, at two levels: each customer, and each
    parent company (ASC 280 counts entities under common control as one customer, so the
    parent level sums its customers). Only spenders with positive spend count.
-#}
with

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
),

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

customer_level as (
    select
        customer_months.month,
        customer_months.product_line,
        'customer' as level,
        customer_months.customer_id as spender_id,
        coalesce(customers.customer_name, customer_months.customer_id) as spender_name,
        customer_months.spend_usd
    from customer_months
    left join customers using (customer_id)
),

parent_level as (
    select
        customer_months.month,
        customer_months.product_line,
        'parent_company' as level,
        coalesce(customers.parent_company, customer_months.customer_id) as spender_id,
        coalesce(customers.parent_company, customer_months.customer_id) as spender_name,
        sum(customer_months.spend_usd) as spend_usd
    from customer_months
    left join customers using (customer_id)
    group by 1, 2, 3, 4, 5
),

spenders as (
    select * from customer_level
    union all
    select * from parent_level
),

ranked as (
    select
        month,
        product_line,
        level,
        spender_id,
        spender_name,
        spend_usd,
        {{ safe_ratio(
            'spend_usd', 'sum(spend_usd) over (partition by level, month, product_line)'
        ) }} as share,
        cast(row_number() over (
            partition by level, month, product_line
            order by spend_usd desc, spender_id asc
        ) as bigint) as spender_rank
    from spenders
    where spend_usd > 0
)

select * from ranked
