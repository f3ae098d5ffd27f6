"""Per-account daily health (CONTRACT.md §2, `account_health`): context as of D, score and trend.

Each day reads the attributes valid on it (segment, owner, plan, name) and the status of that
day (`logic.history`): a replayed day gives what was true on it, not what today's exports say.

The score 7 and 30 days earlier is recomputed from the usage of those days with the same model,
rather than read back from earlier partitions: a partition is a pure function of its inputs, so
it gives the same result whatever order partitions are computed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from cs_pipeline.logic.config import HealthModel
from cs_pipeline.logic.history import accounts_on_days
from cs_pipeline.logic.latest import latest_on_or_before
from cs_pipeline.logic.scoring import score_health

TREND_DAYS = (7, 30)
OPEN_TICKET_PRIORITIES = ("high", "urgent")


def dates_needed(dates: Sequence[dt.date]) -> list[dt.date]:
    """The days whose usage a health run reads: its own and those 7 and 30 days earlier."""
    needed = set(dates)
    for back in TREND_DAYS:
        needed |= {d - dt.timedelta(days=back) for d in dates}
    return sorted(needed)


def _end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


def _contract_context(terms: pl.LazyFrame, dates: Sequence[dt.date]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Each account's first term start, and per (account, day) its live term's end date and ARR."""
    first = terms.group_by("account_id").agg(pl.col("start_date").min().alias("first_term_start"))
    live = (
        terms.filter((pl.col("start_date") <= max(dates)) & (pl.col("end_date") >= min(dates)))
        .select("account_id", "start_date", "end_date", "arr")
        .join(pl.LazyFrame({"partition_date": dates}, schema={"partition_date": pl.Date}), how="cross")
        .filter(pl.col("partition_date").is_between(pl.col("start_date"), pl.col("end_date")))
        # Overlapping terms: the most recently started one is current.
        .group_by("account_id", "partition_date")
        .agg(
            pl.col("end_date").sort_by("start_date").last().alias("contract_end_date"),
            pl.col("arr").sort_by("start_date").last().alias("arr"),
        )
    )
    return first, live


