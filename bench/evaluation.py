"""A synthetic churn history for the backtest and calibration: account_health on the observation
dates, marts.fct_term_outcomes and analytics.alert_events, written to a DuckDB warehouse.

Each account has a hidden engagement that drifts (an AR(1) walk per observation date). Figures
follow it with noise: activity (events, logins, active users over 7 and 30 days, their trend),
seats, utilization, recency; license activation and CSM touches are noise. Each account renews
once a year on its own date and churns there with a probability that falls with engagement;
a churned account stays churned. `no_login_20d` fires on observation dates where the last
login is 20+ days old. Only the observation dates are written: that is all the backtest reads.

Used by `python -m bench` (100,000 accounts, 365 days) and by the end-to-end test (small).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

SEGMENTS = np.array(["enterprise", "mid_market", "smb"])


def synthetic_history(accounts: int, days: int, every: int = 15, seed: int = 5, end: dt.date = dt.date(2025, 12, 31)):
    """(health, outcomes, alert_events) frames for `accounts` over the `days` days to `end`."""
    rng = np.random.default_rng(seed)
    first = end - dt.timedelta(days=days - 1)
    dates = [first + dt.timedelta(days=i) for i in range(0, days, every)]
    n = accounts
    ids = np.array([f"acc_{i:06d}" for i in range(n)])
    segment = SEGMENTS[rng.choice(3, size=n, p=[0.15, 0.35, 0.5])]
    seats = np.maximum(1, np.round(rng.lognormal(np.where(segment == "enterprise", 3.5, np.where(segment == "smb", 1.6, 2.5)), 0.5)))
    owners = np.array([f"csm{i % max(1, n // 60):03d}@example.com" for i in range(n)])
    renewal_offset = rng.integers(0, 365, size=n)  # day of the year each account renews
    engagement = rng.normal(size=n)
    churn_day = np.full(n, np.iinfo(np.int64).max)
    frames, alerts, outcomes = [], [], []
    day_numbers = [(d - first).days for d in dates]
    horizon = days + 120  # renewals after the data end are decided too (outcomes as of a later today)
    for step, (day, t) in enumerate(zip(dates, day_numbers)):
        if step:
            engagement = 0.92 * engagement + 0.4 * rng.normal(size=n)
        # Renewals falling since the previous date decide churn from engagement now.
        previous = day_numbers[step - 1] if step else -every
        renew = ((renewal_offset - previous - 1) % 365) < (t - previous)
        churns = renew & (churn_day > t) & (rng.random(n) < 1 / (1 + np.exp(2.6 + 1.8 * engagement)))
        churn_day = np.where(churns, t - ((t - renewal_offset) % 365), churn_day)
        live = churn_day > t
        activity = np.exp(3.0 + 0.9 * engagement + np.log(seats) * 0.8 + 0.35 * rng.normal(size=n))
        events_30d = np.round(activity * (engagement > -2.0)).astype(np.int64)
        events_prev = np.round(activity * np.exp(0.25 * rng.normal(size=n) - 0.1 * engagement)).astype(np.int64)
        active_30d = np.minimum(seats, np.round(seats * (1 / (1 + np.exp(-engagement))) + rng.integers(0, 2, n))).astype(np.int64)
        since_login = np.where(events_30d > 0, np.minimum(60, rng.exponential(2.5 / np.exp(engagement))), np.nan)
        frames.append(pl.DataFrame({
            "account_id": ids,
            "segment": segment,
            "status": np.where(live, "active", "churned"),
            "owner_email": owners,
            "has_live_term": live,
            "licenses": seats.astype(np.int64),
            "events_30d": events_30d,
            "events_7d": np.round(events_30d * rng.uniform(0.15, 0.3, n)).astype(np.int64),
            "logins_30d": np.round(events_30d * 0.2).astype(np.int64),
            "active_users_30d": active_30d,
            "active_users_7d": np.round(active_30d * rng.uniform(0.4, 0.9, n)).astype(np.int64),
            "events_prev_30d": events_prev,
            "activity_trend_30d": np.where(events_prev > 0, events_30d / np.maximum(events_prev, 1), np.nan),
            "activated_users": np.round(seats * rng.uniform(0.5, 1.0, n)).astype(np.int64),
            "license_activation_rate": rng.uniform(0.3, 1.0, n),
            "utilization_rate": active_30d / np.maximum(seats, 1),
            "days_since_last_login": since_login,
            "days_since_last_touch": np.where(rng.random(n) < 0.8, rng.integers(0, 90, n), np.nan),
            "latest_nps": np.where(rng.random(n) < 0.3, np.clip(np.round(7 + 1.2 * engagement + rng.normal(size=n)), 0, 10), np.nan),
            "open_high_priority_tickets": rng.poisson(0.2, n),
            "key_features_used_30d": np.clip(np.round(1 + engagement), 0, 2).astype(np.int64),
            "days_to_renewal": (renewal_offset - t) % 365,
        }).with_columns(
            pl.col("days_since_last_login").fill_nan(None).cast(pl.Int64),
            pl.col("days_since_last_touch").fill_nan(None).cast(pl.Int64),
            pl.col("latest_nps").fill_nan(None).cast(pl.Int64),
            pl.col("activity_trend_30d").fill_nan(None),
            pl.lit(day).alias("partition_date"),
        ))
        flagged = live & ~(since_login < 20)
        alerts.append(pl.DataFrame({
            "rule_id": "no_login_20d", "account_id": ids[flagged], "owner_email": owners[flagged],
        }).with_columns(pl.lit(day).alias("episode_start"), pl.lit(day).alias("partition_date")))
    # Renewals after the last date (within the outcome horizon) are decided on the last engagement.
    t = day_numbers[-1]
    later = (churn_day > t) & (((renewal_offset - t - 1) % 365) < horizon - t)
    late = later & (rng.random(n) < 1 / (1 + np.exp(2.6 + 1.8 * engagement)))
    churn_day = np.where(late, t + 1 + (renewal_offset - t - 1) % 365, churn_day)
    churned = churn_day < np.iinfo(np.int64).max
    outcomes.append(pl.DataFrame({
        "account_id": ids[churned], "outcome": "churned",
        "outcome_date": [first + dt.timedelta(days=int(c)) for c in churn_day[churned]],
    }, schema={"account_id": pl.String, "outcome": pl.String, "outcome_date": pl.Date}))
    health = pl.concat(frames)
    alert_events = pl.concat(alerts)
    return health, pl.concat(outcomes), alert_events


def write_warehouse(path: Path, health: pl.DataFrame, outcomes: pl.DataFrame, alert_events: pl.DataFrame) -> None:
    """The three tables the backtest reads, in a DuckDB file."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        for schema, name, frame in (("analytics", "account_health", health), ("marts", "fct_term_outcomes", outcomes),
                                    ("analytics", "alert_events", alert_events)):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.register("_frame", frame.to_arrow())
            con.execute(f"CREATE OR REPLACE TABLE {schema}.{name} AS SELECT * FROM _frame")
            con.unregister("_frame")
