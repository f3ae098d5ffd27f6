"""Per-account daily usage (CONTRACT.md §2, `account_daily_usage`), as polars expressions.

Everything is built from two small daily marts that dbt keeps, never by rescanning raw events
or per-user rows, so a day's cost does not grow with the history kept:

- `marts.fct_account_daily_activity`: per account and day, active users, logins, events and a
  count per product event. A day's figures are its row; the 7- and 30-day sums add up 7 or 30
  rows per account.
- `marts.fct_user_monthly_activity`: per user and month, a bitmask of the days with activity.
  Distinct active users over a window are the users with a bit set inside it, in at most two
  months: one row per user instead of one per user, day and event.

Every figure is "as of the end of D": nothing after D is used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from cs_pipeline.logic.config import event_column
from cs_pipeline.logic.latest import latest_on_or_before

WINDOWS = (7, 30)
DAY = dt.timedelta(days=1)


def _end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + DAY, dt.time())


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def window_bits(month: dt.date, first: dt.date, last: dt.date) -> int:
    """The bits of `fct_user_monthly_activity.active_days` for the days of [first, last] in `month`."""
    next_month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    lo, hi = max(first, month), min(last, next_month - DAY)
    if lo > hi:
        return 0
    return ((1 << (hi.day - lo.day + 1)) - 1) << (lo.day - 1)


def _window_sums(account_days: pl.LazyFrame, day: dt.date, events: Sequence[str]) -> pl.LazyFrame:
    """Logins, events (and, over 30 days, each product event) summed over each window to D, in one pass."""
    longest = max(WINDOWS)
    sums = []
    for days in WINDOWS:
        inside = pl.col("activity_date") >= day - dt.timedelta(days=days - 1)
        per_event = [event_column(e) for e in events] if days == 30 else []
        sums += [(pl.col(c) if days == longest else pl.col(c).filter(inside)).sum().alias(f"{c}_{days}d")
                 for c in ["logins", "events", *per_event]]
    return (
        account_days.filter(pl.col("activity_date").is_between(day - dt.timedelta(days=longest - 1), day))
        .group_by("account_id")
        .agg(sums)
    )


def _window_bits(day: dt.date, days: int) -> pl.Expr:
    """Per user-month row, the active_days bits of the `days` days to D (0 for a month outside them)."""
    first = day - dt.timedelta(days=days - 1)
    bits = pl.lit(0, pl.Int64)
    for month in sorted({month_start(first), month_start(day)}, reverse=True):
        bits = pl.when(pl.col("activity_month") == month).then(pl.lit(window_bits(month, first, day), pl.Int64)).otherwise(bits)
    return bits


def _window_users(user_months: pl.LazyFrame, day: dt.date) -> pl.LazyFrame:
    """Distinct users with activity in each window to D: a bit inside the window in either month."""
    longest = max(WINDOWS)
    months = sorted({month_start(day - dt.timedelta(days=longest - 1)), month_start(day)})
    active = [((pl.col("active_days") & _window_bits(day, days)) != 0) for days in WINDOWS]
    return (
        user_months.filter(pl.col("activity_month").is_in(months) & active[WINDOWS.index(longest)])
        .group_by("account_id")
        .agg(
            (pl.col("user_id") if days == longest else pl.col("user_id").filter(inside)).n_unique().cast(pl.Int64)
            .alias(f"active_users_{days}d")
            for days, inside in zip(WINDOWS, active)
        )
    )


def _seats(users: pl.LazyFrame, day: dt.date) -> pl.LazyFrame:
    """Seats as of the end of D: assigned (created, not deactivated) and, of those, activated."""
    end = _end_of(day)
    assigned = (pl.col("created_at").is_null() | (pl.col("created_at") < end)) & (
        pl.col("deactivated_at").is_null() | (pl.col("deactivated_at") >= end)
    )
    activated = assigned & pl.col("activated_at").is_not_null() & (pl.col("activated_at") < end)
    return users.group_by("account_id").agg(
        assigned.sum().cast(pl.Int64).alias("assigned_users"),
        activated.sum().cast(pl.Int64).alias("activated_users"),
    )


def _one_day(
    day: dt.date,
    accounts: pl.LazyFrame,
    users: pl.LazyFrame,
    account_days: pl.LazyFrame,
    user_months: pl.LazyFrame,
    events: Sequence[str],
) -> pl.LazyFrame:
    day_columns = ["active_users", "logins", "events", *[event_column(e) for e in events]]
    frame = accounts.with_columns(pl.lit(day).alias("partition_date"))
    frame = frame.join(
        account_days.filter(pl.col("activity_date") == day).select("account_id", *day_columns), on="account_id", how="left"
    )
    frame = frame.join(_window_users(user_months, day), on="account_id", how="left")
    frame = frame.join(_window_sums(account_days, day, events), on="account_id", how="left")
    return frame.join(_seats(users, day), on="account_id", how="left")


def _last_login(frame: pl.LazyFrame, login_days: pl.LazyFrame, dates: Sequence[dt.date]) -> pl.LazyFrame:
    """The latest day with a login on or before D, from all history (no scan per day)."""
    last = latest_on_or_before(login_days, "activity_date", dates, ["activity_date"]).rename({"activity_date": "last_login_date"})
    return frame.join(last, on=["account_id", "partition_date"], how="left").with_columns(
        (pl.col("partition_date") - pl.col("last_login_date")).dt.total_days().alias("days_since_last_login")
    )


def _rates(key_features: Sequence[str]) -> list[pl.Expr]:
    licenses = pl.col("licenses")
    used = [(pl.col(event_column(k) + "_30d") > 0).cast(pl.Int64) for k in key_features]
    key_used = pl.sum_horizontal(used) if used else pl.lit(0, pl.Int64)
    return [
        pl.when(licenses > 0).then(pl.col("activated_users") / licenses).alias("license_activation_rate"),
        pl.when(licenses > 0).then(pl.col("assigned_users") / licenses).alias("deployment_rate"),
        pl.when(pl.col("activated_users") > 0)
        .then(pl.col("active_users_30d") / pl.col("activated_users"))
        .alias("utilization_rate"),
        key_used.alias("key_features_used_30d"),
        (key_used == len(key_features) if key_features else pl.lit(False)).alias("all_key_features_used_30d"),
    ]


def count_columns(events: Sequence[str]) -> list[str]:
    """Every count column of account_daily_usage (zero, not null, when nothing happened)."""
    columns = ["active_users", "logins", "events", *[event_column(e) for e in events]]
    for days in WINDOWS:
        columns += [f"active_users_{days}d", f"logins_{days}d", f"events_{days}d"]
    columns += [event_column(e) + "_30d" for e in events]
    return columns + ["assigned_users", "activated_users"]


def account_daily_usage(
    dates: Sequence[dt.date],
    accounts: pl.DataFrame,
    users: pl.DataFrame,
    account_days: pl.DataFrame,
    user_months: pl.DataFrame,
    login_days: pl.DataFrame,
    events: Sequence[str],
    key_features: Sequence[str],
) -> pl.DataFrame:
    """One row per (partition_date, account_id) for every account and every day in `dates`.

    `accounts`: account_id, licenses. `users`: account_id, created_at, activated_at,
    deactivated_at. `account_days`: rows of fct_account_daily_activity (activity_date,
    account_id, active_users, logins, events, one column per event) covering at least the 29
    days before the first date. `user_months`: rows of fct_user_monthly_activity
    (activity_month, account_id, user_id, active_days) for the months of those days.
    `login_days`: (account_id, activity_date) for every day with a login in `dates`, plus each
    account's last login before them.
    """
    events = list(dict.fromkeys(events))
    accounts_lf = accounts.lazy().select("account_id", pl.col("licenses").cast(pl.Int64))
    users_lf, account_days_lf, user_months_lf = users.lazy(), account_days.lazy(), user_months.lazy()
    days = [_one_day(day, accounts_lf, users_lf, account_days_lf, user_months_lf, events) for day in dates]
    if not days:
        return pl.DataFrame()
    counts = count_columns(events)
    frame = pl.concat(days, how="diagonal_relaxed").with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts)
    frame = _last_login(frame, login_days.lazy(), dates).with_columns(_rates(key_features))
    ordered = ["partition_date", "account_id", *counts[:-2], "last_login_date", "days_since_last_login",
               "licenses", "assigned_users", "activated_users", "license_activation_rate", "deployment_rate",
               "utilization_rate", "key_features_used_30d", "all_key_features_used_30d"]
    return frame.select(ordered).sort("partition_date", "account_id").collect()
