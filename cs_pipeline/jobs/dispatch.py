"""The dispatch job: for every live alert, create its task and send its Slack message.

What is live is decided from the warehouse each time an op runs, not passed between ops, and
each send re-reads the delivery state first: two dispatch runs (a sensor tick and a manual
re-run) can never send the same (alert, notification) twice, because the ops that write are in
the one-at-a-time `duckdb` pool and a `sent` delivery is never sent again. A failed delivery
keeps its reason and is retried by the next run.
"""


import datetime as dt
import json
import os

import dagster as dg
import polars as pl

from cs_pipeline import settings
from cs_pipeline.messages import AlertMessage
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.slack import Delivery, SlackResource
from cs_pipeline.resources.warehouse import POOL, WarehouseResource, query, table_exists

FAILED_TAG = "cs_pipeline/failed_deliveries"
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}

ACTIONS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS actions",
    """CREATE TABLE IF NOT EXISTS actions.tasks (
        task_id VARCHAR PRIMARY KEY, alert_id VARCHAR UNIQUE, account_id VARCHAR, owner_email VARCHAR,
        title VARCHAR, steps VARCHAR, due_date DATE, priority VARCHAR, status VARCHAR, created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS actions.deliveries (
        alert_id VARCHAR, notification_number BIGINT, destination VARCHAR, channel VARCHAR, status VARCHAR,
        reason VARCHAR, attempts BIGINT, message_ts VARCHAR, first_attempt_at TIMESTAMP, updated_at TIMESTAMP,
        PRIMARY KEY (alert_id, notification_number))""",
)


def ensure_actions_tables(con) -> None:
    for statement in ACTIONS_DDL:
        con.execute(statement)


