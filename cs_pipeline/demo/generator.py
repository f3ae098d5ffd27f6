"""Deterministic demo data in the contract's `files` layout, with planted alert situations.

`generate()` builds a small world of accounts and writes it the way a CRM, a helpdesk, a survey
tool and a product database would export it (CONTRACT.md §1). Every account has a profile:

- *healthy*: a settled customer: first term started long before the window, renewal far away,
  stable seats with 60-85 % activation, several users logging in every day, calm tickets
  (low/normal, at most one short high-priority one) and NPS of 7-10 only. These accounts must
  fire no default rule on any day of the window.
- *planted*: a healthy-looking account in which one situation is staged so that one default rule
  fires on known days (`_plant_catalogue`). `planted.json` names the accounts and the days.
- *noise*: a realistic random mix (trials, churned accounts, busy helpdesks, detractors,
  onboarding customers...). Anything may fire on these; nothing is promised about them.

All randomness comes from `numpy.random.default_rng(seed)`, and each day's events from a stream
seeded with `(seed, day)`, so a spec always gives byte-identical files. Arrays are built with
numpy and pyarrow, never row by row: benchmarks ask for a million users and ten million events a
day.

Limits, by design: situations are planted only when the window has at least 60 days (they need
a month of normal history before the last month), and all of them (20 accounts) only when there
are at least 29 accounts, since 30 % are kept healthy; fewer accounts plant the first ones of
`_plant_catalogue`. Healthy accounts avoid 90-180 days to renewal on every day for windows of up
to 234 days; beyond that, that part of renewal_at_risk can hold early in the window and only
their green band keeps the rule quiet.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cs_pipeline import settings

EPOCH = dt.date(1970, 1, 1)
DAY_S = 86_400
HOUR_S = 3_600
US = 1_000_000
NONE = -1  # "no timestamp / no index" in integer arrays
NEVER = np.iinfo(np.int64).max // 4  # a day number after every window

SEGMENTS = ("enterprise", "mid_market", "smb")
SEGMENT_SHARES = (0.15, 0.35, 0.50)
SEGMENT_SEATS = (3.0, 1.2, 0.45)  # relative seats; scaled so the mean is `users_per_account`
PLANS = ("starter", "professional", "business", "enterprise")
SEGMENT_PLANS = (((3, 2), (0.8, 0.2)), ((2, 1), (0.6, 0.4)), ((0, 1), (0.7, 0.3)))
SEAT_PRICE = (900.0, 600.0, 400.0)  # yearly list price per seat, by segment
STATUSES = ("active", "trial", "churned")
ACTIVE, TRIAL, CHURNED = range(3)
NOISE, HEALTHY, PLANTED = range(3)

EVENTS = ("login", "report.created", "dashboard.viewed", "workflow.run", "record.updated", "integration.synced")
LOGIN, REPORT, DASHBOARD, WORKFLOW, RECORD, INTEGRATION = range(6)
FOLLOW_UP_SHARES = (0.05, 0.12, 0.33, 0.08, 0.30, 0.12)  # the events after a session's first login
WEEKEND_FACTOR = 0.25
SESSION_US = 4 * HOUR_S * US  # a session's events follow its login within four hours

PRIORITIES = ("low", "normal", "high", "urgent")
LOW, NORMAL, HIGH, URGENT = range(4)
TICKETS_PER_30D = (3.0, 1.5, 0.6)
ACTIVITY_TYPES = ("call", "email", "meeting", "qbr", "note")
ACTIVITY_SHARES = (0.25, 0.40, 0.15, 0.05, 0.15)
TOUCH_CADENCE_DAYS = (7, 14, 30)
ENGAGEMENT_TYPES = ("email_click", "webinar", "community_post", "event")
ENGAGEMENT_SHARES = (0.55, 0.20, 0.17, 0.08)
ENGAGEMENTS_PER_30D = (6.0, 3.0, 1.5)
CSAT_SCORES, CSAT_SHARES = (1, 2, 3, 4, 5), (0.05, 0.07, 0.13, 0.35, 0.40)
NPS_SHARES = (0.02, 0.01, 0.02, 0.02, 0.03, 0.04, 0.06, 0.10, 0.18, 0.24, 0.28)  # scores 0..10

MIN_DAYS_FOR_PLANTS = 60  # the situations need 30 days of history before the last 30 days
HEALTHY_SHARE_MIN = 0.30
HEALTHY_SHARE_TARGET = 0.40
CSM_ACCOUNTS = 25  # accounts per CSM

FIRST_NAMES = (
    "alice", "bruno", "chloe", "david", "emma", "farid", "grace", "hugo", "ines", "jonas",
    "karim", "lena", "marco", "nina", "oscar", "paula", "quentin", "rosa", "samir", "tara",
    "umar", "vera", "william", "xenia", "yusuf", "zoe", "amir", "bianca", "carlos", "dana",
    "elias", "fatima", "georg", "hana", "ivan", "julia", "kenji", "lucia", "mateo", "noor",
)
LAST_NAMES = (
    "martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy", "moreau",
    "simon", "laurent", "lefebvre", "michel", "garcia", "david", "bertrand", "roux", "vincent", "fournier",
    "morel", "girard", "andre", "mercier", "dupont", "lambert", "bonnet", "francois", "martinez", "legrand",
    "schmidt", "muller", "weber", "fischer", "rossi", "russo", "novak", "kowalski", "jensen", "silva",
)
COMPANY_FIRST = (
    "Acme", "Northwind", "Blue", "Bright", "Cedar", "Copper", "Delta", "Evergreen", "Falcon", "Granite",
    "Harbor", "Iron", "Juniper", "Keystone", "Lumen", "Maple", "Nimbus", "Orbit", "Pioneer", "Quartz",
    "Redwood", "Silver", "Summit", "Tidal", "Umbra", "Vertex", "Willow", "Zenith", "Atlas", "Beacon",
    "Coral", "Dune", "Ember", "Fjord", "Glacier", "Horizon", "Indigo", "Jade", "Kestrel", "Lotus",
)
COMPANY_SECOND = (
    "Analytics", "Logistics", "Health", "Foods", "Energy", "Robotics", "Media", "Labs", "Systems", "Retail",
    "Capital", "Studios", "Networks", "Partners", "Motors", "Pharma", "Security", "Travel", "Telecom", "Bank",
    "Insurance", "Supply", "Works", "Dynamics", "Solutions", "Software", "Outdoor", "Fashion", "Farms", "Air",
    "Marine", "Realty", "Learning", "Games", "Biotech", "Textiles", "Water", "Mining", "Freight", "Hotels",
)
TICKET_SUBJECTS = (
    "Cannot export report to CSV", "SSO login fails for some users", "Dashboard loads slowly",
    "Workflow run stuck in queue", "Integration sync error", "Question about invoice",
    "How to add seats", "Record update not saved", "Permission error on shared report",
    "API rate limit reached", "Feature request: scheduled reports", "Data missing after sync",
    "Password reset email not received", "Need help configuring workflow", "Wrong totals in report",
    "Cannot invite new user",
)
NPS_COMMENTS = (
    ("Too many bugs lately", "Support is slow to answer", "Hard to justify the price",
     "We are evaluating alternatives", "Reports are unreliable"),
    ("Good product, a few rough edges", "Does the job", "Onboarding could be smoother",
     "Would like more integrations"),
    ("Love the dashboards", "Saves our team hours every week", "Great support team",
     "Workflows changed how we work", "Easy to roll out to new users"),
)


@dataclass(frozen=True)
class DemoSpec:
    accounts: int = 200
    days: int = 150  # days of event history, ending at end_date inclusive
    end_date: dt.date | None = None  # default: yesterday (settings.today() - 1 day)
    users_per_account: float = 12.0  # mean seats assigned per account (varies by segment)
    events_per_user_day: float = 6.0  # mean events per active user per active day
    seed: int = 7


@dataclass
class DemoSummary:
    out_dir: Path
    start_date: dt.date
    end_date: dt.date
    rows: dict[str, int]  # per entity, e.g. {"accounts": 200, "events": 1234567, ...}
    planted: dict[str, list[str]]  # rule id -> account ids planted to fire it
    healthy: list[str]  # account ids that must trigger no rule at all in the window


RULES = (
    "no_login_20d", "low_health_day_90", "health_drop", "renewal_at_risk",
    "upsell_ready", "nps_detractor", "ticket_surge", "onboarding_checkin",
)


def generate(
    out_dir: Path | str,
    spec: DemoSpec = DemoSpec(),
    *,
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write the demo source data for `spec` into `out_dir` (replacing what an earlier run wrote)."""
    _validate(spec)
    say = progress or (lambda _msg: None)
    end = spec.end_date or settings.today() - dt.timedelta(days=1)
    win = _Window(start=_day(end) - spec.days + 1, end=_day(end))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    world = _build_world(spec, win)
    say(f"{len(world.account_ids)} accounts, {world.users.n} users; writing entity files")
    rows = _write_entities(world, out)
    rows["events"] = _write_events(world, out, say)
    _write_planted_json(world, out)
    say(f"done: {rows['events']:,} events over {win.days} days")
    return DemoSummary(
        out_dir=out,
        start_date=win.date(win.start),
        end_date=win.date(win.end),
        rows=rows,
        planted={rule: list(ids) for rule, ids in world.planted.items()},
        healthy=list(world.healthy),
    )


