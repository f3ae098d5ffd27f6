"""`cs-pipeline run` and `cs-pipeline demo`: the pipeline launched as the Dagster UI launches it.

Settings reach the Dagster definitions through the same environment variables the Dagster UI
uses, so a run from the command line and a run from `dagster dev` compute the same thing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

from cs_pipeline import settings
from cs_pipeline.cli.alerts import read_alerts, read_tasks
from cs_pipeline.cli.common import EXIT_OK, EXIT_PROBLEMS, CliError, RunFailed, parse_day, print_table
from cs_pipeline.cli.evaluation import backtest_headline

JOB_LOG_LEVEL = "WARNING"

FALLBACK_INSTANCE_YAML = """\
# Written by cs-pipeline for a warehouse outside a clone of the repository (see its dagster.yaml).
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def _instance():
    """The Dagster instance: DAGSTER_HOME, else this folder when it has dagster.yaml, else one beside the warehouse."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        if (Path.cwd() / "dagster.yaml").exists():
            home = Path.cwd()
        else:
            home = settings.warehouse_path().parent / "dagster_home"
            home.mkdir(parents=True, exist_ok=True)
            if not (home / "dagster.yaml").exists():
                (home / "dagster.yaml").write_text(FALLBACK_INSTANCE_YAML)
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def run_pipeline(first: dt.date, last: dt.date, *, quiet: bool = False) -> dict[str, Any]:
    """Launch `daily_pipeline` for the days first..last in one range run, then `dispatch_alerts`.

    Both are launched through the instance and the code location, as the UI launches them: they
    are listed under their job, re-executable from the UI, and `run_failure_to_slack` sees them.
    """
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from cs_pipeline.partitions import daily_partitions, run_start_needed
    from cs_pipeline.runs import launch
    from cs_pipeline.runs.reaper import reap_dead_runs

    if last < first:
        raise CliError(f"--to {last} is before --from {first}")
    partition_start = daily_partitions.start.date()
    if first < partition_start:
        raise CliError(f"--from {first} is before the first partition {partition_start}: set CS_PIPELINE_START_DATE")
    newest = daily_partitions.get_last_partition_key()
    if newest is None or last > dt.date.fromisoformat(newest):
        raise CliError(f"--to {last} is not a complete UTC day yet (the newest partition is {newest})")
    # Episodes continue from the day before the run: a run starts where the alert state is known.
    first, extended = run_start_needed(settings.warehouse_path(), first)
    if extended and not quiet:
        print(f"Starting at {first}: {extended}")

    from cs_pipeline.resources.config import check_config_files

    # A bad config file is one line naming it, before any code server or run starts.
    check_config_files(settings.config_dir(), settings.task_sinks_file())
    instance = _instance()
    say = (lambda *_: None) if quiet else print
    for dead in reap_dead_runs(instance):
        say(f"  run {dead.run_id[:8]} of {dead.job_name} was dead ({dead.reason}): marked failed, {dead.freed_slots} duckdb slot(s) freed")
    log_file = settings.warehouse_path().parent / "logs" / f"run-{first}-{last}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    say(f"Running the pipeline for {first} .. {last} ({(last - first).days + 1} days) in one range run")
    say(f"  run log (dbt, dlt, Dagster): {log_file}")
    started = time.monotonic()
    # The steps run in the run's process: every job of the code location uses in_process_executor.
    log_config = {"loggers": {"console": {"config": {"log_level": JOB_LOG_LEVEL}}}}
    with launch.children_write_to(log_file) as started_code_server, launch.code_location(instance) as (workspace, repo):
        started_code_server()
        tags = {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}
        run = launch.create_run(instance, workspace, repo, "daily_pipeline", tags, log_config)
        say(f"  run {run.run_id} ({settings.webserver_url()}/runs/{run.run_id})")
        result = launch.launch_and_wait(instance, workspace, run, say)
        _raise_if_failed(result, "daily_pipeline")
        say(f"  materialized {len(result.materialized)} assets: {', '.join(sorted(result.materialized))}")
        say(f"  asset checks: {result.checks_passed} passed, {len(result.failed_checks)} failed")
        for check in result.failed_checks:
            say(f"    FAILED {check}")
        say(f"  pipeline took {time.monotonic() - started:.1f} s")

        run = launch.create_run(instance, workspace, repo, "dispatch_alerts", {}, log_config)
        dispatch = launch.launch_and_wait(instance, workspace, run, say)
        _raise_if_failed(dispatch, "dispatch_alerts")
    created = dispatch.output_metadata.get("create_tasks", {}).get("tasks_created", 0)
    sending = dispatch.output_metadata.get("send_notifications", {})
    failed_deliveries = sum(int(dispatch.output_metadata.get(step, {}).get(name, 0) or 0) for step, name in FAILED_DELIVERY_FIELDS)
    say(f"Dispatch: {created} tasks created, {sending.get('sent', 0)} notifications sent"
        + (f", {failed_deliveries} failed" if failed_deliveries else ""))
    return {"tasks_created": created, "notifications_sent": sending.get("sent", 0), "failed_checks": len(result.failed_checks),
            "failed_check_names": result.failed_checks, "failed_deliveries": failed_deliveries,
            "pipeline_run_id": result.run.run_id, "dispatch_run_id": dispatch.run.run_id}


# Output metadata of the dispatch steps that count deliveries which did not go out.
FAILED_DELIVERY_FIELDS = (("send_notifications", "failed"), ("close_resolved", "notices_failed"), ("sync_task_sinks", "failed"))


def _raise_if_failed(result, job: str) -> None:
    if result.success:
        return
    raise RunFailed(f"{job} failed in {result.failure or 'an unknown step'} (run {result.run.run_id})")


def cmd_demo(args: argparse.Namespace) -> int:
    from cs_pipeline.demo.generator import DemoSpec, generate

    data_dir = Path(args.data_dir).resolve() if args.data_dir else settings.warehouse_path().parent / "demo"
    os.environ["CS_PIPELINE_DATA_DIR"] = str(data_dir)
    end = settings.today() - dt.timedelta(days=1)
    spec = DemoSpec(accounts=args.accounts, days=args.days, end_date=end, seed=args.seed, drivers=args.drivers)
    print(f"Writing demo data ({spec.accounts} accounts, {spec.days} days to {end}, churn driven by "
          f"{spec.drivers}) to {data_dir}")
    started = time.monotonic()
    summary = generate(data_dir, spec, progress=lambda msg: print(f"  {msg}"))
    print(f"  {', '.join(f'{n:,} {e}' for e, n in summary.rows.items())} in {time.monotonic() - started:.1f} s")
    print(f"  {len(summary.churned)} accounts churned over the history (churn driven by {spec.drivers})")
    # The demo's history decides where its partitions begin.
    os.environ["CS_PIPELINE_START_DATE"] = summary.start_date.isoformat()
    if settings.warehouse_path().exists() and not args.keep_warehouse:
        # A fresh demo: the generated history replaces whatever an earlier demo loaded.
        settings.warehouse_path().unlink()
        _forget_sqlite_actions_store()
    outcome = run_pipeline(summary.start_date, summary.end_date)
    _summarise()
    backtest_headline()
    from cs_pipeline.portfolio import write_report

    path, day, _ = write_report(settings.warehouse_path(), None, None, settings.untouched_days())
    print(f"Portfolio report for {day} (KPIs, portfolio map, renewals, follow-through): {path}")
    return _exit_code(outcome)


def _forget_sqlite_actions_store() -> None:
    """Delete the demo's SQLite actions store with its warehouse (its deliveries would hold the new
    demo's messages back); a PostgreSQL store (CS_PIPELINE_ACTIONS_URL) is never touched."""
    from cs_pipeline.actions.store import ActionsStore

    url = settings.actions_url()
    if not url.startswith("sqlite:///"):
        return
    ActionsStore.forget(url)
    for suffix in ("", "-wal", "-shm"):
        Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


