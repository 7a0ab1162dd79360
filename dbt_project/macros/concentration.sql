{#- The 2023 US Merger Guidelines' grades of an HHI (0-10,000), from the project vars. Applied
    to a seller's customers this is an analogy: it grades dependence, not market power. -#}
{% macro concentration_level(hhi) -%}
    case
        when {{ hhi }} > {{ var('hhi_highly_concentrated') }} then 'highly_concentrated'
        when {{ hhi }} >= {{ var('hhi_moderately_concentrated') }} then 'moderately_concentrated'
        else 'unconcentrated'
    end
{%- endmacro %}

{#- Ratio that is NULL, not an error, when the denominator is zero or NULL. -#}
{% macro safe_ratio(numerator, denominator) -%}
    cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)
{%- endmacro %}
