"""The dispatch job's task sinks: each live alert's task created once in the sinks its rule maps to
(loopback Salesforce and a signed-webhook receiver), failures retried, auto-closed tasks closed."""

import datetime as dt
import json
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from cs_pipeline import cli
from cs_pipeline.cli.alerts import TASK_FIELDS
from cs_pipeline.actions import planner
from cs_pipeline.actions import store as tables
from cs_pipeline.actions.sinks import sync_sinks
from cs_pipeline.actions.store import ActionsStore
from cs_pipeline.resources.slack import Delivery
from cs_pipeline.logic.config import ConfigError
from cs_pipeline.sinks import SinkError
from cs_pipeline.sinks.config import TaskSinksConfig, TaskSinksResource
from cs_pipeline.sinks.crm_ids import CrmIdMapping
from cs_pipeline.sinks.webhook import verify
from tests.support import planted
from tests.support.crm_servers import HubSpotCrmServer, SalesforceCrmServer, WebhookReceiver
from tests.support.pipeline import planted_pipeline

FAST = "timeout_seconds: 2\n    retry_max_seconds: 2\n    backoff_seconds: 0.01"
USERS = [
    {"Id": "005000000000001AAA", "Email": "ana@example.com", "IsActive": True, "Name": "Ana"},
    {"Id": "005000000000002AAA", "Email": "ben@example.com", "IsActive": True, "Name": "Ben"},
]
# The planted accounts' ids are their CRM ids (the default): the org has them as Accounts.
ACCOUNTS = [{"Id": account_id, "Name": account_id} for account_id in planted.ACCOUNTS]
RULES = ["no_login_20d", "low_health_day_90", "health_drop", "renewal_at_risk", "upsell_ready", "nps_detractor",
         "ticket_surge", "onboarding_checkin"]


def sinks_yaml(salesforce: SalesforceCrmServer, receiver: WebhookReceiver, rules: str) -> str:
    return f"""sinks:
  crm:
    type: salesforce
    instance_url: {salesforce.url}
    token_env: SF_TOKEN
    {FAST}
  hooks:
    type: webhook
    url: {receiver.hook_url}
    secret_env: HOOK_SECRET
    {FAST}
rules:
{rules}
"""


@pytest.fixture
def crm(monkeypatch):
    with SalesforceCrmServer(users=USERS, accounts=ACCOUNTS, retry_after="0") as salesforce, WebhookReceiver() as receiver:
        monkeypatch.setenv("SF_TOKEN", salesforce.token)
        monkeypatch.setenv("HOOK_SECRET", receiver.secret)
        yield salesforce, receiver


def records(sql, query: str = "SELECT task_id, sink, status, remote_id, reason, attempts FROM actions.task_sinks"):
    return {(r[0], r[1]): r[2:] for r in sql(query)}


