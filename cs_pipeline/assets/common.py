"""Small helpers the assets share for metadata."""

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl

from cs_pipeline.partitions import daily_partitions, range_backfill
from cs_pipeline.resources.warehouse import POOL


def daily_asset(*, description: str, group_name: str, **kwargs):
    """A polars asset over the warehouse: daily partitions, ranges in one run, the duckdb pool."""
    return dg.asset(
        description=description,
        group_name=group_name,
        kinds={"polars", "duckdb"},
        partitions_def=daily_partitions,
        backfill_policy=range_backfill,
        pool=POOL,
        **kwargs,
    )


def table_preview(frame: pl.DataFrame, rows: int = 10, columns: int = 12) -> dg.MetadataValue:
    """The first rows of a frame as Markdown, for the asset's page in the Dagster UI."""
    shown = frame.head(rows).select(frame.columns[:columns])
    if shown.height == 0:
        return dg.MetadataValue.md("(no rows)")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = [
        "| " + " | ".join("" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in row) + " |"
        for row in shown.iter_rows()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def unique_rows_check(frame: pl.DataFrame, check_name: str, key: list[str]) -> dg.AssetCheckResult:
    """Passes when `key` identifies one row: a re-run that duplicated rows would fail it."""
    duplicates = frame.height - frame.select(key).n_unique() if frame.height else 0
    return dg.AssetCheckResult(check_name=check_name, passed=duplicates == 0, metadata={"duplicates": duplicates, "key": ", ".join(key)})


def per_partition_result(
    context: dg.AssetExecutionContext, by_day: Mapping[dt.date, Mapping[str, Any]], run: Mapping[str, Any] | None = None
) -> dg.MaterializeResult:
    """Each partition's materialization carries the figures of its own day (`by_day`), and `run`
    what is true of the whole run, on every partition of it.

    A one-day run says it all in its MaterializeResult; a range run adds each day's figures to
    that day's materialization (`add_asset_metadata(partition_key=...)`), which Dagster keeps
    per partition, so partition 2025-07-08 never shows the range's row count or its last day.
    """
    run = dict(run or {})
    if len(by_day) == 1:
        [figures] = by_day.values()
        return dg.MaterializeResult(metadata={**figures, **run})
    for day, figures in by_day.items():
        context.add_asset_metadata(dict(figures), partition_key=day.isoformat())
    return dg.MaterializeResult(metadata=run)
