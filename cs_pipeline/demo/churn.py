"""Churn: a hidden engagement per account that the pipeline never sees, and what it drives.

Every *noise* account with a contract (healthy and planted accounts keep their scripted lives)
carries a latent engagement x(t): a mean-reverting random walk on a weekly grid (an
Ornstein-Uhlenbeck process, standard deviation LATENT_SD, memory of about TAU_DAYS), plus a
lasting shock when something bad happens (the champion leaves, or the CSM stops calling). The
exports never contain x; it shows only through behaviour, and which behaviour depends on the
data set's `drivers`:

- `engagement` (the default): product usage follows x closely (fewer sessions, so fewer active
  users, logins and events), the shock is the champion leaving (the account's most active admin
  is deactivated and their activity stops), and small accounts (few seats) churn more. Tickets,
  NPS and CSM touches know nothing of x.
- `support`: usage follows x only weakly; x shows as support friction instead (bursts of high
  and urgent tickets, low CSAT, low NPS answers) and as seats being removed, and the shock is a
  CSM who stopped touching the account.

Each term end T of such an account is a renewal decision, taken DECISION_LEAD days before T:
churn with probability sigmoid(BASE + W_LATENT x(T - lead) + W_SMALL smallness + W_SHOCK
recent shock). The draw is a coin, so healthy-looking accounts sometimes leave and weak ones
sometimes stay. A churner winds down over the lead: x falls further, and at T its remaining
users are deactivated. Renewals expand when x is high and contract when it is low.

Everything here draws from its own stream, seeded with (seed, STREAM), so the rest of the world
(and both driver sets for one seed) share the same accounts, names, seats and contract dates.
"""

from __future__ import annotations

import math

import numpy as np

from cs_pipeline.demo.world import (
    CHURNED, DAY_S, HIGH, HOUR_S, NEVER, NONE, URGENT, Accounts, Users, Window, World, add_months,
)

DRIVERS = ("engagement", "support")
STREAM = 1_011  # the child stream of the seed that churn draws from
GRID_DAYS = 7
PRE_WINDOW_DAYS = 182  # the walk starts half a year before the window, in its steady state
TAU_DAYS = 75.0
LATENT_SD = 0.55
DECISION_LEAD = 60  # days before a term ends that the customer decides
WIND_DOWN_DAYS = 120  # a leaving customer's usage fades over the last months of its term
CHURN_FROM = 60  # terms ending up to this many days before the window can still churn
MAX_TERMS = 16

SHOCK_SHARE_PER_YEAR = 0.30  # accounts per year whose champion leaves (or CSM goes quiet)
SHOCK_SIZE = 0.9
SHOCK_TAU_DAYS = 240.0
SHOCK_RECENT_DAYS = (30, 330)  # a shock this many days before the decision counts as recent

# How x shows in each driver set: weight of x in product usage, the extra fall over the wind-down,
# and the churn model's coefficients.
EXPRESSION = {
    "engagement": {"activity": 1.0, "wind_down": 1.1, "base": -1.25, "latent": -2.6, "small": 0.7,
                   "shock": 0.9, "surveys": 1.0},
    "support": {"activity": 0.3, "wind_down": 0.7, "base": -1.35, "latent": -2.6, "small": 0.2,
                "shock": 1.4, "surveys": 2.0},
}
SUPPORT_BURSTS_PER_30D = 0.10  # at x = 0; multiplied by exp(-2 x)
SUPPORT_SEAT_THRESHOLD = (-0.6, 0.35)  # a seat is removed when x first falls below N(mean, sd)


