"""A warehouse holding chosen alert rows, for running the real dispatch job without the pipeline.

The rows have the `alerts` asset's schema (`cs_pipeline.logic.alerting.ALERT_SCHEMA`), with
everything a message needs (dispatch reads nothing else); account_health and dim_accounts rows
are written beside them for other readers, and
`analytics.alert_evaluated_days` says which days the alerts asset has evaluated (the auto-close
compares an alert's last open day with the latest of them).

    write_alerts(path, [alert("a1", "renewal_at_risk", "acc_1", day, owner="ana@example.com")], [day])
"""

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl

from cs_pipeline import settings
from cs_pipeline.logic.alerting import ALERT_SCHEMA
from cs_pipeline.logic.config import load_config

_RULES = {rule.id: rule for rule in load_config(settings.SHIPPED_CONFIG_DIR)[1].rules}


def alert(
    alert_id: str, rule_id: str, account_id: str, day: dt.date, owner: str | None = None, segment: str = "smb",
    notification_number: int = 1, episode_start: dt.date | None = None, severity: str | None = None,
) -> dict:
    """One row of analytics.alert_events for a shipped rule, live on `day`."""
    rule = _RULES[rule_id]
    start = episode_start or day
    return {
        "alert_id": alert_id, "rule_id": rule_id, "kind": rule.kind, "account_id": account_id, "partition_date": day,
        "episode_start": start, "day_in_episode": (day - start).days, "notification_number": notification_number,
        "notify_due": True, "severity": severity or rule.severity, "live": True, "status": "live",
        "owner_email": owner, "segment": segment, "account_name": account_id.replace("_", " ").title(),
        "facts": json.dumps({"score": 1.0, "band": "red"}), "message": f"{rule.description} ({account_id})",
        "task_title": f"{rule_id} for {account_id}", "task_steps": json.dumps(["Look", "Call", "Log it"]),
        "task_due_date": day + dt.timedelta(days=rule.task.due_in_days), "task_priority": rule.task.priority,
        "rule_description": rule.description, "rule_condition": rule.condition, "task_on_resolve": rule.task.on_resolve,
        "arr": 24000.0, "renewal_date": dt.date(2026, 1, 31), "score": 1.0, "band": "red", "score_7d_ago": 2.0,
        "score_30d_ago": 3.0, "top_movers": json.dumps([["login_recency", -0.5]]),
    }


def write_alerts(path: Path, rows: list[dict], evaluated_days: list[dt.date]) -> None:
    """Replace the warehouse's alerts (and their accounts' health) with `rows`; add `evaluated_days`."""
    alerts = pl.DataFrame(rows, schema=ALERT_SCHEMA)
    health = alerts.select(
        "account_id", "partition_date", "segment", pl.lit(1.0).alias("score"), pl.lit("red").alias("band"),
        pl.lit(2.0).alias("score_7d_ago"), pl.lit(3.0).alias("score_30d_ago"), pl.lit(24000.0).alias("arr"),
        pl.lit(dt.date(2026, 1, 31)).alias("contract_end_date"),
    ).unique(["account_id", "partition_date"])
    with duckdb.connect(str(path)) as con:
        for schema in ("analytics", "marts"):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.register("_alerts", alerts.to_arrow())
        con.register("_health", health.to_arrow())
        con.execute("CREATE OR REPLACE TABLE analytics.alert_events AS SELECT * FROM _alerts")
        con.execute("CREATE OR REPLACE TABLE analytics.account_health AS SELECT * FROM _health")
        con.execute("""CREATE OR REPLACE TABLE marts.dim_accounts AS
                       SELECT DISTINCT account_id, DATE '2026-01-31' AS renewal_date FROM _alerts""")
        con.execute("CREATE TABLE IF NOT EXISTS analytics.alert_evaluated_days (partition_date DATE)")
        for day in evaluated_days:
            con.execute("DELETE FROM analytics.alert_evaluated_days WHERE partition_date = ?", [day])
            con.execute("INSERT INTO analytics.alert_evaluated_days VALUES (?)", [day])
