-- One row per contract term and what became of it (CONTRACT.md §1): renewed at the same ARR,
-- expanded or contracted (renewed with more or less ARR), churned (ended without a term starting
-- within 30 days of its end_date), or pending (no successor yet, but the 30 days after its end
-- have not all passed as of today). The backtest and the KPI marts read it.
{% set today = env_var('CS_PIPELINE_TODAY', '') %}
with terms as (
    select * from {{ ref('fct_contract_terms') }}
),

as_of as (
    select {% if today %}cast('{{ today }}' as date){% else %}current_date{% endif %} as today
)

select
    terms.contract_id,
    terms.account_id,
    terms.term_number,
    terms.start_date,
    terms.end_date,
    terms.arr,
    terms.next_contract_id,
    terms.next_start_date,
    terms.arr + terms.arr_change as next_arr,
    terms.arr_change,
    case
        when terms.is_renewed and terms.arr_change > 0 then 'expanded'
        when terms.is_renewed and terms.arr_change < 0 then 'contracted'
        when terms.is_renewed then 'renewed'
        when terms.end_date + interval 30 day >= as_of.today then 'pending'
        else 'churned'
    end as outcome,
    -- The day the outcome happened: the next term's start for a renewal, the end_date for a churn.
    case
        when terms.is_renewed then terms.next_start_date
        when terms.end_date + interval 30 day < as_of.today then terms.end_date
    end as outcome_date,
    terms.churned_at is not null as is_last_term_unrenewed
from terms
cross join as_of
