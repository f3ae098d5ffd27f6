"""Point in time (CONTRACT.md §3): the version of a record valid on each day, and an account's status.

Accounts and users keep every version (`marts.dim_accounts_history`, `marts.dim_users_history`):
a version holds on the days `valid_from <= D < valid_to` (`valid_to` NULL while current), and
each record's earliest version is extended back, so days before the first load read it. A frame
without these columns is one version that holds on every day.

An account's status on D comes from its contract terms: `trial` before its first term starts (or
with no term at all), `churned` from the day after the end_date of its last term without a
successor (`fct_contract_terms.churned_at`), `active` otherwise. The status a load reported
overrides that only on the days on or after that load (`recorded_from`), never before it: an
account that churned in October is active in March however often it is replayed.

Every lookup is done once per run for all its days, by ranges of day indexes (no loop per day,
no accounts x days cross join before the filter).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

FIRST_DAY = dt.date(1900, 1, 1)
HISTORY_COLUMNS = ("valid_from", "valid_to", "recorded_from", "is_current")
# Up to this many days, seats are counted for each day in one pass over the users; beyond it
# from the running sum of the changes (which costs a sort, but not a pass per day).
FEW_DAYS = 8


def versions(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` with `valid_from`, `valid_to` and `recorded_from`: a frame without them is one
    version per record that holds, and was recorded, on every day."""
    names = frame.collect_schema().names()
    missing = {
        "valid_from": pl.lit(FIRST_DAY, pl.Date),
        "valid_to": pl.lit(None, pl.Date),
        "recorded_from": pl.lit(FIRST_DAY, pl.Date),
    }
    return frame.with_columns(expr.alias(name) for name, expr in missing.items() if name not in names)


def _day_index(days: pl.Series, column: str, missing: int) -> pl.Expr:
    """The index of the first of `days` on or after the date in `column`; `missing` when NULL."""
    index = pl.lit(days).search_sorted(pl.col(column), side="left").cast(pl.Int64)
    return pl.when(pl.col(column).is_null()).then(pl.lit(missing, pl.Int64)).otherwise(index)


def _spread(frame: pl.LazyFrame, days: pl.Series, first: str, end: str) -> pl.LazyFrame:
    """One row per row of `frame` and day index in [first, end), with that day as partition_date."""
    return (
        frame.filter(pl.col(end) > pl.col(first))
        .with_columns(pl.int_ranges(first, end, dtype=pl.Int64).alias("_day"))
        .explode("_day")
        .with_columns(pl.lit(days).gather(pl.col("_day")).alias("partition_date"))
        .drop(first, end, "_day")
    )


def as_of(frame: pl.LazyFrame, dates: Sequence[dt.date]) -> pl.LazyFrame:
    """The version of each record valid on each of `dates`: the record's columns (without
    valid_from and valid_to), `recorded_from` and `partition_date`. A record with no version
    on a day (removed from the export before it) has no row for it."""
    days = pl.Series(sorted(set(dates)), dtype=pl.Date)
    spans = versions(frame).with_columns(
        _day_index(days, "valid_from", 0).alias("_first"),
        _day_index(days, "valid_to", len(days)).alias("_end"),
    )
    return _spread(spans, days, "_first", "_end").drop("valid_from", "valid_to", "is_current", strict=False)


def account_terms(terms: pl.LazyFrame) -> pl.LazyFrame:
    """Per account: the start of its first contract term and the day it churned, if it did
    (fct_contract_terms.churned_at: the end_date of its last term without a successor)."""
    churned = pl.col("churned_at") if "churned_at" in terms.collect_schema().names() else pl.lit(None, pl.Date)
    return terms.with_columns(churned.alias("churned_at")).group_by("account_id").agg(
        pl.col("start_date").min().alias("first_term_start"),
        pl.col("churned_at").max().alias("churned_at"),
    )


def status_on_day() -> pl.Expr:
    """The status on partition_date: the reported one from its load on, before it the terms'."""
    day = pl.col("partition_date")
    return (
        pl.when(pl.col("recorded_from") <= day).then(pl.col("status"))
        .when(pl.col("first_term_start").is_null() | (day < pl.col("first_term_start"))).then(pl.lit("trial"))
        .when(day > pl.col("churned_at")).then(pl.lit("churned"))
        .otherwise(pl.lit("active"))
        .alias("status")
    )


