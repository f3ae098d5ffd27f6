-- Every version of every account, one row each, typed: raw.accounts keeps them (dlt's scd2
-- merge). A version is valid from the load that recorded it (valid_from_at) until the load that
-- changed or removed it (valid_to_at, NULL while it is current). Exact copies collapse.
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
    cast(created_at as timestamp) as created_at,
    {{ utc_timestamp('_dlt_valid_from') }} as valid_from_at,
    {{ utc_timestamp('_dlt_valid_to') }} as valid_to_at
from source
