"""HubSpot task sink: one CRM v3 task per alert task, associated with the account's company.

    tasks:
      type: hubspot
      token_env: HUBSPOT_ACCESS_TOKEN        # private-app token: crm.objects.companies.write, tasks, owners read
      task_id_property: cs_pipeline_task_id  # a custom task property (single-line text, unique values)
      portal_id: "1234567"                   # optional: for links to the task

`create`: searches tasks whose `task_id_property` equals the task_id
(`POST /crm/v3/objects/tasks/search`) and returns that task when there is one; else looks the
owner up by email (`GET /crm/v3/owners?email=`) and creates the task (`POST /crm/v3/objects/tasks`)
with hs_task_subject, hs_task_body (numbered steps), hs_timestamp (the due date, 00:00 UTC),
hs_task_priority (`priorities`), hs_task_status NOT_STARTED, hs_task_type TODO, hubspot_owner_id and
the task id property, associated with the company (task→company, type 192). When the property has
unique values, a create that raced another (HTTP 409, "Existing ID: n") answers the existing task.
`close`: `PATCH /crm/v3/objects/tasks/{id}` with hs_task_status COMPLETED.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from pydantic import Field, PrivateAttr

from cs_pipeline.sinks.base import (
    Outcome,
    RemoteTask,
    SinkError,
    SinkHttp,
    TaskRequest,
    TaskSink,
    sink_secret,
)

TASK_TO_COMPANY = 192  # HUBSPOT_DEFINED association type id, task → company


class HubSpotTaskSink(TaskSink):
    """Creates and closes HubSpot tasks (see the module docstring)."""

    type: Literal["hubspot"] = "hubspot"
    token_env: str = Field(description="environment variable holding the private-app access token")
    base_url: str = Field("https://api.hubapi.com", description="API base URL")
    task_id_property: str = Field(
        "cs_pipeline_task_id", description="custom task property holding the pipeline's task_id (idempotency)"
    )
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"low": "LOW", "normal": "MEDIUM", "high": "HIGH", "urgent": "HIGH"},
        description="task priority → hs_task_priority",
    )
    closed_status: dict[str, str] = Field(
        default_factory=lambda: {"done": "COMPLETED", "obsolete": "COMPLETED"},
        description="outcome → hs_task_status when the task is closed",
    )
    portal_id: str | None = Field(None, description="the HubSpot account id, for links to tasks")
    _owners: dict[str, str | None] = PrivateAttr(default_factory=dict)

    def http(self) -> SinkHttp:
        token = sink_secret(self.token_env, "hubspot sink", "token_env")
        return self._http(
            "hubspot sink",
            self.base_url,
            BearerTokenAuth(token),
            f"the private-app token in environment variable {self.token_env} (setting `token_env`)",
            [token],
            f"check that tasks have the custom property `{self.task_id_property}` (setting `task_id_property`) "
            "and the settings `priorities` and `closed_status`",
        )

    def owner_id(self, http: SinkHttp, email: str | None) -> str | None:
        if not email:
            return None
        key = email.strip().lower()
        if key not in self._owners:
            body = http.json(http.request("GET", "/crm/v3/owners", params={"email": email.strip(), "limit": 1})) or {}
            owners = [o for o in body.get("results") or [] if str(o.get("email") or "").lower() == key]
            self._owners[key] = str(owners[0]["id"]) if owners else None
        return self._owners[key]

    def find(self, http: SinkHttp, task_id: str) -> dict[str, Any] | None:
        body = http.json(
            http.request(
                "POST",
                "/crm/v3/objects/tasks/search",
                json_body={
                    "filterGroups": [{"filters": [{"propertyName": self.task_id_property, "operator": "EQ", "value": task_id}]}],
                    "properties": ["hubspot_owner_id", "hs_task_status", self.task_id_property],
                    "limit": 1,
                },
            )
        ) or {}
        results = body.get("results") or []
        return results[0] if results else None

    def task_url(self, remote_id: str) -> str | None:
        return f"https://app.hubspot.com/contacts/{self.portal_id}/record/0-27/{remote_id}" if self.portal_id else None

    def properties(self, request: TaskRequest, owner_id: str | None) -> dict[str, str]:
        priority = self.priorities.get(request.priority.lower())
        if priority is None:
            raise SinkError(f"hubspot sink: task priority {request.priority!r} has no HubSpot value (setting `priorities`)")
        due = request.due_date or dt.datetime.now(dt.UTC).date()
        properties = {
            "hs_task_subject": request.title,
            "hs_task_body": request.body,
            "hs_timestamp": f"{due.isoformat()}T00:00:00Z",
            "hs_task_priority": priority,
            "hs_task_status": "NOT_STARTED",
            "hs_task_type": "TODO",
            self.task_id_property: request.task_id,
        }
        if owner_id:
            properties["hubspot_owner_id"] = owner_id
        return properties

    def create(self, request: TaskRequest) -> RemoteTask:
        with self.http() as http:
            found = self.find(http, request.task_id)
            if found:
                return self._remote(found)
            owner = self.owner_id(http, request.owner_email)
            payload: dict[str, Any] = {"properties": self.properties(request, owner)}
            if request.account_crm_id:
                payload["associations"] = [
                    {
                        "to": {"id": request.account_crm_id},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_COMPANY}],
                    }
                ]
            response = http.request("POST", "/crm/v3/objects/tasks", json_body=payload, allow=(409,))
            body = http.json(response) or {}
            if response.status_code == 409:  # unique task id property: created by an earlier attempt
                existing = re.search(r"Existing ID:\s*(\d+)", str(body.get("message") or ""))
                if not existing:
                    raise http.failure(response)
                return RemoteTask("hubspot", existing.group(1), self.task_url(existing.group(1)), owner)
            if not body.get("id"):
                raise SinkError(f"hubspot sink: creating task {request.task_id} answered no id")
            return RemoteTask("hubspot", str(body["id"]), self.task_url(str(body["id"])), owner)

    def _remote(self, record: dict[str, Any]) -> RemoteTask:
        remote_id = str(record["id"])
        owner = (record.get("properties") or {}).get("hubspot_owner_id") or None
        return RemoteTask("hubspot", remote_id, self.task_url(remote_id), owner)

    def close(self, remote_id: str, outcome: Outcome) -> None:
        status = self.closed_status.get(outcome)
        if status is None:
            raise SinkError(f"hubspot sink: no hs_task_status for outcome {outcome!r} (setting `closed_status`)")
        with self.http() as http:
            http.request("PATCH", f"/crm/v3/objects/tasks/{remote_id}", json_body={"properties": {"hs_task_status": status}})
