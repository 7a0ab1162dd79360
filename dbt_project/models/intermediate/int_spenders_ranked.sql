{#-
    Who pays, ranked within each product line and month, at two levels: each customer, and each
    parent company (ASC 280 counts entities under common control as one customer, so the
    parent level sums its customers). Every spender is ranked, those with no spend last; the
    concentration measures count only spenders with positive spend. Incremental by month:
    ranks are within a month, so only the months whose usage changed are ranked again, and
    every month when customers.csv changed (macros/months.sql).
-#}
with

months_to_build as (
    {{ month_model(
        'spender_month_versions',
        ['usage_files', 'usage_loaded_at', 'customers_loaded_at']
    ) }}
),

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
    where month in (select months_to_build.month from months_to_build)
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
),

versioned as (
    select
        ranked.*,
        months_to_build.usage_files,
        months_to_build.usage_loaded_at,
        months_to_build.customers_loaded_at
    from ranked
    inner join months_to_build using (month)
)

select * from versioned
