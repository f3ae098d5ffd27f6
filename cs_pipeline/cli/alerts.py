"""The alert and task commands: `alerts`, `tasks`, `snooze`, `ack`, `rules-report`, `slack-listen`.

They read the warehouse's alerts and tasks read-only; a snooze or an acknowledgement goes to the
actions store (as a Slack click does), which the warehouse copies as `actions.*`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Any

from cs_pipeline import settings
from cs_pipeline.cli.common import CliError, connect, existing_warehouse, jsonable, parse_day, print_table, read

ALERTS_SQL = """
WITH latest AS (
    SELECT * FROM analytics.alert_events
    QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1
), delivery AS (
    SELECT * FROM actions.deliveries
    QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY notification_number DESC) = 1
), muted AS (
    SELECT alert_id,
           bool_or(action = 'ack') AS acknowledged,
           bool_or(action = 'done') AS done,
           bool_or(action = 'not_useful') AS not_useful,
           bool_or(action = 'snooze' AND until > ?) AS snoozed
    FROM {alert_actions} GROUP BY alert_id
)
SELECT l.alert_id, l.rule_id, l.account_id, l.partition_date, l.episode_start, l.severity,
       CASE WHEN m.done THEN 'done'
            WHEN m.not_useful THEN 'not_useful'
            WHEN m.acknowledged THEN 'acknowledged'
            WHEN m.snoozed THEN 'snoozed'
            WHEN d.status IS NOT NULL THEN d.status
            WHEN l.partition_date >= ? THEN 'pending'
            ELSE 'suppressed_backfill' END AS status,
       t.task_id, l.account_name, l.owner_email, l.message, d.reason
FROM latest l
LEFT JOIN delivery d USING (alert_id)
LEFT JOIN actions.tasks t USING (alert_id)
LEFT JOIN muted m USING (alert_id)
ORDER BY l.partition_date, l.rule_id, l.account_id
"""

TASKS_SQL = """
SELECT task_id, alert_id, account_id, owner_email, title, due_date, status, priority
FROM actions.tasks ORDER BY due_date, task_id
"""


NO_ALERT_ACTIONS = "(SELECT NULL::VARCHAR AS alert_id, NULL::VARCHAR AS action, NULL::DATE AS until WHERE false)"


def read_alerts() -> list[dict[str, Any]]:
    today = settings.today()
    live_from = today - dt.timedelta(days=settings.live_window_days())
    sql = ALERTS_SQL.replace("{alert_actions}", "actions.alert_actions" if _has_alert_actions() else NO_ALERT_ACTIONS)
    return read(sql, [today, live_from], needs=("analytics.alert_events", "actions.deliveries", "actions.tasks"))


def _has_alert_actions() -> bool:
    sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = 'actions' AND table_name = 'alert_actions'"
    return bool(read(sql))


def read_tasks() -> list[dict[str, Any]]:
    return read(TASKS_SQL, needs=("actions.tasks",))


ALERT_FIELDS = ("alert_id", "rule_id", "account_id", "partition_date", "episode_start", "severity", "status", "task_id")
TASK_FIELDS = ("task_id", "alert_id", "account_id", "owner_email", "title", "due_date", "status")


def cmd_alerts(args: argparse.Namespace) -> int:
    rows = read_alerts()
    if args.format == "json":
        print(json.dumps(jsonable(rows, ALERT_FIELDS), indent=2))
    else:
        print_table(rows, ALERT_FIELDS)
    return 0


TASK_SINKS_SQL = "SELECT task_id, sink, status, remote_id, url, reason FROM actions.task_sinks ORDER BY task_id, sink"


def read_task_remotes() -> dict[str, list[dict[str, Any]]]:
    """Each task's records in the task sinks (actions.task_sinks), by task id."""
    remotes: dict[str, list[dict[str, Any]]] = {}
    for row in read(TASK_SINKS_SQL, needs=("actions.task_sinks",)):
        remotes.setdefault(row.pop("task_id"), []).append(row)
    return remotes


def _remote_text(remotes: list[dict[str, Any]]) -> str:
    """`salesforce:00T...` per created or closed record, `salesforce:failed` per failure."""
    return " ".join(
        f"{r['sink']}:{r['remote_id'] if r['remote_id'] else r['status']}"
        + (f"({r['status']})" if r["remote_id"] and r["status"] != "created" else "")
        for r in remotes
    )


