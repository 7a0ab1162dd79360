with

source as (
    select * from {{ source('raw', 'customers') }}
),

renamed as (
    select
        -- ids
        customer_id,
        -- strings
        customer_name,
        parent_company,
        industry,
        segment,
        upper(hq_country) as hq_country,
        source as provenance,
        -- booleans
        is_synthetic
    from source
)

select * from renamed
