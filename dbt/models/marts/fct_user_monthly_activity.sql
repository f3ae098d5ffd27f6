-- Per user and calendar month: the days the user was active, as a bitmask (bit 0 = the 1st).
-- account_daily_usage counts distinct active users over its 7- and 30-day windows from these
-- rows (at most two months per window, one row per user and month) instead of reading one row
-- per user, day and event.
--
-- A run for min_date..max_date recomputes the bits of those days and keeps the other bits of the
-- months it touches, so a range re-run replaces its days, never duplicates them, and leaves days
-- outside the range alone. Rows are replaced by (activity_month, account_id, user_id); a row whose
-- bits all cleared stays with active_days = 0 and counts as inactive.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['activity_month', 'account_id', 'user_id'],
        full_refresh=false,
        tags=['daily'],
    )
}}

{%- set range = daily_range() %}
{%- set min_date = "date '" ~ range.min_date ~ "'" %}
{%- set max_date = "date '" ~ range.max_date ~ "'" %}

with in_range as (
    select
        cast(date_trunc('month', activity_date) as date) as activity_month,
        account_id,
        user_id,
        bit_or(cast(1 as bigint) << (day(activity_date) - 1)) as active_days
    from {{ ref('fct_user_daily_activity') }}
    where activity_date between {{ min_date }} and {{ max_date }}
    group by all
)
{%- if is_incremental() %},

-- The stored bits of the touched months, minus the bits of the range's days in that month.
kept as (
    select
        activity_month,
        account_id,
        user_id,
        active_days & ~(
            ((cast(1 as bigint) << (day(least({{ max_date }}, last_day(activity_month)))
                                     - day(greatest({{ min_date }}, activity_month)) + 1)) - 1)
            << (day(greatest({{ min_date }}, activity_month)) - 1)
        ) as active_days
    from {{ this }}
    where activity_month between cast(date_trunc('month', {{ min_date }}) as date)
                             and cast(date_trunc('month', {{ max_date }}) as date)
)
{%- endif %}

select activity_month, account_id, user_id, bit_or(active_days) as active_days
from (
    select * from in_range
    {%- if is_incremental() %}
    union all
    select * from kept
    {%- endif %}
)
group by all
