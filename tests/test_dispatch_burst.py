"""A burst of 1,000 live alerts through the real dispatch job and slack-sdk, against the loopback
Slack server enforcing a per-channel posting limit with HTTP 429 and Retry-After.

Slack allows about 1 message per second per channel; the test scales time down (the server
allows LIMIT posts per second per channel, the job spaces posts to one channel by a little more
than 1/LIMIT s) so the burst takes seconds, not minutes, with the same shape.
"""

import datetime as dt
import itertools

import dagster as dg
import duckdb
import pytest

from cs_pipeline.logic.delivery import SEVERITY_ORDER
from cs_pipeline.resources.slack import SlackResource
from tests.support.alert_rows import alert, write_alerts
from tests.support.slack_server import SlackServer

pytestmark = pytest.mark.e2e

TOKEN = "xoxb-burst"
ALERTS = 1000
OWNERS = {f"csm{i:02d}@example.com": f"U{i:08d}" for i in range(8)}
LIMIT = 25.0  # posts per second per channel the server lets through
GAP = 1.2 / LIMIT  # the job's spacing of posts to one channel
RULES = ("renewal_at_risk", "ticket_surge", "no_login_20d", "health_drop", "upsell_ready", "onboarding_checkin")
TODAY = dt.date(2025, 5, 1)


def _burst() -> list[dict]:
    owners = itertools.cycle(OWNERS)
    rows = []
    for i in range(ALERTS):
        day = TODAY - dt.timedelta(days=1 + i % 2)  # two live days: older first within a severity
        rows.append(alert(f"al_{i:04d}", RULES[i % len(RULES)], f"acc_{i:04d}", day, next(owners), segment="smb"))
    return rows


def test_a_burst_of_1000_alerts_is_delivered_once_each_in_severity_order_within_the_channel_limit(tmp_path, monkeypatch):
    from cs_pipeline.definitions import resources
    from cs_pipeline.jobs.dispatch import dispatch_alerts

    warehouse = tmp_path / "w.duckdb"
    rows = _burst()
    write_alerts(warehouse, rows, [TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1)])
    (tmp_path / "dagster").mkdir()
    with (
        SlackServer(users=OWNERS, token=TOKEN, per_channel_limit_per_second=LIMIT) as server,
        dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance,
    ):
        monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("CS_PIPELINE_TODAY", TODAY.isoformat())
        monkeypatch.setenv("CS_PIPELINE_OUTBOX", str(tmp_path / "outbox"))
        job_resources = resources() | {
            "slack": SlackResource(bot_token=TOKEN, api_url=server.url, min_seconds_between_posts_per_channel=GAP),
        }
        result = dispatch_alerts.execute_in_process(resources=job_resources, instance=instance)
        assert result.success
        step = [e for e in result.all_node_events if e.step_key == "send_notifications" and e.is_successful_output][0]
        counts = {k: v.value for k, v in step.event_specific_data.metadata.items()}
        assert (counts["sent"], counts["failed"]) == (ALERTS, 0)

        # Every alert exactly once: 1,000 messages, 1,000 distinct (alert, notification) keys.
        keys = [(m["metadata"]["event_payload"]["alert_id"], m["metadata"]["event_payload"]["notification_number"])
                for m in server.messages]
        assert len(keys) == len(set(keys)) == ALERTS
        assert {k[0] for k in keys} == {r["alert_id"] for r in rows}

        # In each channel, critical before warning before info, and the older day first within a severity.
        by_id = {r["alert_id"]: r for r in rows}
        for user in OWNERS.values():
            posted = [by_id[m["metadata"]["event_payload"]["alert_id"]] for m in server.messages_to(user)]
            assert len(posted) == ALERTS // len(OWNERS)
            order = [(SEVERITY_ORDER[r["severity"]], r["partition_date"]) for r in posted]
            assert order == sorted(order)

        # As the server saw it, no channel ever took two posts closer than 1/LIMIT s.
        assert len(server.admitted_at) == len(OWNERS)
        for times in server.admitted_at.values():
            assert min(b - a for a, b in itertools.pairwise(times)) >= 1 / LIMIT
        assert server.rate_limited_posts == counts["rate_limited_answers"] <= 5

        # Recorded once each; a second run sends nothing.
        with duckdb.connect(str(warehouse), read_only=True) as con:
            assert con.execute("SELECT status, count(*) FROM actions.deliveries GROUP BY ALL").fetchall() == [("sent", ALERTS)]
        assert dispatch_alerts.execute_in_process(resources=job_resources, instance=instance).success
        assert len(server.messages) == ALERTS
