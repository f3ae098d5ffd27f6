"""SlackResource against a loopback Slack Web API, through the real slack-sdk client: an alert
through its channel (`actions.channels`: address, then one post) or through the whole delivery
protocol (`actions.protocol.deliver`, with its per-channel pacing and look-ups), and run failures."""

from __future__ import annotations

import json
import logging
import socket
import urllib.parse
import urllib.request

import dagster as dg
import pytest

from cs_pipeline.actions.channels import alert_outgoing, channel_for
from cs_pipeline.actions.protocol import deliver
from cs_pipeline.actions.store import ActionsStore, DeliveryRow
from cs_pipeline.messages import AlertMessage, render_alert
from cs_pipeline.resources.slack import Delivery, SlackResource
from tests.support import make_alert_message
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-1111-2222-SECRETsecret"
USERS = {"alice@example.com": "U0000ALICE"}


@pytest.fixture
def server():
    with SlackServer(users=USERS, token=TOKEN) as running:
        yield running


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'actions.sqlite'}"
    yield ActionsStore(url)
    ActionsStore.forget(url)


def slack(server: SlackServer, **overrides) -> SlackResource:
    config = dict(bot_token=TOKEN, api_url=server.url, outbox_dir="unused-outbox", timeout_seconds=2)
    config.update(overrides)
    return SlackResource(**config)


def post(resource: SlackResource, msg: AlertMessage) -> Delivery:
    """One alert through its channel, as the protocol posts it: addressed, then posted once."""
    channel, item = channel_for(resource), alert_outgoing(msg)
    address = channel.address(item)
    return address if isinstance(address, Delivery) else channel.post(item, address)


def send(resource: SlackResource, msg: AlertMessage, store: ActionsStore) -> DeliveryRow:
    """One alert through the delivery protocol; the store's row for it afterwards."""
    deliver(store, channel_for(resource), [alert_outgoing(msg)], store.delivery_rows(), settle_seconds=0.0)
    return store.delivery_rows()[(msg.alert_id, msg.notification_number)]


# ---------------------------------------------------------------------------------------------
# where a message goes


def test_alert_is_a_dm_to_the_owner_looked_up_by_email(server):
    msg = make_alert_message(owner_email="Alice@Example.com")
    delivery = post(slack(server), msg)

    assert delivery.destination == "slack" and delivery.status == "sent" and delivery.reason is None
    [posted] = server.messages
    assert posted["channel"] == "U0000ALICE"
    assert delivery.channel == posted["channel_id"] and posted["channel_id"].startswith("D")
    assert delivery.message_ts == posted["ts"]
    text, blocks = render_alert(msg)
    assert posted["text"] == text and posted["blocks"] == blocks
    assert posted["metadata"] == {
        "event_type": "cs_pipeline_alert",
        "event_payload": {"alert_id": msg.alert_id, "notification_number": 1},
    }


def test_owner_lookups_are_cached_per_resource(server):
    resource = slack(server)
    for number in (1, 2, 3):
        assert post(resource, make_alert_message(notification_number=number)).status == "sent"
    assert server.calls("users.lookupByEmail") == 1
    assert [m["metadata"]["event_payload"]["notification_number"] for m in server.messages] == [1, 2, 3]


@pytest.mark.parametrize(
    ("owner", "segment", "channel", "why"),
    [
        ("bob@example.com", "smb", "#cs-smb", "The owner bob@example.com was not found in Slack"),
        (None, "enterprise", "#cs-enterprise", "This account has no owner"),
        ("  ", "mid_market", "#cs-mid-market", "This account has no owner"),
        ("bob@example.com", "public_sector", "#customer-success", "The owner bob@example.com was not found"),
    ],
)
def test_unknown_or_missing_owner_goes_to_the_segment_channel_and_says_so(server, owner, segment, channel, why):
    delivery = post(slack(server), make_alert_message(owner_email=owner, segment=segment))

    assert delivery.status == "sent"
    assert delivery.reason.startswith(why) and delivery.reason.endswith(f"posted to {channel}")
    [posted] = server.messages
    assert posted["channel"] == channel and posted["channel_id"].startswith("C")
    note = posted["blocks"][1]["text"]["text"]
    assert why in note and f"went to {channel}" in note
    assert why in posted["text"]


def test_run_failure_goes_to_on_call_with_the_token_redacted(server):
    delivery = slack(server).deliver_run_failure(
        "daily_pipeline", "run-1", "2025-03-10", f"boom: Authorization: Bearer {TOKEN}", "http://dagster/runs/run-1"
    )
    assert delivery.status == "sent"
    [posted] = server.messages
    assert posted["channel"] == "#cs-pipeline-oncall"
    assert posted["metadata"]["event_type"] == "cs_pipeline_run_failure"
    assert posted["metadata"]["event_payload"]["run_id"] == "run-1"
    assert TOKEN not in json.dumps(posted) and "[SLACK_BOT_TOKEN]" in json.dumps(posted)