def accounts_on_days(accounts: pl.LazyFrame, terms: pl.LazyFrame, dates: Sequence[dt.date]) -> pl.LazyFrame:
    """Each account's attributes valid on each of `dates` (its columns, then partition_date),
    with the status of that day when `accounts` has one."""
    columns = [c for c in accounts.collect_schema().names() if c not in HISTORY_COLUMNS]
    if "status" in columns:
        # Joined to the versions, before they are spread over the days: a row per version.
        accounts = accounts.join(account_terms(terms), on="account_id", how="left")
    on_days = as_of(accounts, dates)
    if "status" in columns:
        on_days = on_days.with_columns(status_on_day())
    return on_days.select(*columns, "partition_date")


def seats(users: pl.LazyFrame, dates: Sequence[dt.date]) -> pl.LazyFrame:
    """(account_id, partition_date, assigned_users, activated_users) at the end of each of
    `dates`: users whose version on that day belongs to the account, created by then and not
    deactivated by then (assigned), and of those the activated ones.

    Each user version is a span of the run's days as an assigned seat [first, end) and as an
    activated one [activated, end), as day indexes. Users with the same spans are counted
    together, and the seats of a day are the spans begun minus the spans ended by it (a running
    sum per account): never a scan of every user for every day."""
    days = pl.Series(sorted(set(dates)), dtype=pl.Date)
    n = len(days)
    start = pl.max_horizontal("valid_from", pl.col("created_at").dt.date())
    spans = (
        versions(users)
        .select(
            "account_id",
            start.alias("_start"),
            pl.min_horizontal("valid_to", pl.col("deactivated_at").dt.date()).alias("_stop"),
            pl.when(pl.col("activated_at").is_not_null()).then(pl.max_horizontal(start, pl.col("activated_at").dt.date())).alias("_activated"),
        )
        .select(
            "account_id",
            _day_index(days, "_start", 0).alias("first"),
            _day_index(days, "_stop", n).alias("end"),
            _day_index(days, "_activated", n).alias("activated"),
        )
        .filter(pl.col("first") < pl.col("end"))
    )
    if n <= FEW_DAYS:
        return _seats_of_few_days(spans, days)
    spans = spans.group_by("account_id", "first", "end", "activated").agg(pl.len().cast(pl.Int64).alias("users"))
    zero = pl.lit(0, pl.Int64)
    activated = spans.filter(pl.col("activated") < pl.col("end"))
    changes = pl.concat([
        spans.select("account_id", pl.col("first").alias("_first"), pl.col("users").alias("assigned"), zero.alias("activated")),
        spans.select("account_id", pl.col("end").alias("_first"), (-pl.col("users")).alias("assigned"), zero.alias("activated")),
        activated.select("account_id", pl.col("activated").alias("_first"), zero.alias("assigned"), pl.col("users").alias("activated")),
        activated.select("account_id", pl.col("end").alias("_first"), zero.alias("assigned"), (-pl.col("users")).alias("activated")),
    ])
    return (
        changes.filter(pl.col("_first") < n)
        .group_by("account_id", "_first")
        .agg(pl.col("assigned").sum(), pl.col("activated").sum())
        .sort("account_id", "_first")
        .with_columns(
            pl.col("assigned").cum_sum().over("account_id").alias("assigned_users"),
            pl.col("activated").cum_sum().over("account_id").alias("activated_users"),
            pl.col("_first").shift(-1, fill_value=n).over("account_id").alias("_end"),
        )
        .pipe(_spread, days, "_first", "_end")
        .select("account_id", "partition_date", "assigned_users", "activated_users")
    )


def _seats_of_few_days(spans: pl.LazyFrame, days: pl.Series) -> pl.LazyFrame:
    """`seats` for a run of a few days (a daily run): one pass over the users counts every
    day's seats at once, cheaper than sorting the changes."""
    counts = spans.group_by("account_id").agg(
        *[((pl.col("first") <= i) & (pl.col("end") > i)).sum().alias(f"assigned_{i}") for i in range(len(days))],
        *[((pl.col("activated") <= i) & (pl.col("end") > i)).sum().alias(f"activated_{i}") for i in range(len(days))],
    )
    return pl.concat([
        counts.select(
            "account_id",
            pl.lit(day, pl.Date).alias("partition_date"),
            pl.col(f"assigned_{i}").cast(pl.Int64).alias("assigned_users"),
            pl.col(f"activated_{i}").cast(pl.Int64).alias("activated_users"),
        )
        for i, day in enumerate(days)
    ])
