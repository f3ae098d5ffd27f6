"""Going live on the last week, then loading the whole history, never re-sends or doubles anything.

Issue 14's HIGH defect, end to end through `cs-pipeline run` (dlt, dbt, polars, Dagster, the
dispatch job, slack-sdk against the loopback Slack server) on the planted data set:

    cs-pipeline run --from <last week> --to <yesterday>     # go live
    cs-pipeline run --from <first day> --to <yesterday>     # then the whole history

Before the fix, the first run opened every ongoing episode on its own first day; the second found
the true starts, new alert ids, and sent their messages and created their tasks a second time.
"""

import datetime as dt
import importlib

import pytest

import cs_pipeline.definitions
from cs_pipeline import cli
from cs_pipeline.cli.alerts import read_alerts
from cs_pipeline.cli.running import FALLBACK_INSTANCE_YAML
from tests.support import planted
from tests.support.pipeline import alert_keys, planted_pipeline

pytestmark = pytest.mark.e2e

WEEK_BEFORE = planted.LAST - dt.timedelta(days=6)


def run(pipeline, first: dt.date, last: dt.date, capsys) -> str:
    code = cli.main(["run", "--data-dir", str(pipeline.root / "data"), "--from", first.isoformat(), "--to", last.isoformat()])
    out = capsys.readouterr()
    # Exit code 3: the runs succeeded, but the planted exports trip two rejected-rows checks on purpose.
    assert code == 3, out.err
    assert out.err.strip() == ("cs-pipeline: the runs succeeded, but 2 asset checks failed "
                               "(raw/accounts rejected_share_below_limit, raw/contracts rejected_share_below_limit)")
    return out.out


def state(pipeline) -> tuple[list, set, set]:
    alert_messages = [m for m in pipeline.server.messages if m["metadata"]["event_type"] == "cs_pipeline_alert"]
    tasks = set(pipeline.sql("SELECT task_id, alert_id FROM actions.tasks"))
    live = {a["alert_id"] for a in read_alerts() if a["status"] == "sent"}
    return alert_messages, tasks, live


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(FALLBACK_INSTANCE_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with planted_pipeline(tmp_path) as harness:
        # `cs-pipeline run` is a fresh process, whose definitions read this environment; the
        # partitions stay those of this test process (tests/conftest.py), which start earlier.
        importlib.reload(cs_pipeline.definitions)
        yield harness


def test_going_live_on_the_last_week_then_loading_the_history_sends_nothing_twice(pipeline, capsys):
    said = run(pipeline, WEEK_BEFORE, planted.LAST, capsys)
    # The week's first day continues episodes that began before it: the run reaches back to the
    # data's first day (the first partition), and says so.
    assert f"Starting at {planted.FIRST}: the days {planted.FIRST} .. {WEEK_BEFORE - dt.timedelta(days=1)} were never evaluated" in said
    messages, tasks, live = state(pipeline)
    assert messages and tasks and live
    assert alert_keys() == planted.EXPECTED_ALERTS  # every episode starts on its true first day

    said = run(pipeline, planted.FIRST, planted.LAST, capsys)
    assert "Starting at" not in said
    assert state(pipeline) == (messages, tasks, live)
    assert alert_keys() == planted.EXPECTED_ALERTS
    assert "Dispatch: 0 tasks created, 0 notifications sent" in said


def test_moving_the_first_partition_earlier_keeps_every_delivered_alert(pipeline, capsys, monkeypatch):
    """Going live with the first partition on the last week, then moving it to the data's first
    day and loading the history: each alert that has a message and a task keeps its id; the older
    days of its condition become an earlier, silent episode. Situations only the history reveals
    (a last login weeks ago) are new alerts, each sent once."""
    monkeypatch.setenv("CS_PIPELINE_START_DATE", WEEK_BEFORE.isoformat())
    said = run(pipeline, WEEK_BEFORE, planted.LAST, capsys)
    assert "Starting at" not in said
    messages, tasks, live = state(pipeline)
    situations = {(a["rule_id"], a["account_id"]): a["alert_id"] for a in read_alerts() if a["status"] == "sent"}
    assert ("renewal_at_risk", "acc_renewal") in situations and len(situations) == len(live)

    monkeypatch.delenv("CS_PIPELINE_START_DATE")  # the first partition is the data's first day again
    run(pipeline, planted.FIRST, planted.LAST, capsys)
    messages_after, tasks_after, live_after = state(pipeline)
    assert tasks <= tasks_after and live <= live_after
    assert messages_after[: len(messages)] == messages
    sent_ids = [m["metadata"]["event_payload"]["alert_id"] for m in messages_after]
    new_ids = sent_ids[len(messages):]
    assert not set(new_ids) & set(sent_ids[: len(messages)])  # no alert sent twice
    by_id = {a["alert_id"]: (a["rule_id"], a["account_id"]) for a in read_alerts()}
    assert not {by_id[i] for i in new_ids} & set(situations)  # no situation messaged under a second id
    assert len(tasks_after) - len(tasks) == len(set(new_ids))  # one task per new alert, none doubled
    keys = alert_keys()
    assert ("renewal_at_risk", "acc_renewal", WEEK_BEFORE.isoformat(), "sent") in keys
    assert ("renewal_at_risk", "acc_renewal", "2025-03-09", "suppressed_backfill") in keys
