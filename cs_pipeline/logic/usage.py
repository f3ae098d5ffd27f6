"""Per-account daily usage (CONTRACT.md §2, `account_daily_usage`), as polars expressions.

Rolling 7- and 30-day figures are built from the per-user daily aggregates that dbt keeps
(`marts.fct_user_daily_activity`), never by rescanning raw events, so a day's cost does not grow
with the history kept. Every figure is "as of the end of D": nothing after D is used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from cs_pipeline.logic.config import event_column

WINDOWS = (7, 30)
DAY = dt.timedelta(days=1)


def _end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + DAY, dt.time())


def _daily_figures(activity: pl.LazyFrame, events: Sequence[str]) -> pl.LazyFrame:
    """Per account and day: active users, logins, events and one count per configured event."""
    return activity.group_by("activity_date", "account_id").agg(
        pl.col("user_id").n_unique().alias("active_users"),
        pl.col("event_count").filter(pl.col("event") == "login").sum().alias("logins"),
        pl.col("event_count").sum().alias("events"),
        *[pl.col("event_count").filter(pl.col("event") == e).sum().alias(event_column(e)) for e in events],
    )


def _window_figures(activity: pl.LazyFrame, day: dt.date, days: int, events: Sequence[str]) -> pl.LazyFrame:
    """Figures over the `days` days to D: distinct users need the per-user rows, sums do not."""
    window = activity.filter(pl.col("activity_date").is_between(day - dt.timedelta(days=days - 1), day))
    suffix = f"_{days}d"
    per_event = [
        pl.col("event_count").filter(pl.col("event") == e).sum().alias(event_column(e) + suffix)
        for e in events
        if days == 30
    ]
    return window.group_by("account_id").agg(
        pl.col("user_id").n_unique().alias("active_users" + suffix),
        pl.col("event_count").filter(pl.col("event") == "login").sum().alias("logins" + suffix),
        pl.col("event_count").sum().alias("events" + suffix),
        *per_event,
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
    activity: pl.LazyFrame,
    daily: pl.LazyFrame,
    events: Sequence[str],
) -> pl.LazyFrame:
    frame = accounts.with_columns(pl.lit(day).alias("partition_date"))
    frame = frame.join(
        daily.filter(pl.col("activity_date") == day).drop("activity_date"), on="account_id", how="left"
    )
    for days in WINDOWS:
        frame = frame.join(_window_figures(activity, day, days, events), on="account_id", how="left")
    return frame.join(_seats(users, day), on="account_id", how="left")


def _last_login(frame: pl.LazyFrame, login_days: pl.LazyFrame) -> pl.LazyFrame:
    """The latest day with a login on or before D, from all history (an as-of join, not a scan per day)."""
    logins = login_days.select(
        "account_id", pl.col("activity_date").alias("last_login_date"), pl.col("activity_date").alias("_login_key")
    ).sort("_login_key")
    return (
        frame.sort("partition_date")
        .join_asof(logins, left_on="partition_date", right_on="_login_key", by="account_id", strategy="backward", check_sortedness=False)
        .drop("_login_key")
        .with_columns((pl.col("partition_date") - pl.col("last_login_date")).dt.total_days().alias("days_since_last_login"))
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
    activity: pl.DataFrame,
    login_days: pl.DataFrame,
    events: Sequence[str],
    key_features: Sequence[str],
) -> pl.DataFrame:
    """One row per (partition_date, account_id) for every account and every day in `dates`.

    `accounts`: account_id, licenses. `users`: account_id, created_at, activated_at,
    deactivated_at. `activity`: the per-user daily aggregates (activity_date, account_id,
    user_id, event, event_count) covering at least the 29 days before the first date.
    `login_days`: (account_id, activity_date) for every day with a login up to the last date.
    """
    events = list(dict.fromkeys(events))
    accounts_lf = accounts.lazy().select("account_id", pl.col("licenses").cast(pl.Int64))
    users_lf = users.lazy()
    activity_lf = activity.lazy()
    daily = _daily_figures(activity_lf, events)
    days = [_one_day(day, accounts_lf, users_lf, activity_lf, daily, events) for day in dates]
    if not days:
        return pl.DataFrame()
    counts = count_columns(events)
    frame = pl.concat(days, how="diagonal_relaxed").with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts)
    frame = _last_login(frame, login_days.lazy()).with_columns(_rates(key_features))
    ordered = ["partition_date", "account_id", *counts[:-2], "last_login_date", "days_since_last_login",
               "licenses", "assigned_users", "activated_users", "license_activation_rate", "deployment_rate",
               "utilization_rate", "key_features_used_30d", "all_key_features_used_30d"]
    return frame.select(ordered).sort("partition_date", "account_id").collect()