def live_alerts(con, today: dt.date, live_window_days: int) -> pl.DataFrame:
    """Alerts open on a live partition (at most `live_window_days` before today), one row each.

    The row is the alert's latest day: its current notification number, message and task. An
    alert whose episode closed before the live window has no such row and is never sent.
    """
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame()
    return query(
        con,
        """SELECT * FROM analytics.alert_events WHERE partition_date >= ?
           QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1
           ORDER BY alert_id""",
        [today - dt.timedelta(days=live_window_days)],
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dg.op(pool=POOL, description="Create one task per live alert in actions.tasks (idempotent: one task per alert id).")
def create_tasks(context: dg.OpExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig) -> int:
    today = settings.today()
    with warehouse.connect() as con:
        ensure_actions_tables(con)
        alerts = live_alerts(con, today, cs_config.live_window_days)
        if alerts.height == 0:
            context.log.info("no live alerts")
            return 0
        tasks = alerts.select(
            ("task_" + pl.col("alert_id").str.strip_prefix("al_")).alias("task_id"),
            "alert_id",
            "account_id",
            "owner_email",
            pl.col("task_title").alias("title"),
            pl.col("task_steps").alias("steps"),
            pl.col("task_due_date").alias("due_date"),
            pl.col("task_priority").alias("priority"),
            pl.lit("open").alias("status"),
            pl.lit(_now()).alias("created_at"),
        )
        con.register("_tasks", tasks.to_arrow())
        before = con.execute("SELECT count(*) FROM actions.tasks").fetchone()[0]
        con.execute("INSERT INTO actions.tasks SELECT * FROM _tasks ON CONFLICT DO NOTHING")
        created = con.execute("SELECT count(*) FROM actions.tasks").fetchone()[0] - before
        con.unregister("_tasks")
    context.log.info(f"tasks: {created} created, {alerts.height - created} already existed")
    context.add_output_metadata({"tasks_created": created, "live_alerts": alerts.height})
    return created


def _messages(con, alerts: pl.DataFrame, cs_config: PipelineConfig) -> list[AlertMessage]:
    """Build each alert's message with its account's figures and what moved its score."""
    rules = cs_config.rules()
    keys = alerts.select(
        "account_id", "partition_date", (pl.col("partition_date") - dt.timedelta(days=30)).alias("month_before")
    ).unique()
    con.register("_keys", keys.to_arrow())
    health = query(
        con,
        """SELECT h.*, d.renewal_date FROM analytics.account_health h
           JOIN _keys k USING (account_id, partition_date)
           LEFT JOIN marts.dim_accounts d USING (account_id)""",
    )
    earlier = query(
        con,
        """SELECT h.*, k.partition_date AS alert_date FROM analytics.account_health h
           JOIN _keys k ON h.account_id = k.account_id AND h.partition_date = k.month_before""",
    )
    con.unregister("_keys")
    by_account = {(row["account_id"], row["partition_date"]): row for row in health.iter_rows(named=True)}
    before = {(row["account_id"], row["alert_date"]): row for row in earlier.iter_rows(named=True)}
    base_url = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
    messages = []
    for alert in alerts.iter_rows(named=True):
        key = (alert["account_id"], alert["partition_date"])
        now, then = by_account.get(key, {}), before.get(key, {})
        movers = sorted(
            (
                (name.removeprefix("contribution_"), round((now.get(name) or 0.0) - (then.get(name) or 0.0), 3))
                for name in now
                if name.startswith("contribution_") and then
            ),
            key=lambda item: -abs(item[1]),
        )
        rule = rules.by_id.get(alert["rule_id"])
        messages.append(
            AlertMessage(
                alert_id=alert["alert_id"],
                notification_number=alert["notification_number"],
                rule_id=alert["rule_id"],
                rule_description=rule.description if rule else alert["rule_id"],
                severity=alert["severity"],
                account_id=alert["account_id"],
                account_name=alert["account_name"] or alert["account_id"],
                segment=alert["segment"] or "",
                owner_email=alert["owner_email"],
                partition_date=alert["partition_date"],
                episode_start=alert["episode_start"],
                arr=now.get("arr"),
                renewal_date=now.get("contract_end_date") or now.get("renewal_date"),
                score=now.get("score"),
                band=now.get("band"),
                score_7d_ago=now.get("score_7d_ago"),
                score_30d_ago=now.get("score_30d_ago"),
                top_movers=[m for m in movers if m[1] != 0][:3],
                facts=json.loads(alert["facts"]),
                message=alert["message"],
                task_title=alert["task_title"],
                task_steps=json.loads(alert["task_steps"]),
                task_due_date=alert["task_due_date"],
                task_priority=alert["task_priority"],
                dagster_url=f"{base_url}/assets/alerts?partition={alert['partition_date']}",
            )
        )
    return messages


def _already_sent(con, alert_id: str, notification_number: int) -> bool:
    row = con.execute(
        "SELECT status FROM actions.deliveries WHERE alert_id = ? AND notification_number = ?", [alert_id, notification_number]
    ).fetchone()
    return bool(row and row[0] == "sent")


def _record(con, msg: AlertMessage, delivery: Delivery) -> None:
    now = _now()
    con.execute(
        """INSERT INTO actions.deliveries VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
           ON CONFLICT (alert_id, notification_number) DO UPDATE SET
             destination = excluded.destination, channel = excluded.channel, status = excluded.status,
             reason = excluded.reason, attempts = actions.deliveries.attempts + 1,
             message_ts = excluded.message_ts, updated_at = excluded.updated_at""",
        [msg.alert_id, msg.notification_number, delivery.destination, delivery.channel, delivery.status,
         delivery.reason, delivery.message_ts, now, now],
    )


@dg.op(
    ins={"tasks_created": dg.In(int)},
    pool=POOL,
    description="Send each live alert's Slack message (or write it to the outbox) once per notification number.",
)
def send_notifications(
    context: dg.OpExecutionContext, tasks_created: int, warehouse: WarehouseResource, cs_config: PipelineConfig, slack: SlackResource
) -> dg.Output[int]:
    today = settings.today()
    sent = failed = skipped = 0
    with warehouse.connect() as con:
        ensure_actions_tables(con)
        alerts = live_alerts(con, today, cs_config.live_window_days)
        if alerts.height:
            alerts = alerts.with_columns(pl.col("severity").replace_strict(SEVERITY_ORDER, default=9).alias("_order")).sort(
                "_order", "account_id", "rule_id"
            )
            for msg in _messages(con, alerts, cs_config):
                if _already_sent(con, msg.alert_id, msg.notification_number):
                    skipped += 1
                    continue
                delivery = slack.deliver_alert(msg)
                # Recorded right after each send, so a crash later in the run cannot cause a resend.
                _record(con, msg, delivery)
                if delivery.status == "sent":
                    sent += 1
                else:
                    failed += 1
                    context.log.warning(f"{msg.alert_id} #{msg.notification_number}: {delivery.reason}")
    context.log.info(f"notifications: {sent} sent, {failed} failed, {skipped} already sent")
    if context.run.run_id and context.instance:
        context.instance.add_run_tags(context.run.run_id, {FAILED_TAG: str(failed)})
    return dg.Output(sent, metadata={"sent": sent, "failed": failed, "already_sent": skipped})


@dg.job(
    description="Create the task and send the Slack message of every live alert; safe to re-run at any time.",
    tags={"cs_pipeline/kind": "dispatch"},
)
def dispatch_alerts():
    send_notifications(create_tasks())
