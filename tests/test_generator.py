"""The demo generator: contract layout, determinism, and the planted/healthy promises, checked by
reading the written files back (not the generator's internals)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cs_pipeline.demo import DemoSpec, generate
from cs_pipeline.demo.generator import main

END = dt.date(2025, 6, 30)
SMALL = DemoSpec(accounts=40, days=60, end_date=END, users_per_account=8.0, events_per_user_day=4.0, seed=11)

COLUMNS = {
    "accounts.csv": ["account_id", "name", "segment", "owner_email", "plan", "licenses", "status", "created_at"],
    "contracts.csv": ["contract_id", "account_id", "start_date", "end_date", "arr"],
    "users.csv": ["user_id", "account_id", "email", "role", "created_at", "activated_at", "deactivated_at"],
    "activities.csv": ["activity_id", "account_id", "owner_email", "type", "occurred_at"],
    "engagements.csv": ["engagement_id", "account_id", "type", "occurred_at"],
    "nps_responses.csv": ["response_id", "account_id", "user_id", "score", "comment", "submitted_at"],
    "tickets.jsonl": ["ticket_id", "account_id", "created_at", "updated_at", "status", "priority", "subject", "csat"],
}
EVENT_NAMES = {"login", "report.created", "dashboard.viewed", "workflow.run", "record.updated", "integration.synced"}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
DATA_RULES = ("no_login_20d", "upsell_ready", "nps_detractor", "ticket_surge", "onboarding_checkin")


@pytest.fixture(scope="module", params=["engagement", "support"])
def small(request, tmp_path_factory):
    """SMALL with each driver set: both keep every planted situation and healthy account."""
    out = tmp_path_factory.mktemp("demo")
    messages: list[str] = []
    summary = generate(out, dataclasses.replace(SMALL, drivers=request.param), progress=messages.append)
    return out, summary, messages


@pytest.fixture(scope="module")
def facts(small):
    return Facts.read(small[0])


def _read(out: Path, name: str) -> pl.DataFrame:
    if name.endswith(".jsonl"):
        return pl.read_ndjson(out / name, infer_schema_length=None)
    return pl.read_csv(out / name, infer_schema=False)  # every column as text, as written


def _events(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "events" / "*" / "*.parquet", include_file_paths="file", hive_partitioning=False)


def _digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# Layout, types and determinism


def test_writes_the_contract_layout_with_exact_columns(small):
    out, summary, _ = small
    for name, columns in COLUMNS.items():
        assert _read(out, name).columns == columns, name
    day_folders = sorted(p.name for p in (out / "events").iterdir())
    window = [SMALL.end_date - dt.timedelta(days=i) for i in reversed(range(SMALL.days))]
    assert day_folders == [f"date={d.isoformat()}" for d in window]
    assert all(sorted(p.name for p in (out / "events" / f).iterdir()) == ["part-0.parquet"] for f in day_folders)
    schema = pq.read_schema(out / "events" / day_folders[0] / "part-0.parquet")
    assert schema.names == ["event_id", "account_id", "user_id", "event", "occurred_at"]
    assert schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    assert (summary.start_date, summary.end_date) == (window[0], END)
    assert (out / "planted.json").exists()


def test_row_counts_in_the_summary_match_the_files(small):
    out, summary, _ = small
    files = {"accounts": "accounts.csv", "contracts": "contracts.csv", "users": "users.csv",
             "activities": "activities.csv", "engagements": "engagements.csv",
             "nps_responses": "nps_responses.csv", "tickets": "tickets.jsonl"}
    for entity, name in files.items():
        assert summary.rows[entity] == _read(out, name).height, entity
    assert summary.rows["events"] == _events(out).height
    assert summary.rows["accounts"] == SMALL.accounts


def test_progress_is_reported_every_ten_days(small):
    messages = small[2]
    assert sum("days written" in m for m in messages) == SMALL.days // 10


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, small):
    out, _, _ = small
    again = tmp_path / "again"
    spec = DemoSpec(**json.loads((out / "planted.json").read_text())["spec"] | {"end_date": END})
    generate(again, spec)
    assert _digest(again) == _digest(out)
    other = tmp_path / "other"
    generate(other, dataclasses.replace(spec, seed=SMALL.seed + 1))
    first, second = _digest(out), _digest(other)
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in COLUMNS)


def test_rerun_replaces_earlier_output(tmp_path):
    out = tmp_path / "demo"
    generate(out, DemoSpec(accounts=5, days=12, end_date=END))
    generate(out, DemoSpec(accounts=5, days=5, end_date=END - dt.timedelta(days=40)))
    folders = sorted(p.name for p in (out / "events").iterdir())
    assert folders == [f"date={END - dt.timedelta(days=40 + i)}" for i in reversed(range(5))]


def test_timestamps_are_iso_utc_and_dates_plain(small):
    out = small[0]
    stamped = {"accounts.csv": ["created_at"], "users.csv": ["created_at", "activated_at", "deactivated_at"],
               "activities.csv": ["occurred_at"], "engagements.csv": ["occurred_at"],
               "nps_responses.csv": ["submitted_at"], "tickets.jsonl": ["created_at", "updated_at"]}
    for name, columns in stamped.items():
        frame = _read(out, name)
        for column in columns:
            values = [v for v in frame[column].to_list() if v is not None]
            assert values and all(ISO_Z.match(v) for v in values), (name, column)
    contracts = _read(out, "contracts.csv")
    dates = contracts["start_date"].to_list() + contracts["end_date"].to_list()
    assert all(re.match(r"^\d{4}-\d{2}-\d{2}$", v) for v in dates)


def test_values_stay_in_their_domains(small, facts):
    out = small[0]
    accounts = _read(out, "accounts.csv")
    assert set(accounts["segment"]) <= {"enterprise", "mid_market", "smb"}
    assert set(accounts["status"]) <= {"trial", "active", "churned"}
    assert accounts["account_id"].n_unique() == accounts.height
    assert all(int(v) >= 0 for v in accounts["licenses"])
    users = _read(out, "users.csv")
    assert set(users["role"]) == {"admin", "member"}
    assert users["user_id"].n_unique() == users.height
    for created, activated, deactivated in users.select("created_at", "activated_at", "deactivated_at").rows():
        assert activated is None or created <= activated
        assert deactivated is None or (activated is not None and activated <= deactivated)
    tickets = _read(out, "tickets.jsonl")
    assert set(tickets["status"]) <= {"open", "pending", "resolved", "closed"}
    assert set(tickets["priority"]) <= {"low", "normal", "high", "urgent"}
    assert set(tickets["csat"].drop_nulls()) <= {1, 2, 3, 4, 5}
    nps = _read(out, "nps_responses.csv")
    assert nps["response_id"].n_unique() == nps.height
    assert all(0 <= int(s) <= 10 for s in nps["score"])
    assert set(_read(out, "activities.csv")["type"]) <= {"call", "email", "meeting", "qbr", "note"}
    assert set(_read(out, "engagements.csv")["type"]) <= {"email_click", "webinar", "community_post", "event"}
    assert set(_events(out)["event"]) == EVENT_NAMES
    end_s = f"{END + dt.timedelta(days=1)}T00:00:00Z"
    for name, column in [("tickets.jsonl", "updated_at"), ("nps_responses.csv", "submitted_at"),
                         ("activities.csv", "occurred_at"), ("users.csv", "activated_at")]:
        assert all(v < end_s for v in _read(out, name)[column].drop_nulls()), "nothing after the window"


def test_contract_terms_are_consecutive_twelve_month_renewals(facts):
    for account, terms in facts.terms.items():
        for (start, end, arr), (next_start, _, _) in zip(terms, terms[1:]):
            assert next_start == end + dt.timedelta(days=1), account
        for start, end, arr in terms:
            assert 364 <= (end - start).days <= 365 and arr >= 0


def test_events_fall_inside_their_folder_day_and_ids_are_unique(small):
    events = _events(small[0])
    folder_day = events["file"].str.extract(r"date=(\d{4}-\d{2}-\d{2})").str.to_date()
    assert (events["occurred_at"].dt.date() == folder_day).all()
    assert events["event_id"].n_unique() == events.height


def test_every_session_day_starts_with_a_login(small):
    events = _events(small[0]).with_columns(day=pl.col("occurred_at").dt.date())
    first = events.sort("occurred_at").group_by("user_id", "day").agg(pl.col("event").first())
    assert (first["event"] == "login").all()


def test_references_point_to_existing_rows(small):
    out = small[0]
    accounts = set(_read(out, "accounts.csv")["account_id"])
    users = _read(out, "users.csv")
    user_account = dict(users.select("user_id", "account_id").rows())
    for name in [name for name in COLUMNS if name != "accounts.csv"]:
        assert set(_read(out, name)["account_id"]) <= accounts, name
    events = _events(out).select("account_id", "user_id").unique()
    assert all(user_account[u] == a for a, u in events.rows())
    nps = _read(out, "nps_responses.csv").drop_nulls("user_id")
    assert all(user_account[u] == a for a, u in nps.select("account_id", "user_id").rows())


def test_cli_prints_the_summary(tmp_path, capsys):
    args = [str(tmp_path / "cli"), "--accounts", "6", "--days", "8", "--seed", "3", "--end-date", "2025-03-01"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2025-02-22..2025-03-01" in printed and "accounts" in printed and "events" in printed
    assert (tmp_path / "cli" / "events" / "date=2025-03-01" / "part-0.parquet").exists()


def test_tiny_specs_still_write_a_valid_data_set(tmp_path):
    summary = generate(tmp_path / "tiny", DemoSpec(accounts=3, days=2, end_date=END))
    assert summary.rows["accounts"] == 3 and len(summary.healthy) >= 1
    assert all(ids == [] for ids in summary.planted.values())  # too short a window for the situations


# --------------------------------------------------------------------------------------------
# Planted and healthy accounts, judged by the rule conditions recomputed from the files


@dataclass
class Facts:
    """Per account, what the default rules look at, recomputed from the written files."""

    start: dt.date
    end: dt.date
    status: dict[str, str]
    licenses: dict[str, int]
    terms: dict[str, list[tuple[dt.date, dt.date, float]]]
    users: dict[str, list[tuple[dt.date | None, dt.date | None]]]  # (activated, deactivated) days
    login_users: dict[tuple[str, dt.date], set[str]] = field(default_factory=lambda: defaultdict(set))
    feature_days: dict[tuple[str, str], set[dt.date]] = field(default_factory=lambda: defaultdict(set))
    nps: dict[tuple[str, dt.date], list[int]] = field(default_factory=lambda: defaultdict(list))
    tickets: dict[str, list[tuple[str, dt.date, dt.date | None]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, out: Path) -> Facts:
        planted = json.loads((out / "planted.json").read_text())
        accounts = _read(out, "accounts.csv")
        terms: dict = defaultdict(list)
        contracts = _read(out, "contracts.csv").select("account_id", "start_date", "end_date", "arr")
        for account, start, end, arr in contracts.rows():
            terms[account].append((dt.date.fromisoformat(start), dt.date.fromisoformat(end), float(arr)))
        users: dict = defaultdict(list)
        for account, activated, deactivated in _read(out, "users.csv").select(
            "account_id", "activated_at", "deactivated_at"
        ).rows():
            users[account].append((_day(activated), _day(deactivated)))
        facts = cls(
            start=dt.date.fromisoformat(planted["start_date"]), end=dt.date.fromisoformat(planted["end_date"]),
            status=dict(accounts.select("account_id", "status").rows()),
            licenses={a: int(n) for a, n in accounts.select("account_id", "licenses").rows()},
            terms={a: sorted(t) for a, t in terms.items()}, users=users,
        )
        events = _events(out).select("account_id", "user_id", "event", day=pl.col("occurred_at").dt.date()).unique()
        for account, user, event, day in events.rows():
            if event == "login":
                facts.login_users[(account, day)].add(user)
            facts.feature_days[(account, event)].add(day)
        nps = _read(out, "nps_responses.csv").select("account_id", "score", "submitted_at")
        for account, score, submitted in nps.rows():
            facts.nps[(account, _day(submitted))].append(int(score))
        latest = _read(out, "tickets.jsonl").sort("updated_at").group_by("ticket_id").last()
        latest = latest.select("account_id", "priority", "status", "created_at", "updated_at")
        for account, priority, status, created, updated in latest.rows():
            resolved = _day(updated) if status in ("resolved", "closed") else None
            facts.tickets[account].append((priority, _day(created), resolved))
        return facts

    def window(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def first_term_start(self, account: str) -> dt.date | None:
        return self.terms[account][0][0] if self.terms.get(account) else None

    def live_term(self, account: str, day: dt.date):
        return next((t for t in self.terms.get(account, []) if t[0] <= day <= t[1]), None)

    def last_login(self, account: str, day: dt.date) -> dt.date | None:
        days = [d for d in self.window() if d <= day and self.login_users.get((account, d))]
        return max(days) if days else None

    def activation(self, account: str, day: dt.date) -> float:
        active = sum(1 for act, deact in self.users[account] if act and act <= day and not (deact and deact <= day))
        return active / self.licenses[account]

    def open_high(self, account: str, day: dt.date) -> int:
        return sum(1 for prio, created, resolved in self.tickets[account]
                   if prio in ("high", "urgent") and created <= day and (resolved is None or resolved > day))

    def holds(self, rule: str, account: str, day: dt.date) -> bool:
        """Whether a data-determined rule's condition holds (for score rules: its non-score part)."""
        if self.status[account] != "active" or self.live_term(account, day) is None:
            return False
        first = self.first_term_start(account)
        if rule == "no_login_20d":
            last = self.last_login(account, day)
            return last is not None and (day - last).days >= 20
        if rule == "upsell_ready":
            month = {day - dt.timedelta(days=i) for i in range(30)}
            used = all(self.feature_days[(account, f)] & month for f in ("report.created", "workflow.run"))
            return self.activation(account, day) >= 0.9 and used
        if rule == "nps_detractor":
            return any(score <= 6 for score in self.nps.get((account, day), []))
        if rule == "ticket_surge":
            return self.open_high(account, day) >= 3
        if rule == "onboarding_checkin":
            return (day - first).days in (30, 90, 180)
        if rule == "low_health_day_90":
            return 90 <= (day - first).days <= 96
        if rule == "renewal_at_risk":
            return 90 <= (self.live_term(account, day)[1] - day).days <= 180
        raise ValueError(rule)


