"""Webhook task sink: POST each task event as signed JSON to a URL you run.

    tasks:
      type: webhook
      url: https://tasks.example.com/hooks/cs-pipeline
      secret_env: CS_PIPELINE_WEBHOOK_SECRET

Every delivery is `POST url` with the JSON body

    {"event": "task.created", "sent_at": "2026-11-23T14:00:00Z",
     "task": {"task_id", "alert_id", "account_id", "account_crm_id", "owner_email", "title", "body",
              "steps": [...], "due_date": "YYYY-MM-DD", "priority"}}
    {"event": "task.closed", "sent_at": ..., "task": {"remote_id", "outcome": "done" | "obsolete"}}

and the headers

    X-CS-Pipeline-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>
    X-CS-Pipeline-Timestamp: <Unix seconds when sent; also `sent_at` in the signed body>
    Idempotency-Key: <task_id> for task.created, close:<remote_id>:<outcome> for task.closed

The receiver verifies the signature over the exact bytes received (constant-time compare), rejects
old timestamps if it wants replay protection, and treats a repeated Idempotency-Key as the same
request. For task.created it answers 2xx with `{"id": "...", "url": "..."}` (both optional): the id
becomes the remote id (the task_id when it sends none).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any, Literal

from pydantic import Field

from cs_pipeline.sinks.base import (
    Outcome,
    RemoteTask,
    TaskRequest,
    TaskSink,
    sink_secret,
)

SIGNATURE_HEADER = "X-CS-Pipeline-Signature"
TIMESTAMP_HEADER = "X-CS-Pipeline-Timestamp"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for a body: `sha256=` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature of the raw body and compare in constant time."""
    return bool(header) and hmac.compare_digest(signature(secret, body), header or "")


class WebhookTaskSink(TaskSink):
    """Sends task.created / task.closed events to a webhook (see the module docstring)."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(description="where events are POSTed")
    secret_env: str = Field(description="environment variable holding the HMAC signing secret")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers sent with every event (no secrets)")

    def _send(self, event: str, task: dict[str, Any], key: str) -> Any:
        secret = sink_secret(self.secret_env, "webhook sink", "secret_env")
        now = time.time()
        body = json.dumps(
            {
                "event": event,
                "sent_at": dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "task": task,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(secret, body),
            TIMESTAMP_HEADER: str(int(now)),
            "Idempotency-Key": key,
        }
        http = self._http(
            "webhook sink",
            self.url,
            None,
            f"the signing secret in environment variable {self.secret_env} (setting `secret_env`)",
            [secret],
        )
        with http:
            response = http.request("POST", self.url, data=body, headers=headers)
            return http.json(response)

    def create(self, request: TaskRequest) -> RemoteTask:
        task = {
            "task_id": request.task_id,
            "alert_id": request.alert_id,
            "account_id": request.account_id,
            "account_crm_id": request.account_crm_id,
            "owner_email": request.owner_email,
            "title": request.title,
            "body": request.body,
            "steps": [line.split(". ", 1)[-1] for line in request.body.splitlines() if line],
            "due_date": request.due_date.isoformat() if request.due_date else None,
            "priority": request.priority,
        }
        answer = self._send("task.created", task, request.task_id)
        answer = answer if isinstance(answer, dict) else {}
        remote_id = str(answer.get("id") or request.task_id)
        return RemoteTask("webhook", remote_id, answer.get("url") or None)

    def close(self, remote_id: str, outcome: Outcome) -> None:
        self._send("task.closed", {"remote_id": remote_id, "outcome": outcome}, f"close:{remote_id}:{outcome}")
