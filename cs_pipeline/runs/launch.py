"""Launch a job the way the Dagster UI does, and wait for it.

`cs-pipeline run` loads the code location (`cs_pipeline.definitions`, as workspace.yaml and
pyproject's [tool.dagster] name it, location `cs_pipeline`) in a code server, creates the run
for the remote job and launches it through the instance's run launcher, so the run has its
code-location origin: it is listed under its job, re-executable from the UI and seen by
`run_failure_to_slack`. While it runs the command shows the steps done and the current step,
says what a step waits for in the `duckdb` pool, and terminates the run on Ctrl-C or SIGTERM.
It returns once the code server has let go of the run's process, so the server exits with it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.remote_representation.external import RemoteRepository
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import ModuleTarget

from cs_pipeline.runs.failures import cause_line, failure_summary
from cs_pipeline.runs.reaper import POOL, dead_reason, fail_dead_run, is_local, process_alive, workers

HEALTH_CHECK_SECONDS = 5.0

LOCATION = "cs_pipeline"
MODULE = "cs_pipeline.definitions"
POLL_SECONDS = 0.5
INTERRUPT_AGAIN_SECONDS = 2.0
SERVER_RELEASE_SECONDS = 30.0


class LaunchError(Exception):
    """The code location could not be loaded or the run could not be launched (one line)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the run was asked to terminate."""


@dataclass
class RunOutcome:
    run: dg.DagsterRun
    materialized: dict[str, int] = field(default_factory=dict)
    checks_passed: int = 0
    failed_checks: list[str] = field(default_factory=list)
    failure: str | None = None
    step_failures: list = field(default_factory=list)
    run_message: str | None = None
    output_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.run.status == dg.DagsterRunStatus.SUCCESS


@contextmanager
def children_write_to(log_file: Path):
    """Point this process's stdout and stderr at the log while the code server starts, so the
    code server and the runs it starts (dbt, dlt) write there; `started()` restores the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    restored = False

    def started() -> None:
        nonlocal restored
        if not restored:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            restored = True

    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        yield started
    finally:
        started()
        for fd in (log, *saved):
            os.close(fd)


@contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator[tuple[WorkspaceRequestContext, RemoteRepository]]:
    """The cs_pipeline code location, served by a code server for as long as the block runs."""
    target = ModuleTarget(module_name=MODULE, attribute=None, working_directory=None, location_name=LOCATION)
    with WorkspaceProcessContext(
        instance, version=dg.__version__, read_only=False, workspace_load_target=target, code_server_log_level="WARNING"
    ) as process_context:
        workspace = process_context.create_request_context()
        error = workspace.get_code_location_error(LOCATION)
        if error is not None:
            raise LaunchError(f"the code location {MODULE} did not load: {cause_line(error)}")
        location = workspace.get_code_location(LOCATION)
        try:
            yield workspace, next(iter(location.get_repositories().values()))
        finally:
            _wait_runs_released(location)


def _wait_runs_released(location, timeout: float = SERVER_RELEASE_SECONDS) -> None:
    """Wait until the code server has let go of the runs it started, so it exits on shutdown.

    A finished run's process outlives its RUN_SUCCESS event by a moment, and the server forgets
    the run only once a thread of its own has reopened the run storage and seen the process gone;
    if that storage is gone by then (a dropped test database), that thread dies and the server
    never exits. Waiting here, while the storage is certainly there, makes it exit on shutdown.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not location.get_current_runs():
                return
        except DagsterUserCodeUnreachableError:
            return
        time.sleep(POLL_SECONDS)


def create_run(
    instance: dg.DagsterInstance, workspace: WorkspaceRequestContext, repo: RemoteRepository, job_name: str,
    tags: Mapping[str, str], run_config: Mapping[str, Any] | None = None,
) -> dg.DagsterRun:
    """The run as the UI's launchpad creates it (dagster/_cli/job.py `_create_run`)."""
    from dagster._core.definitions.selector import JobSubsetSelector

    location = workspace.get_code_location(LOCATION)
    remote_job = location.get_job(JobSubsetSelector(location_name=LOCATION, repository_name=repo.name, job_name=job_name, op_selection=None))
    config = dict(run_config or {})
    plan = location.get_execution_plan(remote_job, config, step_keys_to_execute=None, known_state=None, instance=instance)
    return instance.create_run(
        job_name=job_name, run_id=None, run_config=config, resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute, op_selection=None, status=None,
        root_run_id=None, parent_run_id=None, tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot, parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
        asset_selection=None, asset_check_selection=None, asset_graph=repo.asset_graph,
    )