def _day(stamp: str | None) -> dt.date | None:
    return dt.date.fromisoformat(stamp[:10]) if stamp else None


def _planted(out: Path) -> dict:
    return json.loads((out / "planted.json").read_text())


def test_every_rule_has_two_planted_accounts_and_a_healthy_third(small):
    out, summary, _ = small
    document = _planted(out)
    assert document["planted"] == summary.planted and document["healthy"] == summary.healthy
    assert document["spec"]["end_date"] == END.isoformat() and document["spec"]["seed"] == SMALL.seed
    assert all(len(summary.planted[rule]) >= 2 for rule in document["planted"])
    assert len(summary.planted) == 8
    planted = {a for ids in summary.planted.values() for a in ids}
    assert not planted & set(summary.healthy)
    assert len(summary.healthy) >= 0.3 * SMALL.accounts
    assert planted | set(summary.healthy) <= set(_read(out, "accounts.csv")["account_id"])


def test_planted_situations_hold_on_their_days(small, facts):
    """Each planted account's rule (its data part for score rules) holds on every listed day, as
    do the extra rules the plant is documented to trigger."""
    details = _planted(small[0])["details"]
    assert details
    for account, detail in details.items():
        assert detail["fires_on"], account
        expected = {detail["rule"]: detail["fires_on"], **detail.get("also_fires", {})}
        for rule, days in expected.items():
            if rule == "health_drop":
                continue  # needs the health model; checked below from its usage
            for day in days:
                assert facts.holds(rule, account, dt.date.fromisoformat(day)), (rule, account, day)


