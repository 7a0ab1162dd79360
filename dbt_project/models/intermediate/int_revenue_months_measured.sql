{#-
    How concentrated each product line's month is, at both levels (customer, parent company):
    the total, the largest spender, the top-N shares, the HHI (sum of squared percentage
    shares, 0-10,000) and the spenders at or above the major-customer share. Only spenders
    with positive spend count. The concentration and revenue-at-risk marts both read it.
    Incremental by month: a month is measured again when its ranks changed (macros/months.sql).
-#}
with

months_to_build as (
    {{ month_model(
        'ranked_month_versions',
        ['usage_files', 'usage_loaded_at', 'customers_loaded_at']
    ) }}
),

spenders as (
    select * from {{ ref('int_spenders_ranked') }}
    where
        spend_usd > 0
        and month in (select months_to_build.month from months_to_build)
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
),

versioned as (
    select
        measured.*,
        months_to_build.usage_files,
        months_to_build.usage_loaded_at,
        months_to_build.customers_loaded_at
    from measured
    inner join months_to_build using (month)
)

select * from versioned
