"""A week of daily runs, replayed twice, sends each message exactly once and creates each task once.

The planted data set's history is loaded up to the day before the week; then each of the 7 days
is its own daily run (today moving with it, so each day's alerts are live), followed by the
sensor and the dispatch job, as the schedule and the daemon would do. Then the same 7 days are
run again. The loopback Slack server and a signed-webhook task sink record what reached them.

The daily runs materialize the daily-partitioned assets (events, the daily dbt models, usage,
health, alerts): the snapshot exports do not change during the week, and rebuilding them and
their dbt models 14 more times would only make the test slower.
"""

import datetime as dt
from collections import Counter

import dagster as dg
import pytest

from tests.support import planted
from tests.support.crm_servers import WebhookReceiver
from tests.support.pipeline import planted_pipeline

pytestmark = pytest.mark.e2e

WEEK = [planted.LAST - dt.timedelta(days=6 - i) for i in range(7)]  # 04-24 .. 04-30
DAY = dt.timedelta(days=1)


def _live_rows(pipeline, today: dt.date) -> set[tuple[str, int]]:
    """(alert_id, notification_number) due on the morning of `today`: each alert's latest row on the
    live days, among the days computed by then (up to yesterday)."""
    return set(pipeline.sql(
        """SELECT alert_id, notification_number FROM analytics.alert_events WHERE partition_date BETWEEN ? AND ?
           QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1""",
        [today - 2 * DAY, today - DAY],
    ))


def _day(pipeline, monkeypatch, day: dt.date) -> None:
    """The daily schedule's run of `day` on the morning after, then the sensor and its dispatch runs."""
    from cs_pipeline.definitions import defs, resources

    monkeypatch.setenv("CS_PIPELINE_TODAY", (day + DAY).isoformat())
    assets = list(defs.assets or [])
    daily = [key for asset in assets if asset.partitions_def is not None for key in asset.keys]
    result = dg.materialize(assets, selection=daily, resources=resources(), instance=pipeline.instance,
                            partition_key=day.isoformat())
    assert result.success
    tick = pipeline.tick()
    for request in tick.run_requests:
        assert pipeline.dispatch(request.tags).success
    assert pipeline.tick().run_requests == []  # nothing failed, nothing to retry


def test_a_week_of_daily_runs_replayed_twice_sends_each_message_once(tmp_path, monkeypatch):
    with WebhookReceiver() as receiver:
        sinks = tmp_path / "task_sinks.yaml"
        sinks.write_text(f"""sinks:
  hooks:
    type: webhook
    url: {receiver.hook_url}
    secret_env: HOOK_SECRET
    timeout_seconds: 2
    retry_max_seconds: 2
    backoff_seconds: 0.01
rules:
  "*": [hooks]
""")
        monkeypatch.setenv("HOOK_SECRET", receiver.secret)
        root = tmp_path / "pipeline"
        root.mkdir()
        with planted_pipeline(root, {"CS_PIPELINE_TASK_SINKS": str(sinks)}) as pipeline:
            # History up to the day before the week, dispatched on the morning of its first day.
            monkeypatch.setenv("CS_PIPELINE_TODAY", WEEK[0].isoformat())
            assert pipeline.materialize(planted.FIRST, WEEK[0] - DAY).success
            for request in pipeline.tick().run_requests:
                assert pipeline.dispatch(request.tags).success

            for day in WEEK:
                _day(pipeline, monkeypatch, day)
            after_week = (len(pipeline.server.messages), len(receiver.deliveries))
            for day in WEEK:  # the same week, replayed
                _day(pipeline, monkeypatch, day)
            assert (len(pipeline.server.messages), len(receiver.deliveries)) == after_week

            expected = set().union(*(_live_rows(pipeline, today) for today in [WEEK[0], *(d + DAY for d in WEEK)]))
            alerts = Counter()
            resolved = Counter()
            for message in pipeline.server.messages:
                kind, payload = message["metadata"]["event_type"], message["metadata"]["event_payload"]
                if kind == "cs_pipeline_alert":
                    alerts[(payload["alert_id"], payload["notification_number"])] += 1
                elif kind == "cs_pipeline_alert_resolved":
                    resolved[payload["alert_id"]] += 1
                else:
                    raise AssertionError(f"unexpected message {kind}")
            assert set(alerts) == expected and set(alerts.values()) == {1}
            # Renotifications happened within the week (no_login_20d and renewal_at_risk repeat).
            assert any(n > 1 for _, n in alerts)
            assert pipeline.sql("SELECT count(*) FROM actions.deliveries WHERE status <> 'sent'") == [(0,)]

            # The one-day alerts (an NPS answer, a check-in day) ended the next day, quietly, with
            # their tasks still open; a closed alert would have had one "resolved" message.
            states = pipeline.sql(
                "SELECT e.rule_id, s.alert_id, s.state, t.status FROM actions.alert_state s JOIN actions.tasks t "
                "USING (alert_id) JOIN (SELECT DISTINCT alert_id, rule_id FROM analytics.alert_events) e USING (alert_id)"
            )
            ended = {(rule, status) for rule, _, state, status in states if state == "ended"}
            assert {"nps_detractor", "onboarding_checkin"} <= {rule for rule, _ in ended}
            assert {status for _, status in ended} == {"open"}
            assert set(resolved) == {a for _, a, state, _ in states if state == "closed"}
            assert all(count == 1 for count in resolved.values())

            # One task per alert, created once in the sink, closed there once if its alert closed.
            tasks = dict(pipeline.sql("SELECT task_id, status FROM actions.tasks"))
            assert len(tasks) == len({alert_id for alert_id, _ in expected})
            created = Counter(d["task"]["task_id"] for d in receiver.deliveries if d["event"] == "task.created")
            assert set(created) == set(tasks) and set(created.values()) == {1}
            closes = [d for d in receiver.deliveries if d["event"] == "task.closed"]
            assert len(closes) == sum(status != "open" for status in tasks.values())
            assert len({d["task"]["remote_id"] for d in closes}) == len(closes)
