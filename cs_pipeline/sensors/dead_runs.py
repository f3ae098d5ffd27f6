"""Runs whose process died (SIGKILL, the OOM killer, a reboot): marked failed, their `duckdb` slot freed.

Dagster's run monitoring cannot tell that a default-launcher run's process is gone, so such a
run would hold its concurrency slot, and block every later run, until `max_runtime_seconds`.
This sensor checks the recorded process of every started run (cs_pipeline/runs/reaper.py) once
a minute. It never opens the warehouse.
"""

from __future__ import annotations

import dagster as dg

from cs_pipeline.runs.reaper import reap_dead_runs


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed every started run whose process is gone and frees its duckdb concurrency slot.",
)
def dead_run_reaper(context: dg.SensorEvaluationContext):
    reaped = reap_dead_runs(context.instance)
    for dead in reaped:
        context.log.warning(f"run {dead.run_id} of {dead.job_name}: {dead.reason}; marked failed, {dead.freed_slots} slot(s) freed")
    if not reaped:
        return dg.SkipReason("every started run's process is alive")
    return dg.SkipReason("; ".join(f"run {d.run_id[:8]} ({d.job_name}) marked failed: {d.reason}" for d in reaped))
