{#
    A TIMESTAMP WITH TIME ZONE column (dlt's scd2 validity columns) as a naive UTC timestamp,
    whatever the session's time zone.
#}
{% macro utc_timestamp(column) -%}
    timezone('UTC', cast({{ column }} as timestamptz))
{%- endmacro %}
