-- One row per user_id. Exact copies collapse; conflicting rows with one user_id are kept so
-- the primary key test fails.
with source as (
    -- The current version of each record (raw.users keeps every version: scd2).
    select * from {{ source('raw', 'users') }}
    where _dlt_valid_to is null
)

select distinct
    cast(user_id as varchar) as user_id,
    cast(account_id as varchar) as account_id,
    cast(email as varchar) as email,
    cast(role as varchar) as role,
    cast(created_at as timestamp) as created_at,
    cast(activated_at as timestamp) as activated_at,
    cast(deactivated_at as timestamp) as deactivated_at
from source
