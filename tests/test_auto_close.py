"""Auto-close per rule (`task.on_resolve`), through the real dispatch job, Slack and task sinks.

A renewal at risk that clears is `done`, an upsell moment that passes is `obsolete`, and an
onboarding check-in (a one-day event) ends quietly with its task kept open. The owner hears
"resolved" once for the first two, and the Salesforce and webhook sinks close their copies
with the matching outcome.
"""

import datetime as dt
import json

import dagster as dg
import pytest

from cs_pipeline.logic.config import ConfigError, load_health_model, load_rules
from cs_pipeline import settings
from tests.support.alert_rows import alert, write_alerts
from tests.support.crm_servers import SalesforceCrmServer, WebhookReceiver
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-auto-close"
OWNERS = {"ana@example.com": "U0ANA", "ben@example.com": "U0BEN"}
D1, D2 = dt.date(2025, 4, 28), dt.date(2025, 4, 29)
FAST = "timeout_seconds: 2\n    retry_max_seconds: 2\n    backoff_seconds: 0.01"


def dispatch(instance) -> dg.ExecuteInProcessResult:
    from cs_pipeline.definitions import resources
    from cs_pipeline.jobs.dispatch import dispatch_alerts

    return dispatch_alerts.execute_in_process(resources=resources(), instance=instance)


@pytest.fixture(params=["sqlite", "postgres"])
def actions_url(request):
    """The actions store: SQLite beside the warehouse (the default), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    from cs_pipeline.actions.store import ActionsStore
    from tests.support.databases import _database

    for url in _database("postgres", "PostgreSQL"):  # dropped after the test
        yield url
        ActionsStore.forget(url)


def test_each_rule_closes_its_task_as_configured_and_sinks_get_the_same_outcome(tmp_path, monkeypatch, actions_url):
    if actions_url:
        monkeypatch.setenv("CS_PIPELINE_ACTIONS_URL", actions_url)
    warehouse = tmp_path / "w.duckdb"
    (tmp_path / "dagster").mkdir()
    accounts = [{"Id": a, "Name": a} for a in ("acc_r", "acc_u", "acc_c", "acc_n")]
    users = [{"Id": "005000000000001AAA", "Email": "ana@example.com", "IsActive": True, "Name": "Ana"}]
    with (
        SlackServer(users=OWNERS, token=TOKEN) as slack,
        SalesforceCrmServer(users=users, accounts=accounts, retry_after="0") as salesforce,
        WebhookReceiver() as receiver,
        dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance,
    ):
        sinks = tmp_path / "task_sinks.yaml"
        sinks.write_text(f"""sinks:
  crm:
    type: salesforce
    instance_url: {salesforce.url}
    token_env: SF_TOKEN
    closed_status: {{done: Completed, obsolete: Deferred}}
    {FAST}
  hooks:
    type: webhook
    url: {receiver.hook_url}
    secret_env: HOOK_SECRET
    {FAST}
rules:
  "*": [crm, hooks]
