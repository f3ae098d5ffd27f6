{#
    The days a daily run covers, from the run's vars (see run_var; by hand:
        --vars '{min_date: 2025-03-01, max_date: 2025-03-07}').
    Returns {'min_date': 'YYYY-MM-DD', 'max_date': 'YYYY-MM-DD'}, both inclusive.

    Stops the run with a message saying what to pass when a var is missing or is not a date:
    the values are written into SQL, so only YYYY-MM-DD gets through. At parse time
    (`execute` false) vars are not known yet and placeholders are returned.
#}
{% macro daily_range() -%}
    {%- if not execute -%}
        {{ return({'min_date': '1970-01-01', 'max_date': '1970-01-01'}) }}
    {%- endif -%}
    {%- set usage = "--vars '{min_date: YYYY-MM-DD, max_date: YYYY-MM-DD}'" -%}
    {%- set bounds = {} -%}
    {%- for name in ['min_date', 'max_date'] -%}
        {%- set value = run_var(name) -%}
        {%- if value is none or (value | string | trim) == '' -%}
            {{ exceptions.raise_compiler_error(
                "var '" ~ name ~ "' is missing: " ~ model.name ~ " (tag daily) works on a range of days; pass " ~ usage
            ) }}
        {%- endif -%}
        {#- YAML reads an unquoted 2025-03-01 as a date; str() gives it back as YYYY-MM-DD. -#}
        {%- set text = value | string | trim -%}
        {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', text) -%}
            {{ exceptions.raise_compiler_error(
                "var '" ~ name ~ "' must be a date as YYYY-MM-DD, got '" ~ text ~ "'; pass " ~ usage
            ) }}
        {%- endif -%}
        {%- do bounds.update({name: text}) -%}
    {%- endfor -%}
    {%- if bounds['min_date'] > bounds['max_date'] -%}
        {{ exceptions.raise_compiler_error(
            "min_date " ~ bounds['min_date'] ~ " is after max_date " ~ bounds['max_date']
        ) }}
    {%- endif -%}
    {{ return(bounds) }}
{%- endmacro %}
