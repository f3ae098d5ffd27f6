"""Per-account daily health (CONTRACT.md §2, `account_health`): context as of D, score and trend.

The score 7 and 30 days earlier is recomputed from the usage of those days with the same model,
rather than read back from earlier partitions: a partition is a pure function of its inputs, so
it gives the same result whatever order partitions are computed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from cs_pipeline.logic.config import HealthModel
from cs_pipeline.logic.scoring import score_health

TREND_DAYS = (7, 30)
OPEN_TICKET_PRIORITIES = ("high", "urgent")


def dates_needed(dates: Sequence[dt.date]) -> list[dt.date]:
    """The days whose usage a health run reads: its own and those 7 and 30 days earlier."""
    needed = set(dates)
    for back in TREND_DAYS:
        needed |= {d - dt.timedelta(days=back) for d in dates}
    return sorted(needed)


def _asof(frame: pl.LazyFrame, right: pl.LazyFrame, on: str, columns: list[str]) -> pl.LazyFrame:
    """For each (account, partition_date) the right-hand row with the latest `on` day <= D."""
    right = right.select("account_id", pl.col(on).alias("_key"), *columns).sort("_key")
    return frame.sort("partition_date").join_asof(
        right, left_on="partition_date", right_on="_key", by="account_id", strategy="backward", check_sortedness=False
    ).drop("_key")


def _contract_context(grid: pl.LazyFrame, terms: pl.LazyFrame) -> pl.LazyFrame:
    first = terms.group_by("account_id").agg(pl.col("start_date").min().alias("first_term_start"))
    live = (
        grid.select("account_id", "partition_date")
        .join(terms.select("account_id", "start_date", "end_date", "arr"), on="account_id")
        .filter(pl.col("partition_date").is_between(pl.col("start_date"), pl.col("end_date")))
        # Overlapping terms: the most recently started one is current.
        .sort("start_date")
        .group_by("account_id", "partition_date")
        .agg(pl.col("end_date").last().alias("contract_end_date"), pl.col("arr").last().alias("arr"))
    )
    return (
        grid.join(first, on="account_id", how="left")
        .join(live, on=["account_id", "partition_date"], how="left")
        .with_columns(
            pl.col("contract_end_date").is_not_null().alias("has_live_term"),
            (pl.col("partition_date") - pl.col("first_term_start")).dt.total_days().alias("days_since_contract_start"),
            (pl.col("contract_end_date") - pl.col("partition_date")).dt.total_days().alias("days_to_renewal"),
        )
    )


def _nps_context(frame: pl.LazyFrame, nps: pl.LazyFrame) -> pl.LazyFrame:
    per_day = (
        nps.sort("submitted_at")
        .group_by("account_id", "submitted_date")
        .agg(
            pl.col("score").last().alias("_last_score"),
            pl.col("score").min().alias("lowest_nps_today"),
            pl.len().cast(pl.Int64).alias("nps_responses_today"),
        )
    )
    frame = _asof(frame, per_day, "submitted_date", ["_last_score"]).rename({"_last_score": "latest_nps"})
    today = per_day.select(
        "account_id", pl.col("submitted_date").alias("partition_date"), "lowest_nps_today", "nps_responses_today"
    )
    return frame.join(today, on=["account_id", "partition_date"], how="left").with_columns(
        pl.col("nps_responses_today").fill_null(0)
    )


def _ticket_context(grid: pl.LazyFrame, tickets: pl.LazyFrame) -> pl.LazyFrame:
    """Tickets open or pending at the end of D: created by then and not resolved or closed by then."""
    end = (pl.col("partition_date").cast(pl.Datetime("us")) + pl.duration(days=1))
    open_at_end = (pl.col("created_at") < end) & (pl.col("resolved_at").is_null() | (pl.col("resolved_at") >= end))
    high = open_at_end & pl.col("priority").is_in(list(OPEN_TICKET_PRIORITIES))
    return (
        grid.select("account_id", "partition_date")
        .join(tickets.select("account_id", "created_at", "resolved_at", "priority"), on="account_id")
        .group_by("account_id", "partition_date")
        .agg(open_at_end.sum().cast(pl.Int64).alias("open_tickets"), high.sum().cast(pl.Int64).alias("open_high_priority_tickets"))
    )


def account_health(
    dates: Sequence[dt.date],
    usage: pl.DataFrame,
    accounts: pl.DataFrame,
    terms: pl.DataFrame,
    nps: pl.DataFrame,
    tickets: pl.DataFrame,
    activities: pl.DataFrame,
    model: HealthModel,
) -> pl.DataFrame:
    """One row per (partition_date, account_id) for `dates`.

    `usage` holds account_daily_usage for `dates_needed(dates)` (missing days give NULL trends).
    `accounts`: account_id, name, segment, status, owner_email, plan. `terms`: account_id,
    start_date, end_date, arr. `nps`: account_id, submitted_at, submitted_date, score.
    `tickets`: account_id, created_at, resolved_at, priority. `activities`: account_id, occurred_at.
    """
    all_dates = dates_needed(dates)
    grid = accounts.lazy().join(pl.LazyFrame({"partition_date": all_dates}, schema={"partition_date": pl.Date}), how="cross")
    frame = grid.join(usage.lazy(), on=["account_id", "partition_date"], how="left")
    frame = _contract_context(frame, terms.lazy())
    touches = (
        activities.lazy()
        .select("account_id", pl.col("occurred_at").dt.date().alias("touch_date"))
        .unique()
        .with_columns(pl.col("touch_date").alias("last_touch_date"))
    )
    frame = _asof(frame, touches, "touch_date", ["last_touch_date"]).with_columns(
        (pl.col("partition_date") - pl.col("last_touch_date")).dt.total_days().alias("days_since_last_touch")
    )
    frame = _nps_context(frame, nps.lazy())
    frame = frame.join(_ticket_context(grid, tickets.lazy()), on=["account_id", "partition_date"], how="left").with_columns(
        pl.col("open_tickets").fill_null(0), pl.col("open_high_priority_tickets").fill_null(0)
    )
    scored = score_health(frame.collect(), model)
    # Only days with usage are scored for the trend; a day before history began has no score.
    has_usage = pl.col("active_users").is_not_null() if "active_users" in scored.columns else pl.lit(True)
    scored = scored.with_columns(pl.when(has_usage).then(pl.col(c)).alias(c) for c in ("score", "band"))
    trend = scored.select("account_id", "partition_date", "score")
    for back in TREND_DAYS:
        earlier = trend.select(
            "account_id",
            (pl.col("partition_date") + dt.timedelta(days=back)).alias("partition_date"),
            pl.col("score").alias(f"score_{back}d_ago"),
        )
        scored = scored.join(earlier, on=["account_id", "partition_date"], how="left").with_columns(
            (pl.col("score") - pl.col(f"score_{back}d_ago")).round(3).alias(f"score_change_{back}d")
        )
    return scored.filter(pl.col("partition_date").is_in(list(dates))).sort("partition_date", "account_id")
