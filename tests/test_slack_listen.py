"""The buttons end to end: an alert posted by the delivery protocol, clicked through a loopback
Socket Mode server, applied by the listener to the actions store, the message edited in place."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading

import duckdb
import pytest

from cs_pipeline import cli
from cs_pipeline.cli.alerts import refresh_read_copy
from cs_pipeline.actions import notify
from cs_pipeline.actions import store as tables
from cs_pipeline.actions.channels import channel_for
from cs_pipeline.actions.listener import Listener, run_forever
from cs_pipeline.actions.store import ActionsStore
from cs_pipeline.resources.slack import SlackResource
from tests.support import make_alert_message
from tests.support.socket_mode import SocketModeSlackServer

TOKEN, APP_TOKEN = "xoxb-listen-test", "xapp-1-listen-test"
OWNERS = {"alice@example.com": "U001", "bob@example.com": "U002", "lead@example.com": "U009"}
TODAY = dt.date(2025, 4, 30)


@pytest.fixture
def server():
    with SocketModeSlackServer(users=OWNERS, token=TOKEN, app_token=APP_TOKEN, hold_seconds=8) as s:
        yield s


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_PIPELINE_TODAY", TODAY.isoformat())
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    url = f"sqlite:///{tmp_path / 'warehouse.actions.sqlite'}"
    yield ActionsStore(url)
    ActionsStore.forget(url)


def post_alerts(store: ActionsStore, server, ids: list[str]) -> dict[str, dict]:
    """Post one alert per id to alice through the delivery protocol, with its task; the posted messages by id."""
    slack = SlackResource(bot_token=TOKEN, api_url=server.url, min_seconds_between_posts_per_channel=0.0)
    messages = [make_alert_message(alert_id=a, owner_email="alice@example.com") for a in ids]
    assert notify.send_alerts(store, channel_for(slack), messages, settle_seconds=0.0).sent == len(ids)
    store.create_tasks([{"task_id": f"task_{a}", "alert_id": a, "rule_id": "no_login_20d", "account_id": "acc_0042",
                         "owner_email": "alice@example.com", "title": "Call Acme", "due_date": TODAY} for a in ids])
    return {m["metadata"]["event_payload"]["alert_id"]: m for m in server.messages}


def click_payload(message: dict, action_id: str, user: str, action_ts: str = "1714460000.000100") -> dict:
    """A `block_actions` payload as Slack sends it for a click on one of `message`'s buttons."""
    element = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e.get("action_id") == action_id)
    action = {"action_id": action_id, "block_id": "cs_pipeline_actions", "type": element["type"], "action_ts": action_ts}
    if element["type"] == "static_select":
        action["selected_option"] = element["options"][2]
    else:
        action["value"] = element["value"]
    return {
        "type": "block_actions", "user": {"id": user}, "actions": [action],
        "container": {"type": "message", "channel_id": message["channel_id"], "message_ts": message["ts"]},
        "channel": {"id": message["channel_id"]},
        "message": {"ts": message["ts"], "text": message["text"], "blocks": message["blocks"]},
    }


@pytest.fixture
def listener(store, server):
    listening = Listener(store, TOKEN, APP_TOKEN, server.url, leads="lead@example.com")
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(listening, stop), daemon=True)
    thread.start()
    assert server.wait_for(lambda: server.connections >= 1)
    yield listening
    stop.set()
    thread.join(timeout=10)


def actions_of(store: ActionsStore) -> list[tuple]:
    return sorted((r["alert_id"], r["action"], r["until"], r["reason"], r["by"]) for r in store.rows(tables.alert_actions))


