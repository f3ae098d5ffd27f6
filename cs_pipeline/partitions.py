"""The daily partitions every time-based asset shares, and the dates a run covers."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from cs_pipeline import settings

# Partition D covers [D 00:00, D+1 00:00) UTC; the newest partition is the last complete day.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.partitions_start_date(), timezone="UTC"
)

# History runs as ranges: one run processes its days in order and pays start-up costs once.
range_backfill = dg.BackfillPolicy.single_run()


def run_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the partition or partition range this run covers."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
