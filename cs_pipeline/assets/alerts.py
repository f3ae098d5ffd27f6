"""`alerts`: the rules file evaluated on account_health, one row per rule, account and day it holds.

Episodes continue across runs: a run starts from the episodes open on the day before its first
day. If that day has health but was never evaluated, the run evaluates back from the earliest
such day (without writing it), so partitions give the same alerts whatever order they ran in.
If the alert state of the day before is not known at all (a partition with neither alerts nor
health), the asset refuses, naming the days to run first (`cs_pipeline.partitions`): guessing
would open an ongoing episode on the run's first day. Alerts already delivered or tasked keep
their id whatever is recomputed (`pinned`, see `cs_pipeline.logic.episodes`).
"""


import datetime as dt

import dagster as dg
import polars as pl

from cs_pipeline import settings
from cs_pipeline.actions.store import ensure_read_copy
from cs_pipeline.assets.common import daily_asset, per_partition_result, table_preview, unique_rows_check
from cs_pipeline.logic.alerting import OPEN_SCHEMA, alert_rows
from cs_pipeline.partitions import days, evaluation_start, first_day, run_dates, unknown_state_reason
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import WarehouseResource, query, replace_date_range, table_exists

TABLE = "analytics.alert_events"
EVALUATED = "analytics.alert_evaluated_days"
DAY = dt.timedelta(days=1)
MONTH = dt.timedelta(days=30)  # what moved the score is read against 30 days before


def _open_before(con, first: dt.date) -> pl.DataFrame:
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame(schema=OPEN_SCHEMA)
    return query(con, f"SELECT rule_id, account_id, episode_start FROM {TABLE} WHERE partition_date = ?", [first - DAY])


def _pinned(con) -> pl.DataFrame:
    """(rule_id, account_id, episode_start) of every alert that has a task or a delivery."""
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame(schema=OPEN_SCHEMA)
    return query(
        con,
        f"SELECT DISTINCT rule_id, account_id, episode_start FROM {TABLE} WHERE alert_id IN "
        "(SELECT alert_id FROM actions.tasks UNION SELECT alert_id FROM actions.deliveries)",
    )


def _ids_on(con, day: dt.date) -> pl.DataFrame:
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame(schema={"alert_id": pl.String})
    return query(con, f"SELECT alert_id FROM {TABLE} WHERE partition_date = ?", [day])


def partition_figures(rows: pl.DataFrame, dates: list[dt.date], ids_after_last: pl.DataFrame, today: dt.date, live_window_days: int):
    """Per day: its alerts, new episodes, live alerts and the alerts whose episode ended that day
    before the live window (`cs-pipeline alerts` lists each of those once, on that day, as
    `suppressed_backfill`). An episode ends on D when its alert has no row on D+1; for the last
    day, D+1 is what the warehouse holds (`ids_after_last`), unknown days counting as ended."""
    live_from = today - dt.timedelta(days=live_window_days)
    next_day = pl.concat([
        rows.select("alert_id", (pl.col("partition_date") - DAY).alias("partition_date")),
        ids_after_last.select("alert_id", pl.lit(dates[-1]).alias("partition_date")),
    ])
    ended = rows.join(next_day, on=["alert_id", "partition_date"], how="anti")
    figures = {}
    for day in dates:
        on_day = rows.filter(pl.col("partition_date") == day)
        live = day >= live_from
        by_rule = on_day.group_by("rule_id").len().sort("rule_id")
        figures[day] = {
            "dagster/row_count": on_day.height,
            "alerts": on_day["alert_id"].n_unique(),
            "new_episodes": on_day.filter(pl.col("day_in_episode") == 0).height,
            "status": "live" if live else "suppressed_backfill",
            "live_alerts": on_day["alert_id"].n_unique() if live else 0,
            "suppressed_backfill_alerts": 0 if live else ended.filter(pl.col("partition_date") == day).height,
            "alerts_by_rule": dg.MetadataValue.json(dict(zip(by_rule["rule_id"].to_list(), by_rule["len"].to_list()))),
            "preview": table_preview(
                on_day.select("partition_date", "rule_id", "account_id", "account_name", "episode_start", "severity", "status", "message")
            ),
        }
    return figures


@daily_asset(
    description="Alert rules evaluated on account_health: one row per rule, account and day the condition holds, "
    "with its episode, deterministic alert id, notification number, live/backfill status, message and task.",
    group_name="alerts",
    deps=["account_health"],
    check_specs=[
        dg.AssetCheckSpec("one_row_per_rule_account_day", asset="alerts", description="(partition_date, rule_id, account_id) is unique."),
    ],
)
def alerts(context: dg.AssetExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig):
    start, end = run_dates(context)
    model = cs_config.health_model()
    rules = cs_config.rules(model)
    known = cs_config.variables(model)
    today = settings.today()
    with warehouse.connect() as con:
        first, resume = evaluation_start(con, start, first_day())
        if resume is not None:
            raise dg.Failure(description=f"alerts {start} .. {end}: {unknown_state_reason(first, resume)}")
        if first < start:
            context.log.info(f"episodes: days {first} .. {start - DAY} were never evaluated; evaluating from {first}")
        # The actions store's read copy exists from the first alerts on: pinned ids are read from it.
        ensure_read_copy(con)
        health = query(con, "SELECT * FROM analytics.account_health WHERE partition_date BETWEEN ? AND ?", [first, end])
        month_before = query(con, "SELECT account_id, partition_date, COLUMNS('^contribution_') FROM analytics.account_health "
                             "WHERE partition_date BETWEEN ? AND ?", [first - MONTH, end - MONTH])
        rows = alert_rows(health, rules, known, _open_before(con, first), today, cs_config.live_window_days, month_before, pinned=_pinned(con))
        rows = rows.filter(pl.col("partition_date") >= start)
        replace_date_range(con, TABLE, rows, start, end)
        replace_date_range(con, EVALUATED, pl.DataFrame({"partition_date": days(start, end)}), start, end)
        after_last = _ids_on(con, end + DAY)
    figures = partition_figures(rows, days(start, end), after_last, today, cs_config.live_window_days)
    live = sum(f["live_alerts"] for f in figures.values())
    context.log.info(f"alerts {start} .. {end}: {rows['alert_id'].n_unique()} alerts, {live} open on live days")
    yield per_partition_result(context, figures, {"table": TABLE, "today": today.isoformat()})
    yield unique_rows_check(rows, "one_row_per_rule_account_day", ["partition_date", "rule_id", "account_id"])
