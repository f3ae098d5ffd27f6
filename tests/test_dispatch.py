"""The dispatch job's sending: outbox row before the post, no duplicate across crashes, pacing."""

import datetime as dt
import itertools
import socket
import time

import duckdb
import pytest

from cs_pipeline import cli
from cs_pipeline.cli.alerts import read_alerts
from cs_pipeline.actions import notify, store as tables
from cs_pipeline.actions.channels import channel_for
from cs_pipeline.actions.store import ActionsStore
from cs_pipeline.jobs import dispatch
from cs_pipeline.logic.delivery import send_order
from cs_pipeline.resources.slack import SlackResource
from tests.support import make_alert_message
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-dispatch-test"
OWNERS = {"alice@example.com": "U001", "bob@example.com": "U002", "carol@example.com": "U003"}


@pytest.fixture
def server():
    with SlackServer(users=OWNERS, token=TOKEN) as s:
        yield s


@pytest.fixture
def con(tmp_path):
    """The actions store (SQLite) of a test."""
    url = f"sqlite:///{tmp_path / 'actions.sqlite'}"
    yield ActionsStore(url)
    ActionsStore.forget(url)


def send_all(store: ActionsStore, messages, slack: SlackResource):
    return notify.send_alerts(store, channel_for(slack), messages, settle_seconds=0.0)


def slack_for(server: SlackServer, gap: float = 0.0, digest: bool = False) -> SlackResource:
    return SlackResource(
        bot_token=TOKEN, api_url=server.url, min_seconds_between_posts_per_channel=gap,
        digest_severities=["info"] if digest else [],
    )


def alert_posts(server: SlackServer) -> list[str]:
    """The alert ids of the alert messages and digests posted (not the "resolved" notices)."""
    ids = []
    for m in server.messages:
        payload = m["metadata"]["event_payload"]
        if m["metadata"]["event_type"] == "cs_pipeline_alert":
            ids.append(payload["alert_id"])
        elif m["metadata"]["event_type"] == "cs_pipeline_digest":
            ids.extend(payload["alert_ids"])
    return ids


def rows(store) -> dict[str, tuple]:
    fields = ("status", "reason", "message_ts", "attempts", "idempotency_key")
    return {r["alert_id"]: tuple(r[f] for f in fields) for r in store.rows(tables.deliveries)}


def test_a_sent_message_is_recorded_with_its_idempotency_key(server, con):
    counts = send_all(con, [make_alert_message(alert_id="a1")], slack_for(server))
    assert counts.sent == 1 and len(server.messages) == 1
    status, _, ts, attempts, key = rows(con)["a1"]
    assert (status, ts, attempts, key) == ("sent", server.messages[0]["ts"], 1, "a1#1")


def test_dropped_after_accept_is_found_in_slack_within_the_same_dispatch(server, con):
    slack = slack_for(server)
    server.fail_next("chat.postMessage", 1, "drop_after_accept")
    first = send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert (first.found_posted, first.sent, first.failed) == (1, 0, 0)
    assert len(server.messages) == 1 and server.calls("chat.postMessage") == 1
    assert server.calls("conversations.history") == 1
    status, reason, ts, _, _ = rows(con)["a1"]
    assert status == "sent" and ts == server.messages[0]["ts"] and reason == "found in Slack after an interrupted attempt"
    again = send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert again.skipped == 1 and server.calls("conversations.history") == 1 and len(server.messages) == 1


def test_dropped_before_accept_is_looked_up_failed_then_sent_once(server, con):
    slack = slack_for(server)
    server.fail_next("chat.postMessage", 1, "drop_before_accept")
    first = send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert first.failed == 1 and server.messages == [] and server.calls("conversations.history") == 1
    status, reason, *_ = rows(con)["a1"]
    assert status == "failed" and reason.startswith("connection lost") and "not found in Slack" in reason
    again = send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert again.sent == 1 and len(server.messages) == 1 and rows(con)["a1"][0] == "sent"


def test_a_crash_between_posting_and_recording_yields_one_message(server, con, monkeypatch):
    slack = slack_for(server)
    real_record = ActionsStore.record_outcomes
    crashed = []

    def crash_once(self, table, outcomes):
        if any(delivery.status == "sent" for _, delivery in outcomes) and not crashed:
            crashed.append(outcomes)
            raise RuntimeError("worker killed")
        real_record(self, table, outcomes)

    monkeypatch.setattr(ActionsStore, "record_outcomes", crash_once)
    with pytest.raises(RuntimeError):
        send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert rows(con)["a1"][0] == "sending" and len(server.messages) == 1

    again = send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert again.found_posted == 1 and again.sent == 0
    assert len(server.messages) == 1 and rows(con)["a1"][0] == "sent"


