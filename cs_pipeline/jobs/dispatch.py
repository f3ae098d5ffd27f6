"""The dispatch job: create each live alert's task, send its message, close resolved alerts, sync task sinks.

The ops are thin: they read the `alerts` rows from the warehouse and hand them to the actions
layer (`cs_pipeline.actions`), which owns the actions store and the delivery protocol (see
`cs_pipeline.actions.protocol`: never twice once sent, an attempt in doubt looked up in Slack
first, a lost answer settled within the same run). What is live is decided each time an op runs,
not passed between ops; the ops are in the one-at-a-time `duckdb` pool, so two dispatch runs never
overlap, and each op ends by refreshing the warehouse's read copy of the store (`actions.*`).

Snoozed, acknowledged, done and "not useful" alerts (`cs-pipeline snooze|ack`, or a button in
Slack) do not notify. A sent alert no longer open on the latest evaluated live day is closed: its
task becomes its rule's `task.on_resolve` and its owner gets one "resolved" message. Task sinks
(`CS_PIPELINE_TASK_SINKS`) go last: Slack never waits for a CRM.
"""

import dagster as dg

from cs_pipeline import settings
from cs_pipeline.actions import notify, planner
from cs_pipeline.actions.channels import channel_for, resolved_outgoing
from cs_pipeline.actions.protocol import Counts, deliver
from cs_pipeline.actions.resource import ActionsResource
from cs_pipeline.actions.sinks import sync_sinks
from cs_pipeline.actions.store import ActionsStore
from cs_pipeline.assets.crm_writeback import CrmWritebackResource
from cs_pipeline.logic.config import ConfigError
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.slack import SlackResource
from cs_pipeline.resources.warehouse import POOL, WarehouseResource
from cs_pipeline.sinks import SinkError
from cs_pipeline.sinks.config import TaskSinksResource
from cs_pipeline.sinks.crm_ids import CrmIdMapping, record_url

FAILED_TAG = "cs_pipeline/failed_deliveries"


def _copy(con, store: ActionsStore) -> None:
    store.copy_to_warehouse(con)


def _tag_failed(context: dg.OpExecutionContext, failed: int, add: bool = True) -> None:
    """Failed deliveries on the run's tag: the sensor retries a run that left some."""
    if not (context.run.run_id and context.instance):
        return
    before = 0
    if add:
        run = context.instance.get_run_by_id(context.run.run_id)
        before = int((run.tags if run else {}).get(FAILED_TAG, "0") or 0)
    if failed or not add:
        context.instance.add_run_tags(context.run.run_id, {FAILED_TAG: str(before + failed)})


@dg.op(pool=POOL, description="Create one task per live alert in the actions store (one task per alert id).")
def create_tasks(context: dg.OpExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig,
                 actions: ActionsResource) -> int:
    store = actions.store()
    with warehouse.connect() as con:
        alerts = planner.live_alerts(con, settings.today(), cs_config.live_window_days)
        created = store.create_tasks(planner.task_rows(alerts)) if alerts.height else 0
        _copy(con, store)
    context.log.info(f"tasks: {created} created, {alerts.height - created} already existed")
    context.add_output_metadata({"tasks_created": created, "live_alerts": alerts.height})
    return created


def _crm_links(con, alerts, crm_writeback_config: CrmWritebackResource, log) -> dict[str, str | None]:
    """Each account's CRM record link (`CS_PIPELINE_CRM_RECORD_URL`); a broken mapping costs the links, never the messages."""
    template = settings.crm_record_url()
    if not template:
        return {}
    try:
        found = crm_writeback_config.crm_ids().lookup(con, alerts["account_id"].to_list())
    except SinkError as error:
        log.warning(f"alert messages go without CRM links: {error}")
        return {}
    return {account: record_url(template, crm_id) for account, crm_id in found.items()}


@dg.op(ins={"tasks_created": dg.In(int)}, pool=POOL,
       description="Send each live alert's Slack message (or write it to the outbox) once per notification number.")
def send_notifications(context: dg.OpExecutionContext, tasks_created: int, warehouse: WarehouseResource,
                       cs_config: PipelineConfig, slack: SlackResource, crm_writeback_config: CrmWritebackResource,
                       actions: ActionsResource) -> dg.Output[int]:
    today, store, channel = settings.today(), actions.store(), channel_for(slack)
    counts, muted = Counts(), 0
    with warehouse.connect() as con:
        alerts = planner.live_alerts(con, today, cs_config.live_window_days)
        alerts, muted = notify.without_muted(store, alerts, today)
        if alerts.height:
            links = _crm_links(con, alerts, crm_writeback_config, context.log)
            messages = [notify.alert_message(row, links.get(row["account_id"]))
                        for row in notify.sorted_for_sending(alerts).iter_rows(named=True)]
            alone, digests, held = notify.plan_sending(store, channel, messages, slack)
            counts = notify.send_alerts(store, channel, alone, actions.settle_seconds, context.log)
            counts.failed += held  # an unsure digest: the sensor's retry looks for it again
            notify.send_digests(store, channel, digests, today, counts, actions.settle_seconds, context.log)
        _copy(con, store)
    context.log.info(
        f"notifications: {counts.sent} sent, {counts.failed} failed, {counts.skipped} already sent, "
        f"{counts.found_posted} found already posted, {muted} muted by an action, {counts.alerts_per_second} alerts/s")
    _tag_failed(context, counts.failed, add=False)
    return dg.Output(counts.sent, metadata={
        "sent": counts.sent, "failed": counts.failed, "already_sent": counts.skipped,
        "found_already_posted": counts.found_posted, "in_digests": counts.in_digests,
        "rate_limited_answers": counts.rate_limited, "muted": muted, "send_seconds": round(counts.seconds, 3),
        "alerts_per_second": counts.alerts_per_second})


