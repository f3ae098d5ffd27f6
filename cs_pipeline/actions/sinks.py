"""Task sinks (Salesforce Task, HubSpot task, signed webhook): each open task created once in the
sinks its rule maps to, and the remote task of a `done` or `obsolete` one closed with that outcome.

`task_sinks` in the actions store keeps, per (task_id, sink), the remote id and link, or why it
failed (tried again next run). A sink's failure never touches Slack delivery. Tasks are linked to
their account's CRM record through the write-back file's CRM id mapping; an account without a
CRM id gets its task unlinked, the reason recorded.
"""

from __future__ import annotations

import dataclasses

from cs_pipeline.actions.planner import SINK_CLOSED, SINK_CREATED, SINK_FAILED, SinkWork, plan_task_sinks
from cs_pipeline.actions.store import ActionsStore
from cs_pipeline.sinks import SinkError, TaskRequest
from cs_pipeline.sinks.config import TaskSinksConfig
from cs_pipeline.sinks.crm_ids import CrmIdMapping


@dataclasses.dataclass
class SinkCounts:
    created: int = 0
    closed: int = 0
    failed: int = 0
    already: int = 0


def with_crm_ids(connect, work: list[SinkWork], crm_ids: CrmIdMapping) -> list[SinkWork]:
    """Each `create` with its account's CRM record id (None when the account has none); the
    mapping is read from the warehouse (`connect()`), only when there is something to create."""
    accounts = {item.task["account_id"] for item in work if item.action == "create"}
    if not accounts:
        return work
    with connect() as con:
        found = crm_ids.lookup(con, accounts)
    return [dataclasses.replace(item, account_crm_id=found.get(item.task["account_id"])) if item.action == "create"
            else item for item in work]


def sync_sinks(store: ActionsStore, connect, config: TaskSinksConfig, log=None,
               crm_ids: CrmIdMapping = CrmIdMapping()) -> SinkCounts:
    """Create and close the tasks of `plan_task_sinks`, recording each outcome as it comes (an
    HTTP call may retry for minutes); a failure is recorded with its reason and tried again next
    run (`create` is idempotent on the remote side)."""
    counts = SinkCounts()
    work, counts.already = plan_task_sinks(store, config.sink_names)
    work = with_crm_ids(connect, work, crm_ids)
    for item in work:
        sink = config.sink(item.sink)
        try:
            if item.action == "create":
                remote = sink.create(TaskRequest.from_task_row(item.task, item.account_crm_id))
            else:
                sink.close(item.remote_id, item.task["status"])
        except Exception as error:  # noqa: BLE001 - one sink's failure never stops the others (nor Slack)
            reason = str(error) if isinstance(error, SinkError) else f"{item.sink} sink: {type(error).__name__}: {error}"
            counts.failed += 1
            if log is not None:
                log.warning(f"{item.task['task_id']} {item.action} in {item.sink}: {reason}")
            if item.action == "create":
                store.record_task_sink(item.task, item.sink, SINK_FAILED, reason=reason)
            else:  # kept `created`, so the next run closes it again
                store.record_task_sink(item.task, item.sink, SINK_CREATED, reason=f"close failed: {reason}")
            continue
        if item.action == "create":
            counts.created += 1
            unlinked = None
            if item.account_crm_id is None:
                unlinked = (f"created without a link to the account: {item.task['account_id']} has no CRM id "
                            f"in {crm_ids.source}")
                if log is not None:
                    log.warning(f"{item.task['task_id']} in {item.sink}: {unlinked}")
            store.record_task_sink(item.task, item.sink, SINK_CREATED, remote.remote_id, remote.url, reason=unlinked)
        else:
            counts.closed += 1
            store.record_task_sink(item.task, item.sink, SINK_CLOSED, reason=f"closed as {item.task['status']}")
    return counts