def test_messages_built_from_extreme_inputs_are_accepted(server):
    long = "&<x>" * 5000
    msg = make_alert_message(
        account_name=long, message=long, facts={f"{long[:50]}{i}": long for i in range(100)},
        task_steps=[long] * 100, top_movers=[(long, -1.0)] * 100,
    )
    delivery = post(slack(server), msg)
    assert delivery.status == "sent", delivery.reason  # the server checks Slack's block limits


# ---------------------------------------------------------------------------------------------
# retries: only where Slack cannot have posted


def test_a_rate_limited_post_waits_for_retry_after_and_posts_once(server, store):
    server.fail_next("chat.postMessage", 1, "rate_limited")
    row = send(slack(server), make_alert_message(), store)

    assert (row.status, row.reason) == ("sent", None)
    assert server.calls("chat.postMessage") == 2
    assert len(server.messages) == 1


def test_rate_limit_beyond_the_retries_is_a_failed_delivery(server, store):
    server.fail_next("chat.postMessage", 1, "rate_limited")
    row = send(slack(server, rate_limit_retries=0), make_alert_message(), store)

    assert row.status == "failed"
    assert row.reason == "rate limited by Slack (HTTP 429, Retry-After 1 s); retries exhausted"
    assert server.messages == []


def test_server_error_is_retried(server):
    server.fail_next("chat.postMessage", 1, "server_error")
    delivery = post(slack(server), make_alert_message())

    assert delivery.status == "sent"
    assert server.calls("chat.postMessage") == 2
    assert len(server.messages) == 1


def test_server_errors_beyond_the_retries_are_a_failed_delivery(server):
    server.fail_next("chat.postMessage", 1, "server_error")
    delivery = post(slack(server, server_error_retries=0), make_alert_message())
    assert (delivery.status, delivery.reason) == ("failed", "Slack answered HTTP 500 (internal_error)")


def test_connection_dropped_after_slack_posted_is_unsure_never_posted_twice(server, store):
    server.fail_next("chat.postMessage", 1, "drop_after_accept")
    delivery = post(slack(server), make_alert_message())

    assert delivery.status == "unsure"
    assert delivery.reason == "connection lost before Slack answered"
    assert delivery.channel == "U0000ALICE" and delivery.message_ts is None
    assert server.calls("chat.postMessage") == 1
    assert len(server.messages) == 1

    server.fail_next("chat.postMessage", 1, "drop_after_accept")  # the protocol looks it up after such a post
    row = send(slack(server), make_alert_message(alert_id="al_2"), store)
    assert (row.status, row.reason) == ("sent", "found in Slack after an interrupted attempt")
    assert row.message_ts == server.messages[1]["ts"] and row.channel == server.messages[1]["channel_id"]
    assert server.calls("chat.postMessage") == 2 and len(server.messages) == 2


def test_connection_dropped_before_slack_posted_is_looked_up_then_left_to_the_next_tick(server, store):
    server.fail_next("chat.postMessage", 1, "drop_before_accept")
    msg = make_alert_message()
    row = send(slack(server), msg, store)

    assert row.status == "failed"  # it cannot tell the two drops apart: not found in Slack, so not posted
    assert row.reason == "connection lost before Slack answered; not found in Slack 0 s later, so not posted"
    assert server.calls("chat.postMessage") == 1 and server.messages == []
    assert send(slack(server), msg, store).status == "sent"
    assert len(server.messages) == 1


def test_lookups_retry_a_dropped_connection(server):
    server.fail_next("users.lookupByEmail", 1, "drop_before_accept")
    delivery = post(slack(server), make_alert_message())

    assert delivery.status == "sent" and delivery.channel.startswith("D")
    assert server.calls("users.lookupByEmail") == 2


def test_no_answer_within_the_timeout_is_a_failed_delivery(server):
    server.hold_seconds = 3
    server.fail_next("chat.postMessage", 1, "timeout")
    delivery = slack(server, timeout_seconds=1).deliver_run_failure("job", "run-1", None, "error", None)

    assert delivery.status == "unsure"
    assert delivery.reason == "no answer within 1 s"
    assert server.calls("chat.postMessage") == 1


def test_an_unreachable_api_is_a_failed_delivery():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resource = SlackResource(bot_token=TOKEN, api_url=f"http://127.0.0.1:{port}/api/")
    delivery = resource.deliver_run_failure("job", "run-1", None, "error", None)
    alert = post(resource, make_alert_message())

    assert delivery.status == "failed" and alert.status == "failed"
    assert delivery.reason.startswith("could not connect to 127.0.0.1")
    assert alert.reason.startswith("owner lookup: could not connect to 127.0.0.1")


def test_unknown_channel_is_a_failed_delivery_naming_the_fix():
    with SlackServer(users=USERS, token=TOKEN, channels={"cs-smb": "C0000SMB001"}) as server:
        delivery = post(slack(server), make_alert_message(owner_email=None, segment="enterprise"))
    assert delivery.status == "failed" and delivery.channel == "#cs-enterprise"
    assert delivery.reason == "channel_not_found: create the channel or invite the bot to it"


# ---------------------------------------------------------------------------------------------
# the token