def _nps_context(nps: pl.LazyFrame, dates: Sequence[dt.date]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Per (account, day): the latest answer's score on or before it, and that day's lowest score and count."""
    latest = latest_on_or_before(nps, "submitted_date", dates, ["score"], ["submitted_at"]).rename({"score": "latest_nps"})
    today = (
        nps.filter(pl.col("submitted_date").is_in(list(dates)))
        .group_by("account_id", pl.col("submitted_date").alias("partition_date"))
        .agg(pl.col("score").min().alias("lowest_nps_today"), pl.len().cast(pl.Int64).alias("nps_responses_today"))
    )
    return latest, today


def _ticket_context(tickets: pl.LazyFrame, dates: Sequence[dt.date]) -> pl.LazyFrame:
    """Tickets open or pending at the end of D: created by then and not resolved or closed by then."""
    end = pl.col("partition_date").cast(pl.Datetime("us")) + pl.duration(days=1)
    open_at_end = (pl.col("created_at") < end) & (pl.col("resolved_at").is_null() | (pl.col("resolved_at") >= end))
    return (
        tickets.select("account_id", "created_at", "resolved_at", "priority")
        # Only tickets open at the end of at least one of the days.
        .filter(
            (pl.col("created_at") < _end_of(max(dates)))
            & (pl.col("resolved_at").is_null() | (pl.col("resolved_at") >= _end_of(min(dates))))
        )
        .join(pl.LazyFrame({"partition_date": dates}, schema={"partition_date": pl.Date}), how="cross")
        .filter(open_at_end)
        .group_by("account_id", "partition_date")
        .agg(
            pl.len().cast(pl.Int64).alias("open_tickets"),
            pl.col("priority").is_in(list(OPEN_TICKET_PRIORITIES)).sum().cast(pl.Int64).alias("open_high_priority_tickets"),
        )
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
    `accounts`: account_id, name, segment, status, owner_email, plan, and the versions' days
    (valid_from, valid_to, recorded_from: marts.dim_accounts_history; without them, one version
    valid and recorded on every day). Each day reads the version valid on it, and its status is
    derived from the terms before the version's load (`logic.history`). `terms`: account_id,
    start_date, end_date, arr, churned_at. `nps`: account_id, submitted_at, submitted_date, score.
    `tickets`: account_id, created_at, resolved_at, priority. `activities`: account_id, occurred_at.
    """
    all_dates = dates_needed(dates)
    keys = ["account_id", "partition_date"]
    # The context is built on a narrow (account, day) frame and joined to the wide one once: each
    # join on the wide frame copies all its columns.
    on_days = accounts_on_days(accounts.lazy(), terms.lazy(), all_dates)
    context = on_days.select(keys)
    first_term, live_term = _contract_context(terms.lazy(), all_dates)
    touches = activities.lazy().select("account_id", pl.col("occurred_at").dt.date().alias("touch_date"))
    last_touch = latest_on_or_before(touches, "touch_date", all_dates, ["touch_date"]).rename({"touch_date": "last_touch_date"})
    latest_nps, nps_today = _nps_context(nps.lazy(), all_dates)
    context = (
        context.join(first_term, on="account_id", how="left")
        .join(live_term, on=keys, how="left")
        .join(last_touch, on=keys, how="left")
        .join(latest_nps, on=keys, how="left")
        .join(nps_today, on=keys, how="left")
        .join(_ticket_context(tickets.lazy(), all_dates), on=keys, how="left")
        .with_columns(
            pl.col("contract_end_date").is_not_null().alias("has_live_term"),
            (pl.col("partition_date") - pl.col("first_term_start")).dt.total_days().alias("days_since_contract_start"),
            (pl.col("contract_end_date") - pl.col("partition_date")).dt.total_days().alias("days_to_renewal"),
            (pl.col("partition_date") - pl.col("last_touch_date")).dt.total_days().alias("days_since_last_touch"),
            pl.col("nps_responses_today").fill_null(0),
            pl.col("open_tickets").fill_null(0),
            pl.col("open_high_priority_tickets").fill_null(0),
        )
        .select(
            *keys, "first_term_start", "contract_end_date", "arr", "has_live_term", "days_since_contract_start",
            "days_to_renewal", "last_touch_date", "days_since_last_touch", "latest_nps", "lowest_nps_today",
            "nps_responses_today", "open_tickets", "open_high_priority_tickets",
        )
    )
    frame = (
        on_days
        .join(usage.lazy(), on=keys, how="left")
        .join(context, on=keys, how="left")
    )
    scored = score_health(frame.collect(), model)
    # Only days with usage are scored for the trend; a day before history began has no score.
    has_usage = pl.col("active_users").is_not_null() if "active_users" in scored.columns else pl.lit(True)
    scored = scored.with_columns(pl.when(has_usage).then(pl.col(c)).alias(c) for c in ("score", "band"))
    trend = scored.lazy().select("account_id", "partition_date", "score")
    changes = trend.filter(pl.col("partition_date").is_in(list(dates))).select(keys)
    for back in TREND_DAYS:
        earlier = trend.select(
            "account_id",
            (pl.col("partition_date") + dt.timedelta(days=back)).alias("partition_date"),
            pl.col("score").alias(f"score_{back}d_ago"),
        )
        changes = changes.join(earlier, on=keys, how="left")
    result = scored.lazy().filter(pl.col("partition_date").is_in(list(dates))).join(changes, on=keys, how="left")
    result = result.with_columns(
        (pl.col("score") - pl.col(f"score_{back}d_ago")).round(3).alias(f"score_change_{back}d") for back in TREND_DAYS
    )
    ordered = [*scored.columns, *[c for back in TREND_DAYS for c in (f"score_{back}d_ago", f"score_change_{back}d")]]
    return result.select(ordered).sort("partition_date", "account_id").collect()
