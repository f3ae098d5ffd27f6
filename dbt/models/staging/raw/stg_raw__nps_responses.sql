-- One row per response_id. Exact copies collapse; conflicting rows with one response_id are
-- kept so the primary key test fails.
with source as (
    select * from {{ source('raw', 'nps_responses') }}
),

typed as (
    select distinct
        cast(response_id as varchar) as response_id,
        cast(account_id as varchar) as account_id,
        nullif(trim(cast(user_id as varchar)), '') as user_id,
        cast(score as bigint) as score,
        nullif(trim(cast(comment as varchar)), '') as comment,
        cast(submitted_at as timestamp) as submitted_at
    from source
)

select
    *,
    cast(submitted_at as date) as submitted_date
from typed