""")
        for name, value in {
            "CS_PIPELINE_WAREHOUSE": str(warehouse), "CS_PIPELINE_OUTBOX": str(tmp_path / "outbox"),
            "CS_PIPELINE_TASK_SINKS": str(sinks), "SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": slack.url,
            "SF_TOKEN": salesforce.token, "HOOK_SECRET": receiver.secret, "CS_PIPELINE_TODAY": "2025-04-29",
        }.items():
            monkeypatch.setenv(name, value)
        first_day = [
            alert("al_r", "renewal_at_risk", "acc_r", D1, owner="ana@example.com"),  # on_resolve: done
            alert("al_u", "upsell_ready", "acc_u", D1, owner="ana@example.com"),  # obsolete
            alert("al_c", "onboarding_checkin", "acc_c", D1, owner="ben@example.com"),  # keep_open
            alert("al_n", "no_login_20d", "acc_n", D1, owner="ben@example.com"),  # still open on D2
        ]
        write_alerts(warehouse, first_day, [D1])
        assert dispatch(instance).success
        assert len(slack.messages) == 4 and len(salesforce.objects["Task"]) == 4

        # The next day only no_login_20d still holds.
        write_alerts(warehouse, [*first_day, alert("al_n", "no_login_20d", "acc_n", D2, owner="ben@example.com",
                                                   episode_start=D1)], [D2])
        monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-04-30")
        result = dispatch(instance)
        assert result.success
        assert result.output_for_node("close_resolved") == 2

        import duckdb

        with duckdb.connect(str(warehouse), read_only=True) as con:
            tasks = dict(con.execute("SELECT alert_id, status FROM actions.tasks").fetchall())
            states = dict(con.execute("SELECT alert_id, state FROM actions.alert_state").fetchall())
            sink_rows = con.execute(
                "SELECT t.alert_id, s.sink, s.status, s.reason FROM actions.task_sinks s JOIN actions.tasks t USING (task_id)"
            ).fetchall()
        assert tasks == {"al_r": "done", "al_u": "obsolete", "al_c": "open", "al_n": "open"}
        assert states == {"al_r": "closed", "al_u": "closed", "al_c": "ended", "al_n": "open"}

        resolved = [m for m in slack.messages if m["metadata"]["event_type"] == "cs_pipeline_alert_resolved"]
        told = {m["metadata"]["event_payload"]["alert_id"]: json.dumps(m["blocks"]) for m in resolved}
        assert set(told) == {"al_r", "al_u"}  # the check-in's episode ended quietly
        assert "*done*" in told["al_r"] and "*obsolete*" in told["al_u"]

        # Each sink closed the two closed tasks with their outcome; the kept-open ones stay open there.
        closed = {(a, s): (st, r) for a, s, st, r in sink_rows}
        assert closed[("al_r", "crm")] == ("closed", "closed as done")
        assert closed[("al_u", "hooks")] == ("closed", "closed as obsolete")
        assert {k for k, v in closed.items() if v[0] == "created"} == {(a, s) for a in ("al_c", "al_n") for s in ("crm", "hooks")}
        status = {t["CS_Pipeline_Task_Id__c"]: t["Status"] for t in salesforce.objects["Task"]}
        assert status == {"task_r": "Completed", "task_u": "Deferred", "task_c": "Not Started", "task_n": "Not Started"}
        outcomes = {d["task"]["remote_id"]: d["task"]["outcome"] for d in receiver.deliveries if d["event"] == "task.closed"}
        created = {d["task"]["task_id"]: d for d in receiver.deliveries if d["event"] == "task.created"}
        assert sorted(outcomes.values()) == ["done", "obsolete"] and len(created) == 4

        # Run again: nothing more is closed, told or sent anywhere.
        posts, sf_requests, hooks = len(slack.messages), len(salesforce.requests), len(receiver.deliveries)
        assert dispatch(instance).success
        assert (len(slack.messages), len(salesforce.requests), len(receiver.deliveries)) == (posts, sf_requests, hooks)


def test_the_shipped_rules_say_what_their_tasks_become():
    model = load_health_model(settings.SHIPPED_CONFIG_DIR / "health_model.yaml")
    rules = load_rules(settings.SHIPPED_CONFIG_DIR / "rules.yaml", model)
    assert {r.id: r.task.on_resolve for r in rules.rules} == {
        "no_login_20d": "done", "low_health_day_90": "keep_open", "health_drop": "obsolete",
        "renewal_at_risk": "done", "upsell_ready": "obsolete", "nps_detractor": "keep_open",
        "ticket_surge": "done", "onboarding_checkin": "keep_open",
    }


def test_an_unknown_on_resolve_names_the_file_line_and_choices(tmp_path):
    model = load_health_model(settings.SHIPPED_CONFIG_DIR / "health_model.yaml")
    text = (settings.SHIPPED_CONFIG_DIR / "rules.yaml").read_text()
    bad = tmp_path / "rules.yaml"
    bad.write_text(text.replace("on_resolve: obsolete", "on_resolve: finished", 1))
    line = next(i for i, row in enumerate(bad.read_text().splitlines(), 1) if "on_resolve: finished" in row)
    with pytest.raises(ConfigError) as error:
        load_rules(bad, model)
    assert str(error.value) == (
        f"{bad}:{line}: rules[2].task.on_resolve: unknown value 'finished'; valid choices: done, obsolete, keep_open"
    )