def _summarise() -> None:
    alerts = read_alerts()
    tasks = read_tasks()
    by_status: dict[str, int] = {}
    for alert in alerts:
        by_status[alert["status"]] = by_status.get(alert["status"], 0) + 1
    print(f"\nAlerts: {len(alerts)} ({', '.join(f'{n} {s}' for s, n in sorted(by_status.items())) or 'none'})")
    live = [a for a in alerts if a["status"] != "suppressed_backfill"]
    print_table(live, ("partition_date", "rule_id", "account_id", "account_name", "severity", "status", "owner_email"))
    print(f"\nTasks: {len(tasks)} in the warehouse's actions.tasks")
    token = os.environ.get("SLACK_BOT_TOKEN")
    if token:
        print("Slack: messages were sent through the Slack Web API")
    else:
        print(f"Slack: no SLACK_BOT_TOKEN, so messages were written to the outbox: {settings.outbox_dir()}")
    print("Next: `cs-pipeline alerts`, `cs-pipeline tasks`, or the Dagster UI (see the README).")


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    if not data_dir.is_dir():
        raise CliError(f"--data-dir {data_dir}: not a directory")
    os.environ["CS_PIPELINE_DATA_DIR"] = str(data_dir)
    outcome = run_pipeline(parse_day(args.date_from, "--from"), parse_day(args.date_to, "--to"))
    _summarise()
    return _exit_code(outcome)


def _exit_code(outcome: dict[str, Any]) -> int:
    """0 when all is well; 3, with one line saying what, when the runs succeeded but something did not."""
    problems = []
    if outcome["failed_deliveries"]:
        problems.append(f"{outcome['failed_deliveries']} deliveries failed (the sensor or the next run retries them; "
                        "`cs-pipeline alerts` shows why)")
    if outcome["failed_checks"]:
        problems.append(f"{outcome['failed_checks']} asset checks failed ({', '.join(outcome['failed_check_names'][:3])}"
                        + (", ..." if outcome["failed_checks"] > 3 else "") + ")")
    if not problems:
        return EXIT_OK
    print(f"cs-pipeline: the runs succeeded, but {'; '.join(problems)}", file=sys.stderr)
    return EXIT_PROBLEMS

