"""Where messages go: a channel interface with two implementations, Slack and the outbox folder
(the weekly digest's are in weekly.py).

An `Outgoing` is one message to deliver (an alert, a "resolved" notice or a digest) with the key
it is recorded under in the actions store and the metadata that finds it again in Slack. A
channel addresses it, posts it and, for Slack, looks it up after an attempt whose answer was lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

import sqlalchemy as sa

from cs_pipeline.actions.store import deliveries, notices
from cs_pipeline.messages import AlertMessage, ResolvedMessage, render_alert, render_digest, render_resolved
from cs_pipeline.resources.slack import (
    EVENT_TYPE_ALERT,
    EVENT_TYPE_DIGEST,
    EVENT_TYPE_RESOLVED,
    Address,
    Delivery,
    SlackResource,
)

DIGEST = "digest"


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message to deliver; `subject` is the alert that decides its addressee."""

    kind: str  # alert | closed | digest
    key: tuple  # its row in `table`: (alert_id, notification_number) or (id, kind)
    subject: AlertMessage | ResolvedMessage
    event_type: str
    payload: dict
    members: tuple[AlertMessage, ...] = ()  # a digest's alerts
    member_keys: tuple[tuple[str, int], ...] = ()  # a digest's (alert_id, notification_number)

    @property
    def lookup(self) -> dict:
        """The metadata that finds this message again in Slack."""
        return {"digest_id": self.key[0]} if self.kind == DIGEST else self.payload

    @property
    def table(self):
        return deliveries if self.kind == "alert" else notices

    @property
    def file_key(self) -> str:
        return f"{self.key[0]}-{self.key[1]}" if self.kind != DIGEST else self.key[0]

    def render(self, note: str | None = None) -> tuple[str, list[dict]]:
        if self.kind == "alert":
            return render_alert(self.subject, note=note)  # type: ignore[arg-type]
        if self.kind == DIGEST:
            return render_digest(self.key[0], list(self.members), note=note)
        return render_resolved(self.subject, note=note)  # type: ignore[arg-type]


def alert_outgoing(msg: AlertMessage) -> Outgoing:
    payload = {"alert_id": msg.alert_id, "notification_number": msg.notification_number}
    return Outgoing("alert", (msg.alert_id, msg.notification_number), msg, EVENT_TYPE_ALERT, payload)


def resolved_outgoing(msg: ResolvedMessage) -> Outgoing:
    return Outgoing("closed", (msg.alert_id, "closed"), msg, EVENT_TYPE_RESOLVED, {"alert_id": msg.alert_id, "notice": "closed"})


def digest_outgoing(digest_id: str, members: list[AlertMessage]) -> Outgoing:
    payload = {"digest_id": digest_id, "alert_ids": [m.alert_id for m in members]}
    keys = tuple((m.alert_id, m.notification_number) for m in members)
    return Outgoing(DIGEST, (digest_id, DIGEST), members[0], EVENT_TYPE_DIGEST, payload, tuple(members), keys)


def earlier_digest(digest_id: str, member_keys: list) -> Outgoing:
    """A digest an earlier run recorded, to look it up and settle its members (never posted again)."""
    keys = tuple((a, n) for a, n in member_keys)
    return Outgoing(DIGEST, (digest_id, DIGEST), None, EVENT_TYPE_DIGEST, {"digest_id": digest_id}, (), keys)  # type: ignore[arg-type]


class Item(Protocol):
    """What the protocol needs of a message: an `Outgoing`, or a part of a weekly digest (weekly.py)."""

    kind: str
    key: tuple  # its row's primary key in `table`

    @property
    def table(self) -> sa.Table: ...


class Channel(Protocol):
    destination: str  # slack | outbox: a lookup is needed only where a post may be in doubt
    min_gap_seconds: float
    rate_limit_retries: int

    def address(self, item: Item) -> Address | Delivery: ...

    def post(self, item: Item, address: Address) -> Delivery: ...

    def find(self, item: Item, channel: str, since: dt.datetime) -> tuple[str, str] | None:
        """(channel id, ts) of the message an earlier attempt posted, or None; raises when it cannot ask."""

    def reason(self, error: Exception) -> str: ...


class SlackChannel:
    destination = "slack"

    def __init__(self, slack: SlackResource):
        self.slack = slack
        self.min_gap_seconds = slack.min_seconds_between_posts_per_channel
        self.rate_limit_retries = slack.rate_limit_retries

    def address(self, item: Outgoing) -> Address | Delivery:
        return self.slack.address_alert(item.subject)

    def post(self, item: Outgoing, address: Address) -> Delivery:
        text, blocks = item.render(address.note)
        delivery = self.slack.post(address.channel, text, blocks, item.event_type, item.payload)
        if delivery.status == "sent" and address.note:
            return dataclasses.replace(delivery, reason=f"{address.missing}; posted to {address.channel}")
        return delivery

    def find(self, item: Outgoing, channel: str, since: dt.datetime) -> tuple[str, str] | None:
        return self.slack.find_post(channel, since, item.event_type, item.lookup)

    def reason(self, error: Exception) -> str:
        return self.slack.reason(error)


class OutboxChannel:
    """Without a bot token: each message a JSON file; rewriting the same key replaces its file."""

    destination = "outbox"
    min_gap_seconds = 0.0
    rate_limit_retries = 0

    def __init__(self, slack: SlackResource):
        self.slack = slack

    def address(self, item: Outgoing) -> Address:
        return Address(channel=self.slack.addressee(item.subject))

    def post(self, item: Outgoing, address: Address) -> Delivery:
        text, blocks = item.render()
        return self.slack.write_outbox(item.file_key, {"channel": address.channel, "text": text, "blocks": blocks} | item.payload)

    def find(self, item: Outgoing, channel: str, since: dt.datetime) -> None:
        return None

    def reason(self, error: Exception) -> str:
        return str(error)


def channel_for(slack: SlackResource) -> Channel:
    return SlackChannel(slack) if slack.uses_slack else OutboxChannel(slack)
