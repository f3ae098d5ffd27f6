"""Ingestion: the `files` source into the warehouse's `raw` schema with dlt.

Snapshot entities (accounts, contracts, ...) are one multi-asset: a full export replaces each
table in one dlt run. Events are daily partitions: a run reads exactly its days' folders, keeps
one row per event_id and day, and swaps those days into `raw.events` in one transaction, so a
re-run never duplicates and a failed run leaves no half-written day behind.

Every row that breaks the contract goes to `raw.rejected_rows` with its file, line and reason,
and an asset check fails when an entity's rejected share passes `CS_PIPELINE_MAX_REJECTED_SHARE`.
"""


import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import dlt
import polars as pl

from cs_pipeline import settings
from cs_pipeline.logic.contract import (
    ENTITIES,
    REJECTED_SCHEMA,
    SNAPSHOT_ENTITIES,
    SourceFileError,
    Validated,
    summarise_reasons,
    validate,
)
from cs_pipeline.partitions import daily_partitions, days, range_backfill, run_dates
from cs_pipeline.resources.source import Extract, SourcesResource, empty_frame
from cs_pipeline.sources.base import ConnectorError
from cs_pipeline.resources.warehouse import POOL, WarehouseResource, table_exists

RAW = "raw"
REJECTED_CHECK = "rejected_share_below_limit"


def raw_key(entity: str) -> dg.AssetKey:
    """Raw tables use the keys dbt's `raw` source maps to, so lineage is one unbroken graph."""
    return dg.AssetKey([RAW, entity])


# --- dlt ---------------------------------------------------------------------------------------


DLT_TYPES = {"string": "text", "timestamp": "timestamp", "date": "date", "integer": "bigint", "decimal": "double"}


def _column_hints(entity: str) -> dict[str, dict[str, object]]:
    """Every contract column declared to dlt: a column that is empty in one export still exists,
    and timestamps stay naive UTC."""
    hints: dict[str, dict[str, object]] = {"source_file": {"data_type": "text", "nullable": True}}
    for column in ENTITIES[entity].columns:
        hint: dict[str, object] = {"data_type": DLT_TYPES[column.kind], "nullable": True}
        if column.kind == "timestamp":
            hint["timezone"] = False
        hints[column.name] = hint
    return hints


def _dlt_pipeline(warehouse: WarehouseResource, name: str) -> dlt.Pipeline:
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(warehouse.file)),
        dataset_name=RAW,
        pipelines_dir=str(warehouse.file.parent / ".dlt" / warehouse.file.stem),
        progress=None,
    )
    # A package left by a failed run would be loaded instead of this run's data (dlt only warns).
    if pipeline.has_pending_data:
        pipeline.abort_packages()
    return pipeline


def _run_dlt(pipeline: dlt.Pipeline, resources: list, expected: dict[str, int]) -> None:
    """Run dlt and make sure every table received exactly the rows it was given."""
    if not resources:
        return
    pipeline.run(resources)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    wrong = {table: (rows, counts.get(table, 0)) for table, rows in expected.items() if rows and counts.get(table, 0) != rows}
    if wrong:
        details = ", ".join(f"{t}: {got} of {want}" for t, (want, got) in wrong.items())
        raise RuntimeError(f"dlt loaded an unexpected number of rows ({details}); the load was not accepted")


def _replace_rejected(con, frame: pl.DataFrame, entities: list[str], start: dt.date | None = None, end: dt.date | None = None) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
    if not table_exists(con, RAW, "rejected_rows"):
        con.register("_empty", pl.DataFrame(schema=REJECTED_SCHEMA).to_arrow())
        con.execute(f"CREATE TABLE {RAW}.rejected_rows AS SELECT *, current_timestamp::TIMESTAMP AS loaded_at FROM _empty")
        con.unregister("_empty")
    if start is None:
        con.execute(f"DELETE FROM {RAW}.rejected_rows WHERE entity IN (SELECT unnest(?)) AND partition_date IS NULL", [entities])
    else:
        con.execute(
            f"DELETE FROM {RAW}.rejected_rows WHERE entity IN (SELECT unnest(?)) AND partition_date BETWEEN ? AND ?",
            [entities, start, end],
        )
    if frame.height:
        con.register("_rejected", frame.to_arrow())
        con.execute(
            f"INSERT INTO {RAW}.rejected_rows SELECT *, current_timestamp::TIMESTAMP FROM _rejected"
        )
        con.unregister("_rejected")