def simulate(spec_seed: int, drivers: str, acc: Accounts, win: Window, rows: np.ndarray) -> None:
    """Draw the latent walk, the shocks and every renewal decision of `rows` (noise accounts
    with contracts); record the churns on `acc` (contracts, lifetime, status)."""
    rng = np.random.default_rng([spec_seed, STREAM])
    e = EXPRESSION[drivers]
    acc.drivers = drivers
    acc.grid_start = win.start - PRE_WINDOW_DAYS
    n_weeks = (win.end + 1 - acc.grid_start) // GRID_DAYS + 2
    acc.latent = _walk(rng, acc.n, n_weeks)
    acc.activity_weight = np.zeros(acc.n)
    acc.activity_weight[rows] = e["activity"]
    acc.trend[rows] = rng.uniform(0.8, 1.2, len(rows))  # a drift that says nothing about churn
    acc.nps_rate[rows] *= e["surveys"]  # where answers carry the signal, the survey runs more often

    # The shock: a day for some accounts, NEVER for the others.
    years = (win.end - acc.grid_start) / 365
    hit = rows[rng.random(len(rows)) < SHOCK_SHARE_PER_YEAR * years]
    acc.shock_day = np.full(acc.n, NEVER, np.int64)
    acc.shock_day[hit] = acc.grid_start + rng.integers(30, win.end - acc.grid_start, len(hit))
    week_day = acc.grid_start + GRID_DAYS * np.arange(n_weeks)
    since = week_day[None, :] - acc.shock_day[hit][:, None]
    acc.latent[hit] -= np.where(since >= 0, SHOCK_SIZE * np.exp(-np.maximum(since, 0) / SHOCK_TAU_DAYS), 0.0)

    acc.renewal_factor = np.full((acc.n, MAX_TERMS), np.nan)
    small = np.clip(np.log(8.0 / acc.licenses), -1.0, 2.0)
    alive = np.zeros(acc.n, bool)
    alive[rows] = True
    for term in range(1, MAX_TERMS):
        ends = add_months(acc.first_start, 12 * term) - 1  # the last day of term `term - 1`
        due = alive & (acc.first_start != NONE) & (ends < win.end) & (term < acc.n_terms + 1)
        due &= ends >= acc.grid_start + DECISION_LEAD
        if not due.any():
            continue
        a = np.flatnonzero(due)
        x = latent_at(acc, a, ends[a] - DECISION_LEAD)
        recent = (ends[a] - DECISION_LEAD - acc.shock_day[a] >= SHOCK_RECENT_DAYS[0]) & (
            ends[a] - DECISION_LEAD - acc.shock_day[a] <= SHOCK_RECENT_DAYS[1])
        logit = e["base"] + e["latent"] * x + e["small"] * small[a] + e["shock"] * recent
        leaves = (rng.random(len(a)) < 1 / (1 + np.exp(-logit))) & (ends[a] >= win.start - CHURN_FROM)
        acc.renewal_factor[a[~leaves], term] = _renewal_factor(rng, x[~leaves])
        churned = a[leaves]
        _churn(acc, win, churned, ends[churned], term, e["wind_down"])
        alive[churned] = False


def _walk(rng: np.random.Generator, n: int, n_weeks: int) -> np.ndarray:
    rho = math.exp(-GRID_DAYS / TAU_DAYS)
    step = LATENT_SD * math.sqrt(1 - rho * rho)
    x = np.empty((n, n_weeks), np.float32)
    x[:, 0] = LATENT_SD * rng.standard_normal(n)
    for k in range(1, n_weeks):
        x[:, k] = rho * x[:, k - 1] + step * rng.standard_normal(n)
    return x