def _validate(spec: DemoSpec) -> None:
    if spec.accounts < 1 or spec.days < 1:
        raise ValueError(f"accounts and days must be >= 1, got {spec.accounts} and {spec.days}")
    if spec.users_per_account <= 0 or spec.events_per_user_day <= 0:
        raise ValueError("users_per_account and events_per_user_day must be > 0")


# --------------------------------------------------------------------------------------------
# Calendar: days are integers (days since 1970-01-01), instants are integer seconds or µs.


@dataclass(frozen=True)
class _Window:
    start: int  # first day with events
    end: int  # end_date, inclusive

    @property
    def days(self) -> int:
        return self.end - self.start + 1

    @property
    def end_s(self) -> int:
        """The instant the window closes: nothing in the data happens at or after it."""
        return (self.end + 1) * DAY_S

    def date(self, day: int) -> dt.date:
        return EPOCH + dt.timedelta(days=int(day))

    def dates(self, first: int, last: int) -> list[str]:
        """ISO dates of the days first..last that fall inside the window."""
        return [self.date(d).isoformat() for d in range(max(first, self.start), min(last, self.end) + 1)]


def _day(date: dt.date) -> int:
    return (date - EPOCH).days


def _add_months(days: np.ndarray | int, months: np.ndarray | int) -> np.ndarray:
    """Calendar month arithmetic on day numbers (Jan 31 + 1 month = Feb 28/29)."""
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    day_of_month = (d - month.astype("datetime64[D]")).astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    month_len = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    return target.astype("datetime64[D]").astype(np.int64) + np.minimum(day_of_month, month_len - 1)


def _terms_through(first_start: np.ndarray, day: int) -> np.ndarray:
    """How many consecutive 12-month terms from first_start have started by `day`."""
    terms = np.maximum((day - first_start) // 365 + 2, 1)
    while True:
        too_many = (_add_months(first_start, 12 * (terms - 1)) > day) & (terms > 1)
        if not too_many.any():
            return terms
        terms = terms - too_many


# --------------------------------------------------------------------------------------------
# The world: accounts and users as parallel numpy arrays, plus the scripted pieces of plants.


@dataclass
class _Accounts:
    profile: np.ndarray  # NOISE / HEALTHY / PLANTED
    segment: np.ndarray
    plan: np.ndarray
    licenses: np.ndarray
    status: np.ndarray
    owner: np.ndarray  # index into the CSM list; NONE = no owner
    tz_hours: np.ndarray  # where the account works: sessions start in its local morning
    created_s: np.ndarray
    first_start: np.ndarray  # day the first contract term starts; NONE for trials
    n_terms: np.ndarray
    life_end: np.ndarray  # first day the account no longer exists as a customer (churn + 1)
    arr_base: np.ndarray
    # users: how many in each state at the end of the window, and when their timestamps fall
    n_users: np.ndarray
    n_active: np.ndarray  # activated and not deactivated
    n_deactivated: np.ndarray
    users_from_s: np.ndarray  # NONE = from the account's creation
    users_until_s: np.ndarray  # latest created_at
    settled_by_s: np.ndarray  # activations and deactivations happen before this
    # product usage
    usage_from: np.ndarray  # days [usage_from, usage_to) can have events
    usage_to: np.ndarray
    pause_from: np.ndarray  # days [pause_from, pause_to) have none
    pause_to: np.ndarray
    engagement: np.ndarray  # scales every user's daily propensity
    trend: np.ndarray  # engagement multiplier reached at the end of the window (linear)
    uses_workflows: np.ndarray
    core_users: np.ndarray  # the first N active users log in every day
    # CSM touches, helpdesk, survey, marketing
    touch_from: np.ndarray
    touch_to: np.ndarray
    cadence: np.ndarray
    calm: np.ndarray  # only low/normal tickets and NPS 7-10
    nps_rate: np.ndarray
    marketing: np.ndarray

    @property
    def n(self) -> int:
        return len(self.segment)


@dataclass
class _Users:
    account: np.ndarray
    rank: np.ndarray  # 0.. within the account; the lowest ranks are the active, then deactivated
    created_s: np.ndarray
    activated_s: np.ndarray
    deactivated_s: np.ndarray
    admin: np.ndarray
    propensity: np.ndarray  # chance of a session on a weekday, before the account's engagement
    extra_events: np.ndarray  # mean events after the login in a session
    forced: np.ndarray  # logs in every day
    from_day: np.ndarray  # days [from_day, to_day) may have sessions
    to_day: np.ndarray

    @property
    def n(self) -> int:
        return len(self.account)

    def first_row(self, account: int) -> int:
        return int(np.searchsorted(self.account, account))


@dataclass
class _World:
    spec: DemoSpec
    win: _Window
    rng: np.random.Generator
    acc: _Accounts
    csm_emails: list[str]
    account_ids: list[str] = field(default_factory=list)
    account_names: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)  # each account's e-mail domain
    users: _Users = None  # type: ignore[assignment]
    planted: dict[str, list[str]] = field(default_factory=dict)
    healthy: list[str] = field(default_factory=list)
    details: dict[str, dict] = field(default_factory=dict)
    # scripted by plants, merged with the random data when written
    sessions: list[tuple[int, int, tuple[int, ...], float]] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    nps: list[dict] = field(default_factory=list)

    def set_first_term(self, a: int, first_start: int) -> None:
        self.acc.first_start[a] = first_start
        self.acc.n_terms[a] = _terms_through(np.array([first_start]), self.win.end)[0]
        self.acc.created_s[a] = (first_start - 21) * DAY_S + 9 * HOUR_S

    def user_rows(self, a: int, ranks: range) -> np.ndarray:
        """Rows of account a's users with these ranks (active users have the lowest ranks)."""
        first = self.users.first_row(a)
        return np.arange(first + ranks.start, first + ranks.stop)

    def first_user(self, a: int) -> int:
        """The account's admin, an active user in every profile."""
        return self.users.first_row(a)

    def add_session(self, day: int, user: int, events: tuple[int, ...], hour: float = 9.0) -> None:
        self.sessions.append((day, user, events, hour))

    def add_ticket(self, a: int, created: int, priority: int, *, resolved: int | None = None,
                   pending: int | None = None, subject: int = 0) -> None:
        """A ticket created on day `created` (10:00), pending from day `pending`, resolved on day
        `resolved` (16:00); without `resolved` it is still open or pending at the window's end."""
        self.tickets.append({
            "account": a, "created_s": created * DAY_S + 10 * HOUR_S, "priority": priority,
            "pending_s": NONE if pending is None else pending * DAY_S + 12 * HOUR_S,
            "resolved_s": NONE if resolved is None else resolved * DAY_S + 16 * HOUR_S,
            "subject": subject,
        })

    def add_nps(self, a: int, day: int, score: int, comment: str) -> None:
        self.nps.append({"account": a, "user": self.first_user(a), "submitted_s": day * DAY_S + 15 * HOUR_S,
                         "score": score, "comment": comment})


