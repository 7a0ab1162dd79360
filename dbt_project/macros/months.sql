{#- How the tables after the usage fact are kept incrementally by month: each row carries the
    version of its month's inputs, and a run rebuilds only the months whose version changed
    (and removes the months that are gone). Comparing versions, rather than following what this
    invocation processed, keeps a model right after an earlier build failed half-way. -#}

{#- A month-incremental model's months to build now, each with its version: every month on a
    full build, otherwise those whose version differs from the one the model holds. The model
    calls it once, naming the macro that gives each month's version now (`versions`: one row
    per month) and its version columns (`columns`); it also sets the model's config (config()
    in a macro applies to the model calling it). Called by name, the versions macros stay in
    this file: dbt re-parses the models when this file changes. -#}
{% macro month_model(versions, columns) -%}
    {%- do config(**month_model_config(versions, columns)) -%}
    {%- set version_sql = context[versions]() -%}
    select * from ({{ version_sql }}) as month_versions
    {% if is_incremental() %}
        where month not in (
            select unchanged.month
            from ({{ unchanged_months(this, version_sql, columns) }}) as unchanged
        )
    {% endif %}
{%- endmacro %}

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

{#- A month's version as the spender ranks were built with it (each month's rows carry it): the
    version of the models after the ranks, which follow what their inputs hold, so a model
    downstream of a half-failed build catches up when its inputs do. -#}
{% macro ranked_month_versions() -%}
    select distinct
        month,
        usage_files,
        usage_loaded_at,
        customers_loaded_at
    from {{ ref('int_spenders_ranked') }}
{%- endmacro %}

{#- The version of a month for a model that also reads the month before and the same month a
    year before (growth): over the months it reads, the landing files summed and the latest
    loads. Any change to a month read changes it: a new, restated or re-evaluated file is a
    later load, and a retraction alone lowers the count. -#}
{% macro growth_month_versions() -%}
    select
        month_versions.month,
        sum(read_versions.usage_files) as read_usage_files,
        max(read_versions.usage_loaded_at) as read_usage_loaded_at,
        max(read_versions.customers_loaded_at) as customers_loaded_at
    from ({{ ranked_month_versions() }}) as month_versions
    inner join ({{ ranked_month_versions() }}) as read_versions
        on read_versions.month in (
            month_versions.month,
            {{ add_months('month_versions.month', -1) }},
            {{ add_months('month_versions.month', -12) }}
        )
    group by month_versions.month
{%- endmacro %}
