"""Launch the dispatch job when the alerts asset is materialized, and retry failed deliveries.

The sensor never opens the warehouse (DuckDB allows one writer or many readers, not both): it
reads the alerts asset's materializations and the dispatch runs' tags from Dagster's storage,
and the job it launches reads the warehouse.
"""


import dagster as dg

from cs_pipeline.jobs.dispatch import FAILED_TAG, dispatch_alerts

ALERTS = dg.AssetKey("alerts")


def _last_dispatch_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=dispatch_alerts.name), limit=1)
    return runs[0] if runs else None


@dg.sensor(
    job=dispatch_alerts,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs dispatch_alerts after each materialization of `alerts` with live alerts, "
    "and again after a dispatch run that left failed deliveries or failed.",
)
def alert_dispatch_sensor(context: dg.SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ALERTS, after_storage_id=after), limit=1000, ascending=True
    )
    records = result.records
    if records:
        newest = records[-1].storage_id
        live = [r for r in records if _live_alerts(r) > 0]
        context.update_cursor(str(newest))
        if live:
            # One run covers every live alert, however many materializations arrived since the last tick.
            yield dg.RunRequest(run_key=f"alerts-{live[-1].storage_id}", tags={"cs_pipeline/trigger": "alerts"})
            return
    last = _last_dispatch_run(context.instance)
    if last and _needs_retry(last):
        # One retry per finished run: while Slack stays down, each failed retry asks for the next.
        yield dg.RunRequest(run_key=f"retry-{last.run_id}", tags={"cs_pipeline/trigger": "retry"})
        return
    yield dg.SkipReason("no new live alerts and no failed deliveries to retry")


def _needs_retry(run: dg.DagsterRun) -> bool:
    """A finished dispatch run that left failed deliveries, or that failed itself (it may have
    left a delivery `sending`, which the next run checks in Slack before posting again)."""
    if not run.is_finished:
        return False
    if run.status == dg.DagsterRunStatus.FAILURE:
        return True
    return int(run.tags.get(FAILED_TAG, "0") or 0) > 0


def _live_alerts(record: dg.EventLogRecord) -> int:
    materialization = record.asset_materialization
    if materialization is None:
        return 0
    value = materialization.metadata.get("live_alerts")
    return int(value.value) if value is not None else 0
