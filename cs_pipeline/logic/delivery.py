"""Delivery decisions of the dispatch job, as pure functions: no Dagster, no Slack, no warehouse.

- the order alerts are sent in (severity, then partition date);
- whether a delivery left by an earlier run must be checked against Slack before re-sending
  (its attempt started but the outcome is unknown);
- a per-channel pacer: Slack allows about one message per second per channel, so posts to one
  channel are spaced while other channels go ahead, and a 429 backs off only its channel;
- whether a snoozed or acknowledged alert may notify;
- how long the sensor waits before retrying after dispatch runs that keep failing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import deque
from collections.abc import Collection, Hashable
from typing import Generic, TypeVar

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# sending: an attempt began, its outcome unknown; unsure: the request may have reached Slack.
SENDING, SENT, FAILED, UNSURE = "sending", "sent", "failed", "unsure"

T = TypeVar("T")


def send_order(severity: str, partition_date: dt.date, account_id: str = "", rule_id: str = "") -> tuple:
    """Sort key: critical before warning before info, then the older day first."""
    return (SEVERITY_ORDER.get(severity, len(SEVERITY_ORDER)), partition_date, account_id, rule_id)


def idempotency_key(alert_id: str, notification_number: int) -> str:
    return f"{alert_id}#{notification_number}"


def in_doubt(destination: str | None, status: str | None) -> bool:
    """True when an earlier attempt may have reached Slack and must be looked up before posting
    again: it was left `sending` (the run stopped between posting and recording) or is `unsure`."""
    if destination != "slack":
        return False  # the outbox is rewritten in place: a second write is the same file
    return status in (SENDING, UNSURE)


def is_resolved(last_open_day: dt.date, latest_evaluated_live_day: dt.date) -> bool:
    """A sent alert is resolved when the latest evaluated live day is past its last open day."""
    return last_open_day < latest_evaluated_live_day


def split_for_digest(
    items: list[tuple[str, str]], sent_today: dict[str, int], cap: int | None, digest_severities: Collection[str] = ()
) -> tuple[list[int], list[int]]:
    """Which of `items` (addressee, severity), in send order, go alone and which to the digest.

    Alerts of `digest_severities` go to the digest; any other goes alone while its addressee has
    had fewer than `cap` alert messages today (`sent_today` plus those going alone now), then to
    the digest (no cap when `cap` is None). Returns the indexes (alone, digest).
    """
    alone, digest = [], []
    counted = dict(sent_today)
    for i, (addressee, severity) in enumerate(items):
        if severity in digest_severities or (cap is not None and counted.get(addressee, 0) >= cap):
            digest.append(i)
        else:
            counted[addressee] = counted.get(addressee, 0) + 1
            alone.append(i)
    return alone, digest


# The sensor retries the first failed dispatch runs on its next tick (a short Slack outage costs a
# minute), then backs off: 1, 2, 4 ... minutes after each further failed run, up to a cap.
IMMEDIATE_RETRIES = 3


def retry_delay_seconds(failed_in_a_row: int, max_minutes: int) -> int:
    """Seconds to wait after the last of `failed_in_a_row` consecutive dispatch runs that need a
    retry before the next one: 0 for the first IMMEDIATE_RETRIES, then 1, 2, 4 ... minutes,
    at most `max_minutes` (0: never wait)."""
    if failed_in_a_row <= IMMEDIATE_RETRIES or max_minutes <= 0:
        return 0
    return 60 * min(2 ** min(failed_in_a_row - IMMEDIATE_RETRIES - 1, 30), max_minutes)


@dataclasses.dataclass(frozen=True)
class Action:
    """A row of actions.alert_actions that matters for notifying."""

    action: str  # snooze | ack | done | not_useful
    until: dt.date | None = None
    at: dt.datetime | None = None


def muted_by(actions: list[Action], today: dt.date, episode_start: dt.date) -> str | None:
    """`done`, `not_useful`, `acknowledged` or `snoozed` when an action holds the alert back, else None.

    Done, not useful and an acknowledgement last for the rest of the episode (an alert id is one episode); a snooze
    lasts until its date, exclusive.
    """
    del episode_start  # one alert id is one episode, so every action on it belongs to it
    for action, state in (("done", "done"), ("not_useful", "not_useful"), ("ack", "acknowledged")):
        if any(a.action == action for a in actions):
            return state
    if any(a.action == "snooze" and a.until is not None and today < a.until for a in actions):
        return "snoozed"
    return None


class ChannelPacer(Generic[T]):
    """Hands out queued items so that one channel gets at most one post per `gap` seconds.

    Items keep their order within a channel; across channels, the one that may post soonest goes
    first, and among those ready, the one queued first.
    """

    def __init__(self, gap: float):
        self.gap = max(gap, 0.0)
        self._queues: dict[Hashable, deque[tuple[int, T]]] = {}
        self._ready_at: dict[Hashable, float] = {}
        self._count = 0

    def add(self, channel: Hashable, item: T) -> None:
        self._queues.setdefault(channel, deque()).append((self._count, item))
        self._count += 1

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def next(self, now: float) -> tuple[Hashable, T, float] | None:
        """(channel, item, seconds to wait before posting it), or None when nothing is left."""
        waiting = [(max(self._ready_at.get(c, now), now), q[0][0], c) for c, q in self._queues.items() if q]
        if not waiting:
            return None
        ready_at, _, channel = min(waiting)
        _, item = self._queues[channel].popleft()
        return channel, item, ready_at - now

    def posted(self, channel: Hashable, now: float) -> None:
        self._ready_at[channel] = now + self.gap

    def back_off(self, channel: Hashable, item: T, seconds: float, now: float) -> None:
        """Slack answered 429 for `item`: put it back first in its channel and wait `seconds`."""
        self._queues.setdefault(channel, deque()).appendleft((-1, item))
        self._ready_at[channel] = now + max(seconds, self.gap)