@pytest.mark.e2e
def test_dispatch_creates_each_mapped_task_once_retries_a_failure_and_leaves_unmapped_rules_alone(tmp_path, crm, capsys):
    salesforce, receiver = crm
    sinks_file = tmp_path / "task_sinks.yaml"
    sinks_file.write_text(sinks_yaml(salesforce, receiver, '  no_login_20d: [crm, hooks]\n  upsell_ready: [crm]\n  "*": []'))
    root = tmp_path / "pipeline"
    root.mkdir()
    with planted_pipeline(root, {"CS_PIPELINE_TASK_SINKS": str(sinks_file)}) as pipeline:
        assert pipeline.materialize(planted.FIRST, planted.LAST).success

        # The first dispatch meets a refused Salesforce token once: that task fails, Slack is untouched.
        salesforce.fail_next(1, "unauthorized")
        tick = pipeline.tick()
        first = pipeline.dispatch(tick.run_requests[0].tags)
        assert first.success
        tasks = dict(pipeline.sql(
            "SELECT t.task_id, e.rule_id FROM actions.tasks t JOIN analytics.alert_events e USING (alert_id) "
            "GROUP BY ALL"))
        mapped = {t: r for t, r in tasks.items() if r in ("no_login_20d", "upsell_ready")}
        hooked = {t for t, r in mapped.items() if r == "no_login_20d"}
        assert hooked and set(mapped) - hooked and set(tasks) - set(mapped)
        sent = pipeline.sql("SELECT count(*) FROM actions.deliveries WHERE status = 'sent'")[0][0]
        assert sent == len(tasks)  # every live alert reached Slack

        after_first = records(pipeline.sql)
        failed = {k: v for k, v in after_first.items() if v[0] == "failed"}
        assert len(failed) == 1 and next(iter(failed))[1] == "crm"
        status, remote_id, reason, attempts = next(iter(failed.values()))
        assert remote_id is None and attempts == 1
        assert "HTTP 401" in reason and "SF_TOKEN" in reason and salesforce.token not in reason
        step = [e for e in first.all_node_events if e.step_key == "sync_task_sinks" and e.is_successful_output][0]
        counts = {k: v.value for k, v in step.event_specific_data.metadata.items()}
        assert (counts["created"], counts["failed"], counts["closed"]) == (len(mapped) + len(hooked) - 1, 1, 0)

        # The failure asks for a retry run, which creates the task; nothing created before is created again.
        retry = pipeline.tick()
        assert [r.tags["cs_pipeline/trigger"] for r in retry.run_requests] == ["retry"]
        assert pipeline.dispatch(retry.run_requests[0].tags).success
        final = records(pipeline.sql)
        assert set(final) == {(t, "crm") for t in mapped} | {(t, "hooks") for t in hooked}
        assert all(v[0] == "created" and v[1] and v[2] is None for v in final.values())
        assert final[next(iter(failed))][3] == 2  # two attempts
        assert len(salesforce.objects["Task"]) == len(mapped)
        assert {t["CS_Pipeline_Task_Id__c"] for t in salesforce.objects["Task"]} == set(mapped)
        assert {final[(t["CS_Pipeline_Task_Id__c"], "crm")][1] for t in salesforce.objects["Task"]} == {
            t["Id"] for t in salesforce.objects["Task"]}
        assert all(t["WhatId"] in planted.ACCOUNTS and t["Status"] == "Not Started" for t in salesforce.objects["Task"])

        # The webhook got one signed task.created per hooked task, with its playbook.
        assert [d["event"] for d in receiver.deliveries] == ["task.created"] * len(hooked)
        assert {d["task"]["task_id"] for d in receiver.deliveries} == hooked
        assert receiver.rejected == 0
        for delivery in receiver.deliveries:
            assert verify(receiver.secret, delivery["body"], delivery["headers"]["X-CS-Pipeline-Signature"])
            assert delivery["task"]["steps"] and delivery["task"]["title"]
            assert final[(delivery["task"]["task_id"], "hooks")][1].startswith("wh-")

        # Another dispatch sends nothing new anywhere.
        posts, requests = len(pipeline.server.messages), len(salesforce.requests)
        again = pipeline.dispatch({"cs_pipeline/trigger": "manual"})
        assert again.success
        assert records(pipeline.sql) == final
        assert len(salesforce.requests) == requests and len(receiver.deliveries) == len(hooked)
        assert len(pipeline.server.messages) == posts

        # `cs-pipeline tasks` shows the remote ids: a `remote` list in JSON, a column in the table.
        capsys.readouterr()
        assert cli.main(["tasks", "--format", "json"]) == 0
        listed = {t["task_id"]: t for t in json.loads(capsys.readouterr().out)}
        assert set(listed) == set(tasks)
        some = next(iter(hooked))
        assert {r["sink"]: r["remote_id"] for r in listed[some]["remote"]} == {
            "crm": final[(some, "crm")][1], "hooks": final[(some, "hooks")][1]}
        assert all(listed[t]["remote"] == [] for t in set(tasks) - set(mapped))
        assert set(listed[some]) == {*TASK_FIELDS, "remote"}
        assert cli.main(["tasks"]) == 0
        table = capsys.readouterr().out
        assert "remote" in table.splitlines()[0] and f"crm:{final[(some, 'crm')][1]}" in table


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'actions.sqlite'}"
    yield ActionsStore(url)
    ActionsStore.forget(url)


def _sink_rows(store) -> dict:
    return {(r["task_id"], r["sink"]): r for r in store.rows(tables.task_sinks)}


@contextmanager
def _opener(path: Path):
    con = duckdb.connect(str(path))
    try:
        yield con
    finally:
        con.close()


