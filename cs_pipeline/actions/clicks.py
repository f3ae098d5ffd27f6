"""What a click on an alert message's buttons does: who may act, what is stored, how the message changes.

A click is applied once: its row in the store is keyed by the click itself (the alert, the
action and Slack's `action_ts`, the same in every re-delivery of the envelope), so a listener
killed mid-click and restarted, which gets the envelope again, stores nothing twice and only
edits the message again (the same edit).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cs_pipeline.actions.store import ActionsStore, messages, tasks
from cs_pipeline.messages import ACTIONS_BLOCK_ID, NOT_USEFUL, NOT_USEFUL_REASONS

STATUS_BLOCK_ID = "cs_pipeline_status"
SNOOZE_DAYS = {"cs_snooze_7": 7, "cs_snooze_30": 30}
STORED = {"cs_ack": "ack", "cs_snooze_7": "snooze", "cs_snooze_30": "snooze", "cs_done": "done", NOT_USEFUL: "not_useful"}
# What a click does to the alert's task (an ack or a snooze leaves it open).
TASK_STATUS = {"done": "done", "not_useful": "dismissed"}


@dataclasses.dataclass(frozen=True)
class Click:
    alert_id: str
    action_id: str  # cs_ack | cs_snooze_7 | cs_snooze_30 | cs_done | cs_not_useful
    user_id: str
    key: str  # applied once per key
    reason: str | None = None
    channel: str | None = None
    message_ts: str | None = None
    blocks: tuple = ()


def parse(payload: dict) -> list[Click]:
    """The clicks on our buttons in a `block_actions` payload (other actions are ignored)."""
    if payload.get("type") != "block_actions":
        return []
    user = (payload.get("user") or {}).get("id") or ""
    container = payload.get("container") or {}
    message = payload.get("message") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id")
    ts = container.get("message_ts") or message.get("ts")
    clicks = []
    for action in payload.get("actions") or []:
        action_id = action.get("action_id")
        if action_id not in STORED:
            continue
        reason = None
        value = action.get("value") or ""
        if action_id == NOT_USEFUL:
            code, _, value = ((action.get("selected_option") or {}).get("value") or "").partition("|")
            reason = NOT_USEFUL_REASONS.get(code, code)
        if not value:
            continue
        key = f"{value}:{action_id}:{action.get('action_ts') or ts}:{user}"
        clicks.append(Click(value, action_id, user, key, reason, channel, ts, tuple(message.get("blocks") or ())))
    return clicks


def owner_email(store: ActionsStore, alert_id: str) -> tuple[str | None, str | None]:
    """(the owner's email, the rule id) of an alert, from its task or its posted message."""
    for table in (tasks, messages):
        rows = store.rows(table, table.c.alert_id == alert_id)
        if rows:
            return rows[0].get("owner_email"), rows[0].get("rule_id")
    return None, None


def apply(store: ActionsStore, click: Click, today: dt.date) -> bool:
    """Store the click (and its effect on the task); False when this click was applied before."""
    action = STORED[click.action_id]
    until = today + dt.timedelta(days=SNOOZE_DAYS[click.action_id]) if click.action_id in SNOOZE_DAYS else None
    _, rule_id = owner_email(store, click.alert_id)
    new = store.add_action(click.alert_id, action, until, click.reason, click.user_id, rule_id=rule_id,
                           action_id=click.key, source="slack")
    if new and action in TASK_STATUS:
        store.set_task_status(click.alert_id, TASK_STATUS[action], by=click.user_id)
    return new


def done_text(click: Click, today: dt.date, at: dt.datetime) -> str:
    when = at.strftime("%Y-%m-%d %H:%M UTC")
    if click.action_id in SNOOZE_DAYS:
        until = today + dt.timedelta(days=SNOOZE_DAYS[click.action_id])
        return f":zzz: Snoozed until {until.isoformat()} by <@{click.user_id}> on {when}"
    if click.action_id == NOT_USEFUL:
        return f":thumbsdown: Marked not useful ({click.reason}) by <@{click.user_id}> on {when}"
    label = {"cs_ack": ":eyes: Acknowledged", "cs_done": ":white_check_mark: Done"}[click.action_id]
    return f"{label} by <@{click.user_id}> on {when}"


def updated_blocks(blocks: tuple | list, click: Click, today: dt.date, at: dt.datetime) -> list[dict]:
    """The message's blocks with who did what and when under the buttons; Done and Not useful
    end the alert, so their buttons go."""
    status = {"type": "context", "block_id": STATUS_BLOCK_ID,
              "elements": [{"type": "mrkdwn", "text": done_text(click, today, at)}]}
    final = click.action_id in ("cs_done", NOT_USEFUL)
    out: list[dict] = []
    placed = False
    for block in blocks:
        if block.get("block_id") == STATUS_BLOCK_ID:
            continue
        if block.get("block_id") == ACTIONS_BLOCK_ID:
            if not final:
                out.append(block)
            out.append(status)
            placed = True
            continue
        out.append(block)
    if not placed:
        out.append(status)
    return out

