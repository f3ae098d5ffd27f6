"""Salesforce Task sink: one Task per alert task, through the REST sObject API.

    tasks:
      type: salesforce
      instance_url: https://acme.my.salesforce.com
      token_env: SALESFORCE_ACCESS_TOKEN
      api_version: v61.0
      external_id_field: CS_Pipeline_Task_Id__c   # a Text(64) External ID, Unique field on Task

`create`: looks the owner up by email (`SELECT Id FROM User WHERE Email = '...' AND IsActive = true`),
then upserts the Task on its external id field, `PATCH /sobjects/Task/{external_id_field}/{task_id}`
(201 created, 200 already there): the same task_id can never make two Tasks, even when a request is
retried after the org created the record. An existing Task is found by a SOQL lookup first and left
as it is (a CSM's edits are not overwritten). Without `external_id_field` (empty), the Task is
created with `POST /sobjects/Task` (no idempotency in Salesforce: keep the remote id and never
call `create` twice for a task).

Fields: Subject (title), Description (numbered playbook steps), ActivityDate (due date), Priority
(`priorities` maps low/normal/high/urgent to the org's picklist), Status (`open_status`), WhatId
(the account's CRM id), OwnerId (the owner's User Id, else left to the API user).
`close`: `PATCH /sobjects/Task/{id}` with Status = `closed_status[outcome]` (Completed).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from pydantic import Field, PrivateAttr, field_validator

from cs_pipeline.sinks.base import (
    Outcome,
    RemoteTask,
    SinkError,
    SinkHttp,
    TaskRequest,
    TaskSink,
    sink_secret,
)

SUBJECT_MAX = 255
DESCRIPTION_MAX = 32000


def soql_literal(value: str) -> str:
    """A string as a SOQL literal: quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceTaskSink(TaskSink):
    """Creates and closes Salesforce Tasks (see the module docstring)."""

    type: Literal["salesforce"] = "salesforce"
    instance_url: str = Field(description="the org's URL, e.g. https://acme.my.salesforce.com")
    token_env: str = Field(description="environment variable holding the OAuth access token")
    api_version: str = Field("v61.0", description="REST API version, e.g. v61.0")
    external_id_field: str = Field(
        "CS_Pipeline_Task_Id__c",
        description="External ID field on Task holding the pipeline's task_id (idempotency); empty: plain create",
    )
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"low": "Low", "normal": "Normal", "high": "High", "urgent": "High"},
        description="task priority → Task.Priority picklist value",
    )
    open_status: str = Field("Not Started", description="Task.Status of a new task")
    closed_status: dict[str, str] = Field(
        default_factory=lambda: {"done": "Completed", "obsolete": "Completed"},
        description="outcome → Task.Status when the task is closed",
    )
    _owners: dict[str, str | None] = PrivateAttr(default_factory=dict)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.strip()
        value = value if value.startswith("v") else f"v{value}"
        if not re.fullmatch(r"v\d+\.\d", value):
            raise ValueError(f"api_version must look like v61.0, got {value!r}")
        return value

    # ------------------------------------------------------------------ HTTP

    def http(self) -> SinkHttp:
        token = sink_secret(self.token_env, "salesforce sink", "token_env")
        return self._http(
            "salesforce sink",
            self.instance_url,
            BearerTokenAuth(token),
            f"the OAuth access token in environment variable {self.token_env} (setting `token_env`)",
            [token],
            f"check that Task has the External ID field `{self.external_id_field}` (setting `external_id_field`), "
            "and the settings `priorities`, `open_status` and `closed_status` against the org's picklists",
        )

    @property
    def _base(self) -> str:
        return f"/services/data/{self.api_version}"

    def query(self, http: SinkHttp, soql: str) -> list[dict[str, Any]]:
        body = http.json(http.request("GET", f"{self._base}/query", params={"q": soql})) or {}
        return list(body.get("records") or [])

    def owner_id(self, http: SinkHttp, email: str | None) -> str | None:
        """The active User with this email (case-insensitive, as Salesforce compares), cached."""
        if not email:
            return None
        key = email.strip().lower()
        if key not in self._owners:
            records = self.query(http, f"SELECT Id FROM User WHERE Email = {soql_literal(email.strip())} AND IsActive = true")
            self._owners[key] = records[0]["Id"] if records else None
        return self._owners[key]

    def task_url(self, task_id: str) -> str:
        return f"{self.instance_url.rstrip('/')}/lightning/r/Task/{task_id}/view"

    # ------------------------------------------------------------------ sink

    def fields(self, request: TaskRequest, owner_id: str | None) -> dict[str, Any]:
        priority = self.priorities.get(request.priority.lower())
        if priority is None:
            raise SinkError(
                f"salesforce sink: task priority {request.priority!r} has no Salesforce value (setting `priorities`)"
            )
        fields: dict[str, Any] = {
            "Subject": request.title[:SUBJECT_MAX],
            "Description": request.body[:DESCRIPTION_MAX],
            "Priority": priority,
            "Status": self.open_status,
        }
        if request.due_date:
            fields["ActivityDate"] = request.due_date.isoformat()
        if request.account_crm_id:
            fields["WhatId"] = request.account_crm_id
        if owner_id:
            fields["OwnerId"] = owner_id
        return fields

    def create(self, request: TaskRequest) -> RemoteTask:
        with self.http() as http:
            if self.external_id_field:
                existing = self.query(
                    http,
                    f"SELECT Id, OwnerId FROM Task WHERE {self.external_id_field} = {soql_literal(request.task_id)}",
                )
                if existing:
                    record = existing[0]
                    return RemoteTask("salesforce", record["Id"], self.task_url(record["Id"]), record.get("OwnerId"))
            owner = self.owner_id(http, request.owner_email)
            fields = self.fields(request, owner)
            if self.external_id_field:
                path = f"{self._base}/sobjects/Task/{self.external_id_field}/{quote(request.task_id, safe='')}"
                response = http.request("PATCH", path, json_body=fields)
            else:
                response = http.request("POST", f"{self._base}/sobjects/Task", json_body=fields)
            body = http.json(response) or {}
            if not body.get("id") or body.get("success") is False:
                raise SinkError(f"salesforce sink: creating task {request.task_id} failed: {body.get('errors') or body}")
            return RemoteTask("salesforce", body["id"], self.task_url(body["id"]), owner)

    def close(self, remote_id: str, outcome: Outcome) -> None:
        status = self.closed_status.get(outcome)
        if status is None:
            raise SinkError(f"salesforce sink: no Task status for outcome {outcome!r} (setting `closed_status`)")
        with self.http() as http:
            http.request("PATCH", f"{self._base}/sobjects/Task/{quote(remote_id, safe='')}", json_body={"Status": status})