def test_an_auto_closed_task_is_closed_in_its_sinks_once(tmp_path, crm, store):
    salesforce, receiver = crm
    config_file = tmp_path / "task_sinks.yaml"
    config_file.write_text(sinks_yaml(salesforce, receiver, '  "*": [crm, hooks]'))
    config = TaskSinksResource(config_file=str(config_file)).config(RULES)
    path = tmp_path / "w.duckdb"
    with _opener(path) as con:
        _closing_warehouse(con, store)
    connect = lambda: _opener(path)  # noqa: E731

    counts = sync_sinks(store, connect, config)
    assert (counts.created, counts.closed, counts.failed) == (6, 0, 0)  # 3 open tasks x 2 sinks

    # 04-29 and 04-30 are evaluated: a1 is no longer open, close_resolved marks its task done.
    with _opener(path) as con:
        assert planner.plan_closures(store, con, dt.date(2025, 4, 28)) == []  # a1, a2 seen open
        con.execute("INSERT INTO analytics.alert_evaluated_days VALUES ('2025-04-29'), ('2025-04-30')")
        closed = planner.plan_closures(store, con, dt.date(2025, 4, 30))
        assert [c.alert["alert_id"] for c in closed] == ["a1"]
        planner.close(store, closed, dt.date(2025, 4, 30))
    counts = sync_sinks(store, connect, config)
    assert (counts.created, counts.closed, counts.failed, counts.already) == (0, 2, 0, 4)
    rows = {k: r["status"] for k, r in _sink_rows(store).items()}
    remote = _sink_rows(store)[("ta1", "crm")]["remote_id"]
    assert rows == {("ta1", "crm"): "closed", ("ta1", "hooks"): "closed", ("ta2", "crm"): "created",
                    ("ta2", "hooks"): "created", ("ta4", "crm"): "created", ("ta4", "hooks"): "created"}
    assert salesforce.record("Task", remote)["Status"] == "Completed"
    assert [d["task"]["outcome"] for d in receiver.deliveries if d["event"] == "task.closed"] == ["done"]
    again = sync_sinks(store, connect, config)
    assert (again.created, again.closed, again.failed) == (0, 0, 0)


def test_a_failed_close_is_kept_created_and_tried_again(tmp_path, crm, store):
    salesforce, receiver = crm
    config_file = tmp_path / "task_sinks.yaml"
    config_file.write_text(sinks_yaml(salesforce, receiver, '  no_login_20d: [crm]'))
    config = TaskSinksConfig.load(config_file, RULES)
    path = tmp_path / "w.duckdb"
    with _opener(path) as con:
        _closing_warehouse(con, store)
    connect = lambda: _opener(path)  # noqa: E731
    assert sync_sinks(store, connect, config).created == 3
    store.set_task_status("a2", "done")
    salesforce.fail_next(1, "forbidden")
    counts = sync_sinks(store, connect, config)
    assert (counts.closed, counts.failed) == (0, 1)
    record = _sink_rows(store)[("ta2", "crm")]
    status, reason = record["status"], record["reason"]
    assert status == "created" and reason.startswith("close failed:") and "403" in reason
    assert sync_sinks(store, connect, config).closed == 1


def test_without_a_sinks_file_nothing_is_configured():
    assert TaskSinksResource().config(RULES) is None


def test_a_bad_sinks_file_names_its_file_and_line(tmp_path, crm):
    salesforce, receiver = crm
    bad = tmp_path / "task_sinks.yaml"
    bad.write_text(sinks_yaml(salesforce, receiver, "  no_login_20d: [crm, slack]"))
    with pytest.raises(ConfigError) as error:
        TaskSinksConfig.load(bad, RULES)
    assert str(error.value).startswith(f"{bad}:17: rules.no_login_20d[1]: unknown sink 'slack'")
    assert "valid choices: crm, hooks" in str(error.value)

    bad.write_text(sinks_yaml(salesforce, receiver, "  no_such_rule: [crm]"))
    with pytest.raises(ConfigError, match=rf"^{bad}:17: rules.no_such_rule: unknown rule id 'no_such_rule'"):
        TaskSinksConfig.load(bad, RULES)
    TaskSinksConfig.load(bad)  # without the rules, rule ids are not checked

    bad.write_text(sinks_yaml(salesforce, receiver, "  '*': [crm]").replace("token_env: SF_TOKEN", "token_envv: SF_TOKEN"))
    with pytest.raises(ConfigError, match=rf"^{bad}:5: sinks.crm.token_envv: unknown field"):
        TaskSinksConfig.load(bad, RULES)


