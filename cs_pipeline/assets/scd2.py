"""The history of the snapshot entities whose attributes change from load to load (accounts,
users), kept by dlt's `scd2` merge strategy in their raw tables.

A load retires the versions that changed or left the export (`_dlt_valid_to` = the load's
effective time, `settings.load_time()`) and inserts the new ones (`_dlt_valid_from` = the same
time). dlt computes row hashes only for rows it normalizes itself, not for Arrow tables, so the
version of a row is `_row_hash`, given as dlt's `row_version_column_name`.
"""

import datetime as dt

import polars as pl

from cs_pipeline.resources.warehouse import table_exists

HISTORIZED = ("accounts", "users")
VALID_FROM, VALID_TO = "_dlt_valid_from", "_dlt_valid_to"
ROW_HASH = "_row_hash"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc)


def scd2_disposition(boundary: dt.datetime) -> dict[str, object]:
    """dlt's scd2 merge: versions identified by `ROW_HASH`, valid from `boundary` (naive UTC).

    Without a merge key every record absent from the export is retired: an export is whole."""
    return {
        "disposition": "merge",
        "strategy": "scd2",
        "validity_column_names": [VALID_FROM, VALID_TO],
        "boundary_timestamp": _utc(boundary),
        "row_version_column_name": ROW_HASH,
    }


def with_row_hash(con, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with `ROW_HASH`: the md5 of every column but `source_file`, in name order.

    md5 is stable across versions of polars and DuckDB (their own row hashes are not), so an
    unchanged row is never recorded as a new version; the file a row was read from and the
    export's column order are not part of the record. Computed by DuckDB on `con`, the
    warehouse connection the load already holds."""
    columns = sorted(c for c in frame.columns if c != "source_file")
    fields = ", ".join(f'coalesce(CAST("{c}" AS VARCHAR), chr(0))' for c in columns)
    con.register("_versions", frame.to_arrow())
    try:
        hashes = con.execute(f"SELECT md5(concat_ws(chr(31), {fields})) AS {ROW_HASH} FROM _versions").pl()
    finally:
        con.unregister("_versions")
    return frame.with_columns(hashes[ROW_HASH])


def has_history(con, schema: str, table: str) -> bool:
    """The table holds versions (one of an earlier release was replaced whole on each load)."""
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = ? AND table_name = ? AND column_name = ?",
        [schema, table, VALID_TO],
    ).fetchone()[0])


def retire_all(con, schema: str, table: str, frame: pl.DataFrame, boundary: dt.datetime) -> None:
    """An export with no usable rows: every current version retires at `boundary` (dlt loads
    nothing from an empty table). The table is created, empty, when there is none yet."""
    if table_exists(con, schema, table):
        con.execute(f"UPDATE {schema}.{table} SET {VALID_TO} = ? WHERE {VALID_TO} IS NULL", [_utc(boundary)])
        return
    versions = f"NULL::VARCHAR AS {ROW_HASH}, NULL::TIMESTAMPTZ AS {VALID_FROM}, NULL::TIMESTAMPTZ AS {VALID_TO}"
    con.register("_empty", frame.to_arrow())
    con.execute(f"CREATE TABLE {schema}.{table} AS SELECT *, {versions} FROM _empty")
    con.unregister("_empty")
