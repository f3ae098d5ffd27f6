"""Ingestion of the product events: daily partitions into `raw.events`.

A run reads exactly its days' folders, keeps one row per event_id and day, and replaces each day
of `raw.events` in a DuckDB transaction of its own, so a re-run never duplicates and a failed run
leaves no half-written day behind. Events skip dlt: its Arrow path would write each day twice
more (a load package, then a staging table), for the same rows. Rejected rows, `raw.loads` and
the rejected-share check are shared with the snapshots (`assets/ingest.py`).
"""

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from cs_pipeline.assets.ingest import (
    RAW,
    LoadRecord,
    LoadStats,
    _check_spec,
    _ingest_metadata,
    _logged_failure,
    _record_load,
    _rejected_check,
    _replace_rejected,
    _run_id,
    _utc_now,
    raw_key,
)
from cs_pipeline.logic.contract import REJECTED_SCHEMA, Validated, validate
from cs_pipeline.partitions import daily_partitions, days, range_backfill, run_dates
from cs_pipeline.resources.source import SourcesResource
from cs_pipeline.resources.warehouse import POOL, WarehouseResource


EVENTS_COLUMNS = ("event_id", "account_id", "user_id", "event", "occurred_at", "event_date", "source_file")
UNIQUE_CHECK = "unique_event_id_per_day"


@dataclass
class EventScan:
    """What a range run read, day by day: counts and rejected rows, never the valid rows."""

    files: int = 0
    days_without_files: int = 0
    rows_loaded: int = 0
    duplicates_dropped: int = 0
    days_with_repeated_ids: list[dt.date] = field(default_factory=list)
    file_names: list[str] = field(default_factory=list)
    rejected: list[pl.DataFrame] = field(default_factory=list)

    def add(self, locations: list[str], result: Validated) -> None:
        self.files += len(locations)
        self.days_without_files += not locations
        self.file_names.extend(locations)
        self.rows_loaded += result.valid.height
        self.duplicates_dropped += result.duplicates_dropped
        if result.rejected.height:
            self.rejected.append(result.rejected)

    def stats(self) -> LoadStats:
        rejected = pl.concat(self.rejected) if self.rejected else pl.DataFrame(schema=REJECTED_SCHEMA)
        return LoadStats(self.rows_loaded, rejected, self.duplicates_dropped)


@dg.asset(
    key=raw_key("events"),
    description="Product events, one partition per UTC day, from events/date=YYYY-MM-DD/ (parquet, JSONL, CSV).",
    group_name="raw",
    kinds={"polars", "duckdb"},
    partitions_def=daily_partitions,
    backfill_policy=range_backfill,
    check_specs=[
        _check_spec("events"),
        dg.AssetCheckSpec(
            UNIQUE_CHECK,
            asset=raw_key("events"),
            blocking=True,
            description="The rows written for each day of the run have distinct event_ids (a re-delivered event counts once).",
        ),
    ],
    pool=POOL,
)
def raw_events(context: dg.AssetExecutionContext, warehouse: WarehouseResource, source: SourcesResource):
    """Each day is read, validated and written once, straight into `raw.events`.

    Each day is replaced in a DuckDB transaction of its own (its rows and its rejected rows,
    deleted and written again), so a day is always either as it was or wholly replaced, and a
    re-run replaces days instead of adding to them. One transaction over the whole range would
    hold every appended row in memory until it commits: a 31-day range of 2M events a day took
    21.8 GB that way, against 2.6 GB a day at a time (BENCHMARKS.md). A failure stops the range
    where it is: the days before it are already replaced with what the files hold, the others
    untouched, and re-running the range replaces them all again. `raw.loads` gets one row per
    successful run.
    """
    start, end = run_dates(context)
    started_at = _utc_now()
    scan = EventScan()
    total = (end - start).days + 1
    with warehouse.connect() as con:
        _create_events_table(con)
        for index, day in enumerate(days(start, end)):
            with _logged_failure(context):
                _load_day(con, source, day, scan)
            if index % 10 == 0 or day == end:
                context.log.info(f"events {day}: {scan.rows_loaded} rows so far, {sum(r.height for r in scan.rejected)} rejected ({index + 1}/{total} days)")
        stats = scan.stats()
        _record_load(con, LoadRecord.of("events", stats, _run_id(context), started_at, partition_start=start, partition_end=end))
    metadata = _ingest_metadata(stats, scan.file_names[:20])
    metadata.update({
        "days": total,
        "files_read": scan.files,
        "days_without_files": scan.days_without_files,
        "range": f"{start} .. {end}",
    })
    yield dg.MaterializeResult(metadata=metadata)
    yield _rejected_check(raw_key("events"), stats)
    yield dg.AssetCheckResult(
        asset_key=raw_key("events"),
        check_name=UNIQUE_CHECK,
        passed=not scan.days_with_repeated_ids,
        metadata={
            "rows_checked": scan.rows_loaded,
            "days_with_repeated_ids": ", ".join(str(d) for d in scan.days_with_repeated_ids) or "none",
        },
    )


def _load_day(con, source: SourcesResource, day: dt.date, scan: EventScan) -> None:
    """Read and validate one day, then replace it in one transaction; its frames are freed on
    return, before the next day."""
    extract = source.events(day)
    result = validate("events", extract.frame, day=day)
    if result.valid.height and not has_distinct_keys(result.valid["event_id"]):
        scan.days_with_repeated_ids.append(day)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {RAW}.events WHERE event_date = ?", [day])
        if result.valid.height:
            _insert_day(con, result.valid, day)
        written = con.execute(f"SELECT count(*) FROM {RAW}.events WHERE event_date = ?", [day]).fetchone()[0]
        if written != result.valid.height:
            raise RuntimeError(f"raw.events holds {written} rows for {day} but {result.valid.height} were valid; the day was rolled back")
        _replace_rejected(con, result.rejected, ["events"], day, day)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    scan.add(extract.locations, result)


def has_distinct_keys(keys: pl.Series) -> bool:
    """No key repeats: distinct hashes prove it at once; only a hash collision needs the exact count."""
    return keys.hash().n_unique() == keys.len() or keys.n_unique() == keys.len()


def _create_events_table(con) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {RAW}.events (
            event_id VARCHAR, account_id VARCHAR, user_id VARCHAR, event VARCHAR,
            occurred_at TIMESTAMP, event_date DATE, source_file VARCHAR)"""
    )
    # Left empty by versions that landed events with dlt before copying them into raw.events.
    con.execute(f"DROP TABLE IF EXISTS {RAW}.events_incoming")


def _insert_day(con, valid: pl.DataFrame, day: dt.date) -> None:
    """Append one validated day to raw.events (inside the caller's transaction).

    Arrow string views hand polars' strings to DuckDB as they are (converting them to Arrow's
    large strings, the default, costs ~2 s per 10M events). Extra source columns are not kept.
    """
    day_rows = valid.with_columns(pl.lit(day).alias("event_date")).select(EVENTS_COLUMNS)
    con.register("_events_day", day_rows.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        columns = ", ".join(EVENTS_COLUMNS)
        con.execute(f"INSERT INTO {RAW}.events ({columns}) SELECT {columns} FROM _events_day")
    finally:
        con.unregister("_events_day")
