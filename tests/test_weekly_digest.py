"""The weekly digest to CS leads through the real job and slack-sdk against the loopback Slack
server: one message per audience and week with the portfolio map in its thread, never twice."""

import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from cs_pipeline import settings
from cs_pipeline.actions.store import ActionsStore, weekly_digests
from cs_pipeline.jobs.weekly_digest import previous_week, weekly_digest, weekly_digest_schedule
from cs_pipeline.logic.config import ConfigError
from cs_pipeline.logic.weekly_digest import load_digest_config
from tests.support.portfolio_warehouse import WEEK, write_portfolio_warehouse
from cs_pipeline.resources.slack import EVENT_TYPE_WEEKLY_DIGEST, SlackResource
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-weekly"
PNG = b"\x89PNG\r\n\x1a\n"
AUDIENCES = """\
audiences:
  - name: enterprise
    channel: "#cs-enterprise-leads"
    segments: [enterprise]
  - name: all
    channel: "#cs-leads"
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    warehouse = write_portfolio_warehouse(tmp_path / "w.duckdb")
    (tmp_path / "digest.yaml").write_text(AUDIENCES)
    for name, value in {
        "CS_PIPELINE_WAREHOUSE": str(warehouse), "CS_PIPELINE_OUTBOX": str(tmp_path / "outbox"),
        "CS_PIPELINE_TODAY": "2025-05-06", "CS_PIPELINE_WEEKLY_DIGEST": str(tmp_path / "digest.yaml"),
        "CS_PIPELINE_SETTLE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield tmp_path, warehouse, instance
    ActionsStore.forget(settings.actions_url())


def _run(instance) -> dg.ExecuteInProcessResult:
    from cs_pipeline.definitions import resources

    return weekly_digest.execute_in_process(resources=resources(), instance=instance, raise_on_error=False)


def _rows(warehouse) -> list[tuple]:
    """The warehouse's read copy of the store's weekly_digests: (audience, part, status, attempts)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT audience, part, status, attempts FROM actions.weekly_digests WHERE week = ? "
                           "ORDER BY 1, 2", [WEEK]).fetchall()


ALL_SENT = [("all", "map", "sent", 1), ("all", "message", "sent", 1),
            ("enterprise", "map", "sent", 1), ("enterprise", "message", "sent", 1)]


def _slack_env(monkeypatch, slack: SlackServer) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack.url)


def _one_digest_and_map_each(slack: SlackServer) -> None:
    assert sorted(m["channel"] for m in slack.messages) == ["#cs-enterprise-leads", "#cs-leads"]
    for message in slack.messages:
        files = slack.files_in(message["channel_id"])
        assert len(files) == 1 and files[0]["thread_ts"] == message["ts"] and files[0]["data"].startswith(PNG)


def test_delivered_once_per_week_with_the_map_and_a_rerun_sends_nothing(env, monkeypatch):
    _, warehouse, instance = env
    with SlackServer(token=TOKEN) as slack:
        _slack_env(monkeypatch, slack)
        assert _run(instance).success
        assert [m["channel"] for m in slack.messages] == ["#cs-enterprise-leads", "#cs-leads"]
        for message in slack.messages:
            assert message["metadata"]["event_type"] == "cs_pipeline_weekly_digest"
            assert message["metadata"]["event_payload"]["week"] == WEEK
            files = slack.files_in(message["channel_id"])
            assert len(files) == 1 and files[0]["data"].startswith(PNG)
            assert files[0]["thread_ts"] == message["ts"] and files[0]["mimetype"] == "image/png"
        enterprise, everyone = (json.dumps(m["blocks"]) for m in slack.messages)
        assert "Account 04" in enterprise and "was green" in enterprise  # went red during the week
        assert "6 live accounts" in enterprise and "12 live accounts" in everyone  # smb is only in the `all` digest
        assert "ana@example.com" in everyone and "overdue" in everyone  # follow-through by CSM

        calls = (slack.calls("chat.postMessage"), slack.calls("files.getUploadURLExternal"))
        assert _run(instance).success
        assert (slack.calls("chat.postMessage"), slack.calls("files.getUploadURLExternal")) == calls
        assert len(slack.messages) == 2 and sum(f["completed"] for f in slack.files.values()) == 2
    assert _rows(warehouse) == ALL_SENT


