-- Retention KPIs per calendar month of renewal, overall, per segment and per CSM (docs/kpis.md).
-- A term is "up for renewal" in the month of its end_date; only decided terms (renewed, expanded,
-- contracted, churned) enter the rates, pending ones are counted apart. New logos (an account's
-- first term) are counted in the month they start and never enter GRR or NRR.
-- Point in time: a term's outcome goes to the segment and CSM the account had on the day before
-- the term's end_date (still inside the term, before a load on the renewal date can close the
-- account), a new logo to those of its start_date (marts.dim_accounts_history).
with outcomes as (
    select
        *,
        greatest(start_date, end_date - 1) as renewal_attributed_on
    from {{ ref('fct_term_outcomes') }}
),

versions as (
    {{ account_versions() }}
),

due as (
    select
        cast(date_trunc('month', outcomes.end_date) as date) as period_month,
        versions.segment,
        versions.owner_email,
        outcomes.outcome,
        outcomes.arr,
        outcomes.next_arr,
        outcomes.arr_change,
        0 as is_new_logo
    from outcomes
    asof left join versions
        on versions.account_id = outcomes.account_id
        and versions.valid_from <= outcomes.renewal_attributed_on
),

new_logos as (
    select
        cast(date_trunc('month', outcomes.start_date) as date) as period_month,
        versions.segment,
        versions.owner_email,
        'new_logo' as outcome,
        outcomes.arr,
        null as next_arr,
        null as arr_change,
        1 as is_new_logo
    from outcomes
    asof left join versions
        on versions.account_id = outcomes.account_id
        and versions.valid_from <= outcomes.start_date
    where outcomes.term_number = 1
),

events as (
    select * from due
    union all
    select * from new_logos
),

totals as (
    select
        period_month,
        -- grouping() is 1 where a rollup row stands for every value of the column
        case when grouping(segment) = 1 then 'all' else coalesce(segment, 'unknown') end as segment,
        case when grouping(owner_email) = 1 then 'all' else coalesce(owner_email, 'unassigned') end as owner_email,
        count(*) filter (where outcome not in ('pending', 'new_logo')) as terms_up_for_renewal,
        count(*) filter (where outcome = 'pending') as terms_pending,
        count(*) filter (where outcome in ('renewed', 'expanded', 'contracted')) as terms_renewed,
        count(*) filter (where outcome = 'churned') as terms_churned,
        count(*) filter (where outcome = 'expanded') as terms_expanded,
        count(*) filter (where outcome = 'contracted') as terms_contracted,
        coalesce(sum(arr) filter (where outcome not in ('pending', 'new_logo')), 0) as arr_up_for_renewal,
        coalesce(sum(arr) filter (where outcome = 'pending'), 0) as arr_pending,
        -- ARR kept: what renewed, never more than the term's own ARR (expansion is not retention)
        coalesce(sum(least(next_arr, arr)) filter (where outcome in ('renewed', 'expanded', 'contracted')), 0) as arr_retained,
        coalesce(sum(arr_change) filter (where outcome = 'expanded'), 0) as arr_expansion,
        coalesce(-sum(arr_change) filter (where outcome = 'contracted'), 0) as arr_contraction,
        coalesce(sum(arr) filter (where outcome = 'churned'), 0) as arr_churned,
        coalesce(sum(is_new_logo), 0) as new_logos,
        coalesce(sum(arr) filter (where outcome = 'new_logo'), 0) as arr_new_logos
    from events
    group by grouping sets ((period_month), (period_month, segment), (period_month, owner_email))
)

select
    *,
    arr_retained / nullif(arr_up_for_renewal, 0) as grr,
    (arr_retained + arr_expansion) / nullif(arr_up_for_renewal, 0) as nrr,
    terms_renewed / nullif(terms_up_for_renewal, 0) as renewal_rate,
    terms_churned / nullif(terms_up_for_renewal, 0) as logo_churn_rate,
    arr_churned / nullif(arr_up_for_renewal, 0) as arr_churn_rate,
    arr_expansion / nullif(arr_up_for_renewal, 0) as expansion_rate,
    arr_contraction / nullif(arr_up_for_renewal, 0) as contraction_rate
from totals
