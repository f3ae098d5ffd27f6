"""The weekly CS-lead digest as messages of the delivery protocol (`protocol.deliver`).

Each (week, audience) is two items, each with its row in the store's `weekly_digests`:
`message` (the digest text, posted to the audience's channel) and then `map` (the portfolio map
PNG, shared in that message's thread with files_upload_v2). The map is made only once its message
is `sent`, since it needs the message's channel id and ts. Both follow the protocol's rules: sent
once, an attempt in doubt looked up in Slack before any new try (the message by its metadata,
the map by its file name in the thread). Without a token both go to the outbox folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import ClassVar

from cs_pipeline.actions.channels import Channel, OutboxChannel, SlackChannel
from cs_pipeline.actions.protocol import deliver
from cs_pipeline.actions.store import ActionsStore, weekly_digests
from cs_pipeline.logic.delivery import SENT
from cs_pipeline.logic.weekly_digest import Audience
from cs_pipeline.resources.slack import EVENT_TYPE_WEEKLY_DIGEST, Address, Delivery, SlackResource

MESSAGE, MAP = "message", "map"
PARTS = (MESSAGE, MAP)


@dataclasses.dataclass(frozen=True)
class WeeklyPart:
    """One part of one audience's digest: the message, or the map in the message's thread."""

    kind: str  # message | map
    key: tuple  # (week, audience, kind): its row in weekly_digests
    channel: str  # message: the audience's channel; map: where the message is (a channel id in Slack)
    text: str = ""
    blocks: list = dataclasses.field(default_factory=list)
    png: bytes = b""
    thread_ts: str | None = None  # map: the message's ts
    table: ClassVar = weekly_digests

    @property
    def payload(self) -> dict:
        """The message's metadata, which finds it again in Slack."""
        return {"week": self.key[0], "audience": self.key[1]}

    @property
    def file_key(self) -> str:
        return f"weekly-digest-{self.key[0]}-{self.key[1]}"

    @property
    def filename(self) -> str:
        return f"portfolio-map-{self.key[0]}-{self.key[1]}.png"


def message_part(week: str, audience: str, channel: str, text: str, blocks: list) -> WeeklyPart:
    return WeeklyPart(MESSAGE, (week, audience, MESSAGE), channel, text, blocks)


def map_part(week: str, audience: str, channel: str, thread_ts: str | None, png: bytes) -> WeeklyPart:
    return WeeklyPart(MAP, (week, audience, MAP), channel, png=png, thread_ts=thread_ts)


class WeeklySlack(SlackChannel):
    def address(self, item: WeeklyPart) -> Address:  # type: ignore[override]
        return Address(channel=item.channel)

    def post(self, item: WeeklyPart, address: Address) -> Delivery:  # type: ignore[override]
        if item.kind == MESSAGE:
            return self.slack.post(address.channel, item.text, item.blocks, EVENT_TYPE_WEEKLY_DIGEST, item.payload)
        title = f"Portfolio map {item.key[0]} · {item.key[1]}"
        return self.slack.upload_image(address.channel, item.png, item.filename, title, thread_ts=item.thread_ts)

    def find(self, item: WeeklyPart, channel: str, since: dt.datetime) -> tuple[str, str] | None:  # type: ignore[override]
        if item.kind == MESSAGE:
            return self.slack.find_post(channel, since, EVENT_TYPE_WEEKLY_DIGEST, item.payload)
        return self.slack.find_file(channel, item.thread_ts or "", item.filename)


class WeeklyOutbox(OutboxChannel):
    """Without a bot token: `weekly-digest-WEEK-AUDIENCE.json` and `.png` in the outbox folder."""

    def address(self, item: WeeklyPart) -> Address:  # type: ignore[override]
        return Address(channel=item.channel)

    def post(self, item: WeeklyPart, address: Address) -> Delivery:  # type: ignore[override]
        if item.kind == MAP:
            return self.slack.write_outbox_image(item.file_key, item.png, address.channel)
        content = {"channel": address.channel, "text": item.text, "blocks": item.blocks} | item.payload
        return self.slack.write_outbox(item.file_key, content | {"image": f"{item.file_key}.png"})


def weekly_channel(slack: SlackResource) -> Channel:
    return WeeklySlack(slack) if slack.uses_slack else WeeklyOutbox(slack)


def send_parts(store: ActionsStore, slack: SlackResource, week: str, audiences: Sequence[Audience],
               make: Callable[[Audience], tuple[str, list[dict], bytes]], settle_seconds: float, log=None) -> int:
    """Deliver each audience's message, then its map in the message's thread; returns the messages
    posted now. An audience whose parts are all `sent` is not rendered again."""
    channel, rows = weekly_channel(slack), store.weekly_digest_rows(week)
    todo = [a for a in audiences if any(_status(rows, week, a.name, part) != SENT for part in PARTS)]
    made = {a.name: make(a) for a in todo}
    messages = [message_part(week, a.name, a.channel, *made[a.name][:2]) for a in todo]
    counts, _ = deliver(store, channel, messages, rows, settle_seconds, log=log)
    rows = store.weekly_digest_rows(week)
    maps = [map_part(week, a.name, row.channel or a.channel, row.message_ts, made[a.name][2]) for a in todo
            if (row := rows.get((week, a.name, MESSAGE))) is not None and row.status == SENT]
    deliver(store, channel, maps, rows, settle_seconds, log=log)
    return counts.sent


def outcomes_of(store: ActionsStore, week: str, audiences: list[str]) -> dict[str, dict[str, str]]:
    """Each audience's parts and their status (`not sent` where no attempt is recorded)."""
    rows = store.weekly_digest_rows(week)
    return {a: {part: _status(rows, week, a, part) for part in PARTS} for a in audiences}


def _status(rows: dict, week: str, audience: str, part: str) -> str:
    row = rows.get((week, audience, part))
    return (row.status if row is not None else None) or "not sent"
