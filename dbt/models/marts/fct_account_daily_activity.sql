-- Per account and day: active users, logins, events, and one count per product event (the
-- health model's product.events, dbt var product_events). It is what account_daily_usage sums
-- its 7- and 30-day windows from: 30 narrow rows per account instead of one row per user, day
-- and event.
--
-- Built for the days min_date..max_date, replacing them, like fct_user_daily_activity. A product
-- event added to the health model later gets its column on the next run (on_schema_change), empty
-- (NULL) on the days built before: account_daily_usage refuses such days in its windows and says
-- which days to re-run.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        full_refresh=false,
        tags=['daily'],
        pre_hook="{% if is_incremental() %}{% set range = daily_range() %}delete from {{ this }} where activity_date between date '{{ range.min_date }}' and date '{{ range.max_date }}'{% endif %}",
    )
}}

{%- set range = daily_range() %}

select
    activity_date,
    account_id,
    count(distinct user_id) as active_users,
    -- sum() of BIGINT is HUGEINT in DuckDB: 128-bit columns are slow to scan and to hand to
    -- Arrow (decimals), so every count is cast back to BIGINT.
    cast(coalesce(sum(event_count) filter (where event = 'login'), 0) as bigint) as logins,
    cast(sum(event_count) as bigint) as events
    {%- for name in product_events() %},
    cast(coalesce(sum(event_count) filter (where event = '{{ name }}'), 0) as bigint) as {{ event_column(name) }}
    {%- endfor %}
from {{ ref('fct_user_daily_activity') }}
where activity_date between date '{{ range.min_date }}' and date '{{ range.max_date }}'
group by all
