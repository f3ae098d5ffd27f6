"""The actions store on SQLite and on a real PostgreSQL (a fresh database per test): the delivery
protocol, clicks applied once, closing, and the warehouse's read copy."""

import datetime as dt

import duckdb
import pytest

from cs_pipeline.actions import notify, weekly
from cs_pipeline.actions import store as tables
from cs_pipeline.actions.channels import channel_for
from cs_pipeline.actions.store import ActionsStore
from cs_pipeline.logic.weekly_digest import Audience
from cs_pipeline.resources.slack import Delivery, SlackResource
from tests.support import make_alert_message
from tests.support.databases import _database
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-store-test"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'actions.sqlite'}"
        yield ActionsStore(url)
        ActionsStore.forget(url)
        return
    for url in _database("postgres", "PostgreSQL"):  # a fresh database, dropped afterwards
        yield ActionsStore(url)
        ActionsStore.forget(url)


def test_a_lost_answer_is_settled_in_the_same_dispatch_and_never_posted_twice(store):
    with SlackServer(users={"alice@example.com": "U001"}, token=TOKEN) as server:
        slack = SlackResource(bot_token=TOKEN, api_url=server.url, min_seconds_between_posts_per_channel=0.0)
        msgs = [make_alert_message(alert_id=f"a{i}") for i in range(3)]
        server.fail_next("chat.postMessage", 1, "drop_after_accept")
        counts = notify.send_alerts(store, channel_for(slack), msgs, settle_seconds=0.0)
        assert (counts.sent, counts.found_posted, counts.failed) == (2, 1, 0) and len(server.messages) == 3
        rows = {r["alert_id"]: r for r in store.rows(tables.deliveries)}
        assert {r["status"] for r in rows.values()} == {"sent"} and all(r["attempts"] == 1 for r in rows.values())
        assert notify.send_alerts(store, channel_for(slack), msgs, settle_seconds=0.0).skipped == 3
        assert len(server.messages) == 3
        where = {r["alert_id"]: (r["channel"], r["message_ts"]) for r in store.rows(tables.messages)}
        assert where == {m["metadata"]["event_payload"]["alert_id"]: (m["channel_id"], m["ts"]) for m in server.messages}


def test_an_action_with_a_click_key_is_applied_once_and_tasks_are_created_once(store):
    assert store.create_tasks([{"task_id": "t1", "alert_id": "a1", "owner_email": "alice@example.com"}]) == 1
    assert store.create_tasks([{"task_id": "t1", "alert_id": "a1", "owner_email": "alice@example.com"}]) == 0
    assert store.add_action("a1", "ack", by="U001", action_id="a1:cs_ack:1.2:U001", source="slack")
    assert not store.add_action("a1", "ack", by="U001", action_id="a1:cs_ack:1.2:U001", source="slack")
    assert store.add_action("a1", "snooze", until=dt.date(2025, 5, 7))  # a CLI action has no key
    assert store.add_action("a1", "snooze", until=dt.date(2025, 5, 8))
    assert [a.action for a in store.actions_by_alert(["a1"])["a1"]] == ["ack", "snooze", "snooze"]


def test_closing_and_the_warehouse_read_copy(store, tmp_path):
    store.record_outcomes(tables.deliveries, [(("a1", 1), Delivery("slack", "D1", "sent", message_ts="1.1"))])
    store.create_tasks([{"task_id": "t1", "alert_id": "a1", "due_date": dt.date(2025, 5, 1)}])
    store.mark_open({"a1": dt.date(2025, 4, 28)})
    store.mark_open({"a1": dt.date(2025, 4, 29)})
    store.close_alert("a1", "closed", dt.date(2025, 4, 29), dt.date(2025, 4, 30), "done")
    store.mark_open({"a1": dt.date(2025, 4, 30)})  # a closed alert stays closed
    [state] = store.rows(tables.alert_state)
    assert (state["state"], state["last_open_day"], state["closed_on"]) == ("closed", dt.date(2025, 4, 29), dt.date(2025, 4, 30))
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store.copy_to_warehouse(con)
        store.copy_to_warehouse(con)  # replaced, not appended
        assert con.execute("SELECT task_id, status, due_date FROM actions.tasks").fetchall() == [("t1", "done", dt.date(2025, 5, 1))]
        assert con.execute("SELECT alert_id, status, attempts FROM actions.deliveries").fetchall() == [("a1", "sent", 1)]
        assert con.execute("SELECT count(*) FROM actions.alert_actions").fetchone() == (0,)


def test_weekly_digest_parts_go_once_through_the_protocol_and_into_the_read_copy(store, tmp_path):
    audiences = [Audience(name="all", channel="#cs-leads"), Audience(name="smb", channel="#cs-smb-leads")]
    made = []

    def make(audience):
        made.append(audience.name)
        return f"digest for {audience.name}", [], b"\x89PNG\r\n\x1a\n" + audience.name.encode()

    with SlackServer(token=TOKEN) as server:
        slack = SlackResource(bot_token=TOKEN, api_url=server.url, min_seconds_between_posts_per_channel=0.0)
        server.fail_next("files.completeUploadExternal", 1, "server_error")  # retried by slack-sdk: nothing shared
        assert weekly.send_parts(store, slack, "2025-W18", audiences, make, settle_seconds=0.0) == 2
        assert weekly.send_parts(store, slack, "2025-W18", audiences, make, settle_seconds=0.0) == 0
        assert made == ["all", "smb"] and len(server.messages) == 2  # the second call renders and sends nothing
        assert sorted(f["filename"] for f in server.files.values() if f["completed"]) == [
            "portfolio-map-2025-W18-all.png", "portfolio-map-2025-W18-smb.png"]
    assert weekly.outcomes_of(store, "2025-W18", ["all", "smb"]) == {
        a: {"message": "sent", "map": "sent"} for a in ("all", "smb")}
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store.copy_to_warehouse(con, [tables.weekly_digests])
        rows = con.execute("SELECT audience, part, status, attempts, message_ts FROM actions.weekly_digests ORDER BY 1, 2").fetchall()
    file_ids = {f["filename"]: f["id"] for f in server.files.values() if f["completed"]}
    assert [r[:4] for r in rows] == [("all", "map", "sent", 1), ("all", "message", "sent", 1),
                                     ("smb", "map", "sent", 1), ("smb", "message", "sent", 1)]
    assert rows[0][4] == file_ids["portfolio-map-2025-W18-all.png"] and rows[1][4] == server.messages[0]["ts"]