def close_and_tell(store: ActionsStore, con, slack: SlackResource, live_window_days: int, settle_seconds: float = 2.0,
                   log=None) -> tuple[list, Counts]:
    """Close resolved alerts (planner) and tell each owner once (the delivery protocol)."""
    day = planner.latest_evaluated_live_day(con, settings.today(), live_window_days)
    closures = planner.plan_closures(store, con, day) if day else []
    planner.close(store, closures, day)
    pending = planner.closed_unannounced(store)
    rows = planner.rows_on(con, {a: s["last_open_day"] for a, s in pending.items()})
    tasks = {t["alert_id"]: t["status"] for t in store.rows(planner.tasks)}
    items = [resolved_outgoing(notify.resolved_message(rows[a], pending[a]["closed_on"], tasks.get(a) or "done"))
             for a in sorted(rows)]
    counts, _ = deliver(store, channel_for(slack), items, store.notice_rows("closed"), settle_seconds, log=log)
    return closures, counts


@dg.op(ins={"notifications_sent": dg.In(int)}, pool=POOL,
       description="Close each sent alert no longer open on the latest evaluated live day: its task done or obsolete "
       "(the rule's task.on_resolve), owner told once.")
def close_resolved(context: dg.OpExecutionContext, notifications_sent: int, warehouse: WarehouseResource,
                   cs_config: PipelineConfig, slack: SlackResource, actions: ActionsResource) -> dg.Output[int]:
    store = actions.store()
    with warehouse.connect() as con:
        closures, counts = close_and_tell(store, con, slack, cs_config.live_window_days, actions.settle_seconds, context.log)
        _copy(con, store)
    told, closed = counts.sent + counts.found_posted, sum(c.state == "closed" for c in closures)
    ended = len(closures) - closed  # `keep_open` rules: the alert ends quietly, its task stays open
    context.log.info(f"closed {closed} resolved alerts ({ended} more ended quietly); {told} owners told, "
                     f"{counts.failed} notices failed")
    _tag_failed(context, counts.failed)
    return dg.Output(closed, metadata={"closed": closed, "ended_quietly": ended, "owners_told": told,
                                       "notices_failed": counts.failed})


@dg.op(ins={"resolved_closed": dg.In(int)}, pool=POOL,
       description="Create each open task in the task sinks its rule maps to (Salesforce, HubSpot, webhook) and close "
       "the remote tasks of auto-closed alerts; outcomes in the actions store, failures retried next run.")
def sync_task_sinks(context: dg.OpExecutionContext, resolved_closed: int, warehouse: WarehouseResource,
                    cs_config: PipelineConfig, task_sinks: TaskSinksResource, crm_writeback_config: CrmWritebackResource,
                    actions: ActionsResource) -> dg.Output[int]:
    try:
        config = task_sinks.config(set(cs_config.rules().by_id))
        crm_ids = crm_writeback_config.crm_ids() if config is not None and config.sinks else CrmIdMapping()
    except (ConfigError, SinkError) as error:
        raise dg.Failure(description=f"task sinks: {error}") from error
    if config is None or not config.sinks:
        context.log.info("task sinks: none configured; tasks stay in the actions store")
        return dg.Output(0, metadata={"created": 0, "closed": 0, "failed": 0, "skipped": "no task sinks configured"})
    store = actions.store()
    try:
        counts = sync_sinks(store, lambda: warehouse.connect(read_only=True), config, context.log, crm_ids)
    except SinkError as error:  # the CRM id table or column cannot be read: nothing was sent
        raise dg.Failure(description=f"task sinks: {error}") from error
    finally:
        with warehouse.connect() as con:
            _copy(con, store)
    context.log.info(f"task sinks: {counts.created} created, {counts.closed} closed, {counts.failed} failed, "
                     f"{counts.already} already there")
    _tag_failed(context, counts.failed)
    return dg.Output(counts.created, metadata={"created": counts.created, "closed": counts.closed,
                                               "failed": counts.failed, "already_there": counts.already})


@dg.job(description="Create the task and send the Slack message of every live alert, and close the resolved ones; "
        "safe to re-run at any time.", tags={"cs_pipeline/kind": "dispatch"})
def dispatch_alerts():
    sync_task_sinks(close_resolved(send_notifications(create_tasks())))

