"""The delivery protocol, written once for alerts, "resolved" notices, digests and the weekly digest.

    1. an attempt in doubt (left `sending` by a run that died, or `unsure`) is looked up in Slack
       first: found, it is `sent`; absent, it may be posted; unanswered, it stays `unsure` and
       nothing is posted on a guess;
    2. the rows of all the messages to post are written `sending`, in one transaction, before the
       first post (so a crash never leaves a posted message recorded as unsent);
    3. posts go out in order, one channel at most every `min_gap_seconds`, a 429 pausing only its
       channel; the outcomes are recorded FLUSH_EVERY at a time;
    4. a post whose answer was lost (`unsure`) is looked up again after `settle_seconds`, within
       the same dispatch: found, `sent`; absent, `failed` (the next run posts it); unanswered, it
       stays `unsure` for the next run.

Statuses: sending | sent | failed (surely not posted) | unsure (may have been posted).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from cs_pipeline.actions.channels import Channel, Item
from cs_pipeline.actions.store import ActionsStore, DeliveryRow, now
from cs_pipeline.logic.delivery import SENT, UNSURE, ChannelPacer, in_doubt
from cs_pipeline.resources.slack import MAX_RETRY_AFTER_SECONDS, Address, Delivery

FOUND, ABSENT = "found", "absent"
FLUSH_EVERY = 100


@dataclasses.dataclass
class Counts:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    found_posted: int = 0
    rate_limited: int = 0
    in_digests: int = 0
    seconds: float = 0.0

    @property
    def alerts_per_second(self) -> float:
        return round(self.sent / self.seconds, 2) if self.seconds > 0 else 0.0


# Records outcomes: the default writes each on the item's own row; a digest also writes its members.
Recorder = Callable[[ActionsStore, Sequence[tuple[Item, Delivery]]], None]
# Begins attempts: (item, destination, channel) rows written `sending` before the first post.
Beginner = Callable[[ActionsStore, Sequence[tuple[Item, str, str]]], None]


def begin_rows(store: ActionsStore, begun: Sequence[tuple[Item, str, str]]) -> None:
    by_table: dict = {}
    for item, destination, channel in begun:
        by_table.setdefault(item.table, []).append((item.key, destination, channel))
    for table, rows in by_table.items():
        store.begin_attempts(table, rows)


def record_rows(store: ActionsStore, outcomes: Sequence[tuple[Item, Delivery]]) -> None:
    by_table: dict = {}
    for item, delivery in outcomes:
        by_table.setdefault(item.table, []).append((item.key, delivery))
    for table, rows in by_table.items():
        store.record_outcomes(table, rows)


def look_up(store: ActionsStore, channel: Channel, item: Item, row: DeliveryRow,
            record: Recorder = record_rows) -> str:
    """Step 1 for one attempt in doubt: `found` (recorded `sent`), `absent`, or `unsure` (recorded)."""
    try:
        found = channel.find(item, row.channel or "", row.attempt_started_at)
    except Exception as err:  # noqa: BLE001 - an unanswered check must not become a second post
        reason = f"could not check whether it was posted ({channel.reason(err)})"
        record(store, [(item, Delivery(channel.destination, row.channel or "", UNSURE, reason=reason))])
        return UNSURE
    if found is None:
        return ABSENT
    record(store, [(item, Delivery(channel.destination, found[0], SENT, message_ts=found[1],
                                   reason="found in Slack after an interrupted attempt"))])
    return FOUND


def deliver(
    store: ActionsStore, channel: Channel, items: Sequence[Item], rows: dict[tuple, DeliveryRow],
    settle_seconds: float = 2.0, record: Recorder = record_rows, begin: Beginner = begin_rows, log=None,
) -> tuple[Counts, list[tuple[Item, Delivery]]]:
    """Deliver each of `items` at most once, in order; `rows` are the store's rows by key.
    Returns the counts and every outcome recorded in this call."""
    counts, started = Counts(), time.monotonic()
    recorded: list[tuple[Item, Delivery]] = []

    def keep(outcomes: Sequence[tuple[Item, Delivery]]) -> None:
        record(store, outcomes)
        recorded.extend(outcomes)
        for item, delivery in outcomes:
            if delivery.status == SENT:
                counts.sent += 1
            else:
                counts.failed += 1
                if log is not None:
                    log.warning(f"{item.key[0]} {item.kind} #{item.key[1]}: {delivery.reason}")

    pacer: ChannelPacer[tuple[Item, Address]] = ChannelPacer(channel.min_gap_seconds)
    to_post = []
    for item in items:
        row = rows.get(item.key)
        if row is not None and row.status == SENT:
            counts.skipped += 1
            continue
        if row is not None and in_doubt(row.destination, row.status):
            outcome = look_up(store, channel, item, row, record)
            if outcome != ABSENT:
                counts.found_posted += outcome == FOUND
                counts.failed += outcome == UNSURE  # the sensor's retry checks again
                continue
        address = channel.address(item)
        if isinstance(address, Delivery):
            keep([(item, address)])
            continue
        to_post.append((item, address))
        pacer.add(address.channel, (item, address))
    attempt_at = now()
    begin(store, [(item, channel.destination, address.channel) for item, address in to_post])
    unsure: list[tuple[Item, Delivery]] = []
    pending: list[tuple[Item, Delivery]] = []
    try:
        for item, delivery in _post_paced(pacer, channel, counts):
            pending.append((item, delivery))
            if delivery.status == UNSURE:
                unsure.append((item, delivery))
            if len(pending) >= FLUSH_EVERY:
                keep(pending)
                pending = []
    finally:
        keep(pending)  # the unrecorded rest stays `sending`: looked up before any new post
    if unsure:
        _settle(store, channel, unsure, settle_seconds, counts, record, attempt_at)
    counts.seconds = time.monotonic() - started
    return counts, recorded


def _post_paced(pacer: ChannelPacer, channel: Channel, counts: Counts):
    """Step 3: yields (item, outcome); a 429 puts its item back and pauses its channel for its
    Retry-After, up to `rate_limit_retries` (its row stays `sending` until its final outcome)."""
    backoffs: dict[tuple, int] = {}
    while (step := pacer.next(time.monotonic())) is not None:
        key, (item, address), wait = step
        if wait > 0:
            time.sleep(wait)
        delivery = channel.post(item, address)
        pacer.posted(key, time.monotonic())
        if delivery.retry_after is not None:
            counts.rate_limited += 1
            backoffs[item.key] = backoffs.get(item.key, 0) + 1
            if backoffs[item.key] <= channel.rate_limit_retries and delivery.retry_after <= MAX_RETRY_AFTER_SECONDS:
                pacer.back_off(key, (item, address), delivery.retry_after, time.monotonic())
                continue
        yield item, delivery


def _settle(store: ActionsStore, channel: Channel, unsure: list[tuple[Item, Delivery]], settle_seconds: float,
            counts: Counts, record: Recorder, attempt_at) -> None:
    """Step 4: the posts whose answer was lost, looked up after a short wait."""
    time.sleep(max(settle_seconds, 0.0))
    for item, delivery in unsure:
        row = DeliveryRow(item.key, channel.destination, delivery.channel, UNSURE, delivery.reason, None, attempt_at)
        outcome = look_up(store, channel, item, row, record)
        if outcome == FOUND:
            counts.failed -= 1
            counts.found_posted += 1
        elif outcome == ABSENT:
            reason = f"{delivery.reason}; not found in Slack {settle_seconds:g} s later, so not posted"
            record(store, [(item, dataclasses.replace(delivery, status="failed", reason=reason))])


