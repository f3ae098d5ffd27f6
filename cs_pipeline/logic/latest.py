"""The latest row per account on or before each of a set of days (an as-of lookup), in polars.

Health and usage need, for each account and partition day D, the last CSM touch, NPS answer or
login on or before D. A polars `join_asof` by the string account_id sorts and searches every
input row; a run needs few days, so this groups the rows by account and by the first needed day
on or after them ("bucket"), keeps each group's latest row, and hands it to the days from its
bucket up to (not including) the account's next non-empty bucket.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

# Up to this many days each kept row is copied to every later day and the latest copy kept per
# day (no sort); beyond it the rows are sorted per account and each covers the days until the next.
FEW_DAYS = 8


def latest_on_or_before(
    rows: pl.LazyFrame, on: str, dates: Sequence[dt.date], values: Sequence[str], order: Sequence[str] = ()
) -> pl.LazyFrame:
    """(account_id, partition_date, *values) for each of `dates` and each account with a row whose
    `on` day is on or before it: the values of the latest such row, by `on` then `order`.

    `rows` has account_id, the Date column `on`, `values` and `order`. Rows that tie on
    (account_id, `on`, *`order`) should have the same values: which of them wins is not defined.
    Accounts with no row on or before a day have no row for it.
    """
    days = pl.Series(sorted(set(dates)), dtype=pl.Date)
    n = len(days)
    values = list(values)
    latest = (
        rows.select(*dict.fromkeys(["account_id", on, *order, *values]))
        .with_columns(pl.lit(days).search_sorted(pl.col(on), side="left").alias("_bucket"))
        .filter(pl.col("_bucket") < n)
        .group_by("account_id", "_bucket")
        .agg(pl.col(values).sort_by([on, *order]).last())
    )
    if n <= FEW_DAYS:
        per_day = (
            latest.with_columns(pl.int_ranges("_bucket", n, dtype=pl.UInt32).alias("_day"))
            .explode("_day")
            .group_by("account_id", "_day")
            .agg(pl.col(values).sort_by("_bucket").last())
        )
    else:
        per_day = (
            latest.sort("account_id", "_bucket")
            .with_columns(pl.col("_bucket").shift(-1, fill_value=n).over("account_id").alias("_next"))
            .with_columns(pl.int_ranges("_bucket", "_next", dtype=pl.UInt32).alias("_day"))
            .explode("_day")
        )
    return per_day.select("account_id", pl.lit(days).gather(pl.col("_day")).alias("partition_date"), *values)
