"""The real pipeline on the hand-planted data set: dlt, dbt, polars, Dagster, sensor, Slack.

Everything runs for real: files are loaded by dlt into a DuckDB file, dbt builds staging and
marts, the polars assets compute usage, health and alerts, the sensor is evaluated against the
Dagster instance, and the dispatch job talks to a loopback Slack-compatible server through
slack-sdk. The expected alerts in `tests/support/planted.py` were derived by hand from the
contract's rule table.
"""

import datetime as dt
import json
import subprocess
import sys

import pytest

from tests.support import planted
from tests.support.pipeline import TOKEN, alert_keys, planted_pipeline

pytestmark = pytest.mark.e2e

def posts_by_alert(server) -> dict[str, list[dict]]:
    """The alert and digest messages that mention each alert id (a digest lists several)."""
    found: dict[str, list[dict]] = {}
    for message in server.messages:
        metadata = message["metadata"]
        if metadata["event_type"] not in ("cs_pipeline_alert", "cs_pipeline_digest"):
            continue
        payload = metadata["event_payload"]
        for alert_id in payload.get("alert_ids") or [payload["alert_id"]]:
            found.setdefault(alert_id, []).append(message)
    return found


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    with planted_pipeline(tmp_path_factory.mktemp("e2e")) as harness:
        yield harness


def assert_each_partition_carries_its_own_figures(pipeline, result) -> None:
    """A range run's materializations: one per partition, each with the figures of its own day."""
    from cs_pipeline.cli.alerts import read_alerts

    def by_partition(asset: str) -> dict[str, dict]:
        events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
        return {e.partition: {k: v.value for k, v in e.materialization.metadata.items()} for e in events}

    days = [d.isoformat() for d in planted.days(planted.FIRST, planted.LAST)]
    for asset, table in (("account_daily_usage", "account_daily_usage"), ("account_health", "account_health"), ("alerts", "alert_events")):
        figures = by_partition(asset)
        assert sorted(figures) == days, asset
        rows = dict(pipeline.sql(f"SELECT partition_date::VARCHAR, count(*) FROM analytics.{table} GROUP BY 1"))
        assert {d: f["dagster/row_count"] for d, f in figures.items()} == {d: rows.get(d, 0) for d in days}, asset
    health = by_partition("account_health")
    for day, figures in health.items():
        assert sum(figures["bands"].values()) == figures["dagster/row_count"]
        assert figures["mean_score"] == round(figures["mean_score"], 3)
    [(mean,)] = pipeline.sql("SELECT avg(score) FROM analytics.account_health WHERE partition_date = '2025-03-10'")
    assert health["2025-03-10"]["mean_score"] == round(mean, 3)
    # The alerts asset's counts are those of `cs-pipeline alerts`: each suppressed alert once, on its last day.
    alerts = by_partition("alerts")
    listed = [a for a in read_alerts() if a["status"] == "suppressed_backfill"]
    assert {d: f["suppressed_backfill_alerts"] for d, f in alerts.items() if f["suppressed_backfill_alerts"]} == {
        d: n for d in days if (n := sum(a["partition_date"].isoformat() == d for a in listed))
    }
    assert sum(f["suppressed_backfill_alerts"] for f in alerts.values()) == len(listed) == sum(a[3] == "suppressed_backfill" for a in planted.EXPECTED_ALERTS)
    assert [d for d, f in alerts.items() if f["live_alerts"]] == ["2025-04-29", "2025-04-30"]