def _renewal_factor(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """ARR change at a renewal: engaged customers tend to expand, lukewarm ones to contract."""
    n = len(x)
    p_expand = 1 / (1 + np.exp(-(-1.2 + 2.5 * x)))
    p_contract = 1 / (1 + np.exp(-(-1.6 - 2.5 * x)))
    draw = rng.random(n)
    expand, contract = draw < p_expand, (draw >= p_expand) & (draw < p_expand + p_contract)
    factor = rng.uniform(1.0, 1.06, n)
    factor[expand] = rng.uniform(1.1, 1.45, expand.sum())
    factor[contract] = rng.uniform(0.7, 0.93, contract.sum())
    return factor


def _churn(acc: Accounts, win: Window, a: np.ndarray, last_day: np.ndarray, n_terms: int, wind_down: float) -> None:
    """The account's term `n_terms - 1` ends on `last_day` without a successor."""
    acc.n_terms[a] = n_terms
    acc.life_end[a] = last_day + 1
    acc.status[a] = CHURNED
    acc.usage_to[a] = np.minimum(acc.usage_to[a], last_day + 1)
    acc.touch_to[a] = np.minimum(acc.touch_to[a], last_day + 1)
    acc.users_until_s[a] = np.minimum(acc.users_until_s[a], (last_day - 1) * DAY_S)
    acc.settled_by_s[a] = np.minimum(acc.settled_by_s[a], last_day * DAY_S + 12 * HOUR_S)
    # The wind-down: over the term's last months usage falls a further `wind_down` (leaving is a
    # process that starts before the decision is written down).
    week_day = acc.grid_start + GRID_DAYS * np.arange(acc.latent.shape[1])
    into = (week_day[None, :] - (last_day - WIND_DOWN_DAYS)[:, None]) / WIND_DOWN_DAYS
    acc.latent[a] -= (wind_down * np.clip(into, 0.0, 1.0)).astype(np.float32)


def latent_at(acc: Accounts, accounts: np.ndarray, days: np.ndarray | int) -> np.ndarray:
    """x of each account on each day, linear between grid weeks."""
    position = (np.asarray(days, dtype=np.float64) - acc.grid_start) / GRID_DAYS
    position = np.clip(position, 0, acc.latent.shape[1] - 1.001)
    k = position.astype(np.int64)
    f = position - k
    return acc.latent[accounts, k] * (1 - f) + acc.latent[accounts, k + 1] * f


def activity_factor(acc: Accounts, day: int) -> np.ndarray:
    """Per account, how x scales product usage on `day` (1 where x plays no part)."""
    if acc.latent is None:
        return np.ones(acc.n)
    return np.exp(acc.activity_weight * latent_at(acc, np.arange(acc.n), day))


# --------------------------------------------------------------------------------------------
# After users exist: the champion leaving, seats removed, churners' users deactivated.


def script_users(w: World) -> None:
    acc, u = w.acc, w.users
    if acc.latent is None:
        return
    under = acc.activity_weight[u.account] > 0
    champion = under & (u.rank == 0)
    # The champion is the account's most active admin.
    u.propensity[champion] = 0.97
    u.extra_events[champion] *= 2.0
    u.admin[champion] = True
    active = (u.activated_s >= 0) & (u.deactivated_s < 0)
    if acc.drivers == "engagement":
        leaves = champion & active & (acc.shock_day[u.account] < acc.life_end[u.account] - 1)
        leaves &= acc.shock_day[u.account] * DAY_S > u.activated_s
        _deactivate(u, np.flatnonzero(leaves), acc.shock_day[u.account[leaves]] * DAY_S + 17 * HOUR_S)
    else:
        _remove_seats(w, np.flatnonzero(under & active & (u.rank > 0)))
        quiet = acc.activity_weight > 0
        acc.touch_to[quiet] = np.minimum(acc.touch_to[quiet], acc.shock_day[quiet])
    # On its last day, a churned account's remaining users lose access.
    active = (u.activated_s >= 0) & (u.deactivated_s < 0)
    gone = np.flatnonzero(active & (acc.status[u.account] == CHURNED))
    last_day = acc.life_end[u.account[gone]] - 1
    _deactivate(u, gone, np.maximum(last_day * DAY_S + 18 * HOUR_S, u.activated_s[gone] + 60))


def _deactivate(u: Users, rows: np.ndarray, when_s: np.ndarray) -> None:
    u.deactivated_s[rows] = when_s
    u.to_day[rows] = when_s // DAY_S


def _remove_seats(w: World, rows: np.ndarray) -> None:
    """Support friction: each seat goes when x first falls below the seat's own threshold."""
    acc, u, win = w.acc, w.users, w.win
    rng = np.random.default_rng([w.spec.seed, STREAM, 1])
    threshold = rng.normal(*SUPPORT_SEAT_THRESHOLD, len(rows))
    n_weeks = acc.latent.shape[1]
    week_day = acc.grid_start + GRID_DAYS * np.arange(n_weeks)
    when = np.full(len(rows), NEVER, np.int64)
    for start in range(0, len(rows), 50_000):  # users x weeks, in slices
        r = rows[start:start + 50_000]
        below = acc.latent[u.account[r]] < threshold[start:start + 50_000, None]
        below &= week_day[None, :] * DAY_S > u.activated_s[r][:, None]
        first = np.where(below.any(axis=1), below.argmax(axis=1), -1)
        when[start:start + len(r)] = np.where(first >= 0, week_day[np.maximum(first, 0)], NEVER)
    removed = (when <= win.end) & (when < acc.life_end[u.account[rows]] - 1)
    day = when[removed] + rng.integers(0, GRID_DAYS, removed.sum())
    day = np.minimum(day, np.minimum(win.end, acc.life_end[u.account[rows[removed]]] - 2))
    _deactivate(u, rows[removed], day * DAY_S + 11 * HOUR_S)


# --------------------------------------------------------------------------------------------
# Support friction in the helpdesk and survey exports (the `support` driver set only).


def support_bursts(w: World) -> dict[str, np.ndarray] | None:
    """Bursts of 2-4 high/urgent tickets, more often when x is low; (account, created_s,
    resolved_s, priority, csat) arrays, or None outside the support driver set."""
    acc, win = w.acc, w.win
    if acc.latent is None or acc.drivers != "support":
        return None
    rng = np.random.default_rng([w.spec.seed, STREAM, 2])
    rows = np.flatnonzero(acc.activity_weight > 0)
    week_day = acc.grid_start + GRID_DAYS * np.arange(acc.latent.shape[1])
    begin = np.maximum(acc.created_s[rows] // DAY_S + 1, win.start - 60)
    open_ = (week_day[None, :] >= begin[:, None]) & (week_day[None, :] < acc.life_end[rows][:, None] - 3)
    rate = SUPPORT_BURSTS_PER_30D * GRID_DAYS / 30 * np.exp(-2.0 * acc.latent[rows]) * open_
    bursts = rng.poisson(rate)
    account_row, week = np.nonzero(bursts)
    count = bursts[account_row, week]
    account_row, week = np.repeat(account_row, count), np.repeat(week, count)
    size = rng.integers(2, 5, len(account_row))
    account = np.repeat(rows[account_row], size)
    day = np.repeat(week_day[week] + rng.integers(0, GRID_DAYS, len(week)), size) + rng.integers(0, 4, size.sum())
    created = day * DAY_S + rng.integers(8 * HOUR_S, 18 * HOUR_S, len(day))
    resolved = created + (rng.exponential(60, len(day)) * HOUR_S).astype(np.int64) + 600
    resolved[resolved >= win.end_s] = NONE
    keep = (created < win.end_s) & (day < acc.life_end[account])
    csat = rng.choice([1, 2, 3, 4], size=len(day), p=(0.35, 0.3, 0.25, 0.1))
    csat[rng.random(len(day)) < 0.4] = NONE
    priority = np.where(rng.random(len(day)) < 0.6, HIGH, URGENT)
    return {"account": account[keep], "created_s": created[keep], "resolved_s": resolved[keep],
            "priority": priority[keep], "csat": csat[keep]}


def support_csat(w: World, account: np.ndarray, resolved_s: np.ndarray, csat: np.ndarray) -> np.ndarray:
    """In the support driver set, the CSAT of noise accounts' tickets follows x."""
    acc = w.acc
    if acc.latent is None or acc.drivers != "support":
        return csat
    rng = np.random.default_rng([w.spec.seed, STREAM, 3])
    rows = np.flatnonzero((acc.activity_weight[account] > 0) & (csat >= 0) & (resolved_s >= 0))
    x = latent_at(acc, account[rows], resolved_s[rows] // DAY_S)
    out = csat.copy()
    out[rows] = np.clip(np.round(4.0 + 1.3 * x + rng.normal(0, 0.7, len(rows))), 1, 5)
    return out


def support_nps(w: World, account: np.ndarray, seconds: np.ndarray, score: np.ndarray) -> np.ndarray:
    """In the support driver set, the NPS answers of noise accounts follow x."""
    acc = w.acc
    if acc.latent is None or acc.drivers != "support":
        return score
    rng = np.random.default_rng([w.spec.seed, STREAM, 4])
    rows = np.flatnonzero(acc.activity_weight[account] > 0)
    x = latent_at(acc, account[rows], seconds[rows] // DAY_S)
    out = score.copy()
    out[rows] = np.clip(np.round(7.8 + 3.5 * x + rng.normal(0, 1.0, len(rows))), 0, 10)
    return out
