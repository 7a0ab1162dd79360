with

source as (
    select * from {{ source('raw', 'usage') }}
),

renamed as (
    select
        -- ids
        customer_id,
        _source_file as source_file,
        -- strings
        product_line,
        model,
        -- numerics
        tokens,
        amount_usd as spend_usd,
        -- dates
        usage_date
    from source
)

select * from renamed
