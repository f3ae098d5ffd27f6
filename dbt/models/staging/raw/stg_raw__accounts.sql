-- One row per account_id. Exact copies collapse; two different rows with one account_id are
-- both kept, so the primary key test fails instead of one being picked at random.
with source as (
    select * from {{ source('raw', 'accounts') }}
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
