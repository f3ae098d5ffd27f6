"""Drawing the world: accounts by profile (noise, healthy, planted), their names and their users."""

from __future__ import annotations

import math

import numpy as np

from cs_pipeline.demo.world import (
    ACTIVE, COMPANY_FIRST, COMPANY_SECOND, CSM_ACCOUNTS, DAY_S, DemoSpec, FIRST_NAMES,
    HEALTHY, HEALTHY_SHARE_MIN, HEALTHY_SHARE_TARGET, HOUR_S, LAST_NAMES, MIN_DAYS_FOR_PLANTS,
    NEVER, NOISE, NONE, PLANTED, RULES, SEAT_PRICE, SEGMENT_PLANS, SEGMENT_SEATS,
    SEGMENT_SHARES, TOUCH_CADENCE_DAYS, TRIAL, Accounts, Users, Window, World, add_months,
    terms_through,
)
from cs_pipeline.demo import churn
from cs_pipeline.demo.plants import plant_catalogue


def build_world(spec: DemoSpec, win: Window) -> World:
    rng = np.random.default_rng(spec.seed)
    plants = plant_catalogue() if win.days >= MIN_DAYS_FOR_PLANTS else []
    n_healthy_min = math.ceil(HEALTHY_SHARE_MIN * spec.accounts)
    plants = plants[: max(0, spec.accounts - n_healthy_min)]
    n_healthy = min(spec.accounts - len(plants), max(n_healthy_min, round(HEALTHY_SHARE_TARGET * spec.accounts)))

    order = rng.permutation(spec.accounts)  # which account gets which role
    planted_idx, healthy_idx = order[: len(plants)], order[len(plants): len(plants) + n_healthy]
    profile = np.full(spec.accounts, NOISE, np.int8)
    profile[planted_idx], profile[healthy_idx] = PLANTED, HEALTHY

    n_csm = max(1, math.ceil(spec.accounts / CSM_ACCOUNTS))
    acc = _draw_accounts(rng, spec, win, profile, n_csm)
    world = World(spec=spec, win=win, rng=rng, acc=acc, csm_emails=_csm_emails(rng, n_csm))
    world.account_ids = _numbered("acc_", spec.accounts, 5)
    world.account_names, world.domains = _company_names(rng, spec.accounts)

    for plant, a in zip(plants, planted_idx):
        plant.shape_account(world, int(a))
    churn.simulate(spec.seed, spec.drivers, acc, win, np.flatnonzero((profile == NOISE) & (acc.status != TRIAL)))
    _resolve_user_windows(acc)
    world.users = _draw_users(rng, spec, acc)
    churn.script_users(world)
    world.planted = {rule: [] for rule in RULES}
    for plant, a in zip(plants, planted_idx):
        account_id = world.account_ids[a]
        world.planted[plant.rule].append(account_id)
        world.details[account_id] = {"rule": plant.rule, **plant.script(world, int(a))}
    world.healthy = sorted(world.account_ids[a] for a in healthy_idx)
    return world


def _numbered(prefix: str, n: int, width: int) -> list[str]:
    width = max(width, len(str(n)))
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n)]


