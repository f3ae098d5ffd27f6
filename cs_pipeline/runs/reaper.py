"""Runs whose process is gone: marked failed, their concurrency slots freed.

With the default run launcher a run executes in a process of its code server: the run worker,
which records itself in the run's event log (`Started process for run (pid: N)`, timestamped),
and, with the multiprocess executor, one child per step (`Executing step "x" in subprocess`,
with its pid). The code server's address is the run's `dagster/grpc_info` tag. A SIGKILLed
(or OOM-killed) worker leaves its run STARTED and its `duckdb` slot claimed for ever: Dagster's
run monitoring cannot see that the process is gone. This module can: a run whose worker ran
on this host and whose pid is gone, or now belongs to a process started after the run's worker
(the pid was reused), is dead. Each dead run is marked failed, its orphaned step processes are
stopped (they would keep the warehouse open) and its slots are freed.

Used by `cs-pipeline run` before it launches and by the `dead_run_reaper` sensor.
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


@dataclass(frozen=True)
class Worker:
    """Where a run's process lives: host, pid and when it was recorded (epoch seconds)."""

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


def workers(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[Worker | None, list[Worker]]:
    """The run worker and the step processes, as the run's event log records them."""
    host = _host(run)
    run_worker, steps = None, []
    records = instance.get_records_for_run(run.run_id, of_type={
        dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.STEP_WORKER_STARTED,
    }, limit=1000).records
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        metadata = getattr(data, "metadata", None) or {}
        pid = metadata.get("pid")
        if pid is None or not str(pid.value).isdigit():
            continue
        worker = Worker(host, int(pid.value), entry.timestamp, event.step_key)
        if event.event_type == dg.DagsterEventType.STEP_WORKER_STARTED:
            steps.append(worker)
        elif (entry.message or "").startswith("Started process for run"):
            run_worker = worker
    return run_worker, steps


def dead_reason(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why this started run is dead, or None when it is alive or cannot be judged from here."""
    worker, _ = workers(instance, run)
    if worker is None or not is_local(worker.host):
        return None  # launched in-process, not started yet, or on another host: not ours to judge
    if process_alive(worker.pid, worker.recorded_at):
        return None
    return f"its process (pid {worker.pid} on {socket.gethostname()}) is gone"


def _stop_orphans(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """SIGTERM, then SIGKILL, the step processes a dead run worker left behind."""
    _, steps = workers(instance, run)
    alive = [s for s in steps if is_local(s.host) and process_alive(s.pid, s.recorded_at)]
    for step in alive:
        with _quiet():
            os.kill(step.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [s for s in alive if process_alive(s.pid, s.recorded_at)]
    for step in alive:
        with _quiet():
            os.kill(step.pid, signal.SIGKILL)


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
        _stop_orphans(instance, run)
        instance.report_run_failed(run, f"Marked failed by cs_pipeline: {reason} (killed, e.g. SIGKILL or the OOM killer).")
        reaped.append(Reaped(run.run_id, run.job_name, reason, free_slots(instance, run.run_id)))
    # A run that ended while holding a slot (the daemon frees those after a while; the CLI has no daemon).
    for run_id in slot_holders(instance):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            freed = free_slots(instance, run_id)
            if freed and run is not None:
                reaped.append(Reaped(run_id, run.job_name, f"it ended ({run.status.value}) still holding a slot", freed))
    return reaped
