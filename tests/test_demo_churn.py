"""The demo's churn, read back from the written files as the pipeline would see them: churn
happens throughout the history, is point-in-time consistent, shows in behaviour before it
happens (without being perfectly readable from one figure), and the `support` driver set shows
it through other signals than the default `engagement` one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from cs_pipeline.demo import DemoSpec, generate

END = dt.date(2025, 6, 30)
SPEC = DemoSpec(accounts=260, days=300, end_date=END, users_per_account=8.0, events_per_user_day=2.0, seed=7)
EXPORT_DAY = END + dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class DataSet:
    out: Path
    churned: dict[str, dt.date]  # from planted.json's ground truth
    accounts: pl.DataFrame
    contracts: pl.DataFrame
    users: pl.DataFrame
    daily: pl.DataFrame  # account, day, events, users
    tickets: pl.DataFrame  # latest version of each ticket
    nps: pl.DataFrame
    activities: pl.DataFrame


def _load(out: Path) -> DataSet:
    truth = json.loads((out / "planted.json").read_text())["churned"]
    events = pl.scan_parquet(out / "events" / "*" / "*.parquet").with_columns(day=pl.col("occurred_at").dt.date())
    daily = events.group_by("account_id", "day").agg(events=pl.len(), users=pl.col("user_id").n_unique()).collect()
    day_of = lambda c: pl.col(c).str.slice(0, 10).str.to_date()  # noqa: E731
    return DataSet(
        out=out,
        churned={a: dt.date.fromisoformat(d) for a, d in truth.items()},
        accounts=pl.read_csv(out / "accounts.csv"),
        contracts=pl.read_csv(out / "contracts.csv", try_parse_dates=True).sort("account_id", "start_date"),
        users=pl.read_csv(out / "users.csv", infer_schema=False).with_columns(
            activated=day_of("activated_at"), deactivated=day_of("deactivated_at")),
        daily=daily,
        tickets=pl.read_ndjson(out / "tickets.jsonl").sort("updated_at").group_by("ticket_id").last()
        .with_columns(created=day_of("created_at")),
        nps=pl.read_csv(out / "nps_responses.csv").with_columns(submitted=day_of("submitted_at")),
        activities=pl.read_csv(out / "activities.csv").with_columns(day=day_of("occurred_at")),
    )


@pytest.fixture(scope="module")
def engagement(tmp_path_factory) -> DataSet:
    out = tmp_path_factory.mktemp("engagement")
    generate(out, SPEC)
    return _load(out)


@pytest.fixture(scope="module")
def support(tmp_path_factory) -> DataSet:
    out = tmp_path_factory.mktemp("support")
    generate(out, dataclasses.replace(SPEC, seed=1234, drivers="support"))
    return _load(out)


@pytest.fixture(params=["engagement", "support"])
def data(request) -> DataSet:
    return request.getfixturevalue(request.param)


def _churn_from_contracts(d: DataSet) -> dict[str, dt.date]:
    """CONTRACT.md §1: an account whose last term ended without a successor churned at its end_date."""
    last = d.contracts.group_by("account_id").agg(pl.col("end_date").max())
    return dict(last.filter(pl.col("end_date") < EXPORT_DAY).rows())


# --------------------------------------------------------------------------------------------
# Churn is real, spread over the history, and consistent in every export


def test_churn_happens_throughout_the_history(data):
    churned = _churn_from_contracts(data)
    assert churned == data.churned
    start = END - dt.timedelta(days=SPEC.days - 1)
    in_window = [d for d in churned.values() if d >= start]
    assert len(in_window) >= 40, len(in_window)
    assert len(churned) <= 0.3 * SPEC.accounts  # most accounts renew
    for first in range(0, SPEC.days - 60, 60):  # every two months of the window has churners
        lo, hi = start + dt.timedelta(days=first), start + dt.timedelta(days=first + 60)
        assert sum(lo <= d < hi for d in in_window) >= 3, (lo, hi)


def test_status_says_churned_exactly_for_accounts_churned_before_the_export(data):
    status = dict(data.accounts.select("account_id", "status").rows())
    assert {a for a, s in status.items() if s == "churned"} == set(data.churned)


def test_terms_are_consecutive_until_churn_or_today(data):
    """Renewed terms follow each other the next day; a churned account's last term has none."""
    for account, starts, ends in data.contracts.group_by("account_id").agg("start_date", "end_date").rows():
        for end, next_start in zip(ends, starts[1:]):
            assert next_start == end + dt.timedelta(days=1), account
        if ends[-1] < EXPORT_DAY:
            assert data.churned[account] == ends[-1]


