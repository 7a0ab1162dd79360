with

source as (
    select * from {{ source('raw', 'earnings') }}
),

renamed as (
    select
        -- ids
        fiscal_year,
        fiscal_quarter,
        -- strings
        segment_basis,
        azure_consensus_basis,
        stock_move_window,
        source as provenance,
        note,
        -- numerics
        cast(intelligent_cloud_revenue_usd as decimal(18, 2)) as intelligent_cloud_revenue_usd,
        cast(intelligent_cloud_growth_pct as decimal(6, 2)) as intelligent_cloud_growth_pct,
        cast(azure_growth_pct as decimal(6, 2)) as azure_growth_pct,
        cast(azure_growth_cc_pct as decimal(6, 2)) as azure_growth_cc_pct,
        cast(azure_consensus_pct as decimal(6, 2)) as azure_consensus_pct,
        cast(ai_contribution_pts as decimal(6, 2)) as ai_contribution_pts,
        cast(stock_move_pct as decimal(6, 2)) as stock_move_pct,
        -- dates
        reported_on
    from source
)

select * from renamed
