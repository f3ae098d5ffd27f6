"""The daily run: every asset for the latest complete UTC day."""


import dagster as dg

from cs_pipeline import settings
from cs_pipeline.partitions import daily_partitions

daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Ingest, stage, compute usage, health and alerts for a day (or a range of days, in one run).",
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_pipeline,
    hour_of_day=settings.schedule_hour(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
