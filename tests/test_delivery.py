"""Pure delivery decisions: send order, when to check Slack before re-sending, muting, pacing."""

import datetime as dt

from cs_pipeline.logic.delivery import (
    Action,
    ChannelPacer,
    idempotency_key,
    in_doubt,
    muted_by,
    send_order,
)

DAY = dt.date(2025, 4, 30)


def test_send_order_is_severity_then_the_older_day():
    alerts = [("info", DAY), ("critical", DAY), ("warning", DAY - dt.timedelta(days=1)), ("critical", DAY - dt.timedelta(days=1))]
    ordered = sorted(alerts, key=lambda a: send_order(*a))
    assert ordered == [("critical", DAY - dt.timedelta(days=1)), ("critical", DAY), ("warning", DAY - dt.timedelta(days=1)), ("info", DAY)]


def test_idempotency_key():
    assert idempotency_key("al_1", 2) == "al_1#2"


def test_only_an_attempt_that_may_have_reached_slack_is_checked():
    assert in_doubt("slack", "sending")
    assert in_doubt("slack", "unsure")
    assert not in_doubt("slack", "failed")
    assert not in_doubt("slack", "sent")
    assert not in_doubt("outbox", "sending")


def test_a_snooze_lasts_until_its_date_and_an_ack_for_the_episode():
    snooze = [Action("snooze", until=DAY + dt.timedelta(days=3))]
    assert muted_by(snooze, DAY, DAY) == "snoozed"
    assert muted_by(snooze, DAY + dt.timedelta(days=3), DAY) is None
    assert muted_by([Action("ack")], DAY + dt.timedelta(days=300), DAY) == "acknowledged"
    assert muted_by([], DAY, DAY) is None


def test_the_pacer_spaces_one_channel_and_interleaves_others():
    pacer = ChannelPacer(gap=1.0)
    for item, channel in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A")]:
        pacer.add(channel, item)
    now, order = 0.0, []
    while (step := pacer.next(now)) is not None:
        channel, item, wait = step
        now += wait
        order.append((item, now))
        pacer.posted(channel, now)
    assert order == [("a1", 0.0), ("b1", 0.0), ("a2", 1.0), ("a3", 2.0)]


def test_a_back_off_puts_the_item_back_first_and_pauses_only_its_channel():
    pacer = ChannelPacer(gap=0.0)
    for item, channel in [("a1", "A"), ("a2", "A"), ("b1", "B")]:
        pacer.add(channel, item)
    channel, item, _ = pacer.next(0.0)
    pacer.back_off(channel, item, 5.0, 0.0)
    assert pacer.next(0.0)[1:] == ("b1", 0.0)
    assert pacer.next(0.0)[1:] == ("a1", 5.0)