def test_a_churned_accounts_users_are_inactive_after_its_churn_date(data):
    churned = pl.DataFrame({"account_id": list(data.churned), "churn": list(data.churned.values())})
    users = data.users.join(churned, on="account_id")
    assert users.height > 0
    activated = users.filter(pl.col("activated").is_not_null())
    assert activated["deactivated"].null_count() == 0
    assert (activated["deactivated"] <= activated["churn"]).all()
    late = data.daily.join(churned, on="account_id").filter(pl.col("day") > pl.col("churn"))
    assert late.height == 0, late.head()
    touched = data.activities.join(churned, on="account_id").filter(pl.col("day") > pl.col("churn"))
    assert touched.height == 0


def test_retained_accounts_renew_with_expansions_and_contractions(data):
    terms = data.contracts.with_columns(next_arr=pl.col("arr").shift(-1).over("account_id"))
    renewals = terms.filter(pl.col("next_arr").is_not_null() & (pl.col("end_date") >= END - dt.timedelta(days=SPEC.days)))
    change = renewals["next_arr"] / renewals["arr"]
    assert (change >= 1.1).sum() >= 10 and (change <= 0.95).sum() >= 10
    assert renewals.height > 2 * len(data.churned)  # more renewals than churns
    new_logos = data.contracts.group_by("account_id").agg(pl.col("start_date").min())
    assert new_logos.filter(pl.col("start_date") > END - dt.timedelta(days=SPEC.days - 30)).height >= 3


def _per_account_window(d: DataSet, first: int, last: int) -> pl.DataFrame:
    """Per churner: mean events per day and mean daily users in days churn-first .. churn-last."""
    churned = pl.DataFrame({"account_id": list(d.churned), "churn": list(d.churned.values())})
    start = END - dt.timedelta(days=SPEC.days - 1)
    churned = churned.filter(pl.col("churn") - dt.timedelta(days=first) >= start)
    days = d.daily.join(churned, on="account_id").with_columns(before=(pl.col("churn") - pl.col("day")).dt.total_days())
    window = days.filter(pl.col("before").is_between(last, first - 1))
    return churned.join(window.group_by("account_id").agg(events=pl.col("events").sum() / (first - last),
                                                           users=pl.col("users").sum() / (first - last)),
                        on="account_id", how="left").fill_null(0)


def test_churners_activity_declines_in_the_months_before(engagement):
    early, late = _per_account_window(engagement, 180, 120), _per_account_window(engagement, 30, 0)
    assert early.height >= 15
    both = early.join(late, on="account_id", suffix="_late")
    assert both["events_late"].sum() < 0.6 * both["events"].sum()
    assert both["users_late"].sum() < 0.75 * both["users"].sum()
    assert (both["events_late"] < both["events"]).mean() > 0.7


def test_the_champion_leaves_some_accounts(engagement):
    """The most active admin is deactivated mid-window and their events stop that day."""
    start = END - dt.timedelta(days=SPEC.days - 1)
    gone = engagement.users.filter((pl.col("role") == "admin") & pl.col("deactivated").is_between(start, END))
    events = pl.scan_parquet(engagement.out / "events" / "*" / "*.parquet").filter(
        pl.col("user_id").is_in(gone["user_id"].implode())).group_by("user_id").agg(
        last=pl.col("occurred_at").dt.date().max(), n=pl.len()).collect()
    left = gone.join(events, on="user_id").filter(pl.col("n") >= 100)
    assert left.height >= 10
    assert (left["last"] <= left["deactivated"]).all()


# --------------------------------------------------------------------------------------------
# Readable, but not from one figure: a backtest-like look at observation dates every 15 days


def _observations(d: DataSet) -> pl.DataFrame:
    """Per account live on D: 30-day events and the label "churns 30 to 90 days after D"."""
    start = END - dt.timedelta(days=SPEC.days - 1)
    frames = []
    for offset in range(60, SPEC.days - 90, 15):
        day = start + dt.timedelta(days=offset)
        live = d.contracts.filter((pl.col("start_date") <= day) & (pl.col("end_date") >= day)).select("account_id").unique()
        recent = d.daily.filter(pl.col("day").is_between(day - dt.timedelta(days=29), day)).group_by("account_id").agg(
            events=pl.col("events").sum())
        churn = pl.DataFrame({"account_id": list(d.churned), "churn": list(d.churned.values())},
                             schema={"account_id": pl.String, "churn": pl.Date})
        frames.append(live.join(recent, on="account_id", how="left").join(churn, on="account_id", how="left")
                      .with_columns(D=pl.lit(day), events=pl.col("events").fill_null(0)))
    obs = pl.concat(frames)
    return obs.with_columns(y=(pl.col("churn") - pl.col("D")).dt.total_days().is_between(30, 90).fill_null(False))


