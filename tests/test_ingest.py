"""Ingestion through Dagster: a range is loaded whole or not at all, and re-runs never duplicate."""

import datetime as dt

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from cs_pipeline.assets.ingest import raw_events
from cs_pipeline.resources.source import SourcesResource
from cs_pipeline.resources.warehouse import WarehouseResource
from tests.support import planted

FIRST, LAST = dt.date(2025, 3, 5), dt.date(2025, 3, 7)


def load(tmp_path, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_events],
        resources={"warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")), "source": SourcesResource(data_dir=str(tmp_path / "data"))},
        tags={ASSET_PARTITION_RANGE_START_TAG: FIRST.isoformat(), ASSET_PARTITION_RANGE_END_TAG: LAST.isoformat()},
        instance=instance,
        raise_on_error=False,
    )


def events_by_day(tmp_path) -> dict[str, int]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        return dict(con.execute("SELECT event_date::VARCHAR, count(*) FROM raw.events GROUP BY 1 ORDER BY 1").fetchall())


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_a_failed_range_leaves_the_loaded_days_as_they_were(tmp_path, instance):
    planted.write(tmp_path / "data")
    assert load(tmp_path, instance).success
    before = events_by_day(tmp_path)
    assert list(before) == ["2025-03-05", "2025-03-06", "2025-03-07"]

    # The same range again gives the same rows: days are replaced, never appended.
    assert load(tmp_path, instance).success
    assert events_by_day(tmp_path) == before

    # One unreadable file in the middle of the range fails the run naming the file...
    broken = tmp_path / "data" / "events" / "date=2025-03-06" / "part-0.parquet"
    broken.write_bytes(b"not parquet")
    result = load(tmp_path, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "date=2025-03-06/part-0.parquet" in failure.step_failure_data.error.message
    # ...and leaves every day of the range as it was: no half-written partition.
    assert events_by_day(tmp_path) == before
