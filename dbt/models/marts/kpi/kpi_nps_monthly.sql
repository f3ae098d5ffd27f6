-- NPS and survey response rate per calendar month, overall, per segment and per CSM
-- (docs/kpis.md). Nobody records who was asked, so the response rate is an honest proxy:
-- distinct users who answered in the month over users holding an activated seat during it.
with responses as (
    select
        cast(date_trunc('month', submitted_date) as date) as period_month,
        account_id,
        user_id,
        score
    from {{ ref('stg_raw__nps_responses') }}
),

accounts as (
    select
        account_id,
        coalesce(nullif(segment, ''), 'unknown') as segment,
        coalesce(nullif(owner_email, ''), 'unassigned') as owner_email
    from {{ ref('dim_accounts') }}
),

months as (
    select distinct period_month from responses
),

-- Users with an activated seat at some time in the month, per account: one row per (month,
-- account), so the users table is joined on the response months only.
seated as (
    select months.period_month, users.account_id, count(distinct users.user_id) as active_users
    from months
    inner join {{ ref('stg_raw__users') }} as users
        on users.activated_at < months.period_month + interval 1 month
        and (users.deactivated_at is null or users.deactivated_at >= months.period_month)
    group by all
),

per_account as (
    select
        period_month,
        account_id,
        count(*) as responses,
        count(*) filter (where score >= 9) as promoters,
        count(*) filter (where score between 7 and 8) as passives,
        count(*) filter (where score <= 6) as detractors,
        count(distinct user_id) as responding_users
    from responses
    group by all
),

joined as (
    select
        coalesce(per_account.period_month, seated.period_month) as period_month,
        accounts.segment,
        accounts.owner_email,
        coalesce(per_account.responses, 0) as responses,
        coalesce(per_account.promoters, 0) as promoters,
        coalesce(per_account.passives, 0) as passives,
        coalesce(per_account.detractors, 0) as detractors,
        coalesce(per_account.responding_users, 0) as responding_users,
        coalesce(seated.active_users, 0) as active_users
    from per_account
    full outer join seated using (period_month, account_id)
    left join accounts on accounts.account_id = coalesce(per_account.account_id, seated.account_id)
),

totals as (
    select
        period_month,
        case when grouping(segment) = 1 then 'all' else coalesce(segment, 'unknown') end as segment,
        case when grouping(owner_email) = 1 then 'all' else coalesce(owner_email, 'unassigned') end as owner_email,
        sum(responses) as responses,
        sum(promoters) as promoters,
        sum(passives) as passives,
        sum(detractors) as detractors,
        sum(responding_users) as responding_users,
        sum(active_users) as active_users
    from joined
    group by grouping sets ((period_month), (period_month, segment), (period_month, owner_email))
)

select
    period_month,
    segment,
    owner_email,
    cast(responses as bigint) as responses,
    cast(promoters as bigint) as promoters,
    cast(passives as bigint) as passives,
    cast(detractors as bigint) as detractors,
    cast(responding_users as bigint) as responding_users,
    cast(active_users as bigint) as active_users,
    100.0 * (promoters - detractors) / nullif(responses, 0) as nps,
    responding_users / nullif(active_users, 0) as response_rate
from totals
