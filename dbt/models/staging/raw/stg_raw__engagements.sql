-- One row per engagement_id. Exact copies collapse; conflicting rows with one engagement_id
-- are kept so the primary key test fails.
with source as (
    select * from {{ source('raw', 'engagements') }}
)

select distinct
    cast(engagement_id as varchar) as engagement_id,
    cast(account_id as varchar) as account_id,
    cast(type as varchar) as type,
    cast(occurred_at as timestamp) as occurred_at
from source
