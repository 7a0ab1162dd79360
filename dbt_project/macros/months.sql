{#- How the tables after the usage fact are kept incrementally by month: each row carries the
    version of its month's inputs, and a run rebuilds only the months whose version changed
    (and removes the months that are gone). Comparing versions, rather than following what this
    invocation processed, keeps a model right after an earlier build failed half-way. The
    model names the macro giving each month's version now, and its version columns. -#}
{% macro month_model_config(versions, columns) -%}
    {{ return(adapter.dispatch('month_model_config', 'ai_revenue')(versions, columns)) }}
{%- endmacro %}

{#- DuckDB: delete the months to rebuild (and the vanished ones), then append them. A table
    from before the version columns gets them empty, so every month is rebuilt once. -#}
{% macro default__month_model_config(versions, columns) -%}
    {{ return({
        'pre_hook': "{{ delete_changed_months(this, " ~ versions ~ "(), " ~ columns ~ ") }}",
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'append_new_columns',
    }) }}
{%- endmacro %}

{% macro delete_changed_months(model, versions, columns) -%}
    {% if is_incremental() %}
        delete from {{ model }} where month not in (
            select unchanged.month
            from ({{ unchanged_months(model, versions, columns) }}) as unchanged
        )
    {% endif %}
{%- endmacro %}

{#- Spark: Parquet tables have no DELETE, and these tables are small: rebuilt whole. -#}
{% macro spark__month_model_config(versions, columns) -%}
    {{ return({'materialized': 'table'}) }}
{%- endmacro %}

{#- The months of the incremental model `model` whose version (`columns`) equals the version
    now (`versions`: one row per month); none when the table predates the version columns. -#}
{% macro unchanged_months(model, versions, columns) -%}
    {%- set existing = adapter.get_columns_in_relation(model) | map(attribute='name') | list -%}
    {%- if execute and columns | reject('in', existing) | list -%}
    select built.month from {{ model }} as built where 1 = 0
    {%- else -%}
    select built.month
    from (
        select distinct
            month,
            {{ columns | join(', ') }}
        from {{ model }}
    ) as built
    inner join ({{ versions }}) as current_version
        on
            built.month = current_version.month
            {%- for column in columns %}
            and built.{{ column }} = current_version.{{ column }}
            {%- endfor %}
    {%- endif %}
{%- endmacro %}

{#- A month's usage version: how many landing files it holds and the latest load among them.
    A new, restated, re-evaluated or retracted file changes one or the other (every load is
    stamped later than the loads before it). -#}
{% macro customer_month_versions() -%}
    select
        month,
        count(distinct source_file) as usage_files,
        max(file_loaded_at) as usage_loaded_at
    from {{ ref('int_usage_months_aggregated') }}
    group by month
{%- endmacro %}

{#- The spender ranks' version of a month: its usage version and the latest load of
    customers.csv (names and parents reach every month). -#}
{% macro spender_month_versions() -%}
    select distinct
        customer_months.month,
        customer_months.usage_files,
        customer_months.usage_loaded_at,
        customers_version.customers_loaded_at
    from {{ ref('int_customer_months_aggregated') }} as customer_months
    cross join ({{ customers_version() }}) as customers_version
{%- endmacro %}

{% macro customers_version() -%}
    select max(loaded_at) as customers_loaded_at
    from {{ source('ingest', 'current_files') }}
    where source = 'customers'
{%- endmacro %}