def test_data_rules_fire_exactly_on_the_listed_days(small, facts):
    """For rules decided by data alone, the listed days are all the days in the window."""
    details = _planted(small[0])["details"]
    for account, detail in details.items():
        expected = {detail["rule"]: detail["fires_on"], **detail.get("also_fires", {})}
        for rule, days in expected.items():
            if rule in DATA_RULES:
                actual = [d.isoformat() for d in facts.window() if facts.holds(rule, account, d)]
                assert actual == days, (rule, account)


def test_planted_situations_are_visible_in_the_files(small, facts):
    out, summary, _ = small
    end = facts.end
    for account in summary.planted["nps_detractor"]:
        assert any(s <= 6 for (a, _), scores in facts.nps.items() if a == account for s in scores)
    for account in summary.planted["ticket_surge"]:
        assert max(facts.open_high(account, d) for d in facts.window()) >= 3
    for account in summary.planted["upsell_ready"]:
        assert facts.activation(account, end) >= 0.9 and facts.activation(account, facts.start) < 0.9
    for account in summary.planted["no_login_20d"]:
        login_days = sorted(d for d in facts.window() if facts.login_users.get((account, d)))
        gaps = [(b - a).days for a, b in zip(login_days, login_days[1:])] + [(end - login_days[-1]).days]
        assert max(gaps) >= 20
    for account in summary.planted["health_drop"]:
        login_days = [d for d in facts.window() if facts.login_users.get((account, d))]
        assert (end - max(login_days)).days >= 25  # silent for the last ~4 weeks...
        before = [d for d in login_days if (end - d).days >= 30]
        assert len(before) >= 25  # ...after a month of daily use
        assert facts.open_high(account, end) >= 3 and facts.activation(account, end) < 0.6
    for account in summary.planted["renewal_at_risk"]:
        assert len([d for d in facts.window() if facts.login_users.get((account, d))]) == 1
        assert 90 <= (facts.live_term(account, end)[1] - end).days <= 180
        assert facts.activation(account, end) < 0.3
    for account in summary.planted["low_health_day_90"]:
        assert facts.activation(account, end) < 0.3 and facts.open_high(account, end) == 2
        assert min(s for (a, _), scores in facts.nps.items() if a == account for s in scores) <= 6