def _build_world(spec: DemoSpec, win: _Window) -> _World:
    rng = np.random.default_rng(spec.seed)
    plants = _plant_catalogue() if win.days >= MIN_DAYS_FOR_PLANTS else []
    n_healthy_min = math.ceil(HEALTHY_SHARE_MIN * spec.accounts)
    plants = plants[: max(0, spec.accounts - n_healthy_min)]
    n_healthy = min(spec.accounts - len(plants), max(n_healthy_min, round(HEALTHY_SHARE_TARGET * spec.accounts)))

    order = rng.permutation(spec.accounts)  # which account gets which role
    planted_idx, healthy_idx = order[: len(plants)], order[len(plants): len(plants) + n_healthy]
    profile = np.full(spec.accounts, NOISE, np.int8)
    profile[planted_idx], profile[healthy_idx] = PLANTED, HEALTHY

    n_csm = max(1, math.ceil(spec.accounts / CSM_ACCOUNTS))
    acc = _draw_accounts(rng, spec, win, profile, n_csm)
    world = _World(spec=spec, win=win, rng=rng, acc=acc, csm_emails=_csm_emails(rng, n_csm))
    world.account_ids = _numbered("acc_", spec.accounts, 5)
    world.account_names, world.domains = _company_names(rng, spec.accounts)

    for plant, a in zip(plants, planted_idx):
        plant.shape_account(world, int(a))
    _resolve_user_windows(acc)
    world.users = _draw_users(rng, spec, acc)
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


