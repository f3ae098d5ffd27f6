-- One row per contract term, with the term that follows it and what that means: renewed (the
-- next term starts no later than 30 days after end_date), the ARR change, or churn.
with terms as (
    select
        contract_id,
        account_id,
        row_number() over (
            partition by account_id order by start_date, contract_id
        ) as term_number,
        start_date,
        end_date,
        arr
    from {{ ref('stg_raw__contracts') }}
),

-- The next term: the earliest term of the same account that starts later. When any term starts
-- within 30 days after end_date, this one does, so renewal only needs to look at it.
next_terms as (
    select
        terms.contract_id,
        candidate.contract_id as next_contract_id,
        candidate.start_date as next_start_date,
        candidate.arr as next_arr
    from terms
    inner join terms as candidate
        on candidate.account_id = terms.account_id
        and candidate.start_date > terms.start_date
    qualify row_number() over (
        partition by terms.contract_id
        order by candidate.start_date, candidate.contract_id
    ) = 1
),

terms_with_next as (
    select
        terms.*,
        next_terms.next_contract_id,
        next_terms.next_start_date,
        next_terms.next_arr,
        coalesce(
            next_terms.next_start_date <= terms.end_date + interval 30 day, false
        ) as is_renewed,
        terms.term_number = max(terms.term_number) over (
            partition by terms.account_id
        ) as is_last_term
    from terms
    left join next_terms using (contract_id)
)

select
    contract_id,
    account_id,
    term_number,
    start_date,
    end_date,
    arr,
    next_contract_id,
    next_start_date,
    is_renewed,
    case when is_renewed then next_arr - arr end as arr_change,
    case when is_last_term and not is_renewed then end_date end as churned_at
from terms_with_next
