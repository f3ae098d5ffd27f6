"""Planners: which tasks to create, which alerts to close, what to send to the task sinks.

They read the `alerts` rows (from the warehouse, handed in as frames or dicts) and the actions
store, and return plain data; the store applies it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl

from cs_pipeline.actions.store import ActionsStore, alert_state, deliveries, task_sinks, tasks
from cs_pipeline.logic.delivery import SENT, is_resolved
from cs_pipeline.resources.warehouse import query, table_exists

# What a closed alert's task becomes (`task.on_resolve` of its rule); `keep_open` leaves it open.
CLOSED_TASK_STATUSES = ("done", "obsolete")
KEEP_OPEN = "keep_open"
SINK_CREATED, SINK_FAILED, SINK_CLOSED = "created", "failed", "closed"


# ------------------------------------------------------------------ reading the alerts (warehouse)


def live_alerts(con, today: dt.date, live_window_days: int) -> pl.DataFrame:
    """Alerts open on a live partition (at most `live_window_days` before today), one row each:
    the alert's latest day, with its current notification number, message and task."""
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame()
    return query(
        con,
        """SELECT * FROM analytics.alert_events WHERE partition_date >= ?
           QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1
           ORDER BY alert_id""",
        [today - dt.timedelta(days=live_window_days)],
    )


def latest_evaluated_live_day(con, today: dt.date, live_window_days: int) -> dt.date | None:
    if not table_exists(con, "analytics", "alert_evaluated_days"):
        return None
    return con.execute(
        "SELECT max(partition_date) FROM analytics.alert_evaluated_days WHERE partition_date >= ?",
        [today - dt.timedelta(days=live_window_days)],
    ).fetchone()[0]


def alerts_on(con, day: dt.date) -> list[str]:
    return [r[0] for r in con.execute("SELECT alert_id FROM analytics.alert_events WHERE partition_date = ?", [day]).fetchall()]


def latest_rows(con, alert_ids: list[str]) -> dict[str, dict]:
    """Each alert's latest row (its last open day)."""
    if not alert_ids:
        return {}
    rows = query(con, """SELECT * FROM analytics.alert_events WHERE list_contains(?, alert_id)
                         QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1""",
                 [alert_ids])
    return {r["alert_id"]: r for r in rows.iter_rows(named=True)}


def rows_on(con, keys: dict[str, dt.date]) -> dict[str, dict]:
    """The alert rows of (alert_id, day)."""
    if not keys:
        return {}
    rows = query(con, "SELECT * FROM analytics.alert_events WHERE list_contains(?, alert_id)", [list(keys)])
    return {r["alert_id"]: r for r in rows.iter_rows(named=True) if r["partition_date"] == keys[r["alert_id"]]}


# ------------------------------------------------------------------ tasks


def task_rows(alerts: pl.DataFrame) -> list[dict]:
    """One task per live alert, keyed by the alert id."""
    return alerts.select(
        ("task_" + pl.col("alert_id").str.strip_prefix("al_")).alias("task_id"), "alert_id", "rule_id", "account_id",
        "owner_email", pl.col("task_title").alias("title"), pl.col("task_steps").alias("steps"),
        pl.col("task_due_date").alias("due_date"), pl.col("task_priority").alias("priority"),
    ).to_dicts()


# ------------------------------------------------------------------ closing


@dataclasses.dataclass(frozen=True)
class Closure:
    alert: dict  # the alert's last open row
    state: str  # closed | ended
    task_status: str | None  # done | obsolete; None: the task stays open (keep_open)


def plan_closures(store: ActionsStore, con, day: dt.date) -> list[Closure]:
    """Mark the sent alerts open on `day` (the latest evaluated live day) open, and close each alert
    seen open before that is not open on `day`: its task becomes its rule's `task.on_resolve`
    (`keep_open`: the alert only ends, quietly). An alert already over when it was sent was never
    seen open, so it is not closed either."""
    sent = {r["alert_id"] for r in store.rows(deliveries, deliveries.c.status == SENT)}
    store.mark_open({a: day for a in alerts_on(con, day) if a in sent})
    open_ids = [r["alert_id"] for r in store.rows(alert_state, alert_state.c.state == "open")]
    closures = []
    for alert_id, alert in latest_rows(con, open_ids).items():
        if not is_resolved(alert["partition_date"], day):
            continue
        outcome = alert.get("task_on_resolve") or "done"
        keep = outcome == KEEP_OPEN
        closures.append(Closure(alert, "ended" if keep else "closed", None if keep else outcome))
    return closures


def close(store: ActionsStore, closures: list[Closure], day: dt.date) -> None:
    for c in closures:
        store.close_alert(c.alert["alert_id"], c.state, c.alert["partition_date"], day, c.task_status)


def closed_unannounced(store: ActionsStore) -> dict[str, dict]:
    """Closed alerts whose "resolved" notice is not sent yet: alert id -> their state row."""
    told = {key[0] for key, row in store.notice_rows("closed").items() if row.status == SENT}
    return {r["alert_id"]: r for r in store.rows(alert_state, alert_state.c.state == "closed") if r["alert_id"] not in told}


# ------------------------------------------------------------------ task sinks


@dataclasses.dataclass(frozen=True)
class SinkWork:
    """One call to make: `create` a task in a sink, or `close` the remote task it holds."""

    action: str  # create | close
    sink: str
    task: dict
    remote_id: str | None = None
    account_crm_id: str | None = None  # for `create`; None: the task goes unlinked


def plan_task_sinks(store: ActionsStore, sink_names) -> tuple[list[SinkWork], int]:
    """Each open task to each sink of its rule without a `created` record, and a close for each
    `done` or `obsolete` task a sink holds as `created`; and how many are already in place.
    `sink_names(rule_id)` names a rule's sinks."""
    records = {(r["task_id"], r["sink"]): (r["status"], r["remote_id"]) for r in store.rows(task_sinks)}
    wanted = store.rows(tasks, tasks.c.status.in_(("open", *CLOSED_TASK_STATUSES)))
    work: list[SinkWork] = []
    already = 0
    for task in sorted(wanted, key=lambda t: (t["due_date"] or dt.date.max, t["task_id"])):
        for sink in sink_names(task["rule_id"]):
            status, remote_id = records.get((task["task_id"], sink), (None, None))
            if task["status"] == "open":
                if status in (SINK_CREATED, SINK_CLOSED):
                    already += 1
                else:
                    work.append(SinkWork("create", sink, task))
            elif status == SINK_CREATED and remote_id:
                work.append(SinkWork("close", sink, task, remote_id))
    return work, already
