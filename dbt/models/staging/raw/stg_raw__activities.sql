-- One row per activity_id (a CSM touch point). Exact copies collapse; conflicting rows with
-- one activity_id are kept so the primary key test fails.
with source as (
    select * from {{ source('raw', 'activities') }}
)

select distinct
    cast(activity_id as varchar) as activity_id,
    cast(account_id as varchar) as account_id,
    nullif(trim(cast(owner_email as varchar)), '') as owner_email,
    cast(type as varchar) as type,
    cast(occurred_at as timestamp) as occurred_at
from source
