"""Launch the dispatch job when the alerts asset is materialized, and retry failed deliveries.

The sensor never opens the warehouse (DuckDB allows one writer or many readers, not both): it
reads the alerts asset's materializations and the dispatch runs' records and tags from
Dagster's storage, and the job it launches reads the warehouse.

Retries back off. The first three dispatch runs in a row that need a retry (a run that failed,
or left failed deliveries) are retried on the next tick; after that the sensor waits 1, 2, 4 ...
minutes after the last one ended, at most CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES (60), so a
job that crashes on every run is not relaunched every minute for ever, while a Slack outage is
still caught up within that cap once Slack is back. New live alerts are dispatched at once,
unless a dispatch run started after them (`cs-pipeline run` launches its own): it sends them all.
"""

import datetime as dt
import time

import dagster as dg

from cs_pipeline import settings
from cs_pipeline.jobs.dispatch import FAILED_TAG, dispatch_alerts
from cs_pipeline.logic.delivery import retry_delay_seconds

ALERTS = dg.AssetKey("alerts")
# Enough dispatch runs to count a streak past the cap (2 ** 6 minutes > 60).
RUNS_LOOKED_AT = 12


def _clock() -> float:
    """Now, as a POSIX timestamp (the run records' end times are too)."""
    return time.time()


@dg.sensor(
    job=dispatch_alerts,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs dispatch_alerts after each materialization of `alerts` with live alerts, "
    "and again after a dispatch run that left failed deliveries or failed (backing off when that repeats).",
)
def alert_dispatch_sensor(context: dg.SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ALERTS, after_storage_id=after), limit=1000, ascending=True
    )
    records = result.records
    runs = context.instance.get_run_records(filters=dg.RunsFilter(job_name=dispatch_alerts.name), limit=RUNS_LOOKED_AT)
    dispatched_by = None
    if records:
        newest = records[-1].storage_id
        live = [r for r in records if _live_alerts(r) > 0]
        context.update_cursor(str(newest))
        if live:
            # A dispatch run launched after the newest of them sends them all: `cs-pipeline run` launches one.
            dispatched_by = next((r.dagster_run.run_id for r in runs if _launched_at(r) > live[-1].timestamp), None)
            if dispatched_by is None:
                # One run covers every live alert, however many materializations arrived since the last tick.
                yield dg.RunRequest(run_key=f"alerts-{live[-1].storage_id}", tags={"cs_pipeline/trigger": "alerts"})
                return
    failed_in_a_row = 0
    for run in runs:
        if not _needs_retry(run.dagster_run):
            break
        failed_in_a_row += 1
    if failed_in_a_row == 0:
        yield dg.SkipReason(f"the new live alerts are dispatched by run {dispatched_by[:8]}, launched after them"
                            if dispatched_by else "no new live alerts and no failed deliveries to retry")
        return
    last = runs[0]
    ended = last.end_time if last.end_time is not None else last.update_timestamp.timestamp()
    due = ended + retry_delay_seconds(failed_in_a_row, settings.dispatch_retry_max_minutes())
    now = _clock()
    if now < due:
        yield dg.SkipReason(_backing_off(last.dagster_run, failed_in_a_row, due, now))
        return
    # One retry per finished run: while Slack stays down, each failed retry asks for the next.
    yield dg.RunRequest(run_key=f"retry-{last.dagster_run.run_id}", tags={"cs_pipeline/trigger": "retry"})


def _launched_at(record: dg.RunRecord) -> float:
    """When the run started, else when it was created (SQLite keeps creation times to the second only)."""
    return record.start_time if record.start_time is not None else record.create_timestamp.timestamp()


def _backing_off(run: dg.DagsterRun, failed_in_a_row: int, due: float, now: float) -> str:
    what = "failed" if run.status == dg.DagsterRunStatus.FAILURE else "left failed deliveries"
    at = dt.datetime.fromtimestamp(due, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"backing off: {failed_in_a_row} dispatch runs in a row need a retry (the last, {run.run_id[:8]}, {what}); "
        f"next retry due at {at}, in {max(1, round(due - now))} s"
    )


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
