"""The dispatch sensor's retries back off when dispatch runs keep failing, with the real sensor
evaluated against a real Dagster instance holding real (failing, then passing) dispatch runs."""

import datetime as dt

import dagster as dg
import pytest

from cs_pipeline.logic.delivery import retry_delay_seconds
from cs_pipeline.sensors import alerts as sensor_module
from cs_pipeline.sensors.alerts import alert_dispatch_sensor


def test_retry_delays_are_immediate_at_first_then_double_up_to_the_cap():
    assert [retry_delay_seconds(n, 60) // 60 for n in range(1, 13)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert retry_delay_seconds(9, 10) == 600
    assert retry_delay_seconds(50, 60) == 3600
    assert retry_delay_seconds(9, 0) == 0  # backing off turned off


def _tick(instance, cursor=None):
    return alert_dispatch_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))


def _dispatch(instance, tags) -> dg.ExecuteInProcessResult:
    from cs_pipeline.definitions import resources
    from cs_pipeline.jobs.dispatch import dispatch_alerts

    return dispatch_alerts.execute_in_process(resources=resources(), instance=instance, tags=tags, raise_on_error=False)


def _last_end(instance) -> float:
    return instance.get_run_records(filters=dg.RunsFilter(job_name="dispatch_alerts"), limit=1)[0].end_time


def _due_text(end: float, minutes: int, now: float) -> str:
    at = dt.datetime.fromtimestamp(end + 60 * minutes, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"next retry due at {at}, in {round(end + 60 * minutes - now)} s"


def test_a_job_that_keeps_crashing_is_retried_three_times_at_once_then_with_growing_waits(tmp_path, monkeypatch):
    broken = tmp_path / "not-a-warehouse"
    broken.mkdir()  # a directory: DuckDB cannot open it, so every dispatch run fails as a whole
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(broken))
    monkeypatch.setenv("CS_PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    monkeypatch.delenv("CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES", raising=False)
    now = {"t": None}
    monkeypatch.setattr(sensor_module, "_clock", lambda: now["t"])
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        first = _dispatch(instance, {"cs_pipeline/trigger": "manual"})
        assert not first.success
        launched = [first.run_id]

        # Three immediate retries, each launched on the tick right after the previous run ended.
        for _ in range(3):
            now["t"] = _last_end(instance) + 1
            tick = _tick(instance)
            assert [r.run_key for r in tick.run_requests] == [f"retry-{launched[-1]}"]
            run = _dispatch(instance, tick.run_requests[0].tags)
            assert not run.success
            launched.append(run.run_id)

        # Four runs failed in a row: the next retry waits 1 minute after the last one ended.
        end = _last_end(instance)
        now["t"] = end + 20
        tick = _tick(instance)
        assert tick.run_requests == [] and tick.skip_message == (
            f"backing off: 4 dispatch runs in a row need a retry (the last, {launched[-1][:8]}, failed); "
            + _due_text(end, 1, now["t"])
        )
        now["t"] = end + 61
        tick = _tick(instance)
        assert [r.run_key for r in tick.run_requests] == [f"retry-{launched[-1]}"]
        run = _dispatch(instance, tick.run_requests[0].tags)
        assert not run.success
        launched.append(run.run_id)

        # Five in a row: 2 minutes.
        end = _last_end(instance)
        now["t"] = end + 61
        tick = _tick(instance)
        assert tick.run_requests == [] and tick.skip_message.endswith(_due_text(end, 2, now["t"]))
        assert "5 dispatch runs in a row" in tick.skip_message

        # New live alerts are dispatched at once, backing off or not.
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", metadata={"live_alerts": 3}))
        tick = _tick(instance)
        assert [r.tags["cs_pipeline/trigger"] for r in tick.run_requests] == ["alerts"]
        cursor = tick.cursor

        # With the cap at 0 the sensor retries on every tick, as before backing off existed.
        monkeypatch.setenv("CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES", "0")
        assert [r.run_key for r in _tick(instance, cursor).run_requests] == [f"retry-{launched[-1]}"]
        monkeypatch.setenv("CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES", "soon")
        with pytest.raises(Exception, match="CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES must be a whole number"):
            _tick(instance, cursor)
        monkeypatch.delenv("CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES")

        # The bug is fixed (the warehouse can be opened): the due retry succeeds and the sensor is quiet.
        monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(tmp_path / "w.duckdb"))
        now["t"] = end + 121
        tick = _tick(instance, cursor)
        assert [r.run_key for r in tick.run_requests] == [f"retry-{launched[-1]}"]
        assert _dispatch(instance, tick.run_requests[0].tags).success
        now["t"] = _last_end(instance) + 1
        assert _tick(instance, cursor).skip_message == "no new live alerts and no failed deliveries to retry"


def test_live_alerts_that_a_later_dispatch_run_sends_launch_no_second_run(tmp_path, monkeypatch):
    """`cs-pipeline run` dispatches its own alerts: the sensor launches no second dispatch for them,
    but still retries that run when it fails, and still dispatches alerts materialized after it."""
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("CS_PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", metadata={"live_alerts": 3}))
        dispatch = _dispatch(instance, {"cs_pipeline/trigger": "manual"})
        assert dispatch.success
        tick = _tick(instance)
        assert tick.run_requests == []
        assert tick.skip_message == f"the new live alerts are dispatched by run {dispatch.run_id[:8]}, launched after them"

        # Alerts materialized after that run are not its own: the sensor dispatches them.
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", metadata={"live_alerts": 2}))
        tick = _tick(instance, tick.cursor)
        assert [r.tags["cs_pipeline/trigger"] for r in tick.run_requests] == ["alerts"]

        # The run that dispatched them failed: it is retried, as any failed dispatch run.
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", metadata={"live_alerts": 2}))
        broken = tmp_path / "not-a-warehouse"
        broken.mkdir()
        monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(broken))
        failed = _dispatch(instance, {"cs_pipeline/trigger": "manual"})
        assert not failed.success
        assert [r.run_key for r in _tick(instance, tick.cursor).run_requests] == [f"retry-{failed.run_id}"]
