"""Partitions from the data, where a run must begin, the refusal of `alerts`, the catching-up schedule."""

import datetime as dt

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from cs_pipeline import settings
from cs_pipeline.partitions import evaluation_start, run_start_needed

D = dt.date(2025, 3, 1)


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def events(root, *dates: str) -> None:
    for date in dates:
        (root / "events" / f"date={date}").mkdir(parents=True)


def test_the_first_partition_is_the_data_first_day_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_PIPELINE_START_DATE")
    monkeypatch.setenv("CS_PIPELINE_DATA_DIR", str(tmp_path))
    assert settings.partitions_start_date() == settings.DEFAULT_START_DATE  # no events folder: the documented fallback
    events(tmp_path, "2026-07-09", "2026-07-08", "2026-12-01")
    (tmp_path / "events" / "README").write_text("not a day")
    (tmp_path / "events" / "date=someday").mkdir()
    assert settings.partitions_start_date() == "2026-07-08"
    monkeypatch.setenv("CS_PIPELINE_START_DATE", "2026-11-01")
    assert settings.partitions_start_date() == "2026-11-01"
    monkeypatch.setenv("CS_PIPELINE_START_DATE", "01/11/2026")
    with pytest.raises(ValueError, match="CS_PIPELINE_START_DATE must be a date as YYYY-MM-DD"):
        settings.partitions_start_date()


def warehouse(path, health: list[dt.date] = (), evaluated: list[dt.date] = ()) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA analytics")
        con.execute("CREATE TABLE analytics.account_health (partition_date DATE, account_id VARCHAR)")
        con.execute("CREATE TABLE analytics.alert_evaluated_days (partition_date DATE)")
        for d in health:
            con.execute("INSERT INTO analytics.account_health VALUES (?, 'a')", [d])
        for d in evaluated:
            con.execute("INSERT INTO analytics.alert_evaluated_days VALUES (?)", [d])


@pytest.mark.parametrize(
    ("health", "evaluated", "start", "expected"),
    [
        ([], [], day(0), (day(0), None)),  # the first partition: nothing before it to know
        ([], [], day(5), (day(5), day(0))),  # a fresh warehouse: from the first partition
        ([day(n) for n in range(5)], [day(n) for n in range(5)], day(5), (day(5), None)),  # the day before was evaluated
        ([day(n) for n in range(5)], [day(0), day(1)], day(5), (day(2), None)),  # health, not evaluated: evaluate back
        ([day(3), day(4)], [day(0), day(1)], day(5), (day(3), day(2))),  # day 2 unknown: resume after day 1
        ([day(n) for n in range(12)], [day(n) for n in range(12)], day(8), (day(8), None)),  # re-running a past range
    ],
)
def test_evaluation_start(tmp_path, health, evaluated, start, expected):
    warehouse(tmp_path / "w.duckdb", health, evaluated)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert evaluation_start(con, start, D) == expected


def test_run_start_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_PIPELINE_START_DATE", D.isoformat())
    path = tmp_path / "w.duckdb"
    start, why = run_start_needed(path, day(20))  # no warehouse yet
    assert start == D and why == f"the days {D} .. {day(19)} were never evaluated, so the run starts at {D}: episodes ongoing on {day(20)} keep the day they began"
    assert run_start_needed(path, D) == (D, None)
    warehouse(path, [day(n) for n in range(10)], [day(n) for n in range(10)])
    assert run_start_needed(path, day(10)) == (day(10), None)
    assert run_start_needed(path, day(4)) == (day(4), None)
    assert run_start_needed(path, day(14))[0] == day(10)
    with duckdb.connect(str(path)):  # a writer holds the file: the asset checks again when it runs
        assert run_start_needed(path, day(14)) == (day(14), None)


def test_alerts_refuses_when_the_state_of_the_day_before_is_unknown(tmp_path, monkeypatch):
    from cs_pipeline.definitions import resources
    from cs_pipeline.assets.alerts import alerts

    monkeypatch.setenv("CS_PIPELINE_START_DATE", D.isoformat())
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(tmp_path / "w.duckdb"))
    warehouse(tmp_path / "w.duckdb", [day(7)])
    result = dg.materialize([alerts], partition_key=day(7).isoformat(), resources=resources(), raise_on_error=False,
                            instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    reason = failure.step_failure_data.user_failure_data.description
    assert reason == (
        f"alerts {day(7)} .. {day(7)}: the alert state of {day(6)} is unknown (never evaluated, no account_health): run {D} .. {day(6)} "
        f"first (`cs-pipeline run --from {D}` or a backfill from {D} in the UI), so that episodes ongoing on {day(7)} keep the day they began"
    )


def test_the_schedule_catches_up_from_the_first_day_not_evaluated(tmp_path):
    from cs_pipeline.definitions import defs
    from cs_pipeline.partitions import daily_partitions
    from cs_pipeline.schedules import catch_up_from, daily_schedule

    first = daily_partitions.start.date()
    assert catch_up_from(set(), day(9), day(0)) == day(0)
    assert catch_up_from({day(n).isoformat() for n in range(9)}, day(9), day(0)) == day(9)
    assert catch_up_from({day(n).isoformat() for n in range(12)}, day(9), day(0)) == day(9)  # re-run of a past day
    assert catch_up_from({day(n).isoformat() for n in range(4)}, day(9), day(0)) == day(4)

    morning = dt.datetime(2025, 3, 11, 6, tzinfo=dt.UTC)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        for n in range(7):  # evaluated up to 03-07; the daemon then missed two mornings
            instance.report_runless_asset_event(dg.AssetMaterialization("alerts", partition=day(n).isoformat()))
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=morning, repository_def=defs.get_repository_def())
        [request] = daily_schedule.evaluate_tick(context).run_requests
        assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == day(7).isoformat()
        assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == day(9).isoformat()
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", partition=day(7).isoformat()))
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", partition=day(8).isoformat()))
        [request] = daily_schedule.evaluate_tick(context).run_requests
        assert request.partition_key == day(9).isoformat() and ASSET_PARTITION_RANGE_START_TAG not in request.tags
    assert first <= D
