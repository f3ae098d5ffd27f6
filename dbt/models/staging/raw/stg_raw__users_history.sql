-- Every version of every user, one row each, typed: raw.users keeps them (dlt's scd2 merge).
-- A version is valid from the load that recorded it (valid_from_at) until the load that changed
-- or removed it (valid_to_at, NULL while it is current). Exact copies collapse.
with source as (
    select * from {{ source('raw', 'users') }}
)

select distinct
    cast(user_id as varchar) as user_id,
    cast(account_id as varchar) as account_id,
    cast(email as varchar) as email,
    cast(role as varchar) as role,
    cast(created_at as timestamp) as created_at,
    cast(activated_at as timestamp) as activated_at,
    cast(deactivated_at as timestamp) as deactivated_at,
    {{ utc_timestamp('_dlt_valid_from') }} as valid_from_at,
    {{ utc_timestamp('_dlt_valid_to') }} as valid_to_at
from source
