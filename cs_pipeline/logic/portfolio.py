"""The portfolio view of a day: the deployment x utilization map, the renewal pipeline, alert
follow-through per CSM and trailing GRR/NRR (docs/kpis.md). Pure polars, no Dagster.

Every function takes the frames it needs and the day D, and uses nothing after D, except
where the tasks table (current state, no history) says otherwise: see `follow_through`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl


@dataclasses.dataclass
class ReportData:
    """What the portfolio report shows, as plain frames (`logic.portfolio_report` draws it)."""

    day: dt.date
    retention: pl.DataFrame  # kpi_retention_monthly, the `all` audience
    nps: pl.DataFrame  # kpi_nps_monthly, the `all` audience
    points: pl.DataFrame  # portfolio_map of `day`
    pipeline: pl.DataFrame  # renewal_pipeline of `day`
    follow_through: pl.DataFrame  # follow_through of `day`
    trailing: dict  # trailing_retention of `day`
    untouched_days: int
    backtest: pl.DataFrame | None = None  # the backtest's headline rows, when the evaluation tables exist
    backtest_source: str = ""
    backtest_report: str = ""  # the backtest's own HTML report, when it exists (a link)


# CSuP's quadrant: where an account sits relative to these two lines.
QUADRANT_LINE = 0.5
DEFAULT_UNTOUCHED_DAYS = 30
PIPELINE_WINDOWS = (90, 180)
FOLLOW_THROUGH_DAYS = 90
RENEWAL_GRACE_DAYS = 30  # CONTRACT.md §1: a term is renewed when the next one starts within 30 days
BANDS = ("red", "yellow", "green")


def _quadrant() -> pl.Expr:
    deployed = pl.col("deployment_rate") >= QUADRANT_LINE
    used = pl.col("utilization_rate") >= QUADRANT_LINE
    return (
        pl.when(deployed & used).then(pl.lit("adopted"))
        .when(deployed).then(pl.lit("deployed, not used"))
        .when(used).then(pl.lit("used, not deployed"))
        .otherwise(pl.lit("neither"))
    )


def portfolio_map(health: pl.DataFrame, untouched_days: int = DEFAULT_UNTOUCHED_DAYS) -> pl.DataFrame:
    """One row per live account and day: (deployment_rate, utilization_rate), ARR, band, and
    `untouched` when no CSM touch happened in the last `untouched_days` days (never counts too)."""
    return (
        health.lazy()
        .filter(pl.col("has_live_term").fill_null(False))
        .select(
            "partition_date", "account_id", "name", "segment", "owner_email",
            pl.col("deployment_rate").cast(pl.Float64).clip(0.0, 1.0),
            pl.col("utilization_rate").cast(pl.Float64).clip(0.0, 1.0),
            pl.col("arr").cast(pl.Float64).fill_null(0.0),
            pl.col("band").fill_null("no data"),
            "score",
            "days_since_last_touch",
            (pl.col("days_since_last_touch").is_null() | (pl.col("days_since_last_touch") >= untouched_days)).alias("untouched"),
        )
        .with_columns(
            pl.when(pl.col("deployment_rate").is_null() | pl.col("utilization_rate").is_null())
            .then(pl.lit("no data")).otherwise(_quadrant()).alias("quadrant"),
            pl.lit(untouched_days).cast(pl.Int64).alias("untouched_after_days"),
        )
        .sort("partition_date", "account_id")
        .collect()
    )


def renewal_pipeline(health: pl.DataFrame, windows: tuple[int, ...] = PIPELINE_WINDOWS) -> pl.DataFrame:
    """Live terms ending in the next `windows[-1]` days as of each day, with the band of that day
    and the smallest window that holds them (`0-90 days`, `91-180 days`)."""
    days = pl.col("days_to_renewal")
    window = pl.lit(None, dtype=pl.String)
    for lower, upper in reversed(list(zip((-1, *windows[:-1]), windows))):
        window = pl.when(days <= upper).then(pl.lit(f"{lower + 1}-{upper} days")).otherwise(window)
    return (
        health.lazy()
        .filter(pl.col("has_live_term").fill_null(False) & days.is_between(0, windows[-1]))
        .select(
            "partition_date", "account_id", "name", "segment", "owner_email",
            pl.col("contract_end_date").alias("renewal_date"),
            days,
            window.alias("renewal_window"),
            pl.col("arr").cast(pl.Float64).fill_null(0.0),
            pl.col("band").fill_null("no data"),
            "score",
            (pl.col("band") == "red").fill_null(False).alias("at_risk"),
        )
        .sort("partition_date", "days_to_renewal", "account_id")
        .collect()
    )


def follow_through(
    alerts: pl.DataFrame, tasks: pl.DataFrame, day: dt.date, window_days: int = FOLLOW_THROUGH_DAYS
) -> pl.DataFrame:
    """Per CSM (and `all`), for alerts whose episode started in the `window_days` days to `day`:
    alerts, tasks, tasks done, the share done by their due date (of the tasks done, with a known
    completion time, or past due),
    the median days from task creation to done, and open tasks past due on `day`.

    `alerts`: alert_id, episode_start, owner_email, partition_date (analytics.alert_events).
    `tasks`: alert_id, due_date, status, created_at, done_at (actions.tasks; done_at NULL when the
    store records no completion time). The tasks table holds each task's current state: for a
    past day, a task done since then counts as done.
    """
    first = day - dt.timedelta(days=window_days - 1)
    per_alert = (
        alerts.lazy()
        .filter(pl.col("partition_date") <= day)
        .group_by("alert_id")
        .agg(pl.col("episode_start").min(), pl.col("owner_email").sort_by("partition_date").last())
        .filter(pl.col("episode_start").is_between(first, day))
        .with_columns(pl.col("owner_email").fill_null("").replace("", "unassigned"))
    )
    done = pl.col("status") == "done"
    # Decided: done with a known completion time, or still not done after the due date.
    decidable = (done & pl.col("done_at").is_not_null()) | (~done & (pl.col("due_date") < day))
    on_time = done & (pl.col("done_at").cast(pl.Date) <= pl.col("due_date"))
    joined = per_alert.join(tasks.lazy(), on="alert_id", how="left").with_columns(
        pl.col("task_id").is_not_null().alias("has_task"),
        decidable.fill_null(False).alias("decidable"),
        on_time.fill_null(False).alias("on_time"),
        (done & pl.col("done_at").is_not_null()).fill_null(False).alias("done_known"),
        ((pl.col("done_at") - pl.col("created_at")).dt.total_seconds() / 86400.0).alias("days_to_done"),
        ((pl.col("status") == "open") & (pl.col("due_date") < day)).fill_null(False).alias("open_overdue"),
        done.fill_null(False).alias("done"),
    )
    measures = [
        pl.col("alert_id").n_unique().cast(pl.Int64).alias("alerts"),
        pl.col("has_task").sum().cast(pl.Int64).alias("tasks"),
        pl.col("done").sum().cast(pl.Int64).alias("tasks_done"),
        pl.col("open_overdue").sum().cast(pl.Int64).alias("open_overdue"),
        pl.when(pl.col("decidable").filter(pl.col("has_task")).sum() > 0)
        .then(pl.col("on_time").sum() / pl.col("decidable").filter(pl.col("has_task")).sum())
        .alias("done_on_time_share"),
        pl.col("days_to_done").filter(pl.col("done_known")).median().alias("median_days_to_done"),
    ]
    by_owner = joined.group_by("owner_email").agg(measures)
    everyone = joined.select(pl.lit("all").alias("owner_email"), *measures)
    return (
        pl.concat([by_owner, everyone], how="vertical_relaxed")
        .with_columns(pl.lit(day).alias("partition_date"), pl.lit(window_days).cast(pl.Int64).alias("window_days"))
        .select("partition_date", "owner_email", "alerts", "tasks", "tasks_done", "done_on_time_share",
                "median_days_to_done", "open_overdue", "window_days")
        .filter(pl.col("alerts") > 0)
        .sort(pl.col("owner_email") == "all", "owner_email")
        .collect()
    )


def trailing_retention(outcomes: pl.DataFrame, day: dt.date, days: int = 365) -> dict[str, float | None]:
    """GRR and NRR over the terms that ended in the `days` days to `day` and whose outcome was
    known on `day` (a renewal once the next term started, a churn once the 30-day grace passed),
    so a later day never changes an earlier figure. `outcomes`: marts.fct_term_outcomes."""
    first = day - dt.timedelta(days=days - 1)
    renewed = pl.col("outcome").is_in(["renewed", "expanded", "contracted"])
    known = (renewed & (pl.col("outcome_date") <= day)) | (
        (pl.col("outcome") == "churned") & (pl.col("end_date") + dt.timedelta(days=RENEWAL_GRACE_DAYS) < day)
    )
    decided = outcomes.lazy().filter(pl.col("end_date").is_between(first, day) & known)
    totals = decided.select(
        pl.col("arr").sum().alias("up"),
        pl.min_horizontal("arr", "next_arr").filter(renewed).sum().alias("kept"),
        pl.col("arr_change").filter(renewed & (pl.col("arr_change") > 0)).sum().alias("expansion"),
    ).collect().row(0, named=True)
    up = float(totals["up"] or 0.0)
    if up <= 0:
        return {"grr": None, "nrr": None, "arr_up_for_renewal": 0.0}
    kept, expansion = float(totals["kept"] or 0.0), float(totals["expansion"] or 0.0)
    return {"grr": kept / up, "nrr": (kept + expansion) / up, "arr_up_for_renewal": up}


def went_red(health: pl.DataFrame, before: dt.date, day: dt.date) -> pl.DataFrame:
    """Live accounts red on `day` that were not red on `before` (or had no band then)."""
    then = health.filter(pl.col("partition_date") == before).select("account_id", pl.col("band").alias("band_before"))
    return (
        health.filter((pl.col("partition_date") == day) & (pl.col("band") == "red") & pl.col("has_live_term").fill_null(False))
        .join(then, on="account_id", how="left")
        .filter(pl.col("band_before").fill_null("") != "red")
        .select("account_id", "name", "segment", "owner_email", "score", "band_before", pl.col("arr").cast(pl.Float64))
        .sort("arr", descending=True, nulls_last=True)
    )
