-- One row per account_id. Exact copies collapse; two different rows with one account_id are
-- both kept, so the primary key test fails instead of one being picked at random.
with source as (
    -- The current version of each record (raw.accounts keeps every version: scd2).
    select * from {{ source('raw', 'accounts') }}
    where _dlt_valid_to is null
)

select distinct
    cast(account_id as varchar) as account_id,
    cast(name as varchar) as name,
    cast(segment as varchar) as segment,
    nullif(trim(cast(owner_email as varchar)), '') as owner_email,
    cast(plan as varchar) as plan,
    cast(licenses as bigint) as licenses,
    cast(status as varchar) as status,
    cast(created_at as timestamp) as created_at
from source
