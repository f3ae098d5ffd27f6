"""The foundation's end-to-end scenario once more, with users and events served by PostgreSQL.

The hand-planted data set is loaded into real PostgreSQL tables whose columns have the product's
own names; sources.yaml maps them onto the contract. The alerts must be exactly those the files
give (CONTRACT.md §1: everything after ingestion does not care where data came from).
"""

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa

from cs_pipeline.logic.contract import normalise_timestamp
from cs_pipeline.sources.files import FilesConnector
from tests.support import planted
from tests.support.databases import postgres_url  # noqa: F401 (fixture)
from tests.support.pipeline import alert_keys, planted_pipeline

pytestmark = pytest.mark.e2e

SOURCES_YAML = """
connectors:
  product_db:
    type: database
    url_env: PRODUCT_DB_URL
    users:
      table: app_users
      columns: {user_id: id, account_id: org_id, email: email_address, created_at: created, activated_at: activated, deactivated_at: deactivated}
    events:
      table: app_events
      columns: {event_id: uuid, account_id: org_id, user_id: user_uuid, event: name, occurred_at: ts}
entities:
  users: product_db
  events: product_db
"""

TIMESTAMPS = ("created", "activated", "deactivated", "ts")


def _load(url: str, data_dir) -> int:
    files = FilesConnector(data_dir=str(data_dir))
    users = files.snapshot("users").frame.select(
        pl.col("user_id").alias("id"), pl.col("account_id").alias("org_id"), pl.col("email").alias("email_address"), "role",
        pl.col("created_at").alias("created"), pl.col("activated_at").alias("activated"), pl.col("deactivated_at").alias("deactivated"),
    )
    days = [planted.FIRST + dt.timedelta(days=i) for i in range((planted.LAST - planted.FIRST).days + 1)]
    events = pl.concat([files.events(day).frame for day in days], how="diagonal_relaxed").select(
        pl.col("event_id").alias("uuid"), pl.col("account_id").alias("org_id"), pl.col("user_id").alias("user_uuid"),
        pl.col("event").alias("name"), pl.col("occurred_at").alias("ts"),
    )
    engine = sa.create_engine(url)
    with engine.begin() as con:
        for name, frame in (("app_users", users), ("app_events", events)):
            typed = frame.with_columns(normalise_timestamp(pl.col(c)).dt.replace_time_zone("UTC") for c in TIMESTAMPS if c in frame.columns)
            columns = ", ".join(f"{c} {'TIMESTAMPTZ' if c in TIMESTAMPS else 'TEXT'}" for c in typed.columns)
            con.execute(sa.text(f"CREATE TABLE {name} ({columns})"))
            con.execute(sa.text(f"INSERT INTO {name} VALUES ({', '.join(':' + c for c in typed.columns)})"), typed.to_dicts())
    engine.dispose()
    return events.height


def test_the_product_database_gives_the_same_alerts_as_files(tmp_path, postgres_url):  # noqa: F811
    (tmp_path / "sources.yaml").write_text(SOURCES_YAML)
    env = {"CS_PIPELINE_SOURCES": str(tmp_path / "sources.yaml"), "PRODUCT_DB_URL": postgres_url}
    with planted_pipeline(tmp_path, env) as pipeline:
        loaded = _load(postgres_url, tmp_path / "data")
        result = pipeline.materialize(planted.FIRST, planted.LAST)
        assert result.success
        events = next(
            m for m in result.get_asset_materialization_events() if m.materialization.asset_key.to_user_string() == "raw/events"
        ).materialization.metadata
        assert events["rows_read"].value == loaded
        locations = [row[0] for row in pipeline.sql("SELECT DISTINCT source_file FROM raw.events")]
        assert locations and all(loc.startswith("postgresql") and "app_events" in loc for loc in locations)
        tick = pipeline.tick()
        assert pipeline.dispatch(tick.run_requests[0].tags).success
        assert alert_keys() == planted.EXPECTED_ALERTS
        assert len(pipeline.server.messages) == sum(1 for a in planted.EXPECTED_ALERTS if a[3] == "sent")
