{#
    Fails for every combination of `combination_of_columns` that occurs more than once: the
    primary key test of a model whose grain is several columns (dbt_utils has the same test; this
    project installs no packages).

    `daily_range_column`: on daily models, check only the days of the run (vars min_date and
    max_date, see macros/daily_range.sql): those are the rows the run wrote, and the check costs
    the same on day 1 and day 1,000. `monthly_range_column`: the same for a column holding the
    first day of a month: the months the run touched.
#}
{% test unique_combination_of_columns(model, combination_of_columns, daily_range_column=none, monthly_range_column=none) %}
    {%- set columns = combination_of_columns | join(', ') -%}
    select {{ columns }}, count(*) as n_rows
    from {{ model }}
    {%- if daily_range_column %}
        {%- set range = daily_range() %}
    where {{ daily_range_column }} between date '{{ range.min_date }}' and date '{{ range.max_date }}'
    {%- elif monthly_range_column %}
        {%- set range = daily_range() %}
    where {{ monthly_range_column }} between date_trunc('month', date '{{ range.min_date }}') and date '{{ range.max_date }}'
    {%- endif %}
    group by {{ columns }}
    having count(*) > 1
{% endtest %}
