-- Every month with usage, with Microsoft's fiscal year and quarter (the year ends 30 June).
with

months as (
    select distinct month from {{ ref('int_customer_months_aggregated') }}
),

mapped as (
    select
        month,
        {{ fiscal_year('month') }} as fiscal_year,
        {{ fiscal_quarter('month') }} as fiscal_quarter
    from months
)

select * from mapped