@contextmanager
def _terminate_on_signal(instance: dg.DagsterInstance, run_id: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM terminate the run (its steps stop, its slot is freed) instead of orphaning it."""

    def handler(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except (Interrupted, KeyboardInterrupt) as stop:
        what = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else str(stop)
        print(f"\n  {what}: terminating run {run_id[:8]} ...", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            instance.run_launcher.terminate(run_id)
            _wait_stopped(instance, run_id, timeout=60)
        finally:
            run = instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                instance.report_run_canceled(run, f"Terminated by cs-pipeline on {what}.")
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        raise Interrupted(f"{what}: run {run_id} was terminated") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail_if_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """The run's process was killed under us: fail it, stop its children and free its slot, as the reaper would."""
    reason = dead_reason(instance, run)
    if reason is not None:
        fail_dead_run(instance, run, reason, "cs-pipeline")


def _wait_stopped(instance: dg.DagsterInstance, run_id: str, timeout: float) -> None:
    """Wait until a terminated run has finished, interrupting its worker again every few seconds.

    Terminating a run interrupts its worker (SIGINT, which Dagster raises in the running step).
    An interrupt that lands inside a DuckDB call is taken by DuckDB, which stops the query or
    lets it finish, and the step goes on as if nothing happened: the run would then complete.
    A later interrupt lands in Python and stops it.
    """
    deadline = time.monotonic() + timeout
    again = time.monotonic() + INTERRUPT_AGAIN_SECONDS
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        if time.monotonic() >= again:
            worker, _ = workers(instance, run)
            if worker is not None and is_local(worker.host) and process_alive(worker.pid, worker.recorded_at):
                os.kill(worker.pid, signal.SIGINT)
            again = time.monotonic() + INTERRUPT_AGAIN_SECONDS
        time.sleep(POLL_SECONDS)


def launch_and_wait(
    instance: dg.DagsterInstance, workspace: WorkspaceRequestContext, run: dg.DagsterRun, say: Callable[[str], None],
) -> RunOutcome:
    with _terminate_on_signal(instance, run.run_id):
        instance.launch_run(run.run_id, workspace)
        progress = _Progress(instance, run, say)
        checked = time.monotonic()
        while True:
            current = instance.get_run_by_id(run.run_id)
            progress.update()
            if current is None or current.is_finished:
                break
            if time.monotonic() - checked > HEALTH_CHECK_SECONDS:
                checked = time.monotonic()
                _fail_if_dead(instance, current)
            time.sleep(POLL_SECONDS)
        progress.close()
    return outcome(instance, instance.get_run_by_id(run.run_id))


class _Progress:
    """`[3/9] account_health` on a terminal, and one line when a step waits for the duckdb slot."""

    def __init__(self, instance: dg.DagsterInstance, run: dg.DagsterRun, say: Callable[[str], None]) -> None:
        self.instance, self.run_id, self.say = instance, run.run_id, say
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
        self.total = len(plan.step_keys_to_execute) if plan else 0
        self.done: set[str] = set()
        self.current: str | None = None
        self.cursor: str | None = None
        self.waiting_on: str | None = None
        self.tty = sys.stdout.isatty()
        self.drawn = False

    def update(self) -> None:
        kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                 dg.DagsterEventType.STEP_SKIPPED}
        while True:
            result = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=500)
            for record in result.records:
                event = record.event_log_entry.dagster_event
                if event is None or event.event_type not in kinds:
                    continue
                if event.event_type == dg.DagsterEventType.STEP_START:
                    self.current = event.step_key
                else:
                    self.done.add(event.step_key)
            self.cursor = result.cursor
            if not result.has_more:
                break
        self._wait_notice()
        if self.tty:
            line = f"  [{len(self.done)}/{self.total} steps] {self.current or 'starting'}"
            print(f"\r{line[:100]:<100}", end="", flush=True)
            self.drawn = True

    def _wait_notice(self) -> None:
        info = self.instance.event_log_storage.get_concurrency_info(POOL)
        mine = [p for p in info.pending_steps if p.run_id == self.run_id and p.assigned_timestamp is None]
        holders = [s for s in info.claimed_slots if s.run_id != self.run_id]
        if not mine or not holders:
            self.waiting_on = None
            return
        holder = holders[0]
        key = f"{holder.run_id}/{holder.step_key}"
        if key == self.waiting_on:
            return
        self.waiting_on = key
        since = mine[0].enqueued_timestamp.astimezone(dt.UTC).strftime("%H:%M:%S UTC")
        other = self.instance.get_run_by_id(holder.run_id)
        job = other.job_name if other else "a run"
        self._line(
            f"  {mine[0].step_key} waits for the {POOL} slot since {since}: held by {job} run {holder.run_id[:8]} "
            f"(step {holder.step_key}); Ctrl-C stops this run"
        )

    def _line(self, text: str) -> None:
        if self.drawn:
            print("\r" + " " * 100 + "\r", end="")
            self.drawn = False
        self.say(text)

    def close(self) -> None:
        if self.drawn:
            print("\r" + " " * 100 + "\r", end="", flush=True)


def outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunOutcome:
    """What a finished run did, from its event log."""
    result = RunOutcome(run)
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION,
             dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_OUTPUT, dg.DagsterEventType.RUN_FAILURE}
    cursor = None
    while True:
        page = instance.get_records_for_run(run.run_id, cursor=cursor, of_type=kinds, limit=1000)
        for record in page.records:
            _collect(result, record.event_log_entry)
        cursor = page.cursor
        if not page.has_more:
            break
    if not result.success:
        result.failure = failure_summary(instance, run, result.step_failures, result.run_message).splitlines()[0]
    return result


def _collect(result: RunOutcome, entry) -> None:
    event = entry.dagster_event
    kind = event.event_type
    if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
        key = event.asset_key.to_user_string()
        result.materialized[key] = result.materialized.get(key, 0) + 1
    elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        evaluation = event.event_specific_data
        if evaluation.passed:
            result.checks_passed += 1
        else:
            result.failed_checks.append(f"{evaluation.asset_key.to_user_string()} {evaluation.check_name}")
    elif kind == dg.DagsterEventType.STEP_OUTPUT:
        data = event.step_output_data
        result.output_metadata[event.step_key] = {k: getattr(v, "value", v) for k, v in (data.metadata or {}).items()}
    elif kind == dg.DagsterEventType.STEP_FAILURE:
        result.step_failures.append(event)
    elif kind == dg.DagsterEventType.RUN_FAILURE:
        result.run_message = entry.message