def _closing_warehouse(c, store) -> None:
    """As in test_dispatch: a1 (sent) open 04-27..04-28, a2 (sent) open to 04-30, a4 (sent) on 04-29 only;
    days up to 04-28 evaluated. Each has an open task (with a title, steps and a due date)."""
    c.execute("CREATE SCHEMA analytics")
    c.execute("""CREATE TABLE analytics.alert_events (alert_id VARCHAR, rule_id VARCHAR, account_id VARCHAR,
                 account_name VARCHAR, segment VARCHAR, owner_email VARCHAR, episode_start DATE, partition_date DATE,
                 task_on_resolve VARCHAR DEFAULT 'done')""")
    for alert_id, first, last in (("a1", "2025-04-27", "2025-04-28"), ("a2", "2025-04-27", "2025-04-30"),
                                  ("a4", "2025-04-29", "2025-04-29")):
        for day in ("2025-04-27", "2025-04-28", "2025-04-29", "2025-04-30"):
            if first <= day <= last:
                c.execute("INSERT INTO analytics.alert_events VALUES (?, 'no_login_20d', 'acc_nologin', 'Acme', 'smb', "
                          "'ana@example.com', '2025-04-27', ?, 'done')", [alert_id, day])
    c.execute("CREATE TABLE analytics.alert_evaluated_days AS SELECT DATE '2025-04-28' AS partition_date")
    store.record_outcomes(tables.deliveries, [((a, 1), Delivery("slack", "U001", "sent")) for a in ("a1", "a2", "a4")])
    store.create_tasks([
        {"task_id": f"t{a}", "alert_id": a, "rule_id": "no_login_20d", "account_id": "acc_nologin",
         "owner_email": "ana@example.com", "title": "Call Acme", "steps": '["Review usage", "Call"]',
         "due_date": dt.date(2025, 5, 5), "priority": "high"} for a in ("a1", "a2", "a4")])


def _message_for(messages: list[dict], account_id: str) -> list[dict]:
    """The blocks of the Slack alert about `account_id` (its Account field names the id)."""
    found = [m["blocks"] for m in messages
             if any(f"(`{account_id}`)" in f["text"] for b in m["blocks"] for f in b.get("fields", []))]
    assert found, account_id
    return found[0]


