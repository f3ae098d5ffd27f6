"""`cs-pipeline run` launches real runs through the instance and the code location.

One Dagster instance and one planted warehouse for the module (each launched run pays for
Dagster's start-up): a run SIGKILLed while a step holds the `duckdb` slot is reaped by the next
`cs-pipeline run`, which then succeeds; a CLI run that fails on a corrupt file is listed under its
job with its origin, is seen by `run_failure_to_slack` ticked as the daemon ticks it (through
the code server), and re-executes from failure once the file is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from cs_pipeline import settings
from cs_pipeline.runs import launch, reaper
from tests.support import planted
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-cli-runs"
DAY = planted.LAST.isoformat()
INSTANCE_YAML = "concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_runs")
    planted.write(root / "data")
    (root / "config").mkdir()
    (root / "config" / "health_model.yaml").write_text(planted.HEALTH_MODEL)
    shutil.copy(settings.SHIPPED_CONFIG_DIR / "rules.yaml", root / "config" / "rules.yaml")
    (root / "dagster").mkdir()
    (root / "dagster" / "dagster.yaml").write_text(INSTANCE_YAML)
    with SlackServer(users=planted.OWNERS, token=TOKEN) as server, pytest.MonkeyPatch.context() as env:
        # The test's own code server (sensor ticks, re-execution) reads the same settings as the CLI's.
        for name, value in {
            "DAGSTER_HOME": str(root / "dagster"), "CS_PIPELINE_WAREHOUSE": str(root / "warehouse.duckdb"),
            "CS_PIPELINE_DATA_DIR": str(root / "data"), "CS_PIPELINE_CONFIG_DIR": str(root / "config"),
            "CS_PIPELINE_TODAY": planted.TODAY.isoformat(), "CS_PIPELINE_OUTBOX": str(root / "outbox"),
            # The runs are of one day: it is the first partition, so no run reaches back for history.
            "CS_PIPELINE_START_DATE": DAY,
            "SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": server.url, "DAGSTER_WEBSERVER_URL": "http://dagster.test:3000",
        }.items():
            env.setenv(name, value)
        with dg.DagsterInstance.from_config(str(root / "dagster")) as instance:
            yield root, server, instance


def cli(root: Path, *args: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "cs_pipeline.cli", "run", "--data-dir", str(root / "data"), "--from", DAY, "--to", DAY, *args]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = 420) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def runs_of(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=job)))


def test_a_sigkilled_run_is_reaped_by_the_next_cli_run_which_succeeds(site):
    root, _, instance = site
    process = cli(root, start_new_session=True)
    deadline = time.monotonic() + 300
    worker = run = None
    while time.monotonic() < deadline and process.poll() is None:
        info = instance.event_log_storage.get_concurrency_info(reaper.POOL)
        started = [r for r in runs_of(instance, "daily_pipeline") if r.status == dg.DagsterRunStatus.STARTED]
        if started and any(s.run_id == started[0].run_id for s in info.claimed_slots):
            run = started[0]
            worker, _ = reaper.workers(instance, run)
            if worker is not None:
                break
        time.sleep(0.3)
    assert worker is not None, f"no step ever held the slot: {process.poll()} {process.stderr.read() if process.poll() is not None else ''}"
    # Everything dies at once, as under the OOM killer: the run worker, the code server, the command.
    family = psutil.Process(process.pid).children(recursive=True)
    os.kill(worker.pid, signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    for child in family:
        if child.is_running():
            child.kill()
    process.communicate(timeout=30)

    # Dagster alone does not notice: the run stays started and keeps its slot.
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    assert {s.run_id for s in instance.event_log_storage.get_concurrency_info(reaper.POOL).claimed_slots} == {run.run_id}

    code, out, err = finish(cli(root))
    # Exit code 3: the runs succeeded, but the planted exports trip two rejected-rows checks on purpose.
    assert code == 3, err
    assert err.strip() == ("cs-pipeline: the runs succeeded, but 2 asset checks failed "
                           "(raw/accounts rejected_share_below_limit, raw/contracts rejected_share_below_limit)")
    assert f"run {run.run_id[:8]} of daily_pipeline was dead" in out and "1 duckdb slot(s) freed" in out
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info(reaper.POOL).claimed_slots
    latest = runs_of(instance, "daily_pipeline")[0]
    assert latest.status == dg.DagsterRunStatus.SUCCESS
    # Listed under its job with its code-location origin, like a UI run.
    assert latest.remote_job_origin is not None
    assert latest.remote_job_origin.repository_origin.code_location_origin.location_name == "cs_pipeline"
    assert latest.tags["dagster/asset_partition_range_start"] == DAY
    assert runs_of(instance, "dispatch_alerts")[0].remote_job_origin is not None


def test_sigterm_terminates_the_cli_run_and_frees_its_slot(site):
    root, _, instance = site
    before = {r.run_id for r in runs_of(instance, "daily_pipeline")}
    process = cli(root)
    deadline = time.monotonic() + 300
    run = None
    while time.monotonic() < deadline and process.poll() is None and run is None:
        fresh = [r for r in runs_of(instance, "daily_pipeline") if r.run_id not in before and r.status == dg.DagsterRunStatus.STARTED]
        run = fresh[0] if fresh and reaper.workers(instance, fresh[0])[0] else None
        time.sleep(0.3)
    assert run is not None, "the run never started"
    process.send_signal(signal.SIGTERM)
    code, _, err = finish(process, timeout=120)
    assert code == 130, err
    assert f"SIGTERM: run {run.run_id} was terminated" in err and "Traceback" not in err
    assert instance.get_run_by_id(run.run_id).status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
    assert run.run_id not in reaper.slot_holders(instance)


def tick(location, repo, instance: dg.DagsterInstance, cursor: str | None):
    """One tick of run_failure_to_slack as the daemon runs it: in the code server, with its origin."""
    return location.get_sensor_execution_data(
        instance, repo.handle, "run_failure_to_slack", None, None, cursor, None, None
    )


def test_a_failed_cli_run_is_notified_and_re_executes_from_failure(site):
    root, server, instance = site
    events = root / "data" / "events" / f"date={DAY}" / "part-0.parquet"
    good = events.read_bytes()
    with launch.code_location(instance) as (workspace, repo):
        location = workspace.get_code_location(launch.LOCATION)
        cursor = tick(location, repo, instance, None).cursor  # the first tick only sets the cursor

        events.write_bytes(b"this is not parquet")
        code, out, err = finish(cli(root))
        assert code == 1
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
        assert "raw__events" in err and "part-0.parquet" in err

        failed = runs_of(instance, "daily_pipeline")[0]
        assert failed.status == dg.DagsterRunStatus.FAILURE and failed.remote_job_origin is not None

        posted_before = len(server.messages)
        tick(location, repo, instance, cursor)
        notices = server.messages[posted_before:]
        assert len(notices) == 1
        text = notices[0]["text"] + json.dumps(notices[0]["blocks"])
        assert notices[0]["channel"] == "#cs-pipeline-oncall"
        assert f"*Partition*\\n{DAY}\"" in text  # a one-day range run names its day
        for part in ("raw__events", "raw/events", "part-0.parquet", failed.run_id,
                     f"http://dagster.test:3000/runs/{failed.run_id}"):
            assert part in text, part

        # The fix, then the UI's "Re-execute from failure" (launchPipelineReexecution, FROM_FAILURE).
        events.write_bytes(good)
        parent = instance.get_run_by_id(failed.run_id)
        from dagster._core.definitions.selector import JobSubsetSelector
        from dagster._core.execution.plan.resume_retry import ReexecutionStrategy

        remote_job = location.get_job(JobSubsetSelector(
            location_name=launch.LOCATION, repository_name=repo.name, job_name="daily_pipeline", op_selection=None))
        child = instance.create_reexecuted_run(
            request_context=workspace, parent_run=parent, code_location=location, remote_job=remote_job,
            strategy=ReexecutionStrategy.FROM_FAILURE, use_parent_run_tags=True,
        )
        result = launch.launch_and_wait(instance, workspace, child, lambda _: None)
        assert result.success, result.failure
        assert result.run.parent_run_id == failed.run_id and "raw/events" in result.materialized