def test_history_load_then_dispatch_sends_exactly_the_live_alerts(pipeline):
    result = pipeline.materialize(planted.FIRST, planted.LAST)
    assert result.success
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    # 1 bad account of 11 and 1 bad contract of 12 pass the 5 % limit; events stay below it.
    assert checks[("raw/accounts", "rejected_share_below_limit")] is False
    assert checks[("raw/events", "rejected_share_below_limit")] is True
    assert checks[("account_health", "score_within_scale")] is True
    assert checks[("alerts", "one_row_per_rule_account_day")] is True
    assert_each_partition_carries_its_own_figures(pipeline, result)

    # The first dispatch meets a Slack outage for one message: it fails with a reason.
    pipeline.server.fail_next("chat.postMessage", 3, "server_error")
    tick = pipeline.tick()
    assert [r.tags["cs_pipeline/trigger"] for r in tick.run_requests] == ["alerts"]
    assert pipeline.dispatch(tick.run_requests[0].tags).success

    sent = {a for a in alert_keys() if a[3] == "sent"}
    failed = {a for a in alert_keys() if a[3] == "failed"}
    expected_live = {a[:3] for a in planted.EXPECTED_ALERTS if a[3] == "sent"}
    assert len(failed) == 1 and len(sent) == len(expected_live) - 1
    reason = pipeline.sql("SELECT reason FROM actions.deliveries WHERE status = 'failed'")[0][0]
    assert "500" in reason and TOKEN not in reason

    # The next tick retries the failed delivery; nothing already sent is sent again.
    retry = pipeline.tick()
    assert [r.tags["cs_pipeline/trigger"] for r in retry.run_requests] == ["retry"]
    assert pipeline.dispatch(retry.run_requests[0].tags).success
    assert alert_keys() == planted.EXPECTED_ALERTS
    posts = posts_by_alert(pipeline.server)
    assert len(posts) == len(expected_live) and all(len(p) == 1 for p in posts.values())


def test_messages_reach_the_owner_or_the_segment_channel(pipeline):
    posts = posts_by_alert(pipeline.server)
    assert all(len(p) == 1 for p in posts.values()), "one message per alert"
    by_alert = {alert_id: p[0] for alert_id, p in posts.items()}
    rows = pipeline.sql("SELECT DISTINCT alert_id, account_id, owner_email, rule_id FROM analytics.alert_events")
    for alert_id, account_id, owner, rule_id in rows:
        if alert_id not in by_alert:
            continue
        message = by_alert[alert_id]
        if owner:
            assert message["channel"] == planted.OWNERS[owner], account_id
        else:  # acc_tickets has no owner: its segment's channel
            assert message["channel"] == "#cs-mid-market"
        text = json.dumps(message["blocks"])
        assert account_id.replace("_", " ").title() in text and alert_id in text


def test_the_alert_message_explains_itself(pipeline):
    no_login = next(
        m for m in pipeline.server.messages
        if "acc_nologin" in json.dumps(m["blocks"]) and "no_login_20d" in json.dumps(m["blocks"])
    )
    text = json.dumps(no_login["blocks"])
    assert "25 days" in text  # last login 2025-04-05, partition 2025-04-30
    assert "2025-04-05" in text
    assert "2026-05-31" in text  # renewal date
    assert "Due" in text or "due" in text


def test_one_task_per_live_alert_with_its_playbook(pipeline):
    tasks = pipeline.sql(
        "SELECT t.alert_id, t.owner_email, t.due_date, t.steps, e.partition_date, e.rule_id FROM actions.tasks t "
        "JOIN (SELECT alert_id, max(partition_date) AS partition_date, any_value(rule_id) AS rule_id "
        "FROM analytics.alert_events GROUP BY alert_id) e USING (alert_id)"
    )
    assert len(tasks) == sum(1 for a in planted.EXPECTED_ALERTS if a[3] == "sent")
    from cs_pipeline.logic.config import load_health_model, load_rules

    model = load_health_model(pipeline.root / "config" / "health_model.yaml")
    rules = load_rules(pipeline.root / "config" / "rules.yaml", model)
    for _, owner, due, steps, partition_date, rule_id in tasks:
        rule = rules.by_id[rule_id]
        assert due == partition_date + dt.timedelta(days=rule.task.due_in_days)
        assert len(json.loads(steps)) == len(rule.task.steps) >= 3


def test_rejected_rows_are_kept_with_their_reason(pipeline):
    rows = {(e, k): r for e, k, r in pipeline.sql("SELECT entity, record_key, reason FROM raw.rejected_rows")}
    for key, reason in planted.REJECTED.items():
        assert reason in rows[key]
    line = pipeline.sql("SELECT line, source_file FROM raw.rejected_rows WHERE record_key = 'acc_bad'")[0]
    assert line[0] == 12 and line[1].endswith("accounts.csv")


