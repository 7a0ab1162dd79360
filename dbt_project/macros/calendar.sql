{#- Calendar helpers built on dbt's cross-database macros, so the models stay portable
    (DuckDB here, Spark later). Each returns a DATE. -#}

{% macro month_start(expression) -%}
    cast({{ dbt.date_trunc('month', expression) }} as date)
{%- endmacro %}

{% macro add_months(expression, months) -%}
    cast({{ dbt.dateadd('month', months, expression) }} as date)
{%- endmacro %}

{#- Microsoft's fiscal year ends on 30 June: FY2024 runs from July 2023 to June 2024, and
    its Q1 is July-September, so FY24 Q4 is April-June 2024. -#}

{% macro fiscal_year(month) -%}
    cast(extract(year from {{ month }}) + case when extract(month from {{ month }}) >= 7 then 1 else 0 end as integer)
{%- endmacro %}

{% macro fiscal_quarter(month) -%}
    cast(floor(mod(cast(extract(month from {{ month }}) as integer) + 5, 12) / 3) + 1 as integer)
{%- endmacro %}

{#- FY2001 Q1 began on 2000-07-01; every later quarter is a whole number of months after it. -#}
{% macro fiscal_quarter_start(fiscal_year, fiscal_quarter) -%}
    {{ add_months("cast('2000-07-01' as date)",
                  '12 * (' ~ fiscal_year ~ ' - 2001) + 3 * (' ~ fiscal_quarter ~ ' - 1)') }}
{%- endmacro %}
