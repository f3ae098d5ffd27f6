"""Runs whose process is gone: marked failed, their concurrency slots freed.

With the default run launcher a run executes in a process of its code server: the run worker,
which records itself in the run's event log (`Started process for run (pid: N)`, timestamped).
Every job of the code location runs its steps in that process (`in_process_executor`, set in
cs_pipeline/definitions.py), so it is the run's only Dagster process; a step that starts a
program of its own (dbt) records it with `record_child` (`Started child process dbt (pid: N)`).
The code server's address is the run's `dagster/grpc_info` tag. A SIGKILLed (or OOM-killed)
worker leaves its run STARTED and its `duckdb` slot claimed for ever: Dagster's run monitoring
cannot see that the process is gone. This module can: a run whose worker ran on this host and
whose pid is gone, or now belongs to a process started after the run's worker (the pid was
reused), is dead. Each dead run is marked failed (naming the step it was running), the child
processes it left behind are stopped (a dbt build would keep the warehouse open) and its slots
are freed.

Used by `cs-pipeline run` before it launches and while it waits, and by the `dead_run_reaper` sensor.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass

import dagster as dg
import psutil
from dagster._core.storage.tags import GRPC_INFO_TAG

POOL = "duckdb"
# A pid belongs to the recorded process when that process started no later than the record.
START_SLACK_SECONDS = 2.0
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
ACTIVE = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
# How a step's own child process (dbt) is recorded in the run's event log (see record_child).
CHILD_PREFIX = "Started child process "


@dataclass(frozen=True)
class Worker:
    """Where a run's process (or a step's child process) lives: host, pid and when it was recorded (epoch seconds)."""

    host: str
    pid: int
    recorded_at: float
    step_key: str | None = None


@dataclass(frozen=True)
class Reaped:
    run_id: str
    job_name: str
    reason: str
    freed_slots: int


def process_alive(pid: int, recorded_at: float) -> bool:
    """The process recorded at `recorded_at` with this pid is still running (not a zombie, not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= recorded_at + START_SLACK_SECONDS
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _host(run: dg.DagsterRun) -> str:
    info = run.tags.get(GRPC_INFO_TAG)
    if not info:
        return ""
    try:
        return str(json.loads(info).get("host") or "")
    except ValueError:
        return ""


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host in {socket.gethostname(), socket.getfqdn()}


def record_child(context: dg.AssetExecutionContext, pid: int, program: str) -> None:
    """Record in the run's event log a process the step started, so the reaper stops it if the run worker dies."""
    from dagster._core.events import EngineEventData

    context.instance.report_engine_event(
        f"{CHILD_PREFIX}{program} (pid: {pid})", context.run, EngineEventData.in_process(pid),
        step_key=context.get_step_execution_context().step.key,
    )



def workers(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[Worker | None, list[Worker]]:
    """The run worker and the child processes its steps recorded, as the run's event log has them."""
    host = _host(run)
    run_worker, children = None, []
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=1000).records
    for record in records:
        entry = record.event_log_entry
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        metadata = getattr(data, "metadata", None) or {}
        pid = metadata.get("pid")
        if pid is None or not str(pid.value).isdigit():
            continue
        worker = Worker(host, int(pid.value), entry.timestamp, entry.dagster_event.step_key)
        message = entry.message or ""
        if message.startswith(CHILD_PREFIX):
            children.append(worker)
        elif message.startswith("Started process for run"):
            run_worker = worker
    return run_worker, children


def running_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The steps the run started and never finished (the step a killed run was in)."""
    ended = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
    records = instance.get_records_for_run(run.run_id, of_type={dg.DagsterEventType.STEP_START, *ended}, limit=10000).records
    started: dict[str, None] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = None
        else:
            started.pop(event.step_key, None)
    return list(started)


def dead_reason(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why this started run is dead, or None when it is alive or cannot be judged from here."""
    worker, _ = workers(instance, run)
    if worker is None or not is_local(worker.host):
        return None  # launched in-process, not started yet, or on another host: not ours to judge
    if process_alive(worker.pid, worker.recorded_at):
        return None
    steps = running_steps(instance, run)
    during = f" during step {', '.join(steps)}" if steps else ""
    return f"its process (pid {worker.pid} on {socket.gethostname()}) is gone{during}"


def fail_dead_run(instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str, by: str) -> int:
    """Stop the dead run's child processes, mark it failed and free its slots; the slots it held."""
    _stop_orphans(instance, run)
    instance.report_run_failed(run, f"Marked failed by {by}: {reason} (killed, e.g. SIGKILL or the OOM killer).")
    return free_slots(instance, run.run_id)


def _stop_orphans(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """SIGTERM, then SIGKILL, the child processes (dbt) a dead run worker left behind."""
    _, children = workers(instance, run)
    alive = [c for c in children if is_local(c.host) and process_alive(c.pid, c.recorded_at)]
    for child in alive:
        with _quiet():
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [s for s in alive if process_alive(s.pid, s.recorded_at)]
    for child in alive:
        with _quiet():
            os.kill(child.pid, signal.SIGKILL)


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, (ProcessLookupError, PermissionError))


def slot_holders(instance: dg.DagsterInstance, pool: str = POOL) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(pool)
    return {slot.run_id for slot in info.claimed_slots} | {step.run_id for step in info.pending_steps}


def free_slots(instance: dg.DagsterInstance, run_id: str, pool: str = POOL) -> int:
    """Free every slot (and pending claim) of the run; the number of slots it held in the pool."""
    held = sum(1 for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots if slot.run_id == run_id)
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return held


def reap_dead_runs(instance: dg.DagsterInstance) -> list[Reaped]:
    """Mark every dead local run failed and free its slots; free the slots finished runs still hold."""
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE)):
        reason = dead_reason(instance, run)
        if reason is None:
            continue
        reaped.append(Reaped(run.run_id, run.job_name, reason, fail_dead_run(instance, run, reason, "cs_pipeline")))
    # A run that ended while holding a slot (the daemon frees those after a while; the CLI has no daemon).
    for run_id in slot_holders(instance):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            freed = free_slots(instance, run_id)
            if freed and run is not None:
                reaped.append(Reaped(run_id, run.job_name, f"it ended ({run.status.value}) still holding a slot", freed))
    return reaped
