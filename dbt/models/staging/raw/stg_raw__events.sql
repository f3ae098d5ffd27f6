-- A view, not a table: raw.events grows by a day per run, and a copy would be rebuilt whole
-- each day. Daily models read it for a few days at a time; DuckDB pushes a caller's
-- `event_date` filter into the scan of raw.events, so only those days are read.
--
-- One row per (event_date, event_id) already: ingestion keeps the first of a re-delivered event
-- and checks the ids of every day it writes (asset check `unique_event_id_per_day` on
-- raw/events), so the view does not rank the day's rows again (a sort of 10M rows a day).
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
