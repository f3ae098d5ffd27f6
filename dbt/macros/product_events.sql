{#
    The product events that get their own count columns in fct_account_daily_activity, from the
    health model (product.events), which Dagster passes with the daily range (see run_var; by hand:
        --vars '{min_date: ..., max_date: ..., product_events: [login, report.created]}').
    Without the var, only the totals are built; at parse time, none (columns are not parsed). Names are checked by the health model's loader
    (lower case, digits, '.' and '_'), so they are safe in SQL; the check here stops anything else.
#}
{% macro product_events() -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set events = run_var('product_events', []) -%}
    {%- if events is string -%}
        {%- set events = [events] -%}
    {%- endif -%}
    {%- for name in events -%}
        {%- if not modules.re.match('^[a-z][a-z0-9]*([._][a-z0-9]+)*$', name | string) -%}
            {{ exceptions.raise_compiler_error("var 'product_events': '" ~ name ~ "' is not an event name (lower case, digits, '.' and '_')") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(events | unique | list) }}
{%- endmacro %}

{# 'report.created' -> events_report_created, as cs_pipeline.logic.config.event_column. #}
{% macro event_column(name) -%}
    events_{{ name | replace('.', '_') }}
{%- endmacro %}
