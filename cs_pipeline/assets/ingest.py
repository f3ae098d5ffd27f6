"""Ingestion of the snapshot entities into the warehouse's `raw` schema, and what every load
shares (the rejected rows, `raw.loads`, the asset checks); the daily events are `assets/events.py`.

Snapshot entities (accounts, contracts, ...) are one multi-asset loaded in one dlt run, and an
export file unchanged since its last successful load is skipped. Accounts and users keep their
history (dlt's `scd2` merge strategy): each load retires the versions that changed or vanished
and adds the new ones, valid from the load's effective time (`settings.load_time()`); the other
snapshots are replaced whole (`assets/scd2.py`).

Every row that breaks the contract goes to `raw.rejected_rows` with its file, line and reason,
and an asset check fails when an entity's rejected share passes `CS_PIPELINE_MAX_REJECTED_SHARE`.
Every load is recorded in `raw.loads`.
"""


import datetime as dt
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import dlt
import polars as pl
from dagster._core.errors import DagsterInvalidPropertyError
from pydantic import Field

from cs_pipeline import settings
from cs_pipeline.assets.scd2 import HISTORIZED, ROW_HASH, VALID_TO, has_history, retire_all, scd2_disposition, with_row_hash
from cs_pipeline.logic.contract import (
    ENTITIES,
    REJECTED_SCHEMA,
    SNAPSHOT_ENTITIES,
    Validated,
    summarise_reasons,
    validate,
)
from cs_pipeline.resources.source import Extract, SourcesResource, empty_frame
from cs_pipeline.resources.warehouse import POOL, WarehouseResource, query, table_exists

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


def _snapshot_resource(entity: str, frame: pl.DataFrame, boundary: dt.datetime):
    if entity in HISTORIZED:
        hints = {**_column_hints(entity), ROW_HASH: {"data_type": "text", "nullable": False}}
        return dlt.resource(frame.to_arrow(), name=entity, write_disposition=scd2_disposition(boundary), columns=hints)
    return dlt.resource(frame.to_arrow(), name=entity, write_disposition="replace", columns=_column_hints(entity))


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


@contextmanager
def _logged_failure(context: dg.AssetExecutionContext):
    """A source that cannot be read fails the step; its one line (the file and the cause) goes to
    the run log first, on its own, ahead of Dagster's traceback."""
    try:
        yield
    except dg.Failure as failure:
        context.log.error(failure.description or "a source could not be read")
        raise


# --- raw.loads: one row per load, what the Dagster UI's metadata says, kept in the warehouse -----

LOADS = "loads"
LOADING, LOADED = "loading", "loaded"


@dataclass(frozen=True)
class LoadRecord:
    """A row of raw.loads: one entity (or one range of event days) loaded by one run."""

    entity: str
    run_id: str
    started_at: dt.datetime
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    duplicates_dropped: int
    fingerprint: str | None = None
    partition_start: dt.date | None = None
    partition_end: dt.date | None = None
    status: str = LOADED
    finished_at: dt.datetime | None = None

    @classmethod
    def of(cls, entity: str, stats: LoadStats, run_id: str, started_at: dt.datetime, **fields) -> "LoadRecord":
        return cls(entity, run_id, started_at, stats.rows_read, stats.rows_loaded, stats.rejected.height, stats.duplicates_dropped, **fields)


def _run_id(context: dg.AssetExecutionContext) -> str:
    """The Dagster run doing the load; "EPHEMERAL" when the asset is invoked directly (no run)."""
    try:
        return context.run.run_id
    except DagsterInvalidPropertyError:
        return "EPHEMERAL"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _record_load(con, record: LoadRecord, status: str = LOADED) -> None:
    """Write (or finish) the record of a load; the caller's transaction makes it part of the load."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {RAW}.{LOADS} (
            run_id VARCHAR, entity VARCHAR, partition_start DATE, partition_end DATE, fingerprint VARCHAR,
            rows_read BIGINT, rows_loaded BIGINT, rows_rejected BIGINT, duplicates_dropped BIGINT,
            status VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP)"""
    )
    con.execute(f"DELETE FROM {RAW}.{LOADS} WHERE run_id = ? AND entity = ? AND started_at = ?", [record.run_id, record.entity, record.started_at])
    con.execute(
        f"INSERT INTO {RAW}.{LOADS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [record.run_id, record.entity, record.partition_start, record.partition_end, record.fingerprint,
         record.rows_read, record.rows_loaded, record.rows_rejected, record.duplicates_dropped,
         status, record.started_at, _utc_now() if status == LOADED else None],
    )


