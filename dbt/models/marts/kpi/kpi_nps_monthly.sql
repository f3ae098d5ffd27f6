-- NPS and survey response rate per calendar month, overall, per segment and per CSM
-- (docs/kpis.md). Nobody records who was asked, so the response rate is an honest proxy:
-- distinct users who answered in the month over users holding an activated seat during it.
-- Point in time: a response goes to the segment and CSM the account had on the day it was
-- submitted; a seat goes to the account the user belonged to on the month's last day
-- (marts.dim_users_history), and to that account's segment and CSM on that day
-- (marts.dim_accounts_history).
with versions as (
    {{ account_versions() }}
),

responses as (
    select
        cast(date_trunc('month', responses.submitted_date) as date) as period_month,
        responses.account_id,
        versions.segment,
        versions.owner_email,
        responses.score,
        -- a user answering twice in the month (even under two CSMs) is one responding user,
        -- credited where they first answered
        responses.user_id is not null and row_number() over (
            partition by date_trunc('month', responses.submitted_date), responses.account_id, responses.user_id
            order by responses.submitted_at, responses.response_id
        ) = 1 as is_first_answer
    from {{ ref('stg_raw__nps_responses') }} as responses
    asof left join versions
        on versions.account_id = responses.account_id
        and versions.valid_from <= responses.submitted_date
),

months as (
    select distinct
        period_month,
        cast(period_month + interval 1 month - interval 1 day as date) as month_end
    from responses
),

-- Users with an activated seat at some time in the month, per account: one row per (month,
-- account), so the users are joined on the response months only. One version of a user is
-- valid on a day (dim_users_history's no-overlap test stops the build otherwise), so count(*)
-- counts distinct users.
seated as (
    select months.period_month, months.month_end, users.account_id, count(*) as active_users
    from months
    inner join {{ ref('dim_users_history') }} as users
        on users.valid_from <= months.month_end
        and (users.valid_to is null or months.month_end < users.valid_to)
        and users.activated_at < months.period_month + interval 1 month
        and (users.deactivated_at is null or users.deactivated_at >= months.period_month)
    group by all
),

seated_by_audience as (
    select seated.period_month, seated.account_id, versions.segment, versions.owner_email, seated.active_users
    from seated
    asof left join versions
        on versions.account_id = seated.account_id
        and versions.valid_from <= seated.month_end
),

per_account as (
    select
        period_month,
        account_id,
        segment,
        owner_email,
        count(*) as responses,
        count(*) filter (where score >= 9) as promoters,
        count(*) filter (where score between 7 and 8) as passives,
        count(*) filter (where score <= 6) as detractors,
        count(*) filter (where is_first_answer) as responding_users
    from responses
    group by all
),

joined as (
    select
        period_month,
        segment,
        owner_email,
        coalesce(per_account.responses, 0) as responses,
        coalesce(per_account.promoters, 0) as promoters,
        coalesce(per_account.passives, 0) as passives,
        coalesce(per_account.detractors, 0) as detractors,
        coalesce(per_account.responding_users, 0) as responding_users,
        coalesce(seated_by_audience.active_users, 0) as active_users
    from per_account
    full outer join seated_by_audience using (period_month, account_id, segment, owner_email)
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
