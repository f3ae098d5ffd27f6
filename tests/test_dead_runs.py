"""dead_run_reaper: a started run whose recorded process is gone is failed and its duckdb slot freed.

Real processes (started and SIGKILLed here), a real instance with the `duckdb` pool and a real
sensor evaluation; a real in-process run whose step's dbt child outlives its SIGKILLed worker. The
end-to-end SIGKILL of a launched run is in test_cli_runs.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import dagster as dg
import psutil
import pytest
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG

from cs_pipeline.runs import reaper
from cs_pipeline.sensors.dead_runs import dead_run_reaper

POOL_LIMIT = {"concurrency": {"pools": {"default_limit": 1}}}


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides=POOL_LIMIT) as instance:
        instance.event_log_storage.set_concurrency_slots(reaper.POOL, 1)
        yield instance


def started_run(instance: dg.DagsterInstance, pid: int, host: str = "localhost") -> dg.DagsterRun:
    """A STARTED run whose worker is `pid`, recorded as Dagster's run worker records itself, holding the slot."""
    run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), tags={GRPC_INFO_TAG: json.dumps({"host": host, "port": 4000})})
    instance.handle_run_event(run.run_id, dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.PIPELINE_START.value, job_name=run.job_name))
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
    claim = instance.event_log_storage.claim_concurrency_slot(reaper.POOL, run.run_id, "raw__events")
    assert claim.is_claimed
    return instance.get_run_by_id(run.run_id)


def tick(instance: dg.DagsterInstance):
    return dead_run_reaper(dg.build_sensor_context(instance=instance))


def holders(instance: dg.DagsterInstance) -> set[str]:
    return {s.run_id for s in instance.event_log_storage.get_concurrency_info(reaper.POOL).claimed_slots}


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_run_whose_process_was_sigkilled_is_failed_and_its_slot_freed(instance):
    process = sleeper()
    run = started_run(instance, process.pid)
    process.kill()
    process.wait()

    result = tick(instance)
    assert isinstance(result, dg.SkipReason) and run.run_id[:8] in result.skip_message
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert holders(instance) == set()
    failure = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[0]
    assert f"pid {process.pid}" in failure.event_log_entry.message


def test_a_live_run_and_a_run_on_another_host_are_left_alone(instance):
    process = sleeper()
    try:
        live = started_run(instance, process.pid)
        assert "every started run's process is alive" in tick(instance).skip_message
        assert instance.get_run_by_id(live.run_id).status == dg.DagsterRunStatus.STARTED
        assert holders(instance) == {live.run_id}
    finally:
        process.kill()
        process.wait()
    instance.event_log_storage.free_concurrency_slots_for_run(live.run_id)
    elsewhere = started_run(instance, process.pid, host="worker-7.internal")
    tick(instance)
    assert instance.get_run_by_id(elsewhere.run_id).status == dg.DagsterRunStatus.STARTED


def test_a_pid_reused_by_a_newer_process_counts_as_gone():
    process = sleeper()
    try:
        started = psutil.Process(process.pid).create_time()
        assert reaper.process_alive(process.pid, recorded_at=started + 1)
        # Recorded before this process existed: the pid now belongs to someone else.
        assert not reaper.process_alive(process.pid, recorded_at=started - reaper.START_SLACK_SECONDS - 1)
    finally:
        process.kill()
        process.wait()
    assert not reaper.process_alive(process.pid, recorded_at=time.time())


def test_a_finished_run_still_holding_a_slot_gives_it_back(instance):
    process = sleeper()
    run = started_run(instance, process.pid)
    try:
        instance.report_run_failed(run, "failed elsewhere")
        assert holders(instance) == {run.run_id}
        reaped = reaper.reap_dead_runs(instance)
        assert [(r.run_id, r.freed_slots) for r in reaped] == [(run.run_id, 1)]
        assert holders(instance) == set()
    finally:
        process.kill()
        process.wait()


def test_a_run_waiting_for_the_slot_says_for_which_run_and_since_when(instance):
    from cs_pipeline.runs.launch import _Progress

    process = sleeper()
    try:
        holder = started_run(instance, process.pid)
        waiting = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
        assert not instance.event_log_storage.claim_concurrency_slot(reaper.POOL, waiting.run_id, "alerts").is_claimed
        said: list[str] = []
        progress = _Progress(instance, waiting, said.append)
        progress.update()
        progress.update()  # said once, not on every poll
    finally:
        process.kill()
        process.wait()
    assert len(said) == 1, said
    assert said[0].startswith("  alerts waits for the duckdb slot since ") and " UTC: held by noop run " in said[0]
    assert f"run {holder.run_id[:8]} (step raw__events); Ctrl-C stops this run" in said[0]


RUN_WORKER = """
import os, subprocess, sys, time
import dagster as dg
from dagster._core.events import EngineEventData
from cs_pipeline.runs.reaper import POOL, record_child

@dg.asset(pool=POOL)
def dbt_models(context):
    # As Dagster's run worker records itself, then a step's dbt build, recorded as dbt.build records it.
    context.instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", context.run, EngineEventData.in_process(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    record_child(context, child.pid, "dbt")
    time.sleep(120)

with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    dg.materialize([dbt_models], instance=instance)
"""


def test_a_killed_run_workers_dbt_child_is_stopped_and_the_failure_names_its_step(tmp_path):
    """The in-process case: the steps run in the run worker, and a step's own child (dbt) outlives
    a SIGKILLed worker, holding the warehouse open; the reaper stops it."""
    (tmp_path / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    worker = subprocess.Popen([sys.executable, "-c", RUN_WORKER, str(tmp_path)])
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        try:
            deadline = time.monotonic() + 120
            run = children = None
            while time.monotonic() < deadline and worker.poll() is None and not children:
                runs = instance.get_runs()
                run = runs[0] if runs else None
                children = reaper.workers(instance, run)[1] if run else None
                time.sleep(0.2)
            assert children, f"the step never recorded its child (worker exit {worker.poll()})"
            dbt = psutil.Process(children[0].pid)
            assert children[0].step_key == "dbt_models" and holders(instance) == {run.run_id}
            worker.kill()
            worker.wait()
            assert dbt.is_running() and dbt.status() != psutil.STATUS_ZOMBIE  # orphaned, not killed with its parent

            reaped = reaper.reap_dead_runs(instance)
            assert [(r.run_id, r.freed_slots) for r in reaped] == [(run.run_id, 1)]
            assert reaped[0].reason.endswith(" is gone during step dbt_models")
            assert not dbt.is_running() or dbt.status() == psutil.STATUS_ZOMBIE
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert holders(instance) == set()
        finally:
            worker.kill()
            for child in children or []:
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(child.pid).kill()
