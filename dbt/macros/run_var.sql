{#
    A run's setting: the dbt var when one is given on the command line (--vars), else the same key
    of the JSON object in the environment variable CS_PIPELINE_DBT_VARS, which is how Dagster
    passes them. dbt parses the whole project again (about 2 s) whenever --vars differ from the
    last parse, that is on every daily run; a value read from the environment while running is
    not part of the parse, so Dagster's runs keep dbt's partial parsing.

    For run time only (`execute`): at parse time the caller returns placeholders.
#}
{% macro run_var(name, default=none) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none -%}
        {%- set value = fromjson(env_var('CS_PIPELINE_DBT_VARS', '{}')).get(name, default) -%}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}
