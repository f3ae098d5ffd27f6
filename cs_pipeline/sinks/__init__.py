"""Task sinks (Salesforce Task, HubSpot task, signed webhook) and the CRM account write-back.

    from cs_pipeline.sinks import parse_sink, TaskRequest
    sink = parse_sink({"type": "salesforce", "instance_url": ..., "token_env": "SALESFORCE_ACCESS_TOKEN"})
    remote = sink.create(TaskRequest.from_task_row(task_row, account_crm_id="001..."))
    sink.close(remote.remote_id, "done")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from cs_pipeline.sinks.base import (
    Outcome,
    RemoteTask,
    SinkError,
    TaskRequest,
    TaskSink,
    numbered,
)
from cs_pipeline.sinks.hubspot import HubSpotTaskSink
from cs_pipeline.sinks.salesforce import SalesforceTaskSink
from cs_pipeline.sinks.webhook import WebhookTaskSink

TaskSinkConfig = Annotated[SalesforceTaskSink | HubSpotTaskSink | WebhookTaskSink, Field(discriminator="type")]
_ADAPTER: TypeAdapter[TaskSink] = TypeAdapter(TaskSinkConfig)


def parse_sink(config: Mapping[str, Any]) -> TaskSink:
    """A sink from its configuration (a mapping with `type`); invalid settings raise SinkError."""
    try:
        return _ADAPTER.validate_python(dict(config))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'sink'}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise SinkError(f"task sink configuration: {problems}") from None


__all__ = [
    "HubSpotTaskSink",
    "Outcome",
    "RemoteTask",
    "SalesforceTaskSink",
    "SinkError",
    "TaskRequest",
    "TaskSink",
    "TaskSinkConfig",
    "WebhookTaskSink",
    "numbered",
    "parse_sink",
]
