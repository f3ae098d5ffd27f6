"""The demo world's vocabulary and shapes: constants, the spec, the calendar, and the parallel
numpy arrays that hold accounts, users and the scripted pieces of plants."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EPOCH = dt.date(1970, 1, 1)
DAY_S = 86_400
HOUR_S = 3_600
US = 1_000_000
NONE = -1  # "no timestamp / no index" in integer arrays
NEVER = np.iinfo(np.int64).max // 4  # a day number after every window

SEGMENT_SHARES = (0.15, 0.35, 0.50)  # in the order of the contract's SEGMENTS
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
HEALTHY_SHARE_TARGET = 0.30
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
    accounts: int = 350
    days: int = 300  # days of event history, ending at end_date inclusive
    end_date: dt.date | None = None  # default: yesterday (settings.today() - 1 day)
    users_per_account: float = 10.0  # mean seats assigned per account (varies by segment)
    events_per_user_day: float = 3.0  # mean events per active user per active day
    seed: int = 7
    drivers: str = "engagement"  # what drives churn: "engagement" or "support" (see demo/churn.py)


@dataclass
class DemoSummary:
    out_dir: Path
    start_date: dt.date
    end_date: dt.date
    rows: dict[str, int]  # per entity, e.g. {"accounts": 200, "events": 1234567, ...}
    planted: dict[str, list[str]]  # rule id -> account ids planted to fire it
    healthy: list[str]  # account ids that must trigger no rule at all in the window
    churned: dict[str, str] = field(default_factory=dict)  # account id -> churn date (last term's end_date)


RULES = (
    "no_login_20d", "low_health_day_90", "health_drop", "renewal_at_risk",
    "upsell_ready", "nps_detractor", "ticket_surge", "onboarding_checkin",
)

# --------------------------------------------------------------------------------------------
# Calendar: days are integers (days since 1970-01-01), instants are integer seconds or µs.


@dataclass(frozen=True)
class Window:
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


def day_number(date: dt.date) -> int:
    return (date - EPOCH).days


def add_months(days: np.ndarray | int, months: np.ndarray | int) -> np.ndarray:
    """Calendar month arithmetic on day numbers (Jan 31 + 1 month = Feb 28/29)."""
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    day_of_month = (d - month.astype("datetime64[D]")).astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    month_len = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    return target.astype("datetime64[D]").astype(np.int64) + np.minimum(day_of_month, month_len - 1)


def terms_through(first_start: np.ndarray, day: int) -> np.ndarray:
    """How many consecutive 12-month terms from first_start have started by `day`."""
    terms = np.maximum((day - first_start) // 365 + 2, 1)
    while True:
        too_many = (add_months(first_start, 12 * (terms - 1)) > day) & (terms > 1)
        if not too_many.any():
            return terms
        terms = terms - too_many


# --------------------------------------------------------------------------------------------
# The world: accounts and users as parallel numpy arrays, plus the scripted pieces of plants.


@dataclass
class Accounts:
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
    # the hidden engagement (demo/churn.py): a weekly walk per account, and what it drives
    drivers: str = "engagement"
    grid_start: int = 0  # the day of the walk's first week
    latent: np.ndarray | None = None  # (accounts, weeks) float32
    activity_weight: np.ndarray | None = None  # how strongly usage follows it (0: not at all)
    shock_day: np.ndarray | None = None  # the champion left / the CSM went quiet (NEVER: no)
    renewal_factor: np.ndarray | None = None  # (accounts, terms) ARR change at each renewal; NaN: drawn

    @property
    def n(self) -> int:
        return len(self.segment)


@dataclass
class Users:
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
class World:
    spec: DemoSpec
    win: Window
    rng: np.random.Generator
    acc: Accounts
    csm_emails: list[str]
    account_ids: list[str] = field(default_factory=list)
    account_names: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)  # each account's e-mail domain
    users: Users = None  # type: ignore[assignment]
    planted: dict[str, list[str]] = field(default_factory=dict)
    healthy: list[str] = field(default_factory=list)
    details: dict[str, dict] = field(default_factory=dict)
    # scripted by plants, merged with the random data when written
    sessions: list[tuple[int, int, tuple[int, ...], float]] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    nps: list[dict] = field(default_factory=list)

    def set_first_term(self, a: int, first_start: int) -> None:
        self.acc.first_start[a] = first_start
        self.acc.n_terms[a] = terms_through(np.array([first_start]), self.win.end)[0]
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