def test_usage_counts_a_redelivered_event_once_and_reads_every_file_format(pipeline):
    logins = dict(
        pipeline.sql(
            "SELECT partition_date::VARCHAR, logins FROM analytics.account_daily_usage "
            "WHERE account_id = 'acc_healthy' AND partition_date BETWEEN '2025-03-02' AND '2025-03-05'"
        )
    )
    # Six activated users log in daily; the re-delivered login and the out-of-day one do not count.
    assert logins == {"2025-03-02": 6, "2025-03-03": 6, "2025-03-04": 6, "2025-03-05": 6}
    usage = pipeline.sql(
        "SELECT license_activation_rate, deployment_rate, active_users_30d, days_since_last_login "
        "FROM analytics.account_daily_usage WHERE account_id = 'acc_nologin' AND partition_date = '2025-04-30'"
    )[0]
    assert usage == (0.5, 0.6, 5, 25)


def test_rerunning_history_changes_nothing_and_sends_nothing(pipeline):
    before_alerts = pipeline.sql("SELECT * FROM analytics.alert_events ORDER BY alert_id, partition_date")
    before_health = pipeline.sql("SELECT count(*), sum(score) FROM analytics.account_health")
    assert pipeline.materialize(planted.FIRST, planted.LAST).success
    tick = pipeline.tick()
    assert len(tick.run_requests) == 1
    assert pipeline.dispatch(tick.run_requests[0].tags).success
    assert pipeline.sql("SELECT * FROM analytics.alert_events ORDER BY alert_id, partition_date") == before_alerts
    assert pipeline.sql("SELECT count(*), sum(score) FROM analytics.account_health") == before_health
    assert pipeline.sql("SELECT count(*) FROM raw.events")[0][0] == pipeline.sql(
        "SELECT count(DISTINCT (event_date, event_id)) FROM raw.events"
    )[0][0]
    posts = posts_by_alert(pipeline.server)
    assert len(posts) == sum(1 for a in planted.EXPECTED_ALERTS if a[3] == "sent")
    assert all(len(p) == 1 for p in posts.values())
    assert alert_keys() == planted.EXPECTED_ALERTS
    # Nothing new since: the sensor skips.
    assert pipeline.tick().run_requests == []


def test_backfilling_one_past_partition_is_deterministic_and_silent(pipeline):
    day = dt.date(2025, 3, 10)
    before = pipeline.sql("SELECT * FROM analytics.alert_events WHERE partition_date = ? ORDER BY alert_id", [day])
    assert pipeline.materialize(day, day).success
    assert pipeline.sql("SELECT * FROM analytics.alert_events WHERE partition_date = ? ORDER BY alert_id", [day]) == before
    assert any(r[1] == "nps_detractor" for r in before)
    # The materialization has no live alerts, so the sensor launches nothing.
    assert pipeline.tick().run_requests == []
    assert alert_keys() == planted.EXPECTED_ALERTS


def test_cli_lists_alerts_and_tasks_as_json(pipeline):
    def cli(*args: str) -> list[dict]:
        done = subprocess.run(
            [sys.executable, "-m", "cs_pipeline.cli", *args, "--format", "json", "--warehouse", str(pipeline.warehouse)],
            capture_output=True, text=True, check=True,
        )
        return json.loads(done.stdout)

    alerts = cli("alerts")
    assert {(a["rule_id"], a["account_id"], a["episode_start"], a["status"]) for a in alerts} == planted.EXPECTED_ALERTS
    assert set(alerts[0]) == {"alert_id", "rule_id", "account_id", "partition_date", "episode_start", "severity", "status", "task_id"}
    tasks = cli("tasks")
    assert {t["alert_id"] for t in tasks} == {a["alert_id"] for a in alerts if a["status"] == "sent"}
    assert all(a["task_id"] for a in alerts if a["status"] == "sent")
