"""The daily run: every asset for the latest complete UTC day, caught up from the first day not evaluated.

A day's alerts continue the episodes open the day before (`cs_pipeline.partitions`), so a day
the schedule missed (the daemon was down, a run failed) is never skipped over: the next tick runs
every day from the first one whose `alerts` partition was never materialized, as one range run.
"""

import datetime as dt

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from cs_pipeline import settings
from cs_pipeline.partitions import daily_partitions

ALERTS = dg.AssetKey("alerts")

daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Ingest, stage, compute usage, health and alerts for a day (or a range of days, in one run).",
)


def catch_up_from(materialized: set[str], day: dt.date, first_partition: dt.date) -> dt.date:
    """The first day the run for `day` must cover: the day after the latest evaluated day before
    it, or the first partition when none was; `day` itself when the day before was evaluated."""
    before = [dt.date.fromisoformat(key) for key in materialized if key < day.isoformat()]
    start = max(before) + dt.timedelta(days=1) if before else first_partition
    return min(max(start, first_partition), day)


@dg.schedule(
    name="daily_pipeline_schedule",
    job=daily_pipeline,
    cron_schedule=f"0 {settings.schedule_hour()} * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each morning: the day before, and any earlier days not evaluated yet, in one range run.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext):
    now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    day = now.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    first = catch_up_from(context.instance.get_materialized_partitions(ALERTS), day, daily_partitions.start.date())
    if first == day:
        return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())
    context.log.info(f"catching up: {first} .. {day - dt.timedelta(days=1)} were never evaluated")
    return dg.RunRequest(
        run_key=f"{first}..{day}",
        tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: day.isoformat()},
    )
