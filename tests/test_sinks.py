"""Task sinks (Salesforce Task, HubSpot task, signed webhook) against loopback fakes of the write APIs:
what they create, that creating twice creates once, closing, and how they fail."""

import datetime as dt
import json

import pytest
import requests

from cs_pipeline.sinks import (
    HubSpotTaskSink,
    SalesforceTaskSink,
    SinkError,
    TaskRequest,
    WebhookTaskSink,
    parse_sink,
)
from cs_pipeline.sinks.webhook import signature, verify
from tests.support.crm_servers import (
    HubSpotCrmServer,
    SalesforceCrmServer,
    WebhookReceiver,
)

FAST = {"timeout_seconds": 2.0, "retry_max_seconds": 5.0, "backoff_seconds": 0.01}

USERS = [
    {"Id": "005000000000001AAA", "Email": "dana@example.com", "IsActive": True, "Name": "Dana"},
    {"Id": "005000000000002AAA", "Email": "old@example.com", "IsActive": False, "Name": "Old"},
]
ACCOUNTS = [{"Id": "001000000000001AAA", "Name": "Acme"}, {"Id": "001000000000002AAA", "Name": "Globex"}]
OWNERS = [{"id": "7001", "email": "dana@example.com", "firstName": "Dana", "lastName": "S", "archived": False}]
COMPANIES = [{"id": "101", "properties": {"name": "Acme"}}, {"id": "102", "properties": {"name": "Globex"}}]

TASK_ROW = {
    "task_id": "task_0001",
    "alert_id": "al_0001",
    "account_id": "acc_1",
    "owner_email": "dana@example.com",
    "title": "Call Acme about falling usage",
    "steps": json.dumps(["Review the usage trend", "Book a call with the champion"]),
    "due_date": dt.date(2026, 11, 30),
    "priority": "urgent",
}


def request_for(crm_id: str, **overrides) -> TaskRequest:
    return TaskRequest.from_task_row({**TASK_ROW, **overrides}, account_crm_id=crm_id)


def test_task_request_numbers_the_playbook_steps():
    request = TaskRequest.from_task_row({**TASK_ROW, "due_date": "2026-11-30"}, account_crm_id="001000000000001AAA")
    assert request.body == "1. Review the usage trend\n2. Book a call with the champion"
    assert request.due_date == dt.date(2026, 11, 30)
    assert request.account_crm_id == "001000000000001AAA" and request.account_id == "acc_1"
    assert TaskRequest.from_task_row(TASK_ROW, account_crm_id=None).account_crm_id is None  # unlinked, never a guess


# --- Salesforce ------------------------------------------------------------------------------------


@pytest.fixture
def salesforce(monkeypatch):
    with SalesforceCrmServer(users=USERS, accounts=ACCOUNTS, retry_after="0") as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        yield server, SalesforceTaskSink(instance_url=server.url, token_env="SF_TOKEN", **FAST)


def test_salesforce_creates_one_task_with_owner_due_date_priority_and_steps(salesforce):
    server, sink = salesforce
    remote = sink.create(request_for("001000000000001AAA"))
    again = sink.create(request_for("001000000000001AAA"))
    assert again.remote_id == remote.remote_id
    assert len(server.objects["Task"]) == 1
    task = server.objects["Task"][0]
    assert remote.system == "salesforce" and remote.remote_id == task["Id"]
    assert remote.url == f"{server.url}/lightning/r/Task/{task['Id']}/view"
    assert task["OwnerId"] == "005000000000001AAA" == remote.owner_id
    assert task["Subject"] == "Call Acme about falling usage"
    assert task["Description"] == "1. Review the usage trend\n2. Book a call with the champion"
    assert task["ActivityDate"] == "2026-11-30"
    assert task["Priority"] == "High"  # urgent → the org's highest
    assert task["WhatId"] == "001000000000001AAA"
    assert task["Status"] == "Not Started"
    assert task["CS_Pipeline_Task_Id__c"] == "task_0001"
    assert any("FROM User WHERE Email = 'dana@example.com'" in q for q in server.queries)