def test_a_failed_check_keeps_the_delivery_unsure_and_posts_nothing(server, con):
    slack = slack_for(server)
    server.fail_next("chat.postMessage", 1, "drop_after_accept")
    server.fail_next("conversations.history", 3, "server_error")  # 1 + 2 retries
    counts = send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert (counts.sent, counts.failed, counts.found_posted) == (0, 1, 0) and len(server.messages) == 1
    status, reason, *_ = rows(con)["a1"]
    assert status == "unsure" and reason.startswith("could not check whether it was posted")
    assert TOKEN not in reason
    send_all(con, [make_alert_message(alert_id="a1")], slack)
    assert rows(con)["a1"][0] == "sent" and len(server.messages) == 1


def test_an_ambiguous_delivery_to_a_segment_channel_is_found_by_name(server, con):
    slack = slack_for(server)
    msg = make_alert_message(alert_id="a1", owner_email=None, segment="smb")
    server.fail_next("chat.postMessage", 1, "drop_after_accept")
    assert send_all(con, [msg], slack).found_posted == 1 and len(server.messages) == 1


def _burst(n: int) -> list:
    severities = ["info", "warning", "critical"]
    owners = list(OWNERS)
    return [
        make_alert_message(
            alert_id=f"al{i:04d}", severity=severities[i % 3], owner_email=owners[(i // 3) % 3],
            partition_date=dt.date(2025, 3, 10) - dt.timedelta(days=i % 2),
        )
        for i in range(n)
    ]


def test_a_burst_of_200_across_3_channels_is_paced_and_delivered_once_in_severity_order(con):
    limit = 20.0  # the server refuses a second post to a channel within 50 ms
    with SlackServer(users=OWNERS, token=TOKEN, per_channel_limit_per_second=limit) as server:
        alerts = _burst(200)
        ordered = sorted(alerts, key=lambda m: send_order(m.severity, m.partition_date, m.account_id, m.rule_id))
        counts = send_all(con, ordered, slack_for(server, gap=1.3 / limit))
        assert counts.sent == 200 and counts.failed == 0
        ids = [m["metadata"]["event_payload"]["alert_id"] for m in server.messages]
        assert sorted(ids) == sorted(m.alert_id for m in alerts), "each exactly once"
        severity = {m.alert_id: m.severity for m in alerts}
        rank = {"critical": 0, "warning": 1, "info": 2}
        for user in OWNERS.values():
            posted = [rank[severity[m["metadata"]["event_payload"]["alert_id"]]] for m in server.messages_to(user)]
            assert len(posted) > 60 and posted == sorted(posted)
        # Channels interleave (one channel's pause does not hold the others back): every run of
        # consecutive posts to one channel is short. No timing is asserted; speed is in bench/.
        channels = [m["channel"] for m in server.messages]
        longest_run = max(len(list(group)) for _, group in itertools.groupby(channels))
        assert longest_run <= 5, longest_run
        assert server.rate_limited_posts <= 3


def test_a_429_backs_off_its_channel_while_the_others_go_on(con):
    with SlackServer(users=OWNERS, token=TOKEN) as server:
        server.fail_next("chat.postMessage", 1, "rate_limited")  # Retry-After: 1
        alerts = [make_alert_message(alert_id=f"a{i}", owner_email=list(OWNERS)[i % 3]) for i in range(6)]
        started = time.monotonic()
        counts = send_all(con, alerts, slack_for(server, gap=0.01))
        assert counts.sent == 6 and counts.rate_limited == 1 and len(server.messages) == 6
        assert time.monotonic() - started >= 1.0
        first_channel = server.messages[-1]["channel"]
        # The refused channel's two messages come last, after the other channels went on.
        assert [m["channel"] for m in server.messages[-2:]] == [first_channel] * 2


@pytest.mark.e2e
def test_slack_down_for_several_runs_then_back_delivers_everything_once(tmp_path, monkeypatch):
    from tests.support import planted
    from tests.support.pipeline import planted_pipeline

    with planted_pipeline(tmp_path) as pipeline:
        assert pipeline.materialize(planted.FIRST, planted.LAST).success
        live = sum(1 for a in planted.EXPECTED_ALERTS if a[3] == "sent")

        pipeline.server.fail_next("chat.postMessage", 10_000, "server_error")
        tick = pipeline.tick()
        assert [r.tags["cs_pipeline/trigger"] for r in tick.run_requests] == ["alerts"]
        assert pipeline.dispatch(tick.run_requests[0].tags).success
        statuses = pipeline.sql("SELECT status, reason FROM actions.deliveries")
        assert len(statuses) == live and all(s == "failed" and "HTTP 500" in r for s, r in statuses)

        # Slack unreachable (connection refused) on the retry: still failed, and retried again.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{closed.getsockname()[1]}/api/"
        monkeypatch.setenv("SLACK_API_URL", dead)
        for _ in range(2):
            retry = pipeline.tick()
            assert [r.tags["cs_pipeline/trigger"] for r in retry.run_requests] == ["retry"]
            assert pipeline.dispatch(retry.run_requests[0].tags).success
            reasons = pipeline.sql("SELECT DISTINCT status, reason FROM actions.deliveries")
            assert all(s == "failed" and "could not connect" in r for s, r in reasons), reasons

        # Meanwhile a CSM acknowledges one alert and snoozes another.
        acked, snoozed = [r[0] for r in pipeline.sql("SELECT alert_id FROM actions.deliveries ORDER BY alert_id LIMIT 2")]
        until = (planted.TODAY + dt.timedelta(days=7)).isoformat()
        assert cli.main(["ack", acked, "--by", "csm@example.com", "--note", "on it"]) == 0
        assert cli.main(["snooze", snoozed, "--until", until, "--reason", "customer on holiday"]) == 0
        status = {a["alert_id"]: a["status"] for a in read_alerts()}
        assert (status[acked], status[snoozed]) == ("acknowledged", "snoozed")

        # Slack is back: the next retry delivers each other live alert exactly once.
        monkeypatch.setenv("SLACK_API_URL", pipeline.server.url)
        pipeline.server._faults.clear()
        retry = pipeline.tick()
        assert [r.tags["cs_pipeline/trigger"] for r in retry.run_requests] == ["retry"]
        assert pipeline.dispatch(retry.run_requests[0].tags).success
        ids = alert_posts(pipeline.server)
        assert len(ids) == len(set(ids)) == live - 2 and acked not in ids and snoozed not in ids
        assert pipeline.sql("SELECT count(*) FROM actions.deliveries WHERE status = 'sent'") == [(live - 2,)]
        assert pipeline.tick().run_requests == []

        # Once the snooze has passed, the snoozed alert notifies; the acknowledged one never does.
        monkeypatch.setenv("CS_PIPELINE_TODAY", until)
        monkeypatch.setenv("CS_PIPELINE_LIVE_WINDOW_DAYS", "30")
        assert pipeline.dispatch({}).success
        ids = alert_posts(pipeline.server)
        assert snoozed in ids and acked not in ids and len(ids) == len(set(ids))


def test_snooze_and_ack_of_an_unknown_alert_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as c:
        c.execute("CREATE SCHEMA analytics")
        c.execute("CREATE TABLE analytics.alert_events (alert_id VARCHAR, partition_date DATE)")
        c.execute("INSERT INTO analytics.alert_events VALUES ('al_known', '2025-04-30')")
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-04-30")
    assert cli.main(["ack", "al_nope", "--warehouse", str(warehouse)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown alert id 'al_nope'" in err
    assert cli.main(["snooze", "al_known", "--until", "2025-04-30", "--reason", "x", "--warehouse", str(warehouse)]) == 2
    assert "not after today" in capsys.readouterr().err
    assert cli.main(["snooze", "al_known", "--until", "2025-05-09", "--reason", "holiday", "--by", "a@x.com",
                     "--warehouse", str(warehouse)]) == 0
    with duckdb.connect(str(warehouse), read_only=True) as c:
        assert c.execute('SELECT alert_id, action, until::VARCHAR, reason, "by" FROM actions.alert_actions').fetchall() == [
            ("al_known", "snooze", "2025-05-09", "holiday", "a@x.com")
        ]


def _closing_warehouse(c, store: ActionsStore) -> None:
    """Alert a1 (sent) was open 04-27..04-28, a2 (sent) is still open on 04-30, a3 was never sent,
    a4 (sent) was open on 04-29 only. Days up to 04-28 are evaluated; `_evaluate_to_04_30` adds the rest."""
    c.execute("CREATE SCHEMA analytics")
    c.execute("""CREATE TABLE analytics.alert_events (alert_id VARCHAR, rule_id VARCHAR, account_id VARCHAR,
                 account_name VARCHAR, segment VARCHAR, owner_email VARCHAR, episode_start DATE, partition_date DATE,
                 rule_description VARCHAR, task_on_resolve VARCHAR)""")
    for alert_id, first, last in (("a1", "2025-04-27", "2025-04-28"), ("a2", "2025-04-27", "2025-04-30"),
                                  ("a3", "2025-04-27", "2025-04-28"), ("a4", "2025-04-29", "2025-04-29")):
        for day in ("2025-04-27", "2025-04-28", "2025-04-29", "2025-04-30"):
            if first <= day <= last:
                c.execute("INSERT INTO analytics.alert_events VALUES (?, 'no_login_20d', 'acc_1', 'Acme', 'smb', "
                          "'alice@example.com', '2025-04-27', ?, 'No login for 20 days', 'done')", [alert_id, day])
    c.execute("CREATE TABLE analytics.alert_evaluated_days AS SELECT DATE '2025-04-28' AS partition_date")
    from cs_pipeline.resources.slack import Delivery

    store.record_outcomes(tables.deliveries, [((a, 1), Delivery("slack", "U001", "sent")) for a in ("a1", "a2", "a4")])
    store.create_tasks([{"task_id": f"t{a}", "alert_id": a} for a in ("a1", "a2", "a4")])


def _evaluate_to_04_30(c) -> None:
    c.execute("INSERT INTO analytics.alert_evaluated_days VALUES ('2025-04-29'), ('2025-04-30')")


def _close_and_tell(c, store, slack) -> tuple[list[str], object]:
    closures, counts = dispatch.close_and_tell(store, c, slack, 2, settle_seconds=0.0)
    return [x.alert["alert_id"] for x in closures], counts


@pytest.fixture
def warehouse():
    with duckdb.connect(":memory:") as c:
        yield c


def test_a_resolved_alert_is_closed_its_task_done_and_its_owner_told_once(server, con, warehouse, monkeypatch):
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-04-30")
    _closing_warehouse(warehouse, con)
    slack = slack_for(server)
    closed, counts = _close_and_tell(warehouse, con, slack)
    assert (closed, counts.sent) == ([], 0)  # a1 and a2 are open on 04-28
    _evaluate_to_04_30(warehouse)
    closed, counts = _close_and_tell(warehouse, con, slack)
    assert closed == ["a1"] and counts.sent == 1
    state = {r["alert_id"]: (r["state"], str(r["last_open_day"]), r["closed_on"] and str(r["closed_on"]))
             for r in con.rows(tables.alert_state)}
    assert state == {"a1": ("closed", "2025-04-28", "2025-04-30"), "a2": ("open", "2025-04-30", None)}
    # a4 was already over when it was sent: not closed, its task stays open.
    assert {r["alert_id"]: r["status"] for r in con.rows(tables.tasks)} == {"a1": "done", "a2": "open", "a4": "open"}
    assert len(server.messages) == 1
    resolved = server.messages[0]
    assert resolved["channel"] == "U001" and "Resolved" in resolved["text"]
    assert resolved["metadata"] == {"event_type": "cs_pipeline_alert_resolved", "event_payload": {"alert_id": "a1", "notice": "closed"}}
    closed, counts = _close_and_tell(warehouse, con, slack)
    assert (closed, counts.sent) == ([], 0)
    assert len(server.messages) == 1


def test_a_resolved_notice_dropped_after_slack_posted_it_is_found_not_resent(server, con, warehouse, monkeypatch):
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-04-30")
    _closing_warehouse(warehouse, con)
    slack = slack_for(server)
    _close_and_tell(warehouse, con, slack)
    _evaluate_to_04_30(warehouse)
    server.fail_next("chat.postMessage", 1, "drop_after_accept")
    _, counts = _close_and_tell(warehouse, con, slack)
    assert counts.found_posted == 1 and counts.failed == 0 and len(server.messages) == 1
    _, counts = _close_and_tell(warehouse, con, slack)
    assert counts.sent == counts.found_posted == 0 and len(server.messages) == 1
    assert [(r["status"], r["message_ts"]) for r in con.rows(tables.notices)] == [("sent", server.messages[0]["ts"])]


def _dispatch_once(store, messages, slack) -> notify.Counts:
    channel = channel_for(slack)
    alone, digests, held = notify.plan_sending(store, channel, messages, slack)
    counts = notify.send_alerts(store, channel, alone, settle_seconds=0.0)
    counts.failed += held
    notify.send_digests(store, channel, digests, dt.date(2025, 4, 30), counts, settle_seconds=0.0)
    return counts


def test_by_default_every_alert_gets_its_own_message(server, con):
    slack = slack_for(server)
    msgs = [make_alert_message(alert_id=f"i{i}", severity="info", owner_email="alice@example.com") for i in range(12)]
    counts = _dispatch_once(con, msgs, slack)
    assert (counts.sent, counts.in_digests) == (12, 0)
    assert {m["metadata"]["event_type"] for m in server.messages} == {"cs_pipeline_alert"}


def test_info_alerts_go_in_one_digest_per_csm_and_the_rest_alone(server, con):
    slack = slack_for(server, digest=True)
    msgs = [make_alert_message(alert_id=f"i{i}", severity="info", owner_email="alice@example.com") for i in range(3)]
    msgs += [make_alert_message(alert_id="w1", severity="warning", owner_email="alice@example.com")]
    msgs += [make_alert_message(alert_id=f"b{i}", severity="info", owner_email="bob@example.com") for i in range(2)]
    counts = _dispatch_once(con, msgs, slack)
    assert (counts.sent, counts.in_digests, counts.failed) == (1, 5, 0)
    kinds = sorted((m["channel"], m["metadata"]["event_type"]) for m in server.messages)
    assert kinds == [("U001", "cs_pipeline_alert"), ("U001", "cs_pipeline_digest"), ("U002", "cs_pipeline_digest")]
    alice = next(m for m in server.messages if m["channel"] == "U001" and m["metadata"]["event_type"] == "cs_pipeline_digest")
    assert alice["metadata"]["event_payload"]["alert_ids"] == ["i0", "i1", "i2"] and "3 alerts" in alice["text"]
    assert {r[0] for r in rows(con).values()} == {"sent"}
    assert rows(con)["i0"][1].startswith("in the daily digest digest:alice@example.com:2025-04-30:1")
    assert _dispatch_once(con, msgs, slack).sent == 0 and len(server.messages) == 3


def test_beyond_the_daily_cap_alerts_go_to_the_digest(server, con):
    slack = SlackResource(bot_token=TOKEN, api_url=server.url, min_seconds_between_posts_per_channel=0.0,
                          max_alerts_per_csm_per_day=3)
    msgs = [make_alert_message(alert_id=f"w{i}", severity="warning") for i in range(5)]
    counts = _dispatch_once(con, msgs[:2], slack)
    assert counts.sent == 2
    counts = _dispatch_once(con, msgs, slack)
    assert (counts.sent, counts.in_digests) == (1, 2)
    digest = server.messages[-1]
    assert digest["metadata"]["event_payload"]["alert_ids"] == ["w3", "w4"]
    assert len(server.messages) == 4


def test_a_digest_dropped_after_slack_posted_it_is_found_and_not_sent_again(server, con):
    slack = slack_for(server, digest=True)
    msgs = [make_alert_message(alert_id=f"i{i}", severity="info") for i in range(2)]
    server.fail_next("chat.postMessage", 1, "drop_after_accept")
    server.fail_next("conversations.history", 3, "server_error")  # the same dispatch cannot tell: unsure
    counts = _dispatch_once(con, msgs, slack)
    assert counts.failed == 2 and len(server.messages) == 1
    assert {r["status"] for r in con.rows(tables.notices)} == {"unsure"}
    assert _dispatch_once(con, msgs, slack).in_digests == 0
    assert len(server.messages) == 1 and {r[0] for r in rows(con).values()} == {"sent"}
    assert rows(con)["i0"][2] == server.messages[0]["ts"]


def test_a_digest_that_surely_failed_is_sent_in_the_next_digest(server, con):
    slack = slack_for(server, digest=True)
    msgs = [make_alert_message(alert_id=f"i{i}", severity="info") for i in range(2)]
    server.fail_next("chat.postMessage", 3, "server_error")
    assert _dispatch_once(con, msgs, slack).failed == 2 and server.messages == []
    assert _dispatch_once(con, msgs, slack).in_digests == 2
    assert len(server.messages) == 1 and server.messages[0]["metadata"]["event_payload"]["digest_id"].endswith(":2")


def test_the_sensor_retries_after_failed_deliveries_or_a_failed_run_and_not_otherwise():
    import dagster as dg

    from cs_pipeline.sensors.alerts import _needs_retry

    def run(status, failed="0"):
        return dg.DagsterRun(job_name="dispatch_alerts", run_id="r1", status=status, tags={dispatch.FAILED_TAG: failed})

    assert _needs_retry(run(dg.DagsterRunStatus.SUCCESS, "3"))
    assert _needs_retry(run(dg.DagsterRunStatus.FAILURE))
    assert not _needs_retry(run(dg.DagsterRunStatus.SUCCESS, "0"))
    assert not _needs_retry(run(dg.DagsterRunStatus.STARTED, "3"))