def test_a_post_whose_answer_was_lost_is_found_in_slack_in_the_same_run_not_resent(env, monkeypatch):
    _, warehouse, instance = env
    with SlackServer(token=TOKEN) as slack:
        _slack_env(monkeypatch, slack)
        slack.fail_next("chat.postMessage", kind="drop_after_accept")  # Slack has it; the run cannot know
        slack.fail_next("files.completeUploadExternal", kind="drop_after_accept")  # the map too
        assert _run(instance).success
        assert slack.calls("chat.postMessage") == 2 and slack.calls("files.completeUploadExternal") == 2
        assert slack.calls("conversations.history") == 1 and slack.calls("conversations.replies") == 1
        _one_digest_and_map_each(slack)
        assert _run(instance).success
        assert slack.calls("chat.postMessage") == 2 and slack.calls("files.getUploadURLExternal") == 2
    assert _rows(warehouse) == ALL_SENT


def test_an_attempt_left_unsure_is_looked_up_by_the_next_run_before_anything_is_posted(env, monkeypatch):
    _, warehouse, instance = env
    with SlackServer(token=TOKEN) as slack:
        _slack_env(monkeypatch, slack)
        slack.fail_next("chat.postMessage", kind="drop_after_accept")
        slack.fail_next("conversations.list", 3, "server_error")  # and Slack cannot be asked (2 retries)
        result = _run(instance)
        assert not result.success  # the enterprise digest stays unsure: no map, no second post on a guess
        assert "not delivered to enterprise" in str(result.failure_data_for_node("send_weekly_digests").error)
        assert _rows(warehouse)[2:] == [("enterprise", "message", "unsure", 1)]
        assert len(slack.messages) == 2 and len(slack.files) == 1
        assert _run(instance).success  # found in the channel's history, then only its map goes
        assert slack.calls("chat.postMessage") == 2
        _one_digest_and_map_each(slack)
    assert _rows(warehouse) == ALL_SENT


@pytest.mark.parametrize("posted", [True, False])
def test_an_attempt_left_sending_by_a_run_that_died_is_posted_once_in_all(env, monkeypatch, posted):
    _, warehouse, instance = env
    store = ActionsStore(settings.actions_url())
    with SlackServer(token=TOKEN) as slack:
        _slack_env(monkeypatch, slack)
        store.begin_attempts(weekly_digests, [((WEEK, "all", "message"), "slack", "#cs-leads")])
        if posted:  # the run died after Slack took the post, before recording it
            resource = SlackResource(bot_token=TOKEN, api_url=slack.url)
            payload = {"week": WEEK, "audience": "all"}
            assert resource.post("#cs-leads", "digest", [], EVENT_TYPE_WEEKLY_DIGEST, payload).status == "sent"
        assert _run(instance).success
        assert slack.calls("chat.postMessage") == 2  # with the one before the crash, or the one now
        _one_digest_and_map_each(slack)
    tries = 1 if posted else 2  # the attempt that died counts, found or not
    assert _rows(warehouse) == [r if r[:2] != ("all", "message") else (*r[:3], tries) for r in ALL_SENT]


def test_without_a_token_the_digest_and_its_image_go_to_the_outbox_once(env):
    tmp_path, warehouse, instance = env
    assert _run(instance).success
    written = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert written == [f"weekly-digest-{WEEK}-all.json", f"weekly-digest-{WEEK}-all.png",
                       f"weekly-digest-{WEEK}-enterprise.json", f"weekly-digest-{WEEK}-enterprise.png"]
    assert (tmp_path / "outbox" / f"weekly-digest-{WEEK}-all.png").read_bytes().startswith(PNG)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "outbox").iterdir()}
    assert _run(instance).success
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "outbox").iterdir()} == stamps


def test_the_schedule_asks_for_last_week_once_by_run_key():
    monday = dt.datetime(2025, 5, 5, 9, tzinfo=dt.UTC)
    context = dg.build_schedule_context(scheduled_execution_time=monday)
    request = weekly_digest_schedule(context)
    assert request.run_key == f"weekly-digest-{WEEK}"
    assert request.run_config["ops"]["send_weekly_digests"]["config"]["week"] == WEEK
    assert previous_week(dt.date(2025, 5, 11)) == WEEK  # a Sunday still reports on the week before it


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("audiences:\n  - name: x\n    channel: '#a'\n    segments: [startup]\n", "digest.yaml:4: audiences[0].segments"),
        ("audiences:\n  - name: x\n    channel: 'cs leads'\n", "digest.yaml:3: audiences[0].channel"),
        ("audiences:\n  - name: x\n    channel: '#a'\n  - name: x\n    channel: '#b'\n", "used twice"),
        ("audience: []\n", "digest.yaml:1: audience"),
    ],
)
def test_bad_audiences_file_is_one_line_naming_file_line_and_field(tmp_path, text, expected):
    path = tmp_path / "digest.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_digest_config(path)
    message = str(error.value)
    assert expected in message and "\n" not in message, message
