{#-
    Microsoft's reported quarter next to what the warehouse measures in it: azure_openai
    revenue from usage and the largest customer's share of it. Reported figures stay NULL
    where they were not confirmed.
-#}
with

earnings as (
    select * from {{ ref('stg_raw__earnings') }}
),

fiscal_months as (
    select * from {{ ref('int_months_mapped_to_fiscal_quarters') }}
),

customer_months as (
    select * from {{ ref('int_customer_months_aggregated') }}
    where product_line = 'azure_openai'
),

customer_quarters as (
    select
        fiscal_months.fiscal_year,
        fiscal_months.fiscal_quarter,
        customer_months.customer_id,
        sum(customer_months.spend_usd) as spend_usd,
        count(distinct customer_months.month) as usage_months
    from customer_months
    inner join fiscal_months using (month)
    group by fiscal_months.fiscal_year, fiscal_months.fiscal_quarter, customer_months.customer_id
),

usage_quarters as (
    select
        fiscal_year,
        fiscal_quarter,
        sum(spend_usd) as azure_openai_spend_usd,
        max(usage_months) as usage_months,
        {{ safe_ratio('max(spend_usd)', 'sum(spend_usd)') }} as top1_share
    from customer_quarters
    group by fiscal_year, fiscal_quarter
),

final as (
    select
        earnings.fiscal_year,
        earnings.fiscal_quarter,
        {{ fiscal_quarter_start('earnings.fiscal_year', 'earnings.fiscal_quarter') }}
            as quarter_start,
        cast({{ dbt.dateadd(
            'day', -1,
            add_months(fiscal_quarter_start('earnings.fiscal_year', 'earnings.fiscal_quarter'), 3)
        ) }} as date) as quarter_end,
        earnings.reported_on,
        earnings.intelligent_cloud_revenue_usd,
        earnings.intelligent_cloud_growth_pct,
        earnings.segment_basis,
        earnings.azure_growth_pct,
        earnings.azure_growth_cc_pct,
        earnings.azure_consensus_pct,
        earnings.azure_consensus_basis,
        -- Compare like with like: a constant-currency consensus against constant-currency growth.
        cast(case
            when earnings.azure_consensus_basis = 'constant_currency'
                then earnings.azure_growth_cc_pct - earnings.azure_consensus_pct
            else earnings.azure_growth_pct - earnings.azure_consensus_pct
        end as decimal(6, 2)) as azure_growth_surprise_pts,
        earnings.ai_contribution_pts,
        earnings.stock_move_pct,
        earnings.stock_move_window,
        cast(usage_quarters.azure_openai_spend_usd as decimal(18, 2)) as azure_openai_spend_usd,
        cast(coalesce(usage_quarters.usage_months, 0) as integer) as usage_months,
        usage_quarters.top1_share,
        earnings.provenance,
        earnings.note
    from earnings
    left join usage_quarters
        on
            earnings.fiscal_year = usage_quarters.fiscal_year
            and earnings.fiscal_quarter = usage_quarters.fiscal_quarter
)

select * from final