def test_salesforce_upsert_never_duplicates_even_without_the_lookup(salesforce):
    server, sink = salesforce
    sink.create(request_for("001000000000001AAA"))
    # a retried create whose lookup missed still lands on the same record (upsert on the external id)
    http = sink.http()
    with http:
        path = "/services/data/v61.0/sobjects/Task/CS_Pipeline_Task_Id__c/task_0001"
        body = http.request("PATCH", path, json_body={"Subject": "again"}).json()
    assert body["created"] is False
    assert len(server.objects["Task"]) == 1


def test_salesforce_owner_not_found_leaves_the_task_to_the_api_user(salesforce):
    server, sink = salesforce
    remote = sink.create(request_for("001000000000001AAA", owner_email="old@example.com", priority="low"))
    task = server.objects["Task"][0]
    assert "OwnerId" not in task and remote.owner_id is None
    assert task["Priority"] == "Low"


def test_salesforce_close_completes_the_task(salesforce):
    server, sink = salesforce
    remote = sink.create(request_for("001000000000001AAA"))
    sink.close(remote.remote_id, "done")
    assert server.objects["Task"][0]["Status"] == "Completed"
    with pytest.raises(SinkError, match="HTTP 404"):
        sink.close("00T000000000000999", "obsolete")


def test_salesforce_rate_limit_is_retried(salesforce):
    server, sink = salesforce
    server.fail_next(2, "rate_limited")
    remote = sink.create(request_for("001000000000001AAA"))
    assert remote.remote_id == server.objects["Task"][0]["Id"]
    assert sum(1 for r in server.requests if r["outcome"] == "rate_limited") == 2


def test_salesforce_server_errors_are_retried_on_close(salesforce):
    server, sink = salesforce
    remote = sink.create(request_for("001000000000001AAA"))
    server.fail_next(1, "server_error")
    sink.close(remote.remote_id, "obsolete")
    assert server.objects["Task"][0]["Status"] == "Completed"


def test_salesforce_refused_token_fails_at_once_naming_the_variable(salesforce, monkeypatch):
    server, sink = salesforce
    monkeypatch.setenv("SF_TOKEN", "00Dwrong!revoked-token-value")
    with pytest.raises(SinkError) as failure:
        sink.create(request_for("001000000000001AAA"))
    message = str(failure.value)
    assert message.startswith("salesforce sink:") and "HTTP 401" in message
    assert "SF_TOKEN" in message and "token_env" in message
    assert "revoked-token-value" not in message and server.token not in message
    assert len(server.requests) == 1  # not retried
    assert server.objects["Task"] == []


def test_salesforce_unauthorized_fault_is_not_retried(salesforce):
    server, sink = salesforce
    server.fail_next(1, "unauthorized")
    with pytest.raises(SinkError, match="SF_TOKEN"):
        sink.create(request_for("001000000000001AAA"))
    assert len(server.requests) == 1


def test_missing_environment_variable_names_it(monkeypatch):
    monkeypatch.delenv("SF_NOT_SET", raising=False)
    sink = SalesforceTaskSink(instance_url="http://127.0.0.1:9", token_env="SF_NOT_SET")
    with pytest.raises(SinkError, match="SF_NOT_SET.*token_env"):
        sink.create(request_for("001"))


def test_salesforce_unknown_priority_names_the_setting(salesforce):
    _, sink = salesforce
    with pytest.raises(SinkError, match="priorities"):
        sink.create(request_for("001000000000001AAA", priority="someday"))


# --- HubSpot -----------------------------------------------------------------------------------------


@pytest.fixture
def hubspot(monkeypatch):
    with HubSpotCrmServer(companies=COMPANIES, owners=OWNERS, retry_after="0") as server:
        monkeypatch.setenv("HS_TOKEN", server.token)
        yield server, HubSpotTaskSink(base_url=server.url, token_env="HS_TOKEN", portal_id="424242", **FAST)


