"""What every task sink shares: the task it is asked to create, what it answers, and its HTTP.

A sink is a validated piece of configuration (`type: salesforce | hubspot | webhook`) that turns a
row of `actions.tasks` into a task in another system and closes it again:

    request = TaskRequest.from_task_row(row, account_crm_id=...)   # from CrmIdMapping.lookup
    remote = sink.create(request)          # RemoteTask(system, remote_id, url)
    sink.close(remote.remote_id, "done")   # or "obsolete"

`create` is idempotent: the same `task_id` never makes two remote tasks (Salesforce upserts on an
external id field, HubSpot searches a task property first, the webhook sends `Idempotency-Key`).

Every request goes through the connectors' `RetryingSession` (`cs_pipeline.sources.http`): 429
(honouring `Retry-After`), 5xx, timeouts and dropped connections are retried with backoff within
`retry_max_seconds`; 401/403 fail at once. Every failure is a `SinkError` naming the sink and the
setting (environment variable) to fix, with the secrets redacted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import requests
from pydantic import BaseModel, ConfigDict, Field
from requests.auth import AuthBase

from cs_pipeline.sources.base import ConnectorError, secret
from cs_pipeline.sources.http import Api, RetryingSession

Outcome = Literal["done", "obsolete"]
PRIORITIES = ("low", "normal", "high", "urgent")


class SinkError(ConnectorError):
    """A sink that cannot do its job: the message names the sink and the setting to fix, never a secret."""


@dataclass(frozen=True)
class TaskRequest:
    """One task to create, as `actions.tasks` holds it, plus the account's CRM record id
    (None: the account has none, and the task is created without a link to it)."""

    task_id: str
    alert_id: str
    account_id: str
    account_crm_id: str | None
    owner_email: str | None
    title: str
    body: str  # the playbook steps, numbered, one per line
    due_date: dt.date | None
    priority: str  # low | normal | high | urgent

    @classmethod
    def from_task_row(cls, row: Mapping[str, Any], account_crm_id: str | None) -> TaskRequest:
        """From a row of `actions.tasks` (`steps` is a JSON list) and the account's CRM id."""
        steps = row.get("steps")
        if isinstance(steps, str):
            try:
                steps = json.loads(steps)
            except ValueError:
                steps = [steps]
        due = row.get("due_date")
        if isinstance(due, str) and due:
            due = dt.date.fromisoformat(due[:10])
        elif isinstance(due, dt.datetime):
            due = due.date()
        return cls(
            task_id=str(row["task_id"]),
            alert_id=str(row.get("alert_id") or ""),
            account_id=str(row.get("account_id") or ""),
            account_crm_id=account_crm_id or None,
            owner_email=row.get("owner_email") or None,
            title=str(row.get("title") or ""),
            body=numbered(steps or []),
            due_date=due or None,
            priority=str(row.get("priority") or "normal"),
        )


def numbered(steps: Iterable[str]) -> str:
    """Playbook steps as the body of a task: `1. ...` one per line."""
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, start=1))


@dataclass(frozen=True)
class RemoteTask:
    """The task a sink created: which system, its id there, and a link to it when known."""

    system: str
    remote_id: str
    url: str | None = None
    owner_id: str | None = None  # the owner found by email, None when not found (the API user owns it)


class TaskSink(BaseModel):
    """Base class: subclasses set `type` and implement `create` and `close`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    system: ClassVar[str] = ""
    timeout_seconds: float = Field(30.0, gt=0, description="how long one request may wait for an answer")
    retry_max_seconds: float = Field(
        120.0, ge=0, description="how long one request is retried (429, 5xx, timeouts) before it fails"
    )
    backoff_seconds: float = Field(1.0, ge=0, description="first wait between retries; doubles each time, at most 30 s")

    def create(self, request: TaskRequest) -> RemoteTask:
        raise NotImplementedError

    def close(self, remote_id: str, outcome: Outcome) -> None:
        raise NotImplementedError

    def _http(
        self, name: str, base_url: str, auth: AuthBase | None, credentials: str, secrets: Iterable[str], hint: str = ""
    ) -> SinkHttp:
        api = Api(
            name=name,
            base_url=base_url.rstrip("/"),
            auth=auth,  # type: ignore[arg-type]
            credentials=credentials,
            secrets=tuple(s for s in secrets if s),
            timeout=self.timeout_seconds,
            retry_max_seconds=self.retry_max_seconds,
            backoff_seconds=self.backoff_seconds,
            bad_request_hint=hint,
        )
        return SinkHttp(api)


def sink_secret(env_name: str, sink: str, setting: str) -> str:
    """A secret from the environment (through dagster.EnvVar), or a SinkError naming the variable."""
    try:
        return secret(env_name, sink, setting)
    except ConnectorError as error:
        raise SinkError(str(error)) from None


class SinkHttp:
    """Requests to one API through the connectors' RetryingSession; errors become SinkErrors."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.session = RetryingSession(api)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow: Iterable[int] = (),
    ) -> requests.Response:
        """Send and return the answer when it is 2xx or in `allow`; anything else raises SinkError."""
        url = path if path.startswith(("http://", "https://")) else f"{self.api.base_url}{path}"
        try:
            response = self.session.request(
                method, url, json=json_body, data=data, params=params, headers=dict(headers or {}), auth=self.api.auth
            )
        except ConnectorError as error:  # gave up retrying
            raise SinkError(self.api.redact(str(error))) from None
        except Exception as exc:  # noqa: BLE001 - reported as this sink's failure, secrets redacted
            raise SinkError(str(self.api.failure(exc))) from None
        if 200 <= response.status_code < 300 or response.status_code in set(allow):
            return response
        raise self.failure(response)

    def failure(self, response: requests.Response) -> SinkError:
        return SinkError(str(self.api.http_failure(response)))

    def json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None
