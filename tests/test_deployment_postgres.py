"""The production instance (deploy/dagster.yaml) on a real PostgreSQL: a CLI run and a
sensor-launched dispatch both land in it.

A fresh database per test module on the local server (127.0.0.1:5432); without one the test
skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import dagster as dg
import psutil
import pytest
import sqlalchemy as sa

from cs_pipeline import settings
from cs_pipeline.runs import launch
from tests.support import planted
from tests.support.databases import _database

DAY = planted.LAST.isoformat()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    for url in _database("postgres", "PostgreSQL"):
        planted.write(root / "data")
        (root / "config").mkdir()
        (root / "config" / "health_model.yaml").write_text(planted.HEALTH_MODEL)
        shutil.copy(settings.SHIPPED_CONFIG_DIR / "rules.yaml", root / "config" / "rules.yaml")
        home = root / "dagster"
        home.mkdir()
        shipped = (settings.PROJECT_DIR / "deploy" / "dagster.yaml").read_text()
        assert "/var/lib/cs-pipeline/dagster" in shipped and "password" in shipped
        (home / "dagster.yaml").write_text(shipped.replace("/var/lib/cs-pipeline/dagster", str(home / "artifacts")))
        pg = sa.engine.make_url(url)
        with pytest.MonkeyPatch.context() as env:
            for name, value in {
                "DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port or 5432),
                "DAGSTER_PG_DB": pg.database, "DAGSTER_PG_USER": pg.username, "DAGSTER_PG_PASSWORD": pg.password or "",
                "CS_PIPELINE_WAREHOUSE": str(root / "warehouse.duckdb"), "CS_PIPELINE_DATA_DIR": str(root / "data"),
                "CS_PIPELINE_CONFIG_DIR": str(root / "config"), "CS_PIPELINE_TODAY": planted.TODAY.isoformat(),
                "CS_PIPELINE_OUTBOX": str(root / "outbox"),
            }.items():
                env.setenv(name, value)
            env.delenv("SLACK_BOT_TOKEN", raising=False)
            with dg.DagsterInstance.get() as instance:
                yield root, url, instance


def runs_in_postgres(url: str) -> list[tuple[str, str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.text("SELECT run_id, pipeline_name, status FROM runs"))]
    finally:
        engine.dispose()


def code_servers() -> list[psutil.Process]:
    """This process's children that are code servers (zombies of earlier tests in this worker skipped)."""
    found = []
    for child in psutil.Process().children():
        try:
            if "grpc" in child.cmdline():
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_cli_run_and_a_sensor_launched_dispatch_land_in_postgres(deployment):
    root, url, instance = deployment
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.event_log_storage.get_concurrency_info("duckdb").limit == 1

    done = subprocess.run(
        [sys.executable, "-m", "cs_pipeline.cli", "run", "--data-dir", str(root / "data"), "--from", DAY, "--to", DAY],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode in (0, 3), done.stderr  # 3: the planted exports trip two rejected-rows checks on purpose
    stored = runs_in_postgres(url)
    assert {(job, status) for _, job, status in stored} == {("daily_pipeline", "SUCCESS"), ("dispatch_alerts", "SUCCESS")}

    # The daemon's path, without the daemon: the sensor ticks in the code server, its run request
    # is submitted to the run queue, and the queue launches it.
    with launch.code_location(instance) as (workspace, repo):
        servers = code_servers()
        assert len(servers) == 1
        location = workspace.get_code_location(launch.LOCATION)
        tick = location.get_sensor_execution_data(instance, repo.handle, "alert_dispatch_sensor", None, None, None, None, None)
        cli_dispatch = next(run_id for run_id, job, _ in runs_in_postgres(url) if job == "dispatch_alerts")
        assert tick.run_requests == [] and tick.skip_message == (  # the CLI's own dispatch run sent them
            f"the new live alerts are dispatched by run {cli_dispatch[:8]}, launched after them")
        # Alerts no dispatch run has seen yet (a UI run's, say) are dispatched by the sensor.
        instance.report_runless_asset_event(dg.AssetMaterialization("alerts", metadata={"live_alerts": 1}))
        tick = location.get_sensor_execution_data(instance, repo.handle, "alert_dispatch_sensor", None, None, tick.cursor, None, None)
        assert len(tick.run_requests) == 1
        request = tick.run_requests[0]
        run = launch.create_run(instance, workspace, repo, "dispatch_alerts",
                                {**request.tags, "dagster/sensor_name": "alert_dispatch_sensor"})
        assert instance.submit_run(run.run_id, workspace).status == dg.DagsterRunStatus.QUEUED
        result = launch.launch_and_wait(instance, workspace, instance.get_run_by_id(run.run_id), lambda _: None)
    # The code server exits with the block, while this database still exists: it must not
    # outlive it retrying a dropped database, immune to SIGTERM.
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive, f"the code server {alive[0].pid} outlived its block"
    assert result.success, result.failure
    assert result.output_metadata["send_notifications"]["sent"] == 0  # the CLI's dispatch sent them: nothing twice
    stored = {run_id: (job, status) for run_id, job, status in runs_in_postgres(url)}
    assert stored[run.run_id] == ("dispatch_alerts", "SUCCESS")
    assert instance.get_run_by_id(run.run_id).tags["dagster/sensor_name"] == "alert_dispatch_sensor"
