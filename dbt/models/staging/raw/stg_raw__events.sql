-- A view, not a table: raw.events grows by a day per run, and a copy would be rebuilt whole
-- each day. Daily models read it for a few days at a time.
--
-- One row per (event_date, event_id): a re-delivered event counts once. The window is
-- partitioned by event_date first, so DuckDB pushes a caller's `event_date` filter below it and
-- reads only those days of raw.events.
{{ config(materialized='view', tags=['daily']) }}

with source as (
    -- Without the database name: the view keeps working when the warehouse file is renamed or
    -- copied (DuckDB names a file's catalog after the file).
    select * from {{ source('raw', 'events').include(database=false) }}
)

select
    cast(event_id as varchar) as event_id,
    cast(account_id as varchar) as account_id,
    cast(user_id as varchar) as user_id,
    cast(event as varchar) as event,
    cast(occurred_at as timestamp) as occurred_at,
    cast(event_date as date) as event_date
from source
qualify row_number() over (
    partition by event_date, event_id
    order by occurred_at, account_id, user_id, event
) = 1
