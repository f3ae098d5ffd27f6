"""The warehouse: one DuckDB file, and the one way the project opens it.

DuckDB allows one writing process or many readers, never both at once. Every Dagster step that
opens the warehouse is in the `duckdb` concurrency pool (see `dagster.yaml`), sensors never open
it, and the CLI runs steps in-process one after the other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa

POOL = "duckdb"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file (`CS_PIPELINE_WAREHOUSE`, default `data/warehouse.duckdb`)."""

    path: str

    @property
    def file(self) -> Path:
        return Path(self.path).resolve()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.file.exists():
            raise FileNotFoundError(
                f"warehouse {self.file} does not exist yet: run the pipeline first "
                "(`cs-pipeline run` or `cs-pipeline demo`)"
            )
        self.file.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.file), read_only=read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def read(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        with self.connect() as con:
            return query(con, sql, params)

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as con:
            return table_exists(con, schema, table)


def query(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
    """Run a parameterised query and return it as a polars frame (through Arrow, no row loops)."""
    return pl.from_arrow(con.execute(sql, list(params)).fetch_arrow_table())  # type: ignore[return-value]


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def replace_date_range(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    date_column: str = "partition_date",
) -> int:
    """Make `table` hold exactly `frame` for the days `start..end`, in one transaction.

    This is what makes a partition re-runnable: the days are deleted and written again, so a
    re-run never duplicates rows. The table is created from the frame's schema on first write;
    columns the frame lacks are NULL, new columns are added.
    """
    schema, name = table.split(".")
    arrow: pa.Table = frame.to_arrow()
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    con.register("_incoming", arrow)
    try:
        con.execute("BEGIN TRANSACTION")
        if not table_exists(con, schema, name):
            con.execute(f'CREATE TABLE "{schema}"."{name}" AS SELECT * FROM _incoming LIMIT 0')
        existing = {row[0] for row in con.execute(f'DESCRIBE "{schema}"."{name}"').fetchall()}
        for column in frame.columns:
            if column not in existing:
                duck_type = con.execute(
                    f'SELECT typeof("{column}") FROM _incoming LIMIT 1'
                ).fetchone()
                type_name = duck_type[0] if duck_type and duck_type[0] != "NULL" else "VARCHAR"
                con.execute(f'ALTER TABLE "{schema}"."{name}" ADD COLUMN "{column}" {type_name}')
        con.execute(
            f'DELETE FROM "{schema}"."{name}" WHERE "{date_column}" BETWEEN ? AND ?', [start, end]
        )
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f'INSERT INTO "{schema}"."{name}" ({columns}) SELECT {columns} FROM _incoming')
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_incoming")
    return frame.height