def _last_snapshot_loads(con) -> dict[str, LoadRecord]:
    """Per snapshot entity, its latest load, when that load finished and its table still holds
    the rows it wrote (a load that failed, or a table changed by hand, is not trusted)."""
    if not table_exists(con, RAW, LOADS):
        return {}
    latest = query(
        con,
        f"""SELECT * FROM {RAW}.{LOADS} WHERE partition_start IS NULL
            QUALIFY row_number() OVER (PARTITION BY entity ORDER BY started_at DESC) = 1""",
    )
    trusted: dict[str, LoadRecord] = {}
    for row in latest.iter_rows(named=True):
        record = LoadRecord(**row)
        if record.status != LOADED or record.entity not in SNAPSHOT_ENTITIES or not table_exists(con, RAW, record.entity):
            continue
        current = ""
        if record.entity in HISTORIZED:
            if not has_history(con, RAW, record.entity):
                continue
            current = f" WHERE {VALID_TO} IS NULL"
        if con.execute(f"SELECT count(*) FROM {RAW}.{record.entity}{current}").fetchone()[0] == record.rows_loaded:
            trusted[record.entity] = record
    return trusted


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


class SnapshotsConfig(dg.Config):
    reload_unchanged_exports: bool = Field(
        default=False,
        description=(
            "Re-read and reload every selected export, even those unchanged since their last load "
            "(also set by CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS=true)."
        ),
    )


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
def raw_snapshots(
    context: dg.AssetExecutionContext, config: SnapshotsConfig, warehouse: WarehouseResource, source: SourcesResource
):
    """Full exports of every non-event entity, loaded in one dlt run.

    Accounts and users are merged as versions (scd2): a row that changed or left the export is
    retired, valid until this load's effective time, and its new version is valid from it; the
    other entities' tables are replaced.

    An export file that is unchanged since its last successful load (same path, size and
    modification time, see `FilesConnector.fingerprint`) is neither read nor loaded again: its
    table already holds exactly what a reload would write. Other connectors are always read.
    """
    selected = [e for e in SNAPSHOT_ENTITIES if raw_key(e) in context.selected_asset_keys]
    reload_all = config.reload_unchanged_exports or settings.reload_unchanged_exports()
    with warehouse.connect() as con:
        previous = _last_snapshot_loads(con)
    fingerprints: dict[str, str | None] = {}
    unchanged: dict[str, LoadRecord] = {}
    for entity in selected:
        fingerprints[entity] = _snapshot_fingerprint(entity, source, fingerprints, previous)
        last = previous.get(entity)
        if not reload_all and last is not None and fingerprints[entity] is not None and last.fingerprint == fingerprints[entity]:
            unchanged[entity] = last
    to_load = [e for e in selected if e not in unchanged]

    results: dict[str, Validated] = {}
    files: dict[str, list[str]] = {}
    known_accounts: list[str] | None = None
    if "contracts" in to_load and "accounts" not in to_load:
        with warehouse.connect(read_only=True) as con:
            known_accounts = [r[0] for r in con.execute(f"SELECT account_id FROM {RAW}.accounts").fetchall()]
    for entity in to_load:
        with _logged_failure(context):
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

    if results:
        started_at = _utc_now()
        boundary = settings.load_time()
        records = {e: LoadRecord.of(e, LoadStats.of([r]), _run_id(context), started_at, fingerprint=fingerprints[e]) for e, r in results.items()}
        loadable = {e: r.valid for e, r in results.items() if r.valid.height}
        with warehouse.connect() as con:
            # Marked as started first: a load that fails past this point is never taken as done.
            for record in records.values():
                _record_load(con, record, status=LOADING)
            for entity in [e for e in HISTORIZED if e in results]:
                if table_exists(con, RAW, entity) and not has_history(con, RAW, entity):
                    context.log.info(f"{entity}: the table of an earlier release holds no history; its history starts with this load")
                    con.execute(f"DROP TABLE {RAW}.{entity}")
                if entity in loadable:
                    loadable[entity] = with_row_hash(con, loadable[entity])
        pipeline = _dlt_pipeline(warehouse, "cs_pipeline_snapshots")
        _run_dlt(
            pipeline,
            [_snapshot_resource(entity, frame, boundary) for entity, frame in loadable.items()],
            {entity: frame.height for entity, frame in loadable.items()},
        )
        with warehouse.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for entity, result in results.items():
                    if result.valid.height == 0:
                        _empty_table(con, entity, result.valid, boundary)
                _replace_rejected(con, pl.concat([r.rejected for r in results.values()]), list(results))
                for record in records.values():
                    _record_load(con, record)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    for entity in selected:
        if entity in unchanged:
            context.log.info(f"{entity}: export unchanged since its load in run {unchanged[entity].run_id}; skipped")
            stats, metadata = _unchanged_stats(warehouse, unchanged[entity])
        else:
            stats = LoadStats.of([results[entity]])
            metadata = {**_ingest_metadata(stats, files[entity]), "load": "loaded"}
        yield dg.MaterializeResult(asset_key=raw_key(entity), metadata=metadata)
        yield _rejected_check(raw_key(entity), stats)