def _distinct_pairs(rng: np.random.Generator, n: int, firsts: tuple[str, ...],
                    seconds: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """n distinct (first, second, number) triples in random order; the number is empty until
    every pair has been used once, then 2, 3..."""
    n_pairs = len(firsts) * len(seconds)
    pairs = rng.permutation(n_pairs)
    triples = []
    for i in range(n):
        pair, round_ = pairs[i % n_pairs], i // n_pairs
        triples.append((firsts[pair // len(seconds)], seconds[pair % len(seconds)], str(round_ + 1) if round_ else ""))
    return triples


def _company_names(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """`Cedar Logistics` and its e-mail domain `cedar-logistics.example.com`."""
    names = [f"{a} {b} {k}".strip() for a, b, k in _distinct_pairs(rng, n, COMPANY_FIRST, COMPANY_SECOND)]
    return names, [name.lower().replace(" ", "-") + ".example.com" for name in names]


def _csm_emails(rng: np.random.Generator, n: int) -> list[str]:
    """`alice.martin@example.com`, one per CSM."""
    return [f"{a}.{b}{k}@example.com" for a, b, k in _distinct_pairs(rng, n, FIRST_NAMES, LAST_NAMES)]


# --------------------------------------------------------------------------------------------
# Accounts: noise defaults for everyone, then the calm profile for healthy and planted accounts.


def _draw_accounts(rng: np.random.Generator, spec: DemoSpec, win: Window, profile: np.ndarray,
                   n_csm: int) -> Accounts:
    n = spec.accounts
    segment = rng.choice(3, size=n, p=SEGMENT_SHARES).astype(np.int8)
    plan = _draw_plans(rng, segment)
    licenses = _draw_licenses(rng, spec, segment)
    status = np.where(rng.random(n) < 0.05, TRIAL, ACTIVE).astype(np.int8)
    owner = rng.permutation(n) % n_csm
    owner[rng.random(n) < 0.03] = NONE  # a few accounts nobody owns yet
    tz_hours = rng.choice(np.array([-8.0, -5.0, 0.0, 1.0, 5.5, 9.0]), size=n, p=(0.15, 0.3, 0.15, 0.25, 0.05, 0.1))

    # Contracts: customers renew every year since their first term (churn.simulate decides who
    # stops); a few new logos sign during the window; trials have none.
    first_start = win.start - rng.integers(0, 3 * 365, size=n)
    new_logo = rng.random(n) < 0.08
    first_start[new_logo] = win.end - rng.integers(5, max(win.days, 6), size=new_logo.sum())
    n_terms = terms_through(first_start, win.end)
    trial = status == TRIAL
    first_start[trial], n_terms[trial] = NONE, 0
    life_end = np.full(n, win.end + 1, np.int64)

    created_day = np.where(trial, win.end - rng.integers(7, 45, size=n), first_start - rng.integers(3, 60, size=n))
    created_s = created_day * DAY_S + rng.integers(8 * HOUR_S, 18 * HOUR_S, size=n)
    n_users = np.maximum(1, np.round(licenses * rng.uniform(0.7, 1.0, size=n))).astype(np.int64)
    n_active = np.minimum(n_users, np.round(rng.beta(5, 2, size=n) * licenses)).astype(np.int64)
    n_deactivated = np.minimum(n_users - n_active, rng.poisson(0.08 * n_users))
    cadence = np.maximum(3, np.array(TOUCH_CADENCE_DAYS)[segment] * rng.uniform(0.8, 1.5, size=n)).astype(np.int64)

    acc = Accounts(
        profile=profile, segment=segment, plan=plan, licenses=licenses, status=status, owner=owner,
        tz_hours=tz_hours, created_s=created_s, first_start=first_start, n_terms=n_terms,
        life_end=life_end, arr_base=np.round(licenses * np.array(SEAT_PRICE)[segment] * rng.uniform(0.85, 1.15, n), -2),
        n_users=n_users, n_active=n_active, n_deactivated=n_deactivated,
        users_from_s=np.full(n, NONE), users_until_s=life_end * DAY_S - 2 * DAY_S,
        settled_by_s=life_end * DAY_S - HOUR_S,
        usage_from=created_day, usage_to=life_end.copy(), pause_from=np.zeros(n, np.int64),
        pause_to=np.zeros(n, np.int64), engagement=rng.uniform(0.35, 1.0, n), trend=rng.uniform(0.6, 1.3, n),
        uses_workflows=rng.random(n) < 0.75, core_users=np.zeros(n, np.int64),
        touch_from=created_day.copy(), touch_to=life_end.copy(), cadence=cadence,
        calm=np.zeros(n, bool), nps_rate=np.ones(n), marketing=np.ones(n),
    )
    _make_calm(rng, acc, win, np.flatnonzero(profile != NOISE), n_csm)
    return acc


def _draw_plans(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    plan = np.empty(len(segment), np.int8)
    for s, (plans, shares) in enumerate(SEGMENT_PLANS):
        rows = np.flatnonzero(segment == s)
        plan[rows] = rng.choice(plans, size=len(rows), p=shares)
    return plan


def _draw_licenses(rng: np.random.Generator, spec: DemoSpec, segment: np.ndarray) -> np.ndarray:
    """Seats bought: log-normal by segment, sized so that assigned users (about 85 % of
    licenses) average `users_per_account`."""
    scale = spec.users_per_account / 0.85 / float(np.dot(SEGMENT_SHARES, SEGMENT_SEATS))
    mean = np.array(SEGMENT_SEATS)[segment] * scale
    sigma = 0.5
    return np.maximum(2, np.round(rng.lognormal(np.log(mean) - sigma**2 / 2, sigma))).astype(np.int64)


def _make_calm(rng: np.random.Generator, acc: Accounts, win: Window, rows: np.ndarray, n_csm: int) -> None:
    """The healthy profile (planted accounts start from it too). Why each choice keeps every
    default rule quiet is said beside it."""
    n = len(rows)
    acc.status[rows] = ACTIVE
    acc.owner[rows] = np.where(acc.owner[rows] == NONE, rows % n_csm, acc.owner[rows])
    # Enough seats that 60-85 % activation still means several daily users (no_login_20d).
    licenses = np.where(acc.licenses[rows] < 8, rng.integers(8, 13, n), acc.licenses[rows])
    acc.licenses[rows] = licenses
    low, high = np.ceil(0.6 * licenses), np.floor(0.85 * licenses)
    acc.n_active[rows] = np.clip(np.round(rng.uniform(0.62, 0.83, n) * licenses), low, high)  # not upsell
    acc.n_users[rows] = np.maximum(np.round(licenses * rng.uniform(0.85, 1.0, n)), acc.n_active[rows])
    acc.n_deactivated[rows] = np.minimum(rng.poisson(0.05 * acc.n_users[rows]), acc.n_users[rows] - acc.n_active[rows])

    # Contract phase: the current term ends more than 200 days after end_date, and (when the
    # window is short enough) the previous one ended less than 90 days after the window's first
    # day, so no day sees days_to_renewal in 90..180 (renewal_at_risk). The first term started
    # long before the window: no onboarding check-in, no day-90 review.
    # (r <= 360 keeps end_date inside the current term.)
    latest = min(455 - win.days - 5, 360)
    r = rng.integers(205, latest + 1, n) if latest > 215 else rng.integers(205, 361, n)
    term_end = win.end + r
    current_start = add_months(term_end + 1, -12)
    onboarding_limit = win.start - 195
    years_back = np.ceil((current_start - onboarding_limit) / 365).astype(np.int64) + 1 + rng.integers(0, 3, n)
    first_start = add_months(current_start, -12 * years_back)
    acc.first_start[rows] = first_start
    acc.n_terms[rows] = terms_through(first_start, win.end)
    acc.life_end[rows] = win.end + 1
    created_day = first_start - rng.integers(5, 60, n)
    acc.created_s[rows] = created_day * DAY_S + rng.integers(8 * HOUR_S, 18 * HOUR_S, n)

    # Seats settled before the window: activation is the same on every day of it.
    acc.users_from_s[rows] = NONE
    acc.users_until_s[rows] = (win.start - 10) * DAY_S
    acc.settled_by_s[rows] = (win.start - 5) * DAY_S

    acc.usage_from[rows], acc.usage_to[rows] = created_day, win.end + 1
    acc.engagement[rows], acc.trend[rows] = rng.uniform(0.75, 1.0, n), 1.0
    acc.uses_workflows[rows] = True
    acc.core_users[rows] = 3
    acc.touch_from[rows], acc.touch_to[rows] = created_day, win.end + 1
    acc.cadence[rows] = np.minimum(acc.cadence[rows], 14)
    acc.calm[rows] = True


def _resolve_user_windows(acc: Accounts) -> None:
    default = acc.users_from_s == NONE
    acc.users_from_s[default] = acc.created_s[default]


# --------------------------------------------------------------------------------------------
# Users


def _draw_users(rng: np.random.Generator, spec: DemoSpec, acc: Accounts) -> Users:
    """Seats per account, the lowest ranks active, then deactivated, then never activated."""
    account = np.repeat(np.arange(acc.n), acc.n_users)
    n = len(account)
    rank = np.arange(n) - np.repeat(np.cumsum(acc.n_users) - acc.n_users, acc.n_users)
    lo, hi, settle = acc.users_from_s[account], acc.users_until_s[account], acc.settled_by_s[account]
    created = lo + (rng.random(n) * np.maximum(hi - lo, 0)).astype(np.int64)
    activated = created + rng.exponential(2 * DAY_S, n).astype(np.int64)
    late = activated >= settle
    activated[late] = created[late] + (rng.random(late.sum()) * (settle[late] - created[late])).astype(np.int64)
    deactivated = activated + (rng.random(n) * (settle - activated)).astype(np.int64)

    n_active, n_deact = acc.n_active[account], acc.n_deactivated[account]
    is_active = rank < n_active
    is_deactivated = ~is_active & (rank < n_active + n_deact)
    activated = np.where(is_active | is_deactivated, activated, NONE)
    deactivated = np.where(is_deactivated, deactivated, NONE)
    # A user may have sessions from the day after activation until the day of deactivation.
    from_day = np.where(activated >= 0, activated // DAY_S + 1, NEVER)
    to_day = np.where(deactivated >= 0, deactivated // DAY_S, NEVER)
    return Users(
        account=account, rank=rank, created_s=created, activated_s=activated, deactivated_s=deactivated,
        admin=(rank == 0) | (rng.random(n) < 0.08), propensity=rng.beta(4, 2, n),
        extra_events=max(spec.events_per_user_day - 1.0, 0.0) * rng.gamma(2.0, 0.5, n),
        forced=rank < np.minimum(acc.core_users, acc.n_active)[account],
        from_day=from_day, to_day=to_day,
    )