@pytest.mark.e2e
def test_tasks_and_messages_carry_the_mapped_crm_id_and_an_account_without_one_is_created_unlinked(tmp_path, crm):
    """The write-back file's CRM id mapping (here only the mapping: no write-back) is the one of the
    task sinks and the message links: Salesforce WhatId, the webhook's account_crm_id and the
    message's CRM button carry the mapped id; an account without one gets its task, unlinked."""
    salesforce, receiver = crm
    crm_ids = {a: f"001PLANTED{i:08d}" for i, a in enumerate(sorted(planted.ACCOUNTS))}
    salesforce_accounts = [{"Id": crm_id, "Name": account_id} for account_id, crm_id in crm_ids.items()]
    with SalesforceCrmServer(users=USERS, accounts=salesforce_accounts, retry_after="0") as org, \
            pytest.MonkeyPatch.context() as env:
        env.setenv("SF_TOKEN", org.token)
        sinks_file = tmp_path / "task_sinks.yaml"
        sinks_file.write_text(sinks_yaml(org, receiver, '  "*": [crm, hooks]'))
        writeback_file = tmp_path / "writeback.yaml"
        writeback_file.write_text("writeback:\n  crm_id_column: salesforce_id\n  crm_id_table: crm.account_ids\n")
        root = tmp_path / "pipeline"
        root.mkdir()
        env_vars = {
            "CS_PIPELINE_TASK_SINKS": str(sinks_file), "CS_PIPELINE_WRITEBACK": str(writeback_file),
            "CS_PIPELINE_CRM_RECORD_URL": "https://acme.lightning.force.com/lightning/r/Account/{crm_id}/view",
        }
        with planted_pipeline(root, env_vars) as pipeline:
            assert pipeline.materialize(planted.FIRST, planted.LAST).success
            live = sorted({r[0] for r in pipeline.sql("SELECT account_id FROM analytics.alert_events WHERE live")})
            unlinked, linked = live[0], live[1:]
            assert linked
            with duckdb.connect(str(pipeline.warehouse)) as con:
                con.execute("CREATE SCHEMA crm")
                con.execute("CREATE TABLE crm.account_ids (account_id VARCHAR, salesforce_id VARCHAR)")
                con.executemany("INSERT INTO crm.account_ids VALUES (?, ?)",
                                [(a, None if a == unlinked else c) for a, c in crm_ids.items()])

            assert pipeline.dispatch({"cs_pipeline/trigger": "manual"}).success

            tasks = dict(pipeline.sql("SELECT task_id, account_id FROM actions.tasks"))
            assert set(tasks.values()) == set(live)
            by_task = {t["CS_Pipeline_Task_Id__c"]: t for t in org.objects["Task"]}
            assert set(by_task) == set(tasks)  # every task, the unlinked one too
            for task_id, account_id in tasks.items():
                assert by_task[task_id].get("WhatId") == (None if account_id == unlinked else crm_ids[account_id])
            hooked = {d["task"]["task_id"]: d["task"] for d in receiver.deliveries}
            assert {t: h["account_crm_id"] for t, h in hooked.items()} == {
                t: (None if a == unlinked else crm_ids[a]) for t, a in tasks.items()}

            # The reason is recorded on each unlinked task's sink records, and only there.
            reasons = {(r[0], r[1]): r[4] for r in pipeline.sql(
                "SELECT task_id, sink, status, remote_id, reason FROM actions.task_sinks")}
            expected = (f"created without a link to the account: {unlinked} has no CRM id "
                        "in crm.account_ids.salesforce_id")
            assert reasons == {(t, s): (expected if tasks[t] == unlinked else None) for t in tasks for s in ("crm", "hooks")}

            # The messages: the condition against its figures, and the CRM button with the mapped id.
            for account_id in (unlinked, linked[0]):
                blocks = _message_for(pipeline.server.messages, account_id)
                body = "\n".join(b["text"]["text"] for b in blocks if "text" in b and isinstance(b["text"], dict))
                assert "*Fires when* " in body and " ✔" in body
                buttons = {e["text"]["text"]: e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"] if "url" in e}
                if account_id == unlinked:
                    assert "Open in CRM" not in buttons
                else:
                    assert buttons["Open in CRM"] == (
                        f"https://acme.lightning.force.com/lightning/r/Account/{crm_ids[account_id]}/view")


def test_hubspot_tasks_are_associated_with_the_mapped_company_or_created_unlinked(tmp_path, monkeypatch, store):
    """Owner by email, due date, priority, the playbook in the body and the mapped company."""
    owners = [{"id": "7001", "email": "ana@example.com", "firstName": "Ana", "lastName": "A", "archived": False}]
    with HubSpotCrmServer(companies=[{"id": "101", "properties": {"name": "Acme"}}], owners=owners,
                          retry_after="0") as hubspot:
        monkeypatch.setenv("HS_TOKEN", hubspot.token)
        config_file = tmp_path / "task_sinks.yaml"
        config_file.write_text(f"""sinks:
  hs:
    type: hubspot
    base_url: {hubspot.url}
    token_env: HS_TOKEN
    {FAST}
rules:
  "*": [hs]
""")
        config = TaskSinksConfig.load(config_file, RULES)
        path = tmp_path / "w.duckdb"
        with _opener(path) as con:
            _closing_warehouse(con, store)
            with store.engine.begin() as db:
                db.execute(tables.tasks.update().where(tables.tasks.c.task_id == "ta4").values(account_id="acc_other"))
            con.execute("CREATE TABLE main.companies AS SELECT * FROM (VALUES ('acc_nologin', '101'), ('acc_other', ''))"
                        " t(account_id, hubspot_id)")
        mapping = CrmIdMapping(crm_id_column="hubspot_id", crm_id_table="main.companies")
        counts = sync_sinks(store, lambda: _opener(path), config, crm_ids=mapping)
        assert (counts.created, counts.failed) == (3, 0)
        by_task = {t["properties"]["cs_pipeline_task_id"]: t for t in hubspot.tasks}
        assert {t: task["companies"] for t, task in by_task.items()} == {"ta1": ["101"], "ta2": ["101"], "ta4": []}
        props = by_task["ta1"]["properties"]
        assert props["hubspot_owner_id"] == "7001"
        assert props["hs_timestamp"] == "2025-05-05T00:00:00Z"
        assert props["hs_task_priority"] == "HIGH"
        assert props["hs_task_body"] == "1. Review usage\n2. Call"
        assert props["hs_task_subject"] == "Call Acme"
        reasons = {k[0]: r["reason"] for k, r in _sink_rows(store).items()}
        assert reasons == {"ta1": None, "ta2": None, "ta4": "created without a link to the account: acc_other has no "
                                                           "CRM id in main.companies.hubspot_id"}


def test_an_unreadable_crm_id_mapping_fails_naming_the_settings(tmp_path, crm, store):
    salesforce, receiver = crm
    config_file = tmp_path / "task_sinks.yaml"
    config_file.write_text(sinks_yaml(salesforce, receiver, '  "*": [crm]'))
    config = TaskSinksConfig.load(config_file, RULES)
    path = tmp_path / "w.duckdb"
    with _opener(path) as con:
        _closing_warehouse(con, store)
    mapping = CrmIdMapping(crm_id_column="sf_id", crm_id_table="marts.no_such_table")
    with pytest.raises(SinkError, match=r"^CRM ids: cannot read marts.no_such_table.sf_id \(settings `crm_id_table`, "
                                        r"`crm_id_column` of the write-back file\)"):
        sync_sinks(store, lambda: _opener(path), config, crm_ids=mapping)
    assert salesforce.objects["Task"] == []  # nothing was sent on a guess
