"""`alerts`: the rules file evaluated on account_health, one row per rule, account and day it holds.

Episodes continue across runs: a run starts from the episodes open on the day before its first
day. If that day has health but was never evaluated, the run evaluates back from the earliest
such day (without writing it), so partitions give the same alerts whatever order they ran in.
"""


import datetime as dt

import dagster as dg
import polars as pl

from cs_pipeline import settings
from cs_pipeline.actions.store import ensure_read_copy
from cs_pipeline.assets.common import daily_asset, table_preview, unique_rows_check
from cs_pipeline.logic.alerting import OPEN_SCHEMA, alert_rows
from cs_pipeline.partitions import days, run_dates
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import WarehouseResource, query, replace_date_range, table_exists

TABLE = "analytics.alert_events"
EVALUATED = "analytics.alert_evaluated_days"
DAY = dt.timedelta(days=1)
MONTH = dt.timedelta(days=30)  # what moved the score is read against 30 days before


def _evaluation_start(con, start: dt.date) -> dt.date:
    if not table_exists(con, "analytics", "account_health"):
        return start
    health_days = {r[0] for r in con.execute("SELECT DISTINCT partition_date FROM analytics.account_health WHERE partition_date < ?", [start]).fetchall()}
    evaluated: set[dt.date] = set()
    if table_exists(con, "analytics", "alert_evaluated_days"):
        evaluated = {r[0] for r in con.execute(f"SELECT partition_date FROM {EVALUATED} WHERE partition_date < ?", [start]).fetchall()}
    first = start
    while first - DAY in health_days and first - DAY not in evaluated:
        first -= DAY
    return first


def _open_before(con, first: dt.date) -> pl.DataFrame:
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame(schema=OPEN_SCHEMA)
    return query(con, f"SELECT rule_id, account_id, episode_start FROM {TABLE} WHERE partition_date = ?", [first - DAY])


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
        first = _evaluation_start(con, start)
        if first < start:
            context.log.info(f"episodes: days {first} .. {start - DAY} were never evaluated; evaluating from {first}")
        health = query(con, "SELECT * FROM analytics.account_health WHERE partition_date BETWEEN ? AND ?", [first, end])
        month_before = query(con, "SELECT account_id, partition_date, COLUMNS('^contribution_') FROM analytics.account_health "
                             "WHERE partition_date BETWEEN ? AND ?", [first - MONTH, end - MONTH])
        rows = alert_rows(health, rules, known, _open_before(con, first), today, cs_config.live_window_days, month_before)
        rows = rows.filter(pl.col("partition_date") >= start)
        replace_date_range(con, TABLE, rows, start, end)
        replace_date_range(con, EVALUATED, pl.DataFrame({"partition_date": days(start, end)}), start, end)
        # The actions store's read copy exists from the first alerts on, so readers never have to create it.
        ensure_read_copy(con)
    live = rows.filter(pl.col("live"))
    by_rule = rows.group_by("rule_id").agg(pl.col("alert_id").n_unique()).sort("rule_id")
    context.log.info(f"alerts {start} .. {end}: {rows['alert_id'].n_unique()} alerts, {live['alert_id'].n_unique()} live")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows.height,
            "table": TABLE,
            "alerts": rows["alert_id"].n_unique(),
            "new_episodes": rows.filter(pl.col("day_in_episode") == 0).height,
            "live_alerts": live["alert_id"].n_unique(),
            "suppressed_backfill_alerts": rows.filter(~pl.col("live"))["alert_id"].n_unique(),
            "alerts_by_rule": dg.MetadataValue.json(dict(zip(by_rule["rule_id"].to_list(), by_rule["alert_id"].to_list()))),
            "today": today.isoformat(),
            "preview": table_preview(
                rows.sort("partition_date", descending=True).select(
                    "partition_date", "rule_id", "account_id", "account_name", "episode_start", "severity", "status", "message"
                )
            ),
        }
    )
    yield unique_rows_check(rows, "one_row_per_rule_account_day", ["partition_date", "rule_id", "account_id"])