def test_hubspot_creates_one_task_associated_with_the_company(hubspot):
    server, sink = hubspot
    remote = sink.create(request_for("101"))
    again = sink.create(request_for("101"))
    assert again.remote_id == remote.remote_id
    assert len(server.tasks) == 1
    task = server.tasks[0]
    assert remote.url == f"https://app.hubspot.com/contacts/424242/record/0-27/{task['id']}"
    props = task["properties"]
    assert props["hubspot_owner_id"] == "7001" == remote.owner_id
    assert props["hs_task_subject"] == "Call Acme about falling usage"
    assert props["hs_task_body"] == "1. Review the usage trend\n2. Book a call with the champion"
    assert props["hs_timestamp"] == "2026-11-30T00:00:00Z"
    assert props["hs_task_priority"] == "HIGH"
    assert props["hs_task_status"] == "NOT_STARTED"
    assert props["cs_pipeline_task_id"] == "task_0001"
    assert task["companies"] == ["101"]
    assert server.calls("/crm/v3/objects/tasks", method="POST") == 3  # 2 searches + 1 create


def test_hubspot_conflict_on_the_unique_task_id_answers_the_existing_task(hubspot, monkeypatch):
    server, sink = hubspot
    first = sink.create(request_for("101"))
    monkeypatch.setattr(HubSpotTaskSink, "find", lambda self, http, task_id: None)  # the search index lags
    again = sink.create(request_for("101"))
    assert again.remote_id == first.remote_id and len(server.tasks) == 1


def test_hubspot_close_completes_the_task(hubspot):
    server, sink = hubspot
    remote = sink.create(request_for("102", priority="normal"))
    assert server.tasks[0]["properties"]["hs_task_priority"] == "MEDIUM"
    sink.close(remote.remote_id, "done")
    assert server.tasks[0]["properties"]["hs_task_status"] == "COMPLETED"


def test_hubspot_rate_limit_and_server_error_are_retried(hubspot):
    server, sink = hubspot
    server.fail_next(1, "rate_limited")
    server.fail_next(1, "server_error")
    sink.create(request_for("101"))
    assert len(server.tasks) == 1


def test_hubspot_refused_token_fails_at_once_without_leaking_it(hubspot, monkeypatch):
    server, sink = hubspot
    monkeypatch.setenv("HS_TOKEN", "pat-na1-leaked-secret")
    with pytest.raises(SinkError) as failure:
        sink.create(request_for("101"))
    message = str(failure.value)
    assert "HTTP 401" in message and "HS_TOKEN" in message and "pat-na1-leaked-secret" not in message
    assert len(server.requests) == 1


# --- Webhook -----------------------------------------------------------------------------------------


@pytest.fixture
def webhook(monkeypatch):
    with WebhookReceiver(retry_after="0") as receiver:
        monkeypatch.setenv("HOOK_SECRET", receiver.secret)
        yield receiver, WebhookTaskSink(url=receiver.hook_url, secret_env="HOOK_SECRET", **FAST)


def test_webhook_delivers_signed_events_once(webhook):
    receiver, sink = webhook
    remote = sink.create(request_for("acc_1"))
    again = sink.create(request_for("acc_1"))
    assert remote.remote_id == again.remote_id == "wh-1" and remote.url.endswith("/tasks/wh-1")
    assert len(receiver.deliveries) == 1
    delivery = receiver.deliveries[0]
    assert delivery["event"] == "task.created"
    assert delivery["headers"]["Idempotency-Key"] == "task_0001"
    assert verify(receiver.secret, delivery["body"], delivery["headers"]["X-CS-Pipeline-Signature"])
    assert delivery["headers"]["X-CS-Pipeline-Timestamp"].isdigit()
    task = delivery["task"]
    assert task["due_date"] == "2026-11-30" and task["priority"] == "urgent" and task["owner_email"] == "dana@example.com"
    assert task["steps"] == ["Review the usage trend", "Book a call with the champion"]
    sink.close(remote.remote_id, "obsolete")
    assert receiver.deliveries[-1]["event"] == "task.closed"
    assert receiver.deliveries[-1]["task"] == {"remote_id": "wh-1", "outcome": "obsolete"}


