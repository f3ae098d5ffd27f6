-- Events per (day, account, user, event name): the daily aggregate the usage asset builds its
-- 1/7/30-day figures from, so no partition rescans 30 days of raw events.
--
-- Built for the days min_date..max_date (vars, see macros/daily_range.sql). A run first deletes
-- those days, in the same transaction as the insert, so running a range again replaces it and
-- never duplicates rows. Days outside the range are left alone. The first run creates the
-- table with the given range only. --full-refresh is ignored (full_refresh=false): it would
-- drop every day outside the range; rebuild history with a backfill instead.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        tags=['daily'],
        pre_hook="{% if is_incremental() %}{% set range = daily_range() %}delete from {{ this }} where activity_date between date '{{ range.min_date }}' and date '{{ range.max_date }}'{% endif %}",
    )
}}

{%- set range = daily_range() %}

select
    event_date as activity_date,
    account_id,
    user_id,
    event,
    count(*) as event_count
from {{ ref('stg_raw__events') }}
where event_date between date '{{ range.min_date }}' and date '{{ range.max_date }}'
group by all