@dataclass(frozen=True)
class LoadStats:
    rows_loaded: int
    rejected: pl.DataFrame
    duplicates_dropped: int = 0

    @classmethod
    def of(cls, results: list[Validated]) -> "LoadStats":
        rejected = pl.concat([r.rejected for r in results]) if results else pl.DataFrame(schema=REJECTED_SCHEMA)
        return cls(sum(r.valid.height for r in results), rejected, sum(r.duplicates_dropped for r in results))

    @property
    def rows_read(self) -> int:
        return self.rows_loaded + self.rejected.height + self.duplicates_dropped

    @property
    def rejected_share(self) -> float:
        return self.rejected.height / self.rows_read if self.rows_read else 0.0


def _ingest_metadata(result: LoadStats, files: list[str]) -> dict[str, dg.MetadataValue | int | float | str]:
    return {
        "dagster/row_count": result.rows_loaded,
        "rows_read": result.rows_read,
        "rows_rejected": result.rejected.height,
        "rejected_share": round(result.rejected_share, 4),
        "duplicates_dropped": result.duplicates_dropped,
        "source_files": dg.MetadataValue.md("\n".join(f"- `{f}`" for f in files) or "none"),
        "rejections": dg.MetadataValue.md(summarise_reasons(result.rejected)),
    }


def _rejected_check(key: dg.AssetKey, result: LoadStats) -> dg.AssetCheckResult:
    limit = settings.max_rejected_share()
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=REJECTED_CHECK,
        passed=result.rejected_share <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rejected_share": round(result.rejected_share, 4),
            "limit": limit,
            "rows_rejected": result.rejected.height,
            "rows_read": result.rows_read,
            "rejections": dg.MetadataValue.md(summarise_reasons(result.rejected)),
        },
        description=f"At most {limit:.0%} of the rows may be rejected (see raw.rejected_rows).",
    )


def _check_spec(entity: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REJECTED_CHECK,
        asset=raw_key(entity),
        description="The share of rows rejected by the contract's rules stays below CS_PIPELINE_MAX_REJECTED_SHARE.",
    )


# --- snapshot entities ------------------------------------------------------------------------

ENTITY_DESCRIPTIONS = {
    "accounts": "Customer accounts: segment, owner CSM, seats purchased, status.",
    "contracts": "Contract terms: start, end (the renewal date) and ARR.",
    "users": "Users (seats) with activation and deactivation times.",
    "tickets": "Helpdesk tickets; several versions of a ticket may be present (the latest wins in staging).",
    "nps_responses": "NPS survey responses (0-10).",
    "activities": "CSM touch points: calls, emails, meetings, QBRs, notes.",
    "engagements": "Marketing and community engagements (optional export).",
}


@dg.multi_asset(
    name="raw_snapshots",
    specs=[
        dg.AssetSpec(raw_key(entity), description=ENTITY_DESCRIPTIONS[entity], group_name="raw", kinds={"dlt", "duckdb"}, skippable=True)
        for entity in SNAPSHOT_ENTITIES
    ],
    check_specs=[_check_spec(entity) for entity in SNAPSHOT_ENTITIES],
    can_subset=True,
    pool=POOL,
)
def raw_snapshots(context: dg.AssetExecutionContext, warehouse: WarehouseResource, source: SourcesResource):
    """Full exports of every non-event entity, replaced in one dlt run."""
    selected = [e for e in SNAPSHOT_ENTITIES if raw_key(e) in context.selected_asset_keys]
    results: dict[str, Validated] = {}
    files: dict[str, list[str]] = {}
    known_accounts: list[str] | None = None
    if "contracts" in selected and "accounts" not in selected:
        with warehouse.connect(read_only=True) as con:
            known_accounts = [r[0] for r in con.execute(f"SELECT account_id FROM {RAW}.accounts").fetchall()]
    for entity in selected:
        extract = source.snapshot(entity)
        if extract is None:
            context.log.info(f"{entity}: the optional export is absent; the table will be empty")
            extract = Extract(empty_frame(entity), [])
        files[entity] = extract.locations
        result = validate(entity, extract.frame, known_accounts=known_accounts if entity == "contracts" else None)
        if entity == "accounts":
            known_accounts = result.valid["account_id"].to_list()
        results[entity] = result
        context.log.info(f"{entity}: {result.valid.height} rows valid, {result.rejected.height} rejected")

    pipeline = _dlt_pipeline(warehouse, "cs_pipeline_snapshots")
    loadable = {e: r.valid for e, r in results.items() if r.valid.height}
    _run_dlt(
        pipeline,
        [
            dlt.resource(frame.to_arrow(), name=entity, write_disposition="replace", columns=_column_hints(entity))
            for entity, frame in loadable.items()
        ],
        {entity: frame.height for entity, frame in loadable.items()},
    )
    with warehouse.connect() as con:
        for entity, result in results.items():
            if result.valid.height == 0:
                _empty_table(con, entity, result.valid)
        _replace_rejected(con, pl.concat([r.rejected for r in results.values()]), list(results))

    for entity, result in results.items():
        stats = LoadStats.of([result])
        yield dg.MaterializeResult(asset_key=raw_key(entity), metadata=_ingest_metadata(stats, files[entity]))
        yield _rejected_check(raw_key(entity), stats)