def _draw_accounts(rng: np.random.Generator, spec: DemoSpec, win: _Window, profile: np.ndarray,
                   n_csm: int) -> _Accounts:
    n = spec.accounts
    segment = rng.choice(3, size=n, p=SEGMENT_SHARES).astype(np.int8)
    plan = _draw_plans(rng, segment)
    licenses = _draw_licenses(rng, spec, segment)
    status = rng.choice(3, size=n, p=(0.88, 0.05, 0.07)).astype(np.int8)
    owner = rng.permutation(n) % n_csm
    owner[rng.random(n) < 0.03] = NONE  # a few accounts nobody owns yet
    tz_hours = rng.choice(np.array([-8.0, -5.0, 0.0, 1.0, 5.5, 9.0]), size=n, p=(0.15, 0.3, 0.15, 0.25, 0.05, 0.1))

    # Contracts: active customers renew every year since their first term; churned ones stopped
    # after 1-3 terms, their last term ending before the window's end; trials have none.
    first_start = win.end - rng.integers(5, 4 * 365, size=n)
    churn_end = win.end - rng.integers(3, win.days + 60, size=n)
    churn_terms = rng.integers(1, 4, size=n)
    churned = status == CHURNED
    first_start[churned] = _add_months(churn_end[churned] + 1, -12 * churn_terms[churned])
    n_terms = _terms_through(first_start, win.end)
    n_terms[churned] = churn_terms[churned]
    trial = status == TRIAL
    first_start[trial], n_terms[trial] = NONE, 0
    life_end = np.where(churned, churn_end + 1, win.end + 1)

    created_day = np.where(trial, win.end - rng.integers(7, 45, size=n), first_start - rng.integers(3, 60, size=n))
    created_s = created_day * DAY_S + rng.integers(8 * HOUR_S, 18 * HOUR_S, size=n)
    n_users = np.maximum(1, np.round(licenses * rng.uniform(0.7, 1.0, size=n))).astype(np.int64)
    n_active = np.minimum(n_users, np.round(rng.beta(5, 2, size=n) * licenses)).astype(np.int64)
    n_deactivated = np.minimum(n_users - n_active, rng.poisson(0.08 * n_users))
    cadence = np.maximum(3, np.array(TOUCH_CADENCE_DAYS)[segment] * rng.uniform(0.8, 1.5, size=n)).astype(np.int64)

    acc = _Accounts(
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


def _make_calm(rng: np.random.Generator, acc: _Accounts, win: _Window, rows: np.ndarray, n_csm: int) -> None:
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
    current_start = _add_months(term_end + 1, -12)
    onboarding_limit = win.start - 195
    years_back = np.ceil((current_start - onboarding_limit) / 365).astype(np.int64) + 1 + rng.integers(0, 3, n)
    first_start = _add_months(current_start, -12 * years_back)
    acc.first_start[rows] = first_start
    acc.n_terms[rows] = _terms_through(first_start, win.end)
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


def _resolve_user_windows(acc: _Accounts) -> None:
    default = acc.users_from_s == NONE
    acc.users_from_s[default] = acc.created_s[default]


# --------------------------------------------------------------------------------------------
# Users


def _draw_users(rng: np.random.Generator, spec: DemoSpec, acc: _Accounts) -> _Users:
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
    return _Users(
        account=account, rank=rank, created_s=created, activated_s=activated, deactivated_s=deactivated,
        admin=(rank == 0) | (rng.random(n) < 0.08), propensity=rng.beta(4, 2, n),
        extra_events=max(spec.events_per_user_day - 1.0, 0.0) * rng.gamma(2.0, 0.5, n),
        forced=rank < np.minimum(acc.core_users, acc.n_active)[account],
        from_day=from_day, to_day=to_day,
    )


# --------------------------------------------------------------------------------------------
# Planted situations. Offsets are days before end_date (N) or after the window's first day (S).


class _Plant:
    """One staged situation: `shape_account` runs before users exist (seats, contract, usage
    levels), `script` after (user changes, sessions, tickets, NPS) and returns its details."""

    rule: str

    def shape_account(self, w: _World, a: int) -> None:
        pass

    def script(self, w: _World, a: int) -> dict:
        raise NotImplementedError


class _NoLogin(_Plant):
    """Daily logins until `ago` days before N, then nothing at all."""

    rule = "no_login_20d"

    def __init__(self, last_login_ago: int):
        self.ago = last_login_ago

    def shape_account(self, w: _World, a: int) -> None:
        w.acc.usage_to[a] = w.win.end - self.ago + 1

    def script(self, w: _World, a: int) -> dict:
        last = w.win.end - self.ago
        return {
            "situation": f"several users log in daily until {w.win.date(last)}, then no event at all",
            "fires_on": w.win.dates(last + 20, w.win.end),
            "may_also_fire": ["health_drop"],  # usage stopping is what that rule watches too
        }


class _NoLoginEarly(_Plant):
    """A silent month early in the window, then daily logins again: an episode that closed
    long before the live window (backfill suppression)."""

    rule = "no_login_20d"
    PAUSE = (6, 35)  # days after S: last login on S+5, logins again from S+35

    def shape_account(self, w: _World, a: int) -> None:
        w.acc.pause_from[a], w.acc.pause_to[a] = w.win.start + self.PAUSE[0], w.win.start + self.PAUSE[1]

    def script(self, w: _World, a: int) -> dict:
        last, back = w.win.start + self.PAUSE[0] - 1, w.win.start + self.PAUSE[1]
        return {
            "situation": (f"no event from {w.win.date(last + 1)} to {w.win.date(back - 1)}; "
                          "daily logins before and after"),
            "fires_on": w.win.dates(last + 20, back - 1),
            "may_also_fire": ["health_drop"],
        }


class _LowHealthDay90(_Plant):
    """A new customer that never got going: a few logins in its first days, 20 % activation,
    two urgent tickets and a detractor before its 90-day review."""

    rule = "low_health_day_90"

    def __init__(self, first_term_ago: int):
        self.ago = first_term_ago

    def shape_account(self, w: _World, a: int) -> None:
        acc, first = w.acc, w.win.end - self.ago
        w.set_first_term(a, first)
        licenses = int(w.rng.integers(12, 26))
        acc.licenses[a], acc.n_users[a] = licenses, round(0.8 * licenses)
        acc.n_active[a], acc.n_deactivated[a] = licenses // 5, 0
        acc.users_from_s[a], acc.users_until_s[a] = (first - 5) * DAY_S, (first + 5) * DAY_S
        acc.settled_by_s[a] = (first + 12) * DAY_S
        acc.engagement[a], acc.core_users[a] = 0.0, 0  # usage is only the scripted logins
        acc.touch_from[a], acc.touch_to[a] = first - 14, first + 15  # a kick-off, then silence
        acc.nps_rate[a] = acc.marketing[a] = 0.0

    def script(self, w: _World, a: int) -> dict:
        first = int(w.acc.first_start[a])
        login_from = max(w.win.start, first + 13)  # every seat is activated by first + 12
        login_days = range(login_from, login_from + 3) if login_from + 2 <= first + 60 else range(0)
        for day in login_days:
            for user in w.user_rows(a, range(int(w.acc.n_active[a]))):
                w.add_session(day, int(user), (LOGIN, DASHBOARD))
        w.add_ticket(a, first + 70, URGENT, subject=1)
        w.add_ticket(a, first + 80, URGENT, pending=first + 82, subject=11)
        w.add_nps(a, first + 75, 2, NPS_COMMENTS[0][3])
        also = {"onboarding_checkin": w.win.dates(first + 30, first + 30) + w.win.dates(first + 90, first + 90),
                "nps_detractor": w.win.dates(first + 75, first + 75)}
        if login_days:
            also["no_login_20d"] = w.win.dates(login_days[-1] + 20, w.win.end)
        return {
            "situation": (f"first term from {w.win.date(first)}; 20 % activation; logins only on "
                          f"{[w.win.date(d).isoformat() for d in login_days]}; 2 urgent tickets open; NPS 2"),
            "fires_on": w.win.dates(first + 90, first + 96),
            "score_based": True,
            "also_fires": also,
            "may_also_fire": ["health_drop"],  # its few logins lift the score a month earlier
        }


class _HealthDrop(_Plant):
    """A very healthy account whose usage stops completely 30-31 days before N, then half its
    seats are removed, urgent tickets pile up and a detractor answers the survey. The stop is
    placed so that on N the 30-day usage window is empty while N-30 was still a normal day:
    every usage indicator falls at once, whatever the weights."""

    rule = "health_drop"

    def __init__(self, last_active_ago: int):
        self.ago = last_active_ago

    def shape_account(self, w: _World, a: int) -> None:
        acc, last = w.acc, w.win.end - self.ago
        licenses = max(int(acc.licenses[a]), 12)
        acc.licenses[a] = licenses
        acc.n_active[a] = math.floor(0.87 * licenses)  # high, but below the upsell threshold
        acc.n_users[a] = max(int(acc.n_users[a]), int(acc.n_active[a]))
        acc.n_deactivated[a] = 0
        acc.engagement[a], acc.core_users[a] = 1.0, 4
        acc.usage_to[a] = last + 1
        acc.touch_to[a] = last - 6

    def script(self, w: _World, a: int) -> dict:
        last = w.win.end - self.ago
        active = int(w.acc.n_active[a])
        removed = w.user_rows(a, range(active - round(0.5 * active), active))
        w.users.deactivated_s[removed] = (last + 14) * DAY_S + 11 * HOUR_S
        w.users.to_day[removed] = last + 14
        w.add_ticket(a, last + 7, URGENT, subject=4)
        w.add_ticket(a, last + 9, URGENT, pending=last + 10, subject=11)
        w.add_ticket(a, last + 11, HIGH, subject=3)
        w.add_nps(a, last + 9, 1, NPS_COMMENTS[0][0])
        return {
            "situation": (f"healthy with daily use until {w.win.date(last)}, then no event; half the seats removed "
                          f"on {w.win.date(last + 14)}; 3 high/urgent tickets open; NPS 1; no CSM touch since "
                          f"{w.win.date(last - 7)}"),
            "fires_on": w.win.dates(w.win.end, w.win.end),
            "score_based": True,
            "also_fires": {"no_login_20d": w.win.dates(last + 20, w.win.end),
                           "nps_detractor": w.win.dates(last + 9, last + 9),
                           "ticket_surge": w.win.dates(last + 11, w.win.end)},
        }


class _RenewalAtRisk(_Plant):
    """A dead account (one login on the window's first day, nothing after; 20 % activation;
    urgent tickets; a detractor months ago; no CSM touch) whose term ends `ends_in` days after N."""

    rule = "renewal_at_risk"

    def __init__(self, ends_in: int):
        self.ends_in = ends_in

    def shape_account(self, w: _World, a: int) -> None:
        acc, term_end = w.acc, w.win.end + self.ends_in
        w.set_first_term(a, int(_add_months(term_end + 1, -36)))  # in its third year
        licenses = int(w.rng.integers(10, 31))
        acc.licenses[a], acc.n_users[a] = licenses, round(0.8 * licenses)
        acc.n_active[a], acc.n_deactivated[a] = max(2, round(0.2 * licenses)), 0
        acc.users_from_s[a] = NONE
        acc.engagement[a], acc.core_users[a] = 0.0, 0
        acc.touch_to[a] = w.win.start - 60  # the last CSM touch was two months before the window
        acc.nps_rate[a] = acc.marketing[a] = 0.0

    def script(self, w: _World, a: int) -> dict:
        start = w.win.start
        w.add_session(start, w.first_user(a), (LOGIN,))
        w.add_ticket(a, start - 20, URGENT, subject=2)
        w.add_ticket(a, start + 10, URGENT, pending=start + 11, subject=0)
        w.add_nps(a, start - 40, 3, NPS_COMMENTS[0][2])
        term_end = int(_add_months(w.acc.first_start[a], 36)) - 1
        return {
            "situation": (f"term ends {w.win.date(term_end)}; one login on {w.win.date(start)} and nothing after; "
                          "20 % activation; 2 urgent tickets open; last NPS 3; no CSM touch in the window"),
            "fires_on": w.win.dates(max(term_end - 180, w.win.end - 29), term_end - 90),
            "condition_days": w.win.dates(term_end - 180, term_end - 90),
            "score_based": True,
            "also_fires": {"no_login_20d": w.win.dates(start + 20, w.win.end)},
            "may_also_fire": ["health_drop"],  # early in the window, after its one login
        }


class _UpsellReady(_Plant):
    """Activation jumps from ~82 % to >= 92 % of licenses on one day; both key features are used
    every day."""

    rule = "upsell_ready"

    def __init__(self, reached_ago: int):
        self.ago = reached_ago

    def shape_account(self, w: _World, a: int) -> None:
        acc = w.acc
        licenses = int(w.rng.integers(12, 41))
        acc.licenses[a] = licenses
        acc.n_active[a], acc.n_deactivated[a] = math.ceil(0.92 * licenses), 0
        acc.n_users[a] = max(int(acc.n_active[a]), round(0.95 * licenses))

    def script(self, w: _World, a: int) -> dict:
        reached, licenses = w.win.end - self.ago, int(w.acc.licenses[a])
        before = math.floor(0.82 * licenses)
        late = w.user_rows(a, range(before, int(w.acc.n_active[a])))
        w.users.created_s[late] = (reached - 10) * DAY_S + 10 * HOUR_S
        w.users.activated_s[late] = reached * DAY_S + 11 * HOUR_S
        w.users.from_day[late] = reached + 1
        for day in range(w.win.start, w.win.end + 1):
            w.add_session(day, w.first_user(a), (LOGIN, REPORT, WORKFLOW), hour=8.0)
        return {
            "situation": (f"{len(late)} seats activated on {w.win.date(reached)}: activation "
                          f"{before}/{licenses} -> {w.acc.n_active[a]}/{licenses}; report.created and "
                          "workflow.run every day"),
            "fires_on": w.win.dates(reached, w.win.end),
        }


class _NpsDetractor(_Plant):
    rule = "nps_detractor"

    def __init__(self, score: int, *, ago: int | None = None, after_start: int | None = None):
        self.score, self.ago, self.after_start = score, ago, after_start

    def script(self, w: _World, a: int) -> dict:
        day = w.win.end - self.ago if self.ago is not None else w.win.start + self.after_start
        w.add_nps(a, day, self.score, NPS_COMMENTS[0][1])
        return {"situation": f"NPS {self.score} on {w.win.date(day)}; every other response 7-10",
                "fires_on": w.win.dates(day, day)}


class _TicketSurge(_Plant):
    """High/urgent tickets opened on consecutive days; `tickets` holds (created, priority,
    resolved or None), days relative to N (negative) or to S (`from_start`)."""

    rule = "ticket_surge"

    def __init__(self, tickets: tuple[tuple[int, int, int | None], ...], *, from_start: bool = False):
        self.tickets, self.from_start = tickets, from_start

    def script(self, w: _World, a: int) -> dict:
        anchor = w.win.start if self.from_start else w.win.end
        spans = []
        for i, (created, priority, resolved) in enumerate(self.tickets):
            created_day = anchor + created
            resolved_day = None if resolved is None else anchor + resolved
            pending = created_day + 1 if i % 2 else None  # some wait on the customer: still counts
            w.add_ticket(a, created_day, priority, resolved=resolved_day, pending=pending, subject=5 + i)
            spans.append((created_day, resolved_day if resolved_day is not None else NEVER))
        surge = [d for d in range(w.win.start, w.win.end + 1) if sum(c <= d < r for c, r in spans) >= 3]
        outcome = "resolved a week later" if self.from_start else "still open"
        return {
            "situation": (f"{len(spans)} high/urgent tickets opened {w.win.date(spans[0][0])}.."
                          f"{w.win.date(spans[-1][0])}; {outcome}"),
            "fires_on": [w.win.date(d).isoformat() for d in surge],
        }


class _Onboarding(_Plant):
    """A new customer ramping up well: seats activated in its first two weeks, daily use."""

    rule = "onboarding_checkin"

    def __init__(self, first_term_ago: int):
        self.ago = first_term_ago

    def shape_account(self, w: _World, a: int) -> None:
        acc, first = w.acc, w.win.end - self.ago
        w.set_first_term(a, first)
        acc.users_from_s[a], acc.users_until_s[a] = (first - 7) * DAY_S, (first + 7) * DAY_S
        acc.settled_by_s[a] = (first + 14) * DAY_S
        acc.usage_from[a], acc.touch_from[a], acc.cadence[a] = first, first - 10, 7

    def script(self, w: _World, a: int) -> dict:
        first = int(w.acc.first_start[a])
        days = [first + 30, first + 90, first + 180]
        return {"situation": f"first term from {w.win.date(first)}; seats activated within two weeks; daily use",
                "fires_on": [d for day in days for d in w.win.dates(day, day)]}


def _plant_catalogue() -> list[_Plant]:
    """In priority order: with few accounts only the first ones are planted. The first plant of
    each rule is still true on N-1 or N, so with today = end_date + 1 and the default live window
    it is sent live; most others closed earlier and are recorded as suppressed backfill."""
    late_surge = ((-15, HIGH, None), (-14, URGENT, None), (-13, HIGH, None))
    late_surge_2 = ((-9, URGENT, None), (-8, HIGH, None), (-7, HIGH, None), (-7, URGENT, None))
    early_surge = ((20, HIGH, 28), (21, URGENT, 29), (22, HIGH, 31))
    first_of_each = [
        _NoLogin(last_login_ago=30), _LowHealthDay90(first_term_ago=93), _HealthDrop(last_active_ago=31),
        _RenewalAtRisk(ends_in=120), _UpsellReady(reached_ago=30), _NpsDetractor(5, ago=1),
        _TicketSurge(late_surge), _Onboarding(first_term_ago=31),
    ]
    second_of_each = [
        _NoLogin(last_login_ago=27), _LowHealthDay90(first_term_ago=110), _HealthDrop(last_active_ago=30),
        _RenewalAtRisk(ends_in=150), _UpsellReady(reached_ago=22), _NpsDetractor(3, ago=12),
        _TicketSurge(late_surge_2), _Onboarding(first_term_ago=100),
    ]
    early_in_window = [
        _NoLoginEarly(), _NpsDetractor(2, after_start=10), _TicketSurge(early_surge, from_start=True),
        _Onboarding(first_term_ago=195),
    ]
    return first_of_each + second_of_each + early_in_window


# --------------------------------------------------------------------------------------------
# Entity files


def _write_entities(w: _World, out: Path) -> dict[str, int]:
    tables = {
        "accounts": (_accounts_table(w), "accounts.csv"),
        "contracts": (_contracts_table(w), "contracts.csv"),
        "users": (_users_table(w), "users.csv"),
        "activities": (_activities_table(w), "activities.csv"),
        "engagements": (_engagements_table(w), "engagements.csv"),
        "nps_responses": (_nps_table(w), "nps_responses.csv"),
        "tickets": (_tickets_table(w), "tickets.jsonl"),
    }
    rows = {}
    for entity, (table, name) in tables.items():
        frame = pl.from_arrow(table)
        if name.endswith(".jsonl"):
            frame.write_ndjson(out / name)
        else:
            frame.write_csv(out / name)
        rows[entity] = table.num_rows
    return rows


def _iso(seconds: np.ndarray) -> pa.Array:
    """ISO-8601 UTC text ending in `Z`; NONE becomes an empty cell."""
    seconds = np.asarray(seconds, dtype=np.int64)
    stamps = pa.array(seconds, type=pa.timestamp("s"), mask=seconds < 0)
    # polars formats several times faster than pc.strftime, which matters for a million users.
    return pl.from_arrow(stamps).dt.to_string("%Y-%m-%dT%H:%M:%SZ").to_arrow().cast(pa.string())


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def _take(vocabulary: tuple[str, ...] | list[str], index: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(np.asarray(index, dtype=np.int64)))


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + zero-padded 1..n, built in Arrow (millions of rows)."""
    width = max(width, len(str(n)))
    numbers = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def _accounts_table(w: _World) -> pa.Table:
    acc = w.acc
    owners = pa.array([w.csm_emails[o] if o != NONE else None for o in acc.owner], pa.string())
    return pa.table({
        "account_id": pa.array(w.account_ids),
        "name": pa.array(w.account_names),
        "segment": _take(SEGMENTS, acc.segment),
        "owner_email": owners,
        "plan": _take(PLANS, acc.plan),
        "licenses": pa.array(acc.licenses),
        "status": _take(STATUSES, acc.status),
        "created_at": _iso(acc.created_s),
    })


def _contracts_table(w: _World) -> pa.Table:
    """One row per 12-month term; each renewal starts the day after the previous term ends,
    with ARR moved by a flat uplift, an expansion or a contraction."""
    acc, rng = w.acc, w.rng
    account = np.repeat(np.arange(acc.n), acc.n_terms)
    term = np.arange(len(account)) - np.repeat(np.cumsum(acc.n_terms) - acc.n_terms, acc.n_terms)
    first = acc.first_start[account]
    start, end = _add_months(first, 12 * term), _add_months(first, 12 * (term + 1)) - 1
    kind = rng.choice(3, size=len(account), p=(0.6, 0.25, 0.15))
    factor = np.choose(kind, [rng.uniform(1.0, 1.06, len(account)), rng.uniform(1.1, 1.45, len(account)),
                              rng.uniform(0.7, 0.95, len(account))])
    factor[term == 0] = 1.0
    # ARR of term k = base x the product of the changes at each renewal so far.
    log_growth = np.cumsum(np.log(factor))
    first_row = np.repeat(np.cumsum(acc.n_terms) - acc.n_terms, acc.n_terms)
    growth = np.exp(log_growth - log_growth[first_row])
    arr = np.round(acc.arr_base[account] * growth, -1).astype(np.int64)
    contract_ids = [f"{w.account_ids[a].replace('acc_', 'ctr_')}-{t + 1}" for a, t in zip(account, term)]
    return pa.table({
        "contract_id": pa.array(contract_ids),
        "account_id": pa.array(w.account_ids).take(pa.array(account)),
        "start_date": _dates(start),
        "end_date": _dates(end),
        "arr": pa.array(arr),
    })


def _users_table(w: _World) -> pa.Table:
    u = w.users
    n_pairs = len(FIRST_NAMES) * len(LAST_NAMES)
    # Distinct first.last within an account (7 is coprime with the pair count), numbered after.
    pair = (u.rank * 7 + u.account * 13) % n_pairs
    suffix = u.rank // n_pairs
    suffix_text = pc.if_else(pa.array(suffix > 0), pc.cast(pa.array(suffix), pa.string()), "")
    email = pc.binary_join_element_wise(
        _take(FIRST_NAMES, pair // len(LAST_NAMES)), ".", _take(LAST_NAMES, pair % len(LAST_NAMES)),
        suffix_text, "@", _take(w.domains, u.account), "",
    )
    return pa.table({
        "user_id": _ids("usr_", u.n, 6),
        "account_id": _take(w.account_ids, u.account),
        "email": email,
        "role": pc.if_else(pa.array(u.admin), "admin", "member"),
        "created_at": _iso(u.created_s),
        "activated_at": _iso(u.activated_s),
        "deactivated_at": _iso(u.deactivated_s),
    })


def _per_account_span(rng: np.random.Generator, begin: np.ndarray, stop: np.ndarray, rate_per_day: np.ndarray):
    """Poisson many instants per account, uniform over days [begin, stop): (account, seconds)."""
    span = np.maximum(stop - begin, 0)
    count = rng.poisson(rate_per_day * span)
    account = np.repeat(np.arange(len(span)), count)
    seconds = begin[account] * DAY_S + (rng.random(len(account)) * span[account] * DAY_S).astype(np.int64)
    return account, seconds


def _activities_table(w: _World) -> pa.Table:
    """CSM touch points at the account's cadence (a few days of jitter), from 90 days before the
    window; owners log them, an unowned account's touch is logged by whichever CSM helped."""
    acc, rng, win = w.acc, w.rng, w.win
    begin = np.maximum(acc.touch_from, win.start - 90)
    stop = np.minimum(acc.touch_to, acc.life_end)
    count = np.maximum(np.ceil((stop - begin) / acc.cadence), 0).astype(np.int64)
    account = np.repeat(np.arange(acc.n), count)
    k = np.arange(len(account)) - np.repeat(np.cumsum(count) - count, count)
    day = begin[account] + k * acc.cadence[account] + rng.integers(0, 3, len(account))
    hour = (rng.uniform(8, 18, len(account)) - acc.tz_hours[account]) % 24
    kind = rng.choice(len(ACTIVITY_TYPES), size=len(account), p=ACTIVITY_SHARES)
    helper = rng.integers(0, len(w.csm_emails), len(account))
    keep = day < stop[account]
    account, day, hour, kind, helper = account[keep], day[keep], hour[keep], kind[keep], helper[keep]
    order = np.lexsort((account, day))
    account, day, hour, kind, helper = account[order], day[order], hour[order], kind[order], helper[order]
    owner = np.where(acc.owner[account] != NONE, acc.owner[account], helper)
    return pa.table({
        "activity_id": _ids("act_", len(account), 6),
        "account_id": _take(w.account_ids, account),
        "owner_email": _take(w.csm_emails, owner),
        "type": _take(ACTIVITY_TYPES, kind),
        "occurred_at": _iso(day * DAY_S + (hour * HOUR_S).astype(np.int64)),
    })


def _engagements_table(w: _World) -> pa.Table:
    acc, rng, win = w.acc, w.rng, w.win
    begin = np.maximum(acc.created_s // DAY_S + 1, win.start - 90)
    rate = np.array(ENGAGEMENTS_PER_30D)[acc.segment] / 30 * acc.marketing * acc.engagement.clip(0.3)
    account, seconds = _per_account_span(rng, begin, acc.life_end, rate)
    order = np.lexsort((account, seconds))
    account, seconds = account[order], seconds[order]
    kind = rng.choice(len(ENGAGEMENT_TYPES), size=len(account), p=ENGAGEMENT_SHARES)
    return pa.table({
        "engagement_id": _ids("eng_", len(account), 6),
        "account_id": _take(w.account_ids, account),
        "type": _take(ENGAGEMENT_TYPES, kind),
        "occurred_at": _iso(seconds),
    })


def _nps_table(w: _World) -> pa.Table:
    """Survey answers from 180 days before the window on; calm accounts answer 7-10 only, the
    others skew positive with some detractors. Plants add their own answers."""
    acc, rng, win, u = w.acc, w.rng, w.win, w.users
    begin = np.maximum(acc.created_s // DAY_S + 1, win.start - 180)
    rate = np.clip(0.3 * acc.n_users, 0.5, 40) / 180 * acc.nps_rate
    account, seconds = _per_account_span(rng, begin, acc.life_end, rate)
    n = len(account)
    score = np.where(acc.calm[account], rng.choice([7, 8, 9, 10], size=n, p=(0.1, 0.25, 0.3, 0.35)),
                     rng.choice(11, size=n, p=NPS_SHARES))
    first_row = np.searchsorted(u.account, account)
    user = first_row + (rng.random(n) * acc.n_users[account]).astype(np.int64)
    user[rng.random(n) < 0.15] = NONE  # anonymous answers
    comment = _nps_comments(rng, score)

    scripted = w.nps
    account = np.concatenate([account, [s["account"] for s in scripted]]).astype(np.int64)
    seconds = np.concatenate([seconds, [s["submitted_s"] for s in scripted]]).astype(np.int64)
    score = np.concatenate([score, [s["score"] for s in scripted]]).astype(np.int64)
    user = np.concatenate([user, [s["user"] for s in scripted]]).astype(np.int64)
    comment = comment + [s["comment"] for s in scripted]
    order = np.lexsort((account, seconds))
    user_ids = _ids("usr_", u.n, 6).take(pa.array(np.maximum(user[order], 0)))
    return pa.table({
        "response_id": _ids("nps_", len(order), 6),
        "account_id": _take(w.account_ids, account[order]),
        "user_id": pc.if_else(pa.array(user[order] >= 0), user_ids, pa.scalar(None, pa.string())),
        "score": pa.array(score[order]),
        "comment": pa.array([comment[i] for i in order], pa.string()),
        "submitted_at": _iso(seconds[order]),
    })


def _nps_comments(rng: np.random.Generator, score: np.ndarray) -> list[str | None]:
    group = np.digitize(score, [7, 9])  # detractor, passive, promoter
    pick = rng.integers(0, 1000, len(score))
    silent = rng.random(len(score)) < 0.35
    return [None if s else NPS_COMMENTS[g][p % len(NPS_COMMENTS[g])] for g, p, s in zip(group, pick, silent)]


def _tickets_table(w: _World) -> pa.Table:
    """Helpdesk export: every version of each ticket as it changed (open, maybe pending, then
    resolved or closed), ordered by updated_at; the latest version of a ticket wins."""
    t = _draw_tickets(w)
    n = len(t["account"])
    order = np.lexsort((t["account"], t["created_s"]))
    t = {k: v[order] for k, v in t.items()}
    ticket_ids = _ids("T-", n, 6)

    # version rows: (ticket, updated_s, status)  status: 0 open, 1 pending, 2 resolved, 3 closed
    rows = np.arange(n)
    pending = t["pending_s"] >= 0
    resolved = t["resolved_s"] >= 0
    ticket = np.concatenate([rows, rows[pending], rows[resolved]])
    updated = np.concatenate([t["created_s"], t["pending_s"][pending], t["resolved_s"][resolved]])
    status = np.concatenate([np.zeros(n, np.int64), np.ones(pending.sum(), np.int64),
                             np.where(t["closed"][resolved], 3, 2)])
    csat = np.where(status >= 2, t["csat"][ticket], NONE)
    version = np.lexsort((status, ticket, updated))
    ticket, updated, status, csat = ticket[version], updated[version], status[version], csat[version]
    return pa.table({
        "ticket_id": ticket_ids.take(pa.array(ticket)),
        "account_id": _take(w.account_ids, t["account"][ticket]),
        "created_at": _iso(t["created_s"][ticket]),
        "updated_at": _iso(updated),
        "status": _take(("open", "pending", "resolved", "closed"), status),
        "priority": _take(PRIORITIES, t["priority"][ticket]),
        "subject": _take(TICKET_SUBJECTS, t["subject"][ticket]),
        "csat": pa.array(csat, pa.int64(), mask=csat < 0),
    })


def _draw_tickets(w: _World) -> dict[str, np.ndarray]:
    acc, rng, win = w.acc, w.rng, w.win
    begin = np.maximum(acc.created_s // DAY_S + 1, win.start - 60)
    rate = np.array(TICKETS_PER_30D)[acc.segment] / 30 * np.where(acc.calm, 0.5, 1.0)
    account, created = _per_account_span(rng, begin, acc.life_end, rate)
    n = len(account)
    priority = np.where(acc.calm[account], rng.choice([LOW, NORMAL], size=n),
                        rng.choice(4, size=n, p=(0.35, 0.45, 0.15, 0.05)))
    # Some healthy accounts had one high-priority ticket, fixed within a day and a half: real
    # helpdesks have them, and a single one never makes a surge.
    first_of_account = np.r_[True, account[1:] != account[:-1]] if n else np.zeros(0, bool)
    one_high = first_of_account & (acc.profile[account] == HEALTHY) & (rng.random(n) < 0.3)
    priority[one_high] = HIGH
    hours = np.where(priority >= HIGH, rng.exponential(20, n), rng.exponential(72, n))
    hours[one_high] = rng.uniform(2, 36, one_high.sum())
    resolved = created + (hours * HOUR_S).astype(np.int64) + 60
    resolved[resolved >= win.end_s] = NONE  # still open when the export was taken
    until = np.where(resolved >= 0, resolved, win.end_s - 1)
    pending = np.where(rng.random(n) < 0.5, created + (rng.random(n) * (until - created)).astype(np.int64), NONE)
    pending[(pending >= 0) & (pending <= created)] = NONE
    drawn = {
        "account": account, "created_s": created, "pending_s": pending, "resolved_s": resolved,
        "priority": priority.astype(np.int64), "closed": rng.random(n) < 0.4,
        "subject": rng.integers(0, len(TICKET_SUBJECTS), n),
        "csat": np.where(rng.random(n) < 0.6, rng.choice(CSAT_SCORES, size=n, p=CSAT_SHARES), NONE),
    }
    scripted = {
        "account": [s["account"] for s in w.tickets], "created_s": [s["created_s"] for s in w.tickets],
        "pending_s": [s["pending_s"] for s in w.tickets], "resolved_s": [s["resolved_s"] for s in w.tickets],
        "priority": [s["priority"] for s in w.tickets], "closed": [False] * len(w.tickets),
        "subject": [s["subject"] for s in w.tickets], "csat": [NONE] * len(w.tickets),
    }
    return {k: np.concatenate([drawn[k], np.array(scripted[k], dtype=drawn[k].dtype)]) for k in drawn}


# --------------------------------------------------------------------------------------------
# Events: one Parquet file per day, each built from numpy arrays.


def _write_events(w: _World, out: Path, say: Callable[[str], None]) -> int:
    events_dir = out / "events"
    for old in events_dir.glob("date=*"):  # days of an earlier run must not linger
        shutil.rmtree(old)
    user_ids = _ids("usr_", w.users.n, 6)
    user_accounts = _take(w.account_ids, w.users.account)
    scripted = _scripted_events(w)
    total = 0
    for i, day in enumerate(range(w.win.start, w.win.end + 1)):
        rng = np.random.default_rng([w.spec.seed, day])  # a day's events depend on nothing else drawn
        user, code, offset_us = _random_day(w, day, rng)
        on_day = slice(*np.searchsorted(scripted[0], [day, day + 1]))
        user = np.concatenate([user, scripted[1][on_day]])
        code = np.concatenate([code, scripted[2][on_day]])
        offset_us = np.concatenate([offset_us, scripted[3][on_day]])
        date = w.win.date(day)
        table = pa.table({
            "event_id": _ids(f"evt_{date:%Y%m%d}_", len(user), 7),
            "account_id": user_accounts.take(pa.array(user)),
            "user_id": user_ids.take(pa.array(user)),
            "event": _take(EVENTS, code),
            "occurred_at": pa.array(day * DAY_S * US + offset_us, pa.timestamp("us", tz="UTC")),
        })
        folder = events_dir / f"date={date.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        # zstd halves the files for the same time as snappy; event ids are unique, so a
        # dictionary would only cost time.
        pq.write_table(table, folder / "part-0.parquet", compression="zstd",
                       use_dictionary=["account_id", "user_id", "event"])
        total += table.num_rows
        if (i + 1) % 10 == 0 or i + 1 == w.win.days:
            say(f"events: {i + 1}/{w.win.days} days written ({total:,} events)")
    return total


def _random_day(w: _World, day: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who has a session on `day` and what they do: (user, event code, µs since midnight).
    Each session starts with a login; its other events follow within four hours."""
    u, acc = w.users, w.acc
    level = _usage_level(acc, w.win, day)[u.account]
    weekday_factor = WEEKEND_FACTOR if (day + 3) % 7 >= 5 else 1.0  # 1970-01-01 was a Thursday
    can = (u.from_day <= day) & (day < u.to_day) & (level > 0)
    drawn = rng.random(u.n) < u.propensity * level * weekday_factor
    who = np.flatnonzero(can & (drawn | u.forced))

    # A core user who would not have come that day only logs in for a quick look, so that the
    # weekend rhythm survives the daily logins of healthy accounts.
    per_session = np.where(drawn[who], 1 + rng.poisson(u.extra_events[who]), 1)
    user = np.repeat(who, per_session)
    is_login = np.zeros(len(user), bool)
    is_login[np.cumsum(per_session) - per_session] = True
    code = rng.choice(len(EVENTS), size=len(user), p=FOLLOW_UP_SHARES)
    code[~acc.uses_workflows[u.account[user]] & (code == WORKFLOW)] = DASHBOARD
    code[is_login] = LOGIN

    local_start = rng.normal(10.5, 2.5, len(who)).clip(6, 21)
    start = (((local_start - acc.tz_hours[u.account[who]]) % 24) * HOUR_S * US).astype(np.int64)
    start = np.minimum(start, DAY_S * US - 2)
    room = np.repeat(np.minimum(SESSION_US, DAY_S * US - 1 - start), per_session)
    offset = np.repeat(start, per_session) + 1 + (rng.random(len(user)) * room).astype(np.int64)
    offset[is_login] = start
    return user, code.astype(np.int64), offset


def _usage_level(acc: _Accounts, win: _Window, day: int) -> np.ndarray:
    """Per account: how busy it is on `day` (0 = nobody uses the product)."""
    progress = (day - win.start) / max(win.days - 1, 1)
    level = acc.engagement * (1.0 + (acc.trend - 1.0) * progress)
    live = (acc.usage_from <= day) & (day < acc.usage_to) & ~((acc.pause_from <= day) & (day < acc.pause_to))
    return np.where(live, level, 0.0)


def _scripted_events(w: _World) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plants' sessions as (day, user, code, µs since midnight) arrays sorted by day; events of
    a session follow its login a minute apart."""
    rows = [(day, user, code, int(hour * HOUR_S * US) + j * 60 * US)
            for day, user, codes, hour in w.sessions for j, code in enumerate(codes)]
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    if not rows:
        return tuple(np.zeros(0, np.int64) for _ in range(4))  # type: ignore[return-value]
    return tuple(np.array(col, dtype=np.int64) for col in zip(*rows))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# planted.json and the command line


def _write_planted_json(w: _World, out: Path) -> None:
    spec = dataclasses.asdict(w.spec)
    spec["end_date"] = w.win.date(w.win.end).isoformat()
    document = {
        "spec": spec,
        "start_date": w.win.date(w.win.start).isoformat(),
        "end_date": w.win.date(w.win.end).isoformat(),
        "planted": w.planted,
        "healthy": w.healthy,
        "details": w.details,
    }
    (out / "planted.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cs_pipeline.demo.generator",
                                     description="Write deterministic demo source data.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--accounts", type=int, default=DemoSpec.accounts)
    parser.add_argument("--days", type=int, default=DemoSpec.days)
    parser.add_argument("--seed", type=int, default=DemoSpec.seed)
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--users-per-account", type=float, default=DemoSpec.users_per_account)
    parser.add_argument("--events-per-user-day", type=float, default=DemoSpec.events_per_user_day)
    args = parser.parse_args(argv)
    spec = DemoSpec(accounts=args.accounts, days=args.days, end_date=args.end_date, seed=args.seed,
                    users_per_account=args.users_per_account, events_per_user_day=args.events_per_user_day)
    began = time.perf_counter()
    summary = generate(args.out_dir, spec, progress=lambda msg: print(msg, file=sys.stderr))
    print(f"wrote {summary.out_dir} ({summary.start_date}..{summary.end_date}) in {time.perf_counter() - began:.1f} s")
    for entity, count in summary.rows.items():
        print(f"  {entity:<14} {count:>12,}")
    print(f"  healthy accounts: {len(summary.healthy)}")
    for rule, accounts in summary.planted.items():
        print(f"  planted {rule:<20} {', '.join(accounts) or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
