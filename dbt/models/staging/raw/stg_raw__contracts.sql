-- One row per contract_id (a contract term). Exact copies collapse; conflicting rows with one
-- contract_id are kept so the primary key test fails.
with source as (
    select * from {{ source('raw', 'contracts') }}
)

select distinct
    cast(contract_id as varchar) as contract_id,
    cast(account_id as varchar) as account_id,
    cast(start_date as date) as start_date,
    cast(end_date as date) as end_date,
    cast(arr as double) as arr
from source
