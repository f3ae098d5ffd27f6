"""What to notify and how it is grouped: alert messages, daily digests and "resolved" notices.

Every message goes through `protocol.deliver`; this module only decides which messages exist:
an alert row becomes an `AlertMessage` as it is (the `alerts` asset wrote everything a message
needs into it), snoozed, acknowledged, done and "not useful" alerts do not notify, alerts of the
digest severities (or beyond a CSM's daily cap) go in one digest per addressee.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence

import polars as pl

from cs_pipeline.actions import protocol
from cs_pipeline.actions.channels import DIGEST, Channel, Outgoing, alert_outgoing, digest_outgoing, earlier_digest
from cs_pipeline.actions.protocol import Counts
from cs_pipeline.actions.store import ActionsStore, deliveries, notices, now
from cs_pipeline.logic.delivery import FAILED, SENT, UNSURE, in_doubt, muted_by, send_order, split_for_digest
from cs_pipeline.messages import AlertMessage, ResolvedMessage
from cs_pipeline.resources.slack import Delivery, SlackResource


def alert_message(row: dict, crm_url: str | None = None) -> AlertMessage:
    """The message of one `alerts` row, from that row alone."""
    base_url = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
    return AlertMessage(
        alert_id=row["alert_id"], notification_number=row["notification_number"], rule_id=row["rule_id"],
        rule_description=row.get("rule_description") or row["rule_id"], severity=row["severity"],
        account_id=row["account_id"], account_name=row.get("account_name") or row["account_id"],
        segment=row.get("segment") or "", owner_email=row.get("owner_email"), partition_date=row["partition_date"],
        episode_start=row["episode_start"], arr=row.get("arr"), renewal_date=row.get("renewal_date"),
        score=row.get("score"), band=row.get("band"), score_7d_ago=row.get("score_7d_ago"),
        score_30d_ago=row.get("score_30d_ago"),
        top_movers=[tuple(m) for m in json.loads(row.get("top_movers") or "[]")],  # type: ignore[misc]
        facts=json.loads(row.get("facts") or "{}"), message=row.get("message") or "",
        task_title=row.get("task_title") or "", task_steps=json.loads(row.get("task_steps") or "[]"),
        task_due_date=row["task_due_date"], task_priority=row.get("task_priority") or "",
        dagster_url=f"{base_url}/assets/alerts?view=partitions&partition={row['partition_date']}",
        condition=row.get("rule_condition") or "", crm_url=crm_url,
    )


def resolved_message(row: dict, day: dt.date, task_status: str) -> ResolvedMessage:
    return ResolvedMessage(
        alert_id=row["alert_id"], rule_id=row["rule_id"], rule_description=row.get("rule_description") or row["rule_id"],
        account_id=row["account_id"], account_name=row.get("account_name") or row["account_id"],
        segment=row.get("segment") or "", owner_email=row.get("owner_email"), episode_start=row["episode_start"],
        last_open_day=row["partition_date"], closed_on=day, task_status=task_status,
    )


def without_muted(store: ActionsStore, alerts: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, int]:
    """The alerts that may notify today, and how many an action (snooze, ack, done, not useful) held back."""
    if alerts.height == 0:
        return alerts, 0
    actions = store.actions_by_alert(alerts["alert_id"].to_list())
    keep = [muted_by(actions.get(a, []), today, s) is None for a, s in zip(alerts["alert_id"], alerts["episode_start"])]
    kept = alerts.filter(pl.Series(keep, dtype=pl.Boolean))
    return kept, alerts.height - kept.height


def sorted_for_sending(alerts: pl.DataFrame) -> pl.DataFrame:
    """Critical first, then warning, then info; the older day first."""
    keys = [send_order(*k) for k in zip(alerts["severity"], alerts["partition_date"], alerts["account_id"], alerts["rule_id"])]
    return alerts[sorted(range(alerts.height), key=keys.__getitem__)]


# ------------------------------------------------------------------ digests


def record_digest(store: ActionsStore, outcomes: Sequence[tuple[Outgoing, Delivery]]) -> None:
    """A digest's outcome on its notice and on each member's delivery row."""
    for item, delivery in outcomes:
        store.record_outcomes(notices, [(item.key, delivery)])
        reason = f"in the daily digest {item.key[0]}" if delivery.status == SENT else delivery.reason
        member = Delivery(DIGEST, delivery.channel, delivery.status, reason=reason, message_ts=delivery.message_ts)
        store.record_outcomes(deliveries, [(key, member) for key in item.member_keys])


def begin_digest(store: ActionsStore, begun: Sequence[tuple[Outgoing, str, str]]) -> None:
    for item, destination, channel in begun:
        store.begin_attempts(notices, [(item.key, destination, channel)])
        store.set_members(item.key[0], [list(k) for k in item.member_keys])
        store.begin_attempts(deliveries, [(key, DIGEST, channel) for key in item.member_keys])


def settle_digests(store: ActionsStore, channel: Channel) -> int:
    """Digests an earlier run left `sending` or `unsure`: looked up in Slack; found, they and their
    members are `sent`; not found, they failed and their members go in the next digest; when Slack
    cannot be asked, they stay unsure and their members wait. Returns how many members wait."""
    waiting = 0
    for key, row in store.notice_rows(DIGEST).items():
        if row.status in (SENT, FAILED):
            continue
        item = earlier_digest(key[0], row.members or [])
        outcome = protocol.look_up(store, channel, item, row, record_digest) if in_doubt(row.destination, row.status) else None
        if outcome == UNSURE:
            waiting += len(item.member_keys)
        elif outcome != protocol.FOUND:
            lost = Delivery(row.destination or channel.destination, row.channel or "", FAILED,
                            reason="interrupted before it was posted; its alerts go in the next digest")
            record_digest(store, [(item, lost)])
    return waiting


def plan_sending(store: ActionsStore, channel: Channel, messages: list[AlertMessage], slack: SlackResource
                 ) -> tuple[list[AlertMessage], dict[str, list[AlertMessage]], int]:
    """(messages to send alone, new digest members per addressee, members held by an unsure digest).

    Only an alert with no delivery yet, or whose digest surely failed, may go to a digest; one
    already tried alone stays alone, and one in a digest that may have been posted is held.
    """
    held = settle_digests(store, channel)
    existing = store.delivery_rows()
    eligible, alone = [], []
    for msg in messages:
        row = existing.get((msg.alert_id, msg.notification_number))
        if row is None or (row.destination == DIGEST and row.status == FAILED):
            eligible.append(msg)
        elif row.destination != DIGEST:
            alone.append(msg)
    keys = [(slack.addressee(m), m.severity) for m in eligible]
    alone_idx, digest_idx = split_for_digest(keys, _sent_alone_today(store, messages, slack),
                                             slack.max_alerts_per_csm_per_day, slack.digest_severities)
    chosen = {id(eligible[i]) for i in alone_idx} | {id(m) for m in alone}
    digests: dict[str, list[AlertMessage]] = {}
    for i in digest_idx:
        digests.setdefault(keys[i][0], []).append(eligible[i])
    return [m for m in messages if id(m) in chosen], digests, held


def _sent_alone_today(store: ActionsStore, messages: list[AlertMessage], slack: SlackResource) -> dict[str, int]:
    """Alert messages each addressee got alone since midnight UTC, among these alerts."""
    sent = store.sent_alone_since(now().replace(hour=0, minute=0, second=0, microsecond=0))
    counts: dict[str, int] = {}
    for msg in messages:
        if (msg.alert_id, msg.notification_number) in sent:
            counts[slack.addressee(msg)] = counts.get(slack.addressee(msg), 0) + 1
    return counts


def send_digests(store: ActionsStore, channel: Channel, digests: dict[str, list[AlertMessage]], today: dt.date,
                 counts: Counts, settle_seconds: float = 2.0, log=None) -> None:
    """One digest per addressee, through the delivery protocol."""
    for addressee, members in digests.items():
        prefix = f"digest:{addressee}:{today.isoformat()}:"
        item = digest_outgoing(f"{prefix}{store.count_notices(DIGEST, prefix) + 1}", members)
        _, outcomes = protocol.deliver(store, channel, [item], {}, settle_seconds, record_digest, begin_digest, log)
        settled = {o[0].key: o[1] for o in outcomes}
        row = store.notice_rows(DIGEST).get(item.key)
        if row is not None and row.status == SENT:
            counts.in_digests += len(members)
        else:
            counts.failed += len(members)
            if log is not None and item.key in settled:
                log.warning(f"digest {item.key[0]}: {settled[item.key].reason}")


# ------------------------------------------------------------------ alerts


def send_alerts(store: ActionsStore, channel: Channel, messages: list[AlertMessage], settle_seconds: float = 2.0,
                log=None) -> Counts:
    """Each message not yet sent, at most once, through the delivery protocol; remembers where
    each sent alert message is in Slack, for the buttons' in-place edits."""
    items = [alert_outgoing(m) for m in messages]
    counts, _ = protocol.deliver(store, channel, items, store.delivery_rows(), settle_seconds, log=log)
    remember_posts(store, messages)
    return counts


def remember_posts(store: ActionsStore, messages: list[AlertMessage]) -> None:
    rows = store.delivery_rows()
    found = []
    for m in messages:
        row = rows.get((m.alert_id, m.notification_number))
        if row is not None and row.status == SENT and row.destination == "slack" and row.message_ts:
            found.append({"alert_id": m.alert_id, "channel": row.channel, "message_ts": row.message_ts,
                          "rule_id": m.rule_id, "account_id": m.account_id, "account_name": m.account_name,
                          "owner_email": m.owner_email, "severity": m.severity, "partition_date": m.partition_date})
    store.remember_messages(found)
