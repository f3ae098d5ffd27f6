"""The weekly digest to CS leads through the real job and slack-sdk against the loopback Slack
server: one message per audience and week with the portfolio map in its thread, never twice."""

import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from cs_pipeline.jobs.weekly_digest import previous_week, weekly_digest, weekly_digest_schedule
from cs_pipeline.logic.config import ConfigError
from cs_pipeline.logic.weekly_digest import load_digest_config
from tests.support.portfolio_warehouse import WEEK, write_portfolio_warehouse
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
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield tmp_path, warehouse, instance


def _run(instance) -> dg.ExecuteInProcessResult:
    from cs_pipeline.definitions import resources

    return weekly_digest.execute_in_process(resources=resources(), instance=instance, raise_on_error=False)


def _rows(warehouse) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT week, audience, status, image_status, attempts FROM actions.weekly_digests ORDER BY 2").fetchall()


def test_delivered_once_per_week_with_the_map_and_a_rerun_sends_nothing(env, monkeypatch):
    _, warehouse, instance = env
    with SlackServer(token=TOKEN) as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("SLACK_API_URL", slack.url)
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
    assert _rows(warehouse) == [(WEEK, "all", "sent", "sent", 1), (WEEK, "enterprise", "sent", "sent", 1)]


def test_a_post_that_reached_slack_before_the_connection_dropped_is_found_not_resent(env, monkeypatch):
    _, warehouse, instance = env
    with SlackServer(token=TOKEN) as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("SLACK_API_URL", slack.url)
        slack.fail_next("chat.postMessage", kind="drop_after_accept")
        assert not _run(instance).success  # Slack has the enterprise digest; the run could not know
        assert len(slack.messages) == 2
        assert _run(instance).success
        assert len(slack.messages) == 2  # found in the channel's history, not posted again
        assert all(len(slack.files_in(m["channel_id"])) == 1 for m in slack.messages)
    assert [r[:4] for r in _rows(warehouse)] == [(WEEK, "all", "sent", "sent"), (WEEK, "enterprise", "sent", "sent")]


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