def test_each_button_is_stored_and_edits_the_message_and_a_non_owner_is_refused(store, server, listener, capsys):
    posted = post_alerts(store, server, ["al_ack", "al_s7", "al_s30", "al_done", "al_nu"])
    clicks = {"al_ack": "cs_ack", "al_s7": "cs_snooze_7", "al_s30": "cs_snooze_30", "al_done": "cs_done",
              "al_nu": "cs_not_useful"}
    # Bob does not own these alerts: refused, nothing stored, nothing edited.
    refused = server.click(click_payload(posted["al_ack"], "cs_ack", "U002"))
    assert server.wait_for_ack(refused)
    assert actions_of(store) == [] and server.updates == []
    assert [(e["user"], "Not yours" in e["text"]) for e in server.ephemerals] == [("U002", True)]

    for alert_id, action_id in clicks.items():
        user = "U009" if alert_id == "al_s30" else "U001"  # a CS lead may act on anyone's alert
        assert server.wait_for_ack(server.click(click_payload(posted[alert_id], action_id, user)))
    assert actions_of(store) == [
        ("al_ack", "ack", None, None, "U001"),
        ("al_done", "done", None, None, "U001"),
        ("al_nu", "not_useful", None, "Threshold too sensitive", "U001"),
        ("al_s30", "snooze", TODAY + dt.timedelta(days=30), None, "U009"),
        ("al_s7", "snooze", TODAY + dt.timedelta(days=7), None, "U001"),
    ]
    tasks = {r["alert_id"]: r["status"] for r in store.rows(tables.tasks)}
    assert tasks == {"al_ack": "open", "al_s7": "open", "al_s30": "open", "al_done": "done", "al_nu": "dismissed"}

    edits = {u["ts"]: u for u in server.updates}
    assert len(edits) == 5
    for alert_id, message in posted.items():
        edit = edits[message["ts"]]
        status = next(b for b in edit["blocks"] if b.get("block_id") == "cs_pipeline_status")["elements"][0]["text"]
        who = "U009" if alert_id == "al_s30" else "U001"
        assert f"<@{who}>" in status and "UTC" in status
        buttons = any(b.get("block_id") == "cs_pipeline_actions" for b in edit["blocks"])
        assert buttons == (alert_id in ("al_ack", "al_s7", "al_s30"))  # done and not useful end the alert
    assert "Snoozed until 2025-05-30" in edits[posted["al_s30"]["ts"]]["text"]

    # The muted alerts notify no more; the rule report counts the marks.
    live = notify.without_muted(store, _alerts(list(clicks)), TODAY)
    assert live[1] == 5
    from cs_pipeline.actions.report import rules_report

    [row] = rules_report(store)
    assert (row["rule_id"], row["acknowledged"], row["done"], row["not_useful"], row["snoozed"]) == ("no_login_20d", 1, 1, 1, 2)
    assert row["useful_share"] == 0.67 and row["not_useful_reasons"] == "Threshold too sensitive"
    assert cli.main(["rules-report", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [row]


def _alerts(ids):
    import polars as pl

    return pl.DataFrame({"alert_id": ids, "episode_start": [TODAY] * len(ids)})


def test_a_click_while_a_run_holds_the_warehouse_is_stored_and_copied_later(store, server, listener, tmp_path):
    posted = post_alerts(store, server, ["al_1"])
    warehouse = tmp_path / "warehouse.duckdb"
    # A daily run (another process) holds the warehouse for writing.
    hold = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)"
    run = subprocess.Popen([sys.executable, "-c", hold, str(warehouse)], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "held"
        assert server.wait_for_ack(server.click(click_payload(posted["al_1"], "cs_done", "U001")))
        assert actions_of(store) == [("al_1", "done", None, None, "U001")]
        assert refresh_read_copy(store) is False  # the copy waits for the warehouse
    finally:
        run.kill()
        run.wait(timeout=10)
    assert refresh_read_copy(store) is True
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute('SELECT alert_id, action, "by" FROM actions.alert_actions').fetchall() == [("al_1", "done", "U001")]
        assert con.execute("SELECT status FROM actions.tasks").fetchall() == [("done",)]


def test_the_listener_reconnects_by_itself_when_the_websocket_drops(store, server, listener):
    posted = post_alerts(store, server, ["al_1"])
    server.disconnect_all()
    assert server.wait_for(lambda: server.connections >= 2, timeout=30)
    assert server.wait_for_ack(server.click(click_payload(posted["al_1"], "cs_ack", "U001")), timeout=15)
    assert actions_of(store) == [("al_1", "ack", None, None, "U001")]


def test_app_home_lists_the_csms_open_tasks(store, server, listener):
    post_alerts(store, server, ["al_1", "al_2"])
    assert server.wait_for_ack(server.event({"type": "app_home_opened", "user": "U001", "tab": "home"}))
    [view] = server.views
    assert view["user_id"] == "U001" and view["view"]["type"] == "home"
    assert "(2)" in view["view"]["blocks"][0]["text"]["text"]
    assert server.wait_for_ack(server.event({"type": "app_home_opened", "user": "U002", "tab": "home"}))
    assert "(0)" in server.views[-1]["view"]["blocks"][0]["text"]["text"]


def _listen(tmp_path, server) -> subprocess.Popen:
    env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": server.url,
           "CS_PIPELINE_WAREHOUSE": str(tmp_path / "warehouse.duckdb"), "CS_PIPELINE_TODAY": TODAY.isoformat()}
    return subprocess.Popen([sys.executable, "-m", "cs_pipeline.cli", "slack-listen"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_listener_killed_mid_click_applies_the_click_once_after_restart(store, server, tmp_path):
    posted = post_alerts(store, server, ["al_1"])
    first = _listen(tmp_path, server)
    try:
        assert server.wait_for(lambda: server.connections >= 1, timeout=30)
        server.fail_next("chat.update", 1, "timeout")  # the edit hangs: the click is stored, not yet acknowledged
        envelope = server.click(click_payload(posted["al_1"], "cs_ack", "U001"))
        assert server.wait_for(lambda: actions_of(store) != [], timeout=20)
        assert envelope not in server.acks
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    second = _listen(tmp_path, server)
    try:
        assert server.wait_for_ack(envelope, timeout=30)  # Slack sent it again; the new listener took it
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    assert actions_of(store) == [("al_1", "ack", None, None, "U001")]
    assert [u["ts"] for u in server.updates] == [posted["al_1"]["ts"]]