def _snapshot_fingerprint(
    entity: str, source: SourcesResource, fingerprints: dict[str, str | None], previous: dict[str, "LoadRecord"]
) -> str | None:
    """What the entity's table depends on, as text; None when it cannot be known without reading.

    The export's own fingerprint and the contract's rules for the entity; contracts also depend
    on the accounts they were checked against (this run's accounts, else the loaded ones).
    """
    export = source.fingerprint(entity)
    if export is None:
        return None
    parts: dict[str, object] = {"export": export, "rules": _rules_version(entity)}
    if entity == "contracts":
        accounts = fingerprints["accounts"] if "accounts" in fingerprints else getattr(previous.get("accounts"), "fingerprint", None)
        if accounts is None:
            return None
        parts["accounts"] = accounts
    return json.dumps(parts, sort_keys=True)


def _rules_version(entity: str) -> str:
    """Changes when the entity's columns or rules change (a new version of cs_pipeline)."""
    return hashlib.sha256(repr(ENTITIES[entity]).encode()).hexdigest()[:16]


def _unchanged_stats(warehouse: WarehouseResource, last: "LoadRecord") -> tuple[LoadStats, dict[str, object]]:
    """The figures of the load that still stands, for the metadata and the rejected-rows check."""
    with warehouse.connect(read_only=True) as con:
        rejected = query(
            con,
            f"SELECT {', '.join(REJECTED_SCHEMA)} FROM {RAW}.rejected_rows WHERE entity = ? AND partition_date IS NULL ORDER BY source_file, line",
            [last.entity],
        )
    stats = LoadStats(last.rows_loaded, rejected.cast(REJECTED_SCHEMA), last.duplicates_dropped)
    export = json.loads(last.fingerprint or "{}").get("export", {})
    metadata = {
        **_ingest_metadata(stats, [export["path"]] if export.get("path") and not export.get("absent") else []),
        "load": f"unchanged, skipped (loaded in run {last.run_id} at {last.finished_at:%Y-%m-%d %H:%M:%S} UTC)",
    }
    return stats, metadata


def _empty_table(con, entity: str, frame: pl.DataFrame, boundary: dt.datetime) -> None:
    """An export with no usable rows still leaves its table (empty) so staging can build; a
    historized entity keeps its versions, the current ones retired at `boundary`."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
    if entity in HISTORIZED:
        retire_all(con, RAW, entity, frame, boundary)
    elif table_exists(con, RAW, entity):
        con.execute(f"DELETE FROM {RAW}.{entity}")
    else:
        con.register("_empty", frame.to_arrow())
        con.execute(f"CREATE TABLE {RAW}.{entity} AS SELECT * FROM _empty")
        con.unregister("_empty")