@pytest.mark.parametrize("revoked", [None, "account_inactive"])
def test_bad_token_fails_with_a_hint_and_never_shows_the_token(server, revoked, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    server.revoked_error = revoked
    token = TOKEN if revoked else "xoxb-9999-WRONG-token-value"
    resource = slack(server, bot_token=token)

    alert = post(resource, make_alert_message())
    failure = resource.deliver_run_failure("job", "run-1", None, "error", None)

    code = revoked or "invalid_auth"
    assert alert == Delivery("slack", "alice@example.com", "failed", f"owner lookup: {code}: check SLACK_BOT_TOKEN")
    assert failure == Delivery("slack", "#cs-pipeline-oncall", "failed", f"{code}: check SLACK_BOT_TOKEN")
    assert server.messages == []
    captured = capsys.readouterr()
    for text in (repr(alert), repr(failure), captured.out, captured.err, caplog.text, repr(resource), str(resource)):
        assert token not in text


def test_token_from_an_env_var_in_a_dagster_run(server, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    deliveries = []

    @dg.asset
    def notify(slack: SlackResource) -> None:
        deliveries.append(post(slack, make_alert_message()))

    resource = SlackResource(bot_token=dg.EnvVar("SLACK_BOT_TOKEN"), api_url=server.url)
    assert dg.materialize([notify], resources={"slack": resource}).success
    assert deliveries[0].status == "sent"
    assert TOKEN not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# outbox


def test_without_a_token_alerts_go_to_the_outbox_once_per_notification(tmp_path, capsys):
    resource = SlackResource(outbox_dir=str(tmp_path / "outbox"))
    msg = make_alert_message()

    first = post(resource, msg)
    again = post(resource, msg)

    path = tmp_path / "outbox" / f"{msg.alert_id}-1.json"
    assert first == again == Delivery("outbox", "alice@example.com", "sent", path=str(path))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no second file, no temp file left
    text, blocks = render_alert(msg)
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "channel": "alice@example.com", "text": text, "blocks": blocks,
        "alert_id": msg.alert_id, "notification_number": 1,
    }
    printed = capsys.readouterr().out
    assert printed.count(f"outbox → alice@example.com: {' '.join(text.split())[:200]}") == 2
    assert printed.count(f"\n  {path}\n") == 2

    post(resource, make_alert_message(notification_number=2, owner_email=None))
    second = json.loads((path.parent / f"{msg.alert_id}-2.json").read_text(encoding="utf-8"))
    assert second["channel"] == "#cs-smb"


def test_without_a_token_run_failures_go_to_the_outbox(tmp_path, capsys):
    resource = SlackResource(bot_token="  ", outbox_dir=str(tmp_path))
    delivery = resource.deliver_run_failure("daily", "run-1", "2025-03-10", "boom", None)
    assert (delivery.destination, delivery.status, delivery.channel) == ("outbox", "sent", "#cs-pipeline-oncall")
    content = json.loads((tmp_path / "run-failure-run-1.json").read_text(encoding="utf-8"))
    assert content["run_id"] == "run-1" and content["channel"] == "#cs-pipeline-oncall"


def test_an_unwritable_outbox_is_a_failed_delivery(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    delivery = post(SlackResource(outbox_dir=str(blocker)), make_alert_message())
    assert delivery.destination == "outbox" and delivery.status == "failed"
    assert delivery.reason.startswith("could not write")


# ---------------------------------------------------------------------------------------------
# the loopback server itself


def test_server_reads_form_bodies_get_queries_and_token_params(server):
    def call(method: str, query: dict | None = None, form: dict | None = None, token: str | None = None) -> dict:
        url = server.url + method + ("?" + urllib.parse.urlencode(query) if query else "")
        data = urllib.parse.urlencode(form).encode() if form else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=5) as answer:
            return json.loads(answer.read())

    assert call("auth.test", token=TOKEN)["user_id"]
    assert call("auth.test") == {"ok": False, "error": "not_authed"}
    assert call("auth.test", token="xoxb-other") == {"ok": False, "error": "invalid_auth"}
    found = call("users.lookupByEmail", query={"email": "alice@example.com", "token": TOKEN})
    assert found["user"]["id"] == "U0000ALICE" and found["user"]["profile"]["email"] == "alice@example.com"
    assert call("users.lookupByEmail", query={"email": "x@example.com"}, token=TOKEN)["error"] == "users_not_found"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    posted = call("chat.postMessage", form={"channel": "#general", "blocks": json.dumps(blocks), "token": TOKEN})
    assert posted["ok"] and posted["channel"].startswith("C") and posted["message"]["blocks"] == blocks
    assert call("chat.postMessage", form={"text": "hi", "token": TOKEN})["error"] == "channel_not_found"
    too_long = [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]
    refused = call("chat.postMessage", form={"channel": "#g", "blocks": json.dumps(too_long), "token": TOKEN})
    assert refused["error"] == "invalid_blocks" and refused["errors"]
    assert [m["ts"] for m in server.messages] == [posted["ts"]]
