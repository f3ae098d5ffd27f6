-- One row per ticket_id: the version with the latest updated_at wins (the input contract's
-- rule). Exact copies collapse; two different versions with the same latest updated_at are
-- kept so the primary key test fails instead of one being picked at random.
with source as (
    select * from {{ source('raw', 'tickets') }}
),

latest as (
    select * from source
    qualify rank() over (partition by ticket_id order by updated_at desc) = 1
),

typed as (
    select distinct
        cast(ticket_id as varchar) as ticket_id,
        cast(account_id as varchar) as account_id,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(status as varchar) as status,
        cast(priority as varchar) as priority,
        cast(subject as varchar) as subject,
        cast(csat as bigint) as csat
    from latest
)

select
    *,
    -- The contract takes the updated_at of a resolved or closed ticket as its resolution time.
    case when status in ('resolved', 'closed') then updated_at end as resolved_at
from typed
