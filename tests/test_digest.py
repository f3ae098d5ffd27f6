"""Digests by severity (CS_PIPELINE_DIGEST_SEVERITIES) and the per-CSM daily cap, through the real
dispatch job and slack-sdk against the loopback Slack server."""

import datetime as dt

import dagster as dg
import duckdb
import pytest

from cs_pipeline import settings
from tests.support.alert_rows import alert, write_alerts
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-digest"
OWNERS = {"ana@example.com": "U0ANA", "ben@example.com": "U0BEN"}
DAY = dt.date(2025, 4, 30)


def _alerts() -> list[dict]:
    ana, ben = "ana@example.com", "ben@example.com"
    return [
        alert("al_c1", "renewal_at_risk", "acc_1", DAY, ana),  # critical
        alert("al_c2", "ticket_surge", "acc_2", DAY, ana),  # critical
        alert("al_c3", "low_health_day_90", "acc_3", DAY, ana),  # critical, over ana's cap of 2
        alert("al_w1", "no_login_20d", "acc_4", DAY, ana),  # warning
        alert("al_w2", "health_drop", "acc_5", DAY, ana),  # warning
        alert("al_i1", "upsell_ready", "acc_6", DAY, ana),  # info
        alert("al_c4", "renewal_at_risk", "acc_7", DAY, ben),
        alert("al_w3", "nps_detractor", "acc_8", DAY, ben),
    ]


def _dispatch(instance) -> dg.ExecuteInProcessResult:
    from cs_pipeline.definitions import resources
    from cs_pipeline.jobs.dispatch import dispatch_alerts

    return dispatch_alerts.execute_in_process(resources=resources(), instance=instance)


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / "dagster").mkdir()
    with SlackServer(users=OWNERS, token=TOKEN) as slack, dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        for name, value in {
            "CS_PIPELINE_WAREHOUSE": str(tmp_path / "w.duckdb"), "CS_PIPELINE_OUTBOX": str(tmp_path / "outbox"),
            "SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": slack.url, "CS_PIPELINE_TODAY": "2025-05-01",
        }.items():
            monkeypatch.setenv(name, value)
        write_alerts(tmp_path / "w.duckdb", _alerts(), [DAY])
        yield slack, instance, tmp_path / "w.duckdb"


def _posts(slack: SlackServer) -> dict[tuple[str, str], list[list[str]]]:
    """(channel, event type) -> the alert ids of each message, in the order posted."""
    found: dict[tuple[str, str], list[list[str]]] = {}
    for m in slack.messages:
        payload = m["metadata"]["event_payload"]
        ids = payload.get("alert_ids") or [payload["alert_id"]]
        found.setdefault((m["channel"], m["metadata"]["event_type"]), []).append(ids)
    return found


def test_by_default_every_live_alert_is_its_own_message(env):
    slack, instance, _ = env
    assert _dispatch(instance).success
    assert {k[1] for k in _posts(slack)} == {"cs_pipeline_alert"} and len(slack.messages) == 8


def test_chosen_severities_go_to_the_digest_and_the_cap_sends_the_rest_there_too(env, monkeypatch):
    slack, instance, warehouse = env
    monkeypatch.setenv("CS_PIPELINE_DIGEST_SEVERITIES", "info, warning")
    monkeypatch.setenv("CS_PIPELINE_MAX_ALERTS_PER_CSM_PER_DAY", "2")
    result = _dispatch(instance)
    assert result.success
    posts = _posts(slack)
    # ana: her first two critical alerts alone; the third critical (over the cap), her warnings
    # and her info alert in one digest, most severe first. ben: his critical alone, his warning in a digest.
    assert posts == {
        ("U0ANA", "cs_pipeline_alert"): [["al_c1"], ["al_c2"]],
        ("U0ANA", "cs_pipeline_digest"): [["al_c3", "al_w1", "al_w2", "al_i1"]],
        ("U0BEN", "cs_pipeline_alert"): [["al_c4"]],
        ("U0BEN", "cs_pipeline_digest"): [["al_w3"]],
    }
    metadata = [e for e in result.all_node_events if e.step_key == "send_notifications" and e.is_successful_output][0]
    counts = {k: v.value for k, v in metadata.event_specific_data.metadata.items()}
    assert (counts["sent"], counts["in_digests"], counts["failed"]) == (3, 5, 0)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = dict(con.execute("SELECT alert_id, destination || ':' || status FROM actions.deliveries").fetchall())
    assert rows == {a: "slack:sent" for a in ("al_c1", "al_c2", "al_c4")} | {
        a: "digest:sent" for a in ("al_c3", "al_w1", "al_w2", "al_i1", "al_w3")}

    # Re-running the dispatch sends nothing again, alone or in a digest.
    assert _dispatch(instance).success
    assert len(slack.messages) == 5


def test_the_digest_setting_is_validated():
    env = {"CS_PIPELINE_DIGEST_SEVERITIES": "info,warnings"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(ValueError, match=r"CS_PIPELINE_DIGEST_SEVERITIES: unknown severity 'warnings'"):
            settings.digest_severities()
        patch.setenv("CS_PIPELINE_DIGEST_SEVERITIES", "CRITICAL, info")
        assert settings.digest_severities() == ("info", "critical")
        patch.delenv("CS_PIPELINE_DIGEST_SEVERITIES")
        assert settings.digest_severities() == ()
        patch.setenv("CS_PIPELINE_DIGEST_INFO_ALERTS", "true")  # the old knob is refused, naming the new one
        with pytest.raises(ValueError, match="replaced by CS_PIPELINE_DIGEST_SEVERITIES"):
            settings.digest_severities()