def test_early_situations_close_long_before_the_end(small, facts):
    """Backfill material: an episode that opened and closed in the first half of the window."""
    details = _planted(small[0])["details"]
    two_weeks_before_end = str(facts.end - dt.timedelta(days=14))
    early = {rule: [a for a, d in details.items() if d["rule"] == rule and max(d["fires_on"]) < two_weeks_before_end]
             for rule in ("no_login_20d", "nps_detractor", "ticket_surge")}
    assert all(early.values()), early


def test_healthy_accounts_trigger_no_rule(small, facts):
    out, summary, _ = small
    nps_scores = defaultdict(list)
    for (account, _), scores in facts.nps.items():
        nps_scores[account] += scores
    for account in summary.healthy:
        assert facts.status[account] == "active"
        assert (facts.start - facts.first_term_start(account)).days > 180 + 10
        for day in facts.window():
            assert facts.live_term(account, day) is not None
            fired = [r for r in DATA_RULES + ("low_health_day_90", "renewal_at_risk") if facts.holds(r, account, day)]
            assert not fired, (account, day, fired)
            assert len(facts.login_users.get((account, day), ())) >= 2, "several users log in every day"
            assert 0.6 <= facts.activation(account, day) <= 0.85
            assert facts.open_high(account, day) <= 1
        assert all(score >= 7 for score in nps_scores[account])
        assert (facts.live_term(account, facts.end)[1] - facts.end).days > 200