def cmd_tasks(args: argparse.Namespace) -> int:
    rows = read_tasks()
    remotes = read_task_remotes() if rows else {}
    if args.format == "json":
        listed = jsonable(rows, TASK_FIELDS)
        for task in listed:
            task["remote"] = remotes.get(task["task_id"], [])
        print(json.dumps(listed, indent=2))
    else:
        print_table([{**r, "remote": _remote_text(remotes.get(r["task_id"], []))} for r in rows], (*TASK_FIELDS, "remote"))
    return 0


def _record_alert_action(alert_id: str, action: str, until: dt.date | None, reason: str | None, by: str | None) -> None:
    """Append a snooze or an acknowledgement to the actions store; the alert must exist. The
    warehouse's read copy is refreshed when the warehouse is free (else by the next dispatch)."""
    from cs_pipeline.actions.store import ActionsStore
    from cs_pipeline.resources.warehouse import table_exists

    con = connect(existing_warehouse())
    try:
        known = table_exists(con, "analytics", "alert_events") and con.execute(
            "SELECT rule_id FROM analytics.alert_events WHERE alert_id = ? LIMIT 1", [alert_id]
        ).fetchone()
    except Exception:  # noqa: BLE001 - a hand-made warehouse may lack rule_id
        known = con.execute("SELECT NULL FROM analytics.alert_events WHERE alert_id = ? LIMIT 1", [alert_id]).fetchone()
    finally:
        con.close()
    if not known:
        raise CliError(f"unknown alert id {alert_id!r} (see `cs-pipeline alerts`)")
    store = ActionsStore(settings.actions_url())
    store.add_action(alert_id, action, until, reason, by, rule_id=known[0])
    refresh_read_copy(store)


def refresh_read_copy(store) -> bool:
    """Copy the actions store into the warehouse's `actions.*` tables; False when a run holds the warehouse."""
    import duckdb

    try:
        con = duckdb.connect(str(settings.warehouse_path()))
    except duckdb.IOException:
        print("note: the warehouse is in use; its copy of the actions store is refreshed by the next dispatch",
              file=sys.stderr)
        return False
    try:
        store.copy_to_warehouse(con)
    finally:
        con.close()
    return True


def cmd_snooze(args: argparse.Namespace) -> int:
    until = parse_day(args.until, "--until")
    if until <= settings.today():
        raise CliError(f"--until {until} is not after today ({settings.today()})")
    _record_alert_action(args.alert_id, "snooze", until, args.reason, args.by)
    print(f"{args.alert_id}: snoozed until {until}; it will not notify before then")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    _record_alert_action(args.alert_id, "ack", None, args.note, args.by)
    print(f"{args.alert_id}: acknowledged; it will not notify again in this episode")
    return 0


def cmd_slack_listen(args: argparse.Namespace) -> int:
    """Run the Socket Mode listener until SIGTERM or Ctrl-C (see docs/slack-app.md, deploy/)."""
    import signal
    import threading

    from cs_pipeline.actions.listener import Listener, run_forever
    from cs_pipeline.actions.store import ActionsStore

    bot, app = os.environ.get("SLACK_BOT_TOKEN", "").strip(), os.environ.get("SLACK_APP_TOKEN", "").strip()
    if not bot or not app.startswith("xapp-"):
        raise CliError("slack-listen needs SLACK_BOT_TOKEN (xoxb-…) and SLACK_APP_TOKEN (an xapp-… app-level token "
                       "with connections:write); see docs/slack-app.md")
    listener = Listener(ActionsStore(settings.actions_url()), bot, app,
                        os.environ.get("SLACK_API_URL") or "https://slack.com/api/",
                        os.environ.get("CS_PIPELINE_SLACK_LEADS", ""))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("slack-listen: connected to Slack Socket Mode; waiting for clicks (Ctrl-C to stop)", flush=True)
    try:
        run_forever(listener, stop)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_rules_report(args: argparse.Namespace) -> int:
    from cs_pipeline.actions.report import rules_report
    from cs_pipeline.actions.store import ActionsStore

    rows = rules_report(ActionsStore(settings.actions_url()))
    fields = ("rule_id", "tasks", "acknowledged", "snoozed", "done", "not_useful", "useful_share", "not_useful_reasons")
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, fields)
    return 0


