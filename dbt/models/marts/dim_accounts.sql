-- One row per account: the staged account and its contract position. "Current" is the
-- account's latest term by start_date (its highest term_number), whether or not it has ended.
with accounts as (
    select * from {{ ref('stg_raw__accounts') }}
),

terms as (
    select * from {{ ref('fct_contract_terms') }}
),

contract_position as (
    select
        account_id,
        min(start_date) as first_term_start,
        arg_max(contract_id, term_number) as current_contract_id,
        arg_max(arr, term_number) as current_arr,
        arg_max(end_date, term_number) as renewal_date
    from terms
    group by account_id
)

select
    accounts.*,
    contract_position.first_term_start,
    contract_position.current_contract_id,
    contract_position.current_arr,
    contract_position.renewal_date
from accounts
left join contract_position using (account_id)