# --------------------------------------------------------------------------------------------
# The default spec: realism and speed


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    began = time.perf_counter()
    summary = generate(out, DemoSpec(end_date=END))
    seconds = time.perf_counter() - began
    print(f"\ndefault spec ({DemoSpec.accounts} accounts x {DemoSpec.days} days): {seconds:.2f} s, rows {summary.rows}")
    return out, summary, seconds


def test_default_spec_generation_time(default_run):
    _, summary, seconds = default_run
    assert summary.rows["accounts"] == DemoSpec.accounts and summary.rows["events"] > 300_000
    if seconds > 10:
        print(f"warning: default spec took {seconds:.1f} s (target ~10 s)")


def test_default_data_looks_like_a_real_portfolio(default_run):
    out, summary, _ = default_run
    accounts = _read(out, "accounts.csv")
    segments = accounts["segment"].value_counts(normalize=True)
    share = dict(segments.rows())
    assert 0.05 < share["enterprise"] < 0.3 and 0.35 < share["smb"] < 0.65
    seats = dict(accounts.group_by("segment").agg(pl.col("licenses").cast(int).mean()).rows())
    assert seats["enterprise"] > seats["mid_market"] > seats["smb"]
    assert {"trial", "churned", "active"} <= set(accounts["status"])
    assert accounts["owner_email"].null_count() >= 1
    owners = accounts["owner_email"].drop_nulls()
    assert 12 <= owners.n_unique() <= 16 and all(re.match(r"^[a-z]+\.[a-z]+\d*@example\.com$", o) for o in owners)
    facts = Facts.read(out)
    for account in accounts.filter(pl.col("status") == "churned")["account_id"]:
        last_start, last_end, _ = facts.terms[account][-1]
        assert last_end < END  # ended without a successor
    assert any(len(t) >= 3 for t in facts.terms.values())
    assert len({round(t[1][2] / t[0][2], 2) for t in facts.terms.values() if len(t) > 1}) > 10  # ARR moves
    users = _read(out, "users.csv")
    assert users["activated_at"].null_count() > 0 and users["deactivated_at"].drop_nulls().len() > 0
    tickets = _read(out, "tickets.jsonl")
    assert tickets["ticket_id"].n_unique() < tickets.height  # several versions of some tickets
    assert (tickets["priority"].is_in(["low", "normal"]).mean() or 0) > 0.7
    nps = _read(out, "nps_responses.csv")["score"].cast(int)
    assert nps.mean() > 7 and (nps <= 6).sum() > 0
    events = _events(out).with_columns(weekday=pl.col("occurred_at").dt.weekday())
    per_day = events.group_by(pl.col("occurred_at").dt.date().alias("day"), "weekday").len()
    weekend = per_day.filter(pl.col("weekday") >= 6)["len"].mean()
    weekday = per_day.filter(pl.col("weekday") <= 5)["len"].mean()
    assert 0.15 < weekend / weekday < 0.45