def _empty_table(con, entity: str, frame: pl.DataFrame) -> None:
    """An export with no usable rows still leaves its table (empty) so staging can build."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
    if table_exists(con, RAW, entity):
        con.execute(f"DELETE FROM {RAW}.{entity}")
    else:
        con.register("_empty", frame.to_arrow())
        con.execute(f"CREATE TABLE {RAW}.{entity} AS SELECT * FROM _empty")
        con.unregister("_empty")


# --- events ------------------------------------------------------------------------------------

EVENTS_INCOMING = "events_incoming"


@dataclass
class EventScan:
    """What a range run read, day by day: counts and rejected rows, never the valid rows."""

    files: int = 0
    days_without_files: int = 0
    rows_loaded: int = 0
    duplicates_dropped: int = 0
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
    kinds={"dlt", "duckdb"},
    partitions_def=daily_partitions,
    backfill_policy=range_backfill,
    check_specs=[_check_spec("events")],
    pool=POOL,
)
def raw_events(context: dg.AssetExecutionContext, warehouse: WarehouseResource, source: SourcesResource):
    start, end = run_dates(context)
    scan = EventScan()

    def day_tables() -> Iterator:
        # A generator, so dlt writes each day to its load package before the next day is read:
        # memory holds one day of events at a time, whatever the range.
        total = (end - start).days + 1
        for index, day in enumerate(days(start, end)):
            extract = source.events(day)
            result = validate("events", extract.frame, day=day)
            scan.add(extract.locations, result)
            if index % 10 == 0 or day == end:
                context.log.info(f"events {day}: {result.valid.height} rows, {result.rejected.height} rejected ({index + 1}/{total} days)")
            if result.valid.height:
                yield result.valid.with_columns(pl.lit(day).alias("event_date")).to_arrow()

    pipeline = _dlt_pipeline(warehouse, "cs_pipeline_events")
    hints = {**_column_hints("events"), "event_date": {"data_type": "date", "nullable": False}}
    try:
        pipeline.run(dlt.resource(day_tables(), name=EVENTS_INCOMING, write_disposition="replace", columns=hints))
    except Exception as exc:
        cause = _source_error(exc)
        if cause is None:
            raise
        # dlt wraps errors raised while extracting; the source's own message names the file or setting.
        raise dg.Failure(description=cause) from exc
    stats = scan.stats()
    with warehouse.connect() as con:
        _swap_in_events(con, start, end, stats.rows_loaded)
        _replace_rejected(con, stats.rejected, ["events"], start, end)
    metadata = _ingest_metadata(stats, scan.file_names[:20])
    metadata.update({
        "days": (end - start).days + 1,
        "files_read": scan.files,
        "days_without_files": scan.days_without_files,
        "range": f"{start} .. {end}",
    })
    yield dg.MaterializeResult(metadata=metadata)
    yield _rejected_check(raw_key("events"), stats)


def _source_error(exc: BaseException) -> str | None:
    """The message of the source problem behind an error dlt raised, if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, dg.Failure):
            return seen.description
        if isinstance(seen, (SourceFileError, ConnectorError)):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _swap_in_events(con, start: dt.date, end: dt.date, expected: int) -> None:
    """Replace the run's days in raw.events with what dlt just loaded, in one transaction."""
    has_incoming = table_exists(con, RAW, EVENTS_INCOMING)
    loaded = con.execute(f"SELECT count(*) FROM {RAW}.{EVENTS_INCOMING}").fetchone()[0] if has_incoming and expected else 0
    if loaded != expected:
        raise RuntimeError(f"dlt loaded {loaded} events but {expected} were valid; raw.events was left unchanged")
    columns = "event_id, account_id, user_id, event, occurred_at, event_date, source_file"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {RAW}.events (
                event_id VARCHAR, account_id VARCHAR, user_id VARCHAR, event VARCHAR,
                occurred_at TIMESTAMP, event_date DATE, source_file VARCHAR)"""
        )
        con.execute(f"DELETE FROM {RAW}.events WHERE event_date BETWEEN ? AND ?", [start, end])
        if expected:
            con.execute(f"INSERT INTO {RAW}.events ({columns}) SELECT {columns} FROM {RAW}.{EVENTS_INCOMING}")
            con.execute(f"DELETE FROM {RAW}.{EVENTS_INCOMING}")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
