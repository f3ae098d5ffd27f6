"""Benchmark: a day of events through the database connector, per backend, beside the files source.

    .venv/bin/python bench/source_database.py [--rows 200000] [--repeat 3] [--servers postgres,mariadb]

For each reachable server (the local PostgreSQL and MariaDB of tests/support/databases.py, or
CS_TEST_POSTGRES_URL / CS_TEST_MARIADB_URL), creates a throw-away database, bulk-loads N events
into one UTC day (COPY for PostgreSQL, LOAD DATA LOCAL INFILE for MariaDB) plus 1 % on each
neighbouring day, and times `DatabaseConnector.events(day)` (reflection, the windowed read, the
frame) for each backend; then the same N rows as one parquet file through `FilesConnector.events`.
Best of --repeat runs after one warm-up. Prints the JSON result and writes it to bench/results/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from demo import machine  # noqa: E402 (bench/demo.py, beside this file)

from cs_pipeline.logic.contract import validate  # noqa: E402
from cs_pipeline.sources.database import DatabaseConnector  # noqa: E402
from cs_pipeline.sources.files import FilesConnector  # noqa: E402
from tests.support.databases import admin_url, temporary_database  # noqa: E402

DAY = dt.date(2025, 3, 10)
BACKENDS = ("connectorx", "pyarrow", "sqlalchemy")
VOCABULARY = ("login", "report.created", "dashboard.viewed", "workflow.run", "record.updated", "integration.synced")
COLUMNS = {"event_id": "id", "account_id": "org_id", "user_id": "actor_id", "event": "name", "occurred_at": "created_at"}
TIMESTAMP = {"postgresql": "timestamp", "mysql": "datetime(6)"}
ENV = "CS_BENCH_PRODUCT_DB_URL"


def events(rows: int) -> pl.DataFrame:
    """`rows` events spread over DAY, and 1 % on each neighbouring day (which the window leaves out)."""
    noise = max(rows // 100, 1)
    start = dt.datetime.combine(DAY, dt.time())
    offsets = pl.concat([
        pl.int_range(0, rows, eager=True) * (86_400_000_000 // rows),
        -1 - pl.int_range(0, noise, eager=True) * 1_000_000,
        86_400_000_000 + pl.int_range(0, noise, eager=True) * 1_000_000,
    ])
    index = pl.int_range(0, offsets.len(), eager=True)
    return pl.DataFrame({
        "event_id": "evt_" + index.cast(pl.String).str.zfill(9),
        "account_id": "acc_" + (index % 500).cast(pl.String).str.zfill(4),
        "user_id": "usr_" + (index % 20_000).cast(pl.String).str.zfill(6),
        "event": pl.Series(VOCABULARY).gather(index % len(VOCABULARY)),
        "occurred_at": pl.select(pl.lit(start) + pl.duration(microseconds=offsets)).to_series(),
    })


def load(url: str, frame: pl.DataFrame) -> float:
    """Create app_events (with an index on the timestamp) and bulk-load `frame`; returns seconds."""
    started = time.monotonic()
    engine = sa.create_engine(url, connect_args={"local_infile": True} if url.startswith("mysql") else {})
    dialect = engine.dialect.name
    names = list(COLUMNS.values())
    with engine.begin() as connection:
        connection.execute(sa.text(
            f"CREATE TABLE app_events (id varchar(16), org_id varchar(8), actor_id varchar(10), name varchar(32),"
            f" created_at {TIMESTAMP[dialect]})"
        ))
    text = frame.rename(COLUMNS).with_columns(pl.col("created_at").dt.strftime("%Y-%m-%d %H:%M:%S%.6f"))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if dialect == "postgresql":
            buffer = io.StringIO(text.write_csv(include_header=False))
            cursor.copy_expert(f"COPY app_events ({', '.join(names)}) FROM STDIN WITH (FORMAT csv)", buffer)
        else:
            with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as handle:
                text.write_csv(handle, include_header=False)
            try:
                cursor.execute(
                    f"LOAD DATA LOCAL INFILE '{handle.name}' INTO TABLE app_events FIELDS TERMINATED BY ','"
                    f" OPTIONALLY ENCLOSED BY '\"' ({', '.join(names)})"
                )
            finally:
                os.unlink(handle.name)
        cursor.execute("CREATE INDEX app_events_created_at ON app_events (created_at)")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return time.monotonic() - started


def timed(read, repeat: int, expected: int) -> dict[str, float]:
    frame = read()  # warm-up: imports, first connections
    assert frame.height == expected, f"read {frame.height} rows, expected {expected}"
    reads, validations = [], []
    for _ in range(repeat):
        started = time.monotonic()
        frame = read()
        reads.append(time.monotonic() - started)
        started = time.monotonic()
        result = validate("events", frame, day=DAY)
        validations.append(time.monotonic() - started)
        assert result.rejected.height == 0 and result.valid.height == expected
    best, both = min(reads), min(r + v for r, v in zip(reads, validations))
    return {
        "read_s_best": round(best, 3),
        "read_s_median": round(statistics.median(reads), 3),
        "rows_per_s": round(expected / best),
        "read_and_validate_rows_per_s": round(expected / both),
    }


def server_version(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(sa.text("SELECT version()")).scalar())
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="events in the measured day")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--servers", default="postgres,mariadb")
    args = parser.parse_args()

    frame = events(args.rows)
    results: dict[str, dict] = {}
    servers: dict[str, dict] = {}
    for kind in args.servers.split(","):
        try:
            admin = admin_url(kind)
        except ConnectionError as error:
            servers[kind] = {"skipped": str(error)}
            continue
        with temporary_database(kind, admin) as url:
            servers[kind] = {"version": server_version(url), "bulk_load_s": round(load(url, frame), 2)}
            os.environ[ENV] = url
            for backend in BACKENDS:
                connector = DatabaseConnector(type="database", url_env=ENV, backend=backend,
                                              events={"table": "app_events", "columns": COLUMNS})
                results[f"{kind}/{backend}"] = timed(lambda: connector.events(DAY).frame, args.repeat, args.rows)
                print(f"{kind}/{backend}: {results[f'{kind}/{backend}']['rows_per_s']:,} rows/s", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="cs-bench-files-") as data_dir:
        folder = Path(data_dir) / "events" / f"date={DAY.isoformat()}"
        folder.mkdir(parents=True)
        in_day = frame.filter(pl.col("occurred_at").dt.date() == DAY)
        in_day.write_parquet(folder / "part-0.parquet")
        files = FilesConnector(data_dir=data_dir)
        results["files/parquet"] = timed(lambda: files.events(DAY).frame, args.repeat, args.rows)

    info = machine()
    info["versions"].update({p: metadata.version(p) for p in ("connectorx", "SQLAlchemy", "pyarrow", "psycopg2-binary", "PyMySQL")})
    result = {
        "benchmark": "source_database",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "servers": servers,
        "scale": {"rows_in_day": args.rows, "rows_in_table": frame.height, "repeat": args.repeat},
        "events_day": results,
    }
    out = ROOT / "bench" / "results" / f"source_database-{result['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
