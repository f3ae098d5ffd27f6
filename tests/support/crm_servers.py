"""Loopback fakes of the CRM write APIs the task sinks and the write-back use, and a webhook receiver.

    with SalesforceCrmServer(users=[...], accounts=[...]) as server:
        sink = SalesforceTaskSink(instance_url=server.url, token_env="SF_TOKEN")
        ...
        assert len(server.objects["Task"]) == 1

They extend the read fakes of `saas_servers` (same lifecycle, authentication, error bodies and
`fail_next(n, kind)` faults: rate_limited with `Retry-After`, server_error, timeout, unauthorized,
forbidden) with POST and PATCH, answering with the shapes of the real APIs:

Salesforce (REST, /services/data/vXX.X): `POST sobjects/Task` → 201 {id, success, errors};
`PATCH sobjects/Task/{ExternalIdField}/{value}` (upsert) → 201 created / 200 updated
{id, success, errors, created}; `PATCH sobjects/{Task|Account}/{id}` → 204, 404
[{errorCode: NOT_FOUND}]; unknown fields → 400 INVALID_FIELD; a restricted picklist value → 400;
GET query (SOQL, from SalesforceServer) sees the Tasks created, Users and Accounts.

HubSpot (CRM v3): `POST /crm/v3/objects/tasks` → 201 {id, properties, ...}; `POST
/crm/v3/objects/tasks/search` (EQ filters); `PATCH /crm/v3/objects/tasks/{id}` → 200 / 404;
`POST /crm/v3/objects/companies/batch/update` → 200 {status: COMPLETE, results} or, when some ids
do not exist, 207 with `errors: [{category: OBJECT_NOT_FOUND, context: {ids}}]` (or, with
`batch_missing="reject"`, the whole batch refused: 400 naming the ids); `GET /crm/v3/owners?email=`.

Webhook receiver: `POST /hooks/tasks`, verifies `X-CS-Pipeline-Signature` over the raw body with
its secret (401 on mismatch), answers a repeated `Idempotency-Key` with the first answer, records
`deliveries`, and answers task.created with {id, url}.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.saas_servers import (
    _CONDITION,
    FAULT_STATUS,
    Answer,
    FakeApi,
    HubSpotServer,
    SalesforceServer,
    _Handler,
    _SoqlError,
)


class _WriteHandler(_Handler):
    """The read fakes' handler plus POST and PATCH (with their bodies); 204 answers have no body."""

    def do_POST(self):
        self._write("POST")

    def do_PATCH(self):
        self._write("PATCH")

    def _write(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.api._next_fault()
        if fault == "timeout":
            self.api._log(path, query, fault, method, body)
            self.api._stopping.wait(self.api.hold_seconds)
            self.close_connection = True
            return
        if fault is not None:
            self.api._log(path, query, fault, method, body)
            status = FAULT_STATUS[fault]
            headers = {"Retry-After": self.api.retry_after} if fault == "rate_limited" and self.api.retry_after else {}
            return self._reply(status, self.api.error_body(status), headers)
        if not self.api.authorized(self.headers):
            self.api._log(path, query, 401, method, body)
            return self._reply(401, self.api.error_body(401))
        status, payload = self.api.write(method, path, query, self.headers, body)
        self.api._log(path, query, status, method, body)
        return self._reply(status, payload)

    def _reply(self, status: int, payload: Any, headers: dict | None = None) -> None:
        if status != 204:
            return super()._reply(status, payload, headers)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()


class WriteApi(FakeApi):
    """FakeApi with writes: subclasses implement `write(method, path, query, headers, body)`."""

    handler_class = _WriteHandler

    def _log(self, path, query, outcome, method: str = "GET", body: bytes = b"") -> None:
        with self._lock:
            self.requests.append({"path": path, "query": query, "outcome": outcome, "method": method, "body": body})

    def calls(self, path_part: str = "", method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path_part in r["path"] and (method is None or r.get("method", "GET") == method))

    def write(self, method: str, path: str, query: dict[str, list[str]], headers, body: bytes) -> Answer:
        raise NotImplementedError


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return ValueError


# --- Salesforce ----------------------------------------------------------------------------------

TASK_FIELDS = ("Id", "Subject", "Description", "ActivityDate", "Priority", "Status", "WhatId", "OwnerId", "Type")
TASK_PRIORITIES = ("High", "Normal", "Low")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")


class SalesforceCrmServer(WriteApi, SalesforceServer):
    """One org's Users, Accounts and Tasks, readable by SOQL and writable through sObject rows.

    users: [{"Id": "005...", "Email": ..., "IsActive": True}]; accounts: [{"Id": "001...", "Name": ...}].
    external_id_field: the Task field marked External ID (upserts on another are 404).
    account_fields: custom Account fields the org has (writes to others are 400 INVALID_FIELD).
    """

    def __init__(
        self,
        users: list[dict[str, Any]] = (),
        accounts: list[dict[str, Any]] = (),
        external_id_field: str = "CS_Pipeline_Task_Id__c",
        account_fields: tuple[str, ...] = ("Health_Score__c", "Health_Band__c", "Health_Score_Change_30d__c", "Usage_Flag__c"),
        **kwargs,
    ) -> None:
        super().__init__({"User": list(users), "Account": list(accounts), "Task": []}, **kwargs)
        self.external_id_field = external_id_field
        self.declared = {
            "Task": {f.lower(): f for f in (*TASK_FIELDS, external_id_field, "IsDeleted")},
            "Account": {f.lower(): f for f in ("Id", "Name", *account_fields)},
            "User": {f.lower(): f for f in ("Id", "Email", "IsActive", "Name")},
        }
        self._ids = itertools.count(1)

    def _field_path(self, name: str, field: str) -> list[str] | None:
        declared = self.declared.get(name, {})
        if "." not in field and field.lower() in declared:
            return [declared[field.lower()]]
        return super()._field_path(name, field)

    def _conditions(self, name: str, where: str | None) -> list:
        """As a real org: a WHERE clause naming a field the object lacks is INVALID_FIELD."""
        for clause in re.split(r"\s+AND\s+", where or "", flags=re.IGNORECASE) if where else []:
            match = _CONDITION.match(clause.strip().removeprefix("(").removesuffix(")"))
            if match and self._field_path(name, match.group("field")) is None:
                raise _SoqlError(
                    "INVALID_FIELD",
                    f"\n{where}\n^\nERROR at Row:1:Column:1\nNo such column '{match.group('field')}' on entity '{name}'. "
                    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.",
                )
        return super()._conditions(name, where)

    def record(self, name: str, record_id: str) -> dict[str, Any] | None:
        return next((r for r in self.objects[name] if r.get("Id") == record_id), None)

    def write(self, method: str, path: str, query, headers, body: bytes) -> Answer:
        match = re.fullmatch(r"/services/data/v\d+\.\d/sobjects/(\w+)(?:/(\w+))?(?:/([^/]+))?", path)
        if not match:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        name, first, second = match.group(1), match.group(2), match.group(3)
        if name not in ("Task", "Account"):
            return 404, [{"errorCode": "NOT_FOUND", "message": f"The requested resource does not exist: {name}"}]
        fields = _json(body)
        if not isinstance(fields, dict):
            return 400, [{"errorCode": "JSON_PARSER_ERROR", "message": "Unexpected parameter encountered during deserialization"}]
        problem = self._check(name, fields)
        if problem:
            return 400, [problem]
        if method == "POST" and first is None and name == "Task":
            return 201, self._create(fields)
        if method == "PATCH" and second is not None and name == "Task":  # upsert on an external id
            if first.lower() != self.external_id_field.lower():
                return 404, [{"errorCode": "NOT_FOUND",
                              "message": f"Provided external ID field does not exist or is not accessible: {first}"}]
            value = unquote(second)
            existing = [r for r in self.objects["Task"] if r.get(self.external_id_field) == value]
            if len(existing) > 1:
                return 300, [f"/services/data/v61.0/sobjects/Task/{r['Id']}" for r in existing]
            if existing:
                existing[0].update(fields)
                return 200, {"id": existing[0]["Id"], "success": True, "errors": [], "created": False}
            return 201, {**self._create({**fields, self.external_id_field: value}), "created": True}
        if method == "PATCH" and first is not None and second is None:
            record = self.record(name, first)
            if record is None:
                return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
            record.update(fields)
            return 204, None
        return 405, [{"errorCode": "METHOD_NOT_ALLOWED", "message": f"HTTP Method '{method}' not allowed"}]

    def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        task_id = f"00T{next(self._ids):015d}"
        self.objects["Task"].append({"Id": task_id, "IsDeleted": False, "Status": "Not Started", **fields})
        return {"id": task_id, "success": True, "errors": []}

    def _check(self, name: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        declared = self.declared[name]
        for key in fields:
            if key.lower() not in declared or key == "Id":
                return {"errorCode": "INVALID_FIELD", "message": f"No such column '{key}' on sobject of type {name}", "fields": [key]}
        if name != "Task":
            return None
        if "Priority" in fields and fields["Priority"] not in TASK_PRIORITIES:
            return {"errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    "message": f"Priority: bad value for restricted picklist field: {fields['Priority']}", "fields": ["Priority"]}
        if "Status" in fields and fields["Status"] not in TASK_STATUSES:
            return {"errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    "message": f"Status: bad value for restricted picklist field: {fields['Status']}", "fields": ["Status"]}
        if "ActivityDate" in fields and fields["ActivityDate"] is not None:
            try:
                dt.date.fromisoformat(fields["ActivityDate"])
            except (TypeError, ValueError):
                return {"errorCode": "JSON_PARSER_ERROR", "message": f"Cannot deserialize instance of date from VALUE_STRING value {fields['ActivityDate']}"}
        if fields.get("WhatId") and self.record("Account", fields["WhatId"]) is None:
            return {"errorCode": "FIELD_INTEGRITY_EXCEPTION", "message": "Related To ID: id value of incorrect type", "fields": ["WhatId"]}
        if fields.get("OwnerId") and self.record("User", fields["OwnerId"]) is None:
            return {"errorCode": "FIELD_INTEGRITY_EXCEPTION", "message": "Assigned To ID: id value of incorrect type", "fields": ["OwnerId"]}
        return None


# --- HubSpot -------------------------------------------------------------------------------------

TASK_PROPERTIES = (
    "hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_priority", "hs_task_status", "hs_task_type",
    "hubspot_owner_id",
)
HS_PRIORITIES = ("LOW", "MEDIUM", "HIGH", "NONE")
HS_STATUSES = ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
TASK_TO_COMPANY = 192
_CORRELATION = "9d1b5f2e-1c3a-4f6e-8b7d-0a1b2c3d4e5f"


def _hs_error(message: str, category: str = "VALIDATION_ERROR", **extra) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": _CORRELATION, "category": category, **extra}


class HubSpotCrmServer(WriteApi, HubSpotServer):
    """Companies, owners and tasks of one HubSpot account.

    companies: [{"id": "101", "properties": {"name": ...}}]; owners: [{"id", "email", ...}].
    task_id_property: the custom task property (unique values: a second task with the same
    value is 409 CONFLICT, "Existing ID: n"). company_properties: custom properties that exist.
    batch_missing: "multi_status" (207 with errors per missing id) or "reject" (the batch is 400).
    """

    def __init__(
        self,
        companies: list[dict[str, Any]] = (),
        owners: list[dict[str, Any]] = (),
        task_id_property: str = "cs_pipeline_task_id",
        company_properties: tuple[str, ...] = ("name", "cs_health_score", "cs_health_band", "cs_health_score_change_30d", "cs_usage_flag"),
        batch_missing: str = "multi_status",
        **kwargs,
    ) -> None:
        super().__init__({"companies": [dict(c) for c in companies], "tasks": []}, owners=owners, **kwargs)
        self.task_id_property = task_id_property
        self.company_properties = set(company_properties)
        self.batch_missing = batch_missing
        self._ids = itertools.count(90001)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return self.objects["tasks"]

    def company(self, company_id: str) -> dict[str, Any] | None:
        return next((c for c in self.objects["companies"] if str(c["id"]) == str(company_id)), None)

    def route(self, path: str, query: dict[str, list[str]], headers) -> Answer:
        email = (query.get("email") or [None])[-1]
        if path == "/crm/v3/owners" and email:
            owners = [o for o in self.owners if str(o.get("email", "")).lower() == email.lower() and not o.get("archived")]
            return 200, {"results": owners}
        return super().route(path, query, headers)

    def write(self, method: str, path: str, query, headers, body: bytes) -> Answer:
        payload = _json(body)
        if not isinstance(payload, dict):
            return 400, _hs_error("Invalid input JSON on line 1", "VALIDATION_ERROR")
        if method == "POST" and path == "/crm/v3/objects/tasks":
            return self._create_task(payload)
        if method == "POST" and path == "/crm/v3/objects/tasks/search":
            return self._search(payload)
        match = re.fullmatch(r"/crm/v3/objects/tasks/(\d+)", path)
        if method == "PATCH" and match:
            task = next((t for t in self.tasks if t["id"] == match.group(1)), None)
            if task is None:
                return 404, _hs_error("resource not found", "OBJECT_NOT_FOUND")
            properties = payload.get("properties") or {}
            problem = self._check_task(properties)
            if problem:
                return 400, problem
            task["properties"].update({k: str(v) for k, v in properties.items()})
            return 200, self._shown(task)
        if method == "POST" and path == "/crm/v3/objects/companies/batch/update":
            return self._batch_update(payload)
        return 404, _hs_error("Not found", "OBJECT_NOT_FOUND")

    def _check_task(self, properties: dict[str, Any]) -> dict[str, Any] | None:
        known = {*TASK_PROPERTIES, self.task_id_property}
        unknown = [k for k in properties if k not in known]
        if unknown:
            return _hs_error("Property values were not valid", errors=[
                {"message": f'Property "{k}" does not exist', "code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": [k]}}
                for k in unknown])
        if "hs_task_priority" in properties and properties["hs_task_priority"] not in HS_PRIORITIES:
            return _hs_error(f"Property values were not valid: {properties['hs_task_priority']} was not one of the allowed options")
        if "hs_task_status" in properties and properties["hs_task_status"] not in HS_STATUSES:
            return _hs_error(f"Property values were not valid: {properties['hs_task_status']} was not one of the allowed options")
        owner = properties.get("hubspot_owner_id")
        if owner and not any(str(o["id"]) == str(owner) for o in self.owners):
            return _hs_error(f"Property values were not valid: {owner} is not a valid owner id")
        return None

    def _create_task(self, payload: dict[str, Any]) -> Answer:
        properties = payload.get("properties") or {}
        problem = self._check_task(properties)
        if problem:
            return 400, problem
        if not properties.get("hs_timestamp"):
            return 400, _hs_error("Property values were not valid: hs_timestamp is required")
        value = properties.get(self.task_id_property)
        clash = next((t for t in self.tasks if value and t["properties"].get(self.task_id_property) == str(value)), None)
        if clash is not None:
            return 409, _hs_error(f"A task with {self.task_id_property} {value} already exists. Existing ID: {clash['id']}", "CONFLICT")
        companies = []
        for association in payload.get("associations") or []:
            to = str((association.get("to") or {}).get("id"))
            types = association.get("types") or []
            if not any(t.get("associationTypeId") == TASK_TO_COMPANY and t.get("associationCategory") == "HUBSPOT_DEFINED" for t in types):
                return 400, _hs_error("invalid association type for task to company")
            if self.company(to) is None:
                return 400, _hs_error(f"One or more associations are invalid: company {to} does not exist")
            companies.append(to)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        task = {"id": str(next(self._ids)), "properties": {k: str(v) for k, v in properties.items()},
                "companies": companies, "createdAt": now, "updatedAt": now}
        self.tasks.append(task)
        return 201, self._shown(task)

    def _shown(self, task: dict[str, Any]) -> dict[str, Any]:
        return {"id": task["id"], "properties": {"hs_object_id": task["id"], "hs_createdate": task["createdAt"], **task["properties"]},
                "createdAt": task["createdAt"], "updatedAt": task["updatedAt"], "archived": False}

    def _search(self, payload: dict[str, Any]) -> Answer:
        groups = payload.get("filterGroups") or []
        def matches(task):
            if not groups:
                return True
            for group in groups:
                if all(f.get("operator") == "EQ" and task["properties"].get(f.get("propertyName")) == str(f.get("value"))
                       for f in group.get("filters") or []):
                    return True
            return False
        found = [t for t in self.tasks if matches(t)]
        wanted = payload.get("properties") or ["hs_task_subject"]
        limit = int(payload.get("limit") or 10)
        results = [{"id": t["id"], "properties": {p: t["properties"].get(p) for p in ["hs_object_id", *wanted]} | {"hs_object_id": t["id"]},
                    "createdAt": t["createdAt"], "updatedAt": t["updatedAt"], "archived": False} for t in found[:limit]]
        return 200, {"total": len(found), "results": results}

    def _batch_update(self, payload: dict[str, Any]) -> Answer:
        inputs = payload.get("inputs") or []
        if not 1 <= len(inputs) <= 100:
            return 400, _hs_error(f"inputs must hold between 1 and 100 objects, got {len(inputs)}")
        unknown = sorted({k for i in inputs for k in (i.get("properties") or {}) if k not in self.company_properties})
        if unknown:
            return 400, _hs_error("Property values were not valid", errors=[
                {"message": f'Property "{k}" does not exist', "code": "PROPERTY_DOESNT_EXIST"} for k in unknown])
        missing = [str(i.get("id")) for i in inputs if self.company(str(i.get("id"))) is None]
        if missing and self.batch_missing == "reject":
            return 400, _hs_error("Could not get some COMPANY objects, they may be deleted or not exist. Check that ids are valid.",
                                  "OBJECT_NOT_FOUND", context={"ids": missing})
        started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        results = []
        for item in inputs:
            company = self.company(str(item.get("id")))
            if company is None:
                continue
            company.setdefault("properties", {}).update({k: str(v) for k, v in (item.get("properties") or {}).items()})
            results.append({"id": str(company["id"]), "properties": dict(company["properties"]),
                            "createdAt": "2024-01-01T00:00:00Z", "updatedAt": started, "archived": False})
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": started}
        if missing:
            answer["numErrors"] = 1
            answer["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                 "message": "Could not get some COMPANY objects, they may be deleted or not exist. Check that ids are valid.",
                                 "context": {"ids": missing}}]
            return 207, answer
        return 200, answer


# --- Webhook receiver ----------------------------------------------------------------------------


class WebhookReceiver(WriteApi):
    """A service that receives the webhook sink's events at `POST /hooks/tasks` (`hook_url`)."""

    name = "webhook"

    def __init__(self, secret: str = "whsec-test-0123456789abcdef", **kwargs) -> None:
        super().__init__(**kwargs)
        self.secret = secret
        self.deliveries: list[dict[str, Any]] = []  # {event, task, headers, body}, verified and new only
        self.rejected = 0
        self._answers: dict[str, Answer] = {}
        self._ids = itertools.count(1)

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/tasks"

    def authorized(self, headers) -> bool:
        return True  # the signature is checked over the body, in `write`

    def error_body(self, status: int) -> Any:
        return {"error": {401: "invalid signature", 429: "slow down", 500: "receiver failed"}.get(status, "error")}

    def route(self, path, query, headers) -> Answer:
        return 405, {"error": "POST only"}

    def write(self, method: str, path: str, query, headers, body: bytes) -> Answer:
        if path != "/hooks/tasks" or method != "POST":
            return 404, {"error": "not found"}
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-CS-Pipeline-Signature") or ""):
            self.rejected += 1
            return 401, {"error": "invalid signature"}
        if not (headers.get("X-CS-Pipeline-Timestamp") or "").isdigit():
            return 400, {"error": "missing timestamp"}
        key = headers.get("Idempotency-Key") or ""
        if key and key in self._answers:
            return self._answers[key]
        event = json.loads(body)
        self.deliveries.append({"event": event["event"], "task": event["task"], "headers": dict(headers), "body": body})
        if event["event"] == "task.created":
            remote = f"wh-{next(self._ids)}"
            answer: Answer = (201, {"id": remote, "url": f"{self.url}/tasks/{remote}"})
        else:
            answer = (200, {"ok": True})
        if key:
            self._answers[key] = answer
        return answer