def test_webhook_receiver_rejects_a_tampered_body(webhook):
    receiver, sink = webhook
    sink.create(request_for("acc_1"))
    original = receiver.deliveries[0]
    tampered = original["body"].replace(b"urgent", b"low")
    headers = {k: original["headers"][k] for k in ("X-CS-Pipeline-Signature", "X-CS-Pipeline-Timestamp", "Content-Type")}
    answer = requests.post(receiver.hook_url, data=tampered, headers={**headers, "Idempotency-Key": "other"}, timeout=5)
    assert answer.status_code == 401
    assert receiver.rejected == 1 and len(receiver.deliveries) == 1
    assert signature(receiver.secret, tampered) != headers["X-CS-Pipeline-Signature"]


def test_webhook_wrong_secret_is_refused_naming_the_variable(webhook, monkeypatch):
    receiver, sink = webhook
    monkeypatch.setenv("HOOK_SECRET", "not-the-shared-secret")
    with pytest.raises(SinkError) as failure:
        sink.create(request_for("acc_1"))
    message = str(failure.value)
    assert message.startswith("webhook sink:") and "HTTP 401" in message and "HOOK_SECRET" in message
    assert "not-the-shared-secret" not in message
    assert receiver.deliveries == [] and receiver.rejected == 1


def test_webhook_retries_a_busy_receiver(webhook):
    receiver, sink = webhook
    receiver.fail_next(1, "rate_limited")
    receiver.fail_next(1, "server_error")
    assert sink.create(request_for("acc_1")).remote_id == "wh-1"
    assert len(receiver.deliveries) == 1


# --- configuration ---------------------------------------------------------------------------------


def test_sinks_are_parsed_by_type():
    assert isinstance(parse_sink({"type": "webhook", "url": "https://x.example/h", "secret_env": "S"}), WebhookTaskSink)
    sink = parse_sink({"type": "salesforce", "instance_url": "https://acme.my.salesforce.com", "token_env": "T", "api_version": "60.0"})
    assert isinstance(sink, SalesforceTaskSink) and sink.api_version == "v60.0"
    assert isinstance(parse_sink({"type": "hubspot", "token_env": "T"}), HubSpotTaskSink)
    with pytest.raises(SinkError, match="token_env"):
        parse_sink({"type": "salesforce", "instance_url": "https://acme.my.salesforce.com"})
    with pytest.raises(SinkError, match="task sink configuration"):
        parse_sink({"type": "jira"})


def test_salesforce_missing_external_id_field_names_the_setting(monkeypatch):
    with SalesforceCrmServer(users=USERS, accounts=ACCOUNTS, external_id_field="Other_Id__c") as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        sink = SalesforceTaskSink(instance_url=server.url, token_env="SF_TOKEN", **FAST)
        with pytest.raises(SinkError) as failure:
            sink.create(request_for("001000000000001AAA"))
    message = str(failure.value)
    assert "HTTP 400" in message and "INVALID_FIELD" in message and "`external_id_field`" in message


def test_hubspot_missing_task_property_names_the_setting(monkeypatch):
    with HubSpotCrmServer(companies=COMPANIES, owners=OWNERS, task_id_property="other_property") as server:
        monkeypatch.setenv("HS_TOKEN", server.token)
        sink = HubSpotTaskSink(base_url=server.url, token_env="HS_TOKEN", **FAST)
        with pytest.raises(SinkError) as failure:
            sink.create(request_for("101"))
    message = str(failure.value)
    assert "HTTP 400" in message and "cs_pipeline_task_id" in message and "`task_id_property`" in message


def test_salesforce_without_external_id_field_creates_with_post(salesforce):
    server, _ = salesforce
    sink = SalesforceTaskSink(instance_url=server.url, token_env="SF_TOKEN", external_id_field="", **FAST)
    remote = sink.create(request_for("001000000000001AAA", due_date=None))
    assert server.calls("/sobjects/Task", method="POST") == 1
    task = server.objects["Task"][0]
    assert task["Id"] == remote.remote_id and "ActivityDate" not in task