def test_activity_predicts_churn_but_not_perfectly(engagement):
    obs = _observations(engagement)
    assert obs["y"].sum() >= 60
    auc = roc_auc_score(obs["y"].to_numpy(), -np.log1p(obs["events"].to_numpy()))
    assert 0.65 < auc < 0.95, auc
    # Some healthy-looking accounts churn, some weak ones renew.
    median = obs["events"].median()
    assert obs.filter(pl.col("y") & (pl.col("events") > median)).height >= 5
    weak = obs.filter(pl.col("events") < obs["events"].quantile(0.2))
    assert weak.filter(~pl.col("y") & pl.col("churn").is_null()).height >= 20


# --------------------------------------------------------------------------------------------
# The second driver set: churn follows support friction, not mainly usage


def _gap(d: DataSet) -> dict[str, float]:
    """Churners' figures over the 120 days before their churn, next to every other account's
    over the window's last 120 days."""
    churned = pl.DataFrame({"account_id": list(d.churned), "ref": list(d.churned.values())})
    others = d.accounts.filter(~pl.col("account_id").is_in(list(d.churned)) & (pl.col("status") == "active"))
    others = others.select("account_id", ref=pl.lit(END))
    ref = pl.concat([churned.with_columns(churner=True), others.with_columns(churner=False)])
    high = d.tickets.filter(pl.col("priority").is_in(["high", "urgent"])).join(ref, on="account_id")
    high = high.filter(pl.col("created").is_between(pl.col("ref") - dt.timedelta(days=120), pl.col("ref")))
    high = ref.join(high.group_by("account_id").len(), on="account_id", how="left").fill_null(0)
    nps = d.nps.join(ref, on="account_id").filter(
        pl.col("submitted").is_between(pl.col("ref") - dt.timedelta(days=120), pl.col("ref")))
    tickets_gap = high.filter("churner")["len"].mean() - high.filter(~pl.col("churner"))["len"].mean()
    nps_gap = nps.filter(~pl.col("churner"))["score"].mean() - nps.filter("churner")["score"].mean()
    return {"tickets": tickets_gap, "nps": nps_gap}


def test_support_churn_shows_in_tickets_and_nps_more_than_engagement_churn(engagement, support):
    default, friction = _gap(engagement), _gap(support)
    assert friction["tickets"] > default["tickets"] + 1.0, (default, friction)
    assert friction["nps"] > default["nps"] + 0.8, (default, friction)


def test_support_churn_declines_activity_less(engagement, support):
    def drop(d: DataSet) -> float:
        both = _per_account_window(d, 180, 120).join(_per_account_window(d, 60, 30), on="account_id", suffix="_late")
        return 1 - both["events_late"].sum() / both["events"].sum()

    assert drop(support) < drop(engagement) - 0.15


def test_support_churners_lose_seats_and_their_csm(support):
    churned = pl.DataFrame({"account_id": list(support.churned), "churn": list(support.churned.values())})
    start = END - dt.timedelta(days=SPEC.days - 1)
    churned = churned.filter(pl.col("churn") > start + dt.timedelta(days=120))
    removed = support.users.join(churned, on="account_id").filter(
        pl.col("deactivated").is_between(pl.col("churn") - dt.timedelta(days=180), pl.col("churn") - dt.timedelta(days=1)))
    assert removed["account_id"].n_unique() >= 0.4 * churned.height
    last_touch = support.activities.join(churned, on="account_id").group_by("account_id").agg(
        gap=(pl.col("churn").first() - pl.col("day").max()).dt.total_days())
    assert (last_touch["gap"] > 60).sum() >= 5


def test_the_driver_set_is_deterministic_and_changes_the_data(tmp_path, support):
    spec = dataclasses.replace(SPEC, accounts=60, days=90, seed=1234)
    digests = {}
    for name, drivers in [("a", "support"), ("b", "support"), ("c", "engagement")]:
        generate(tmp_path / name, dataclasses.replace(spec, drivers=drivers))
        digests[name] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / name).glob("*.*")}
    assert digests["a"] == digests["b"]
    assert digests["a"]["tickets.jsonl"] != digests["c"]["tickets.jsonl"]
    assert digests["a"]["users.csv"] != digests["c"]["users.csv"]  # seats go with support friction


def test_unknown_drivers_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="drivers must be one of engagement, support"):
        generate(tmp_path, dataclasses.replace(SPEC, drivers="vibes"))
