"""The `cs-pipeline` command (CONTRACT.md §5).

Settings reach the Dagster definitions through the same environment variables the Dagster UI
uses, so a run from the command line and a run from `dagster dev` compute the same thing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cs_pipeline import settings
from cs_pipeline.cli_evaluation import add_evaluation_commands, backtest_headline

JOB_LOG_LEVEL = "WARNING"


class CliError(Exception):
    """Bad input or usage: a one-line message and exit code 2."""


class RunFailed(Exception):
    """A launched run failed: a one-line message (step, asset, cause) and exit code 1."""


# Exit codes (README, "Command line").
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PROBLEMS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# --- environment and instance --------------------------------------------------------------


def _apply_common(args: argparse.Namespace) -> None:
    if args.warehouse:
        os.environ["CS_PIPELINE_WAREHOUSE"] = str(Path(args.warehouse).resolve())
    if args.config:
        config = Path(args.config).resolve()
        if not config.is_dir():
            raise CliError(f"--config {config}: not a directory (it must hold health_model.yaml and rules.yaml)")
        os.environ["CS_PIPELINE_CONFIG_DIR"] = str(config)


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


def _definitions():
    from cs_pipeline.definitions import defs

    return defs


def _parse_day(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option} must be a date as YYYY-MM-DD, got {value!r}") from None


# --- running the pipeline ------------------------------------------------------------------


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
    # One process per run, as before: the duckdb pool runs the steps one at a time anyway, and a
    # process per step would load the definitions once per step.
    log_config = {"loggers": {"console": {"config": {"log_level": JOB_LOG_LEVEL}}}, "execution": {"config": {"in_process": {}}}}
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


# --- reading results -----------------------------------------------------------------------

ALERTS_SQL = """
WITH latest AS (
    SELECT * FROM analytics.alert_events
    QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1
), delivery AS (
    SELECT * FROM actions.deliveries
    QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY notification_number DESC) = 1
), muted AS (
    SELECT alert_id,
           bool_or(action = 'ack') AS acknowledged,
           bool_or(action = 'done') AS done,
           bool_or(action = 'not_useful') AS not_useful,
           bool_or(action = 'snooze' AND until > ?) AS snoozed
    FROM {alert_actions} GROUP BY alert_id
)
SELECT l.alert_id, l.rule_id, l.account_id, l.partition_date, l.episode_start, l.severity,
       CASE WHEN m.done THEN 'done'
            WHEN m.not_useful THEN 'not_useful'
            WHEN m.acknowledged THEN 'acknowledged'
            WHEN m.snoozed THEN 'snoozed'
            WHEN d.status IS NOT NULL THEN d.status
            WHEN l.partition_date >= ? THEN 'pending'
            ELSE 'suppressed_backfill' END AS status,
       t.task_id, l.account_name, l.owner_email, l.message, d.reason
FROM latest l
LEFT JOIN delivery d USING (alert_id)
LEFT JOIN actions.tasks t USING (alert_id)
LEFT JOIN muted m USING (alert_id)
ORDER BY l.partition_date, l.rule_id, l.account_id
"""

TASKS_SQL = """
SELECT task_id, alert_id, account_id, owner_email, title, due_date, status, priority
FROM actions.tasks ORDER BY due_date, task_id
"""


def _read(sql: str, params: Sequence[object] = (), needs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run a read-only query; no rows when a table it `needs` was never written."""

    from cs_pipeline.resources.warehouse import table_exists

    path = settings.warehouse_path()
    if not path.exists():
        raise CliError(f"warehouse {path} does not exist: run `cs-pipeline demo` or `cs-pipeline run` first")
    con = _connect_read_only(path)
    try:
        if not all(table_exists(con, *name.split(".")) for name in needs):
            return []
        cursor = con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


def _connect_read_only(path: Path):
    return _connect(path, read_only=True)


def _connect(path: Path, read_only: bool):
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise CliError(
                f"warehouse {path} is in use by another process (a Dagster run or another cs-pipeline command); "
                "retry when it has finished"
            ) from None
        raise CliError(f"cannot open warehouse {path}: {str(error).splitlines()[0]}") from None


NO_ALERT_ACTIONS = "(SELECT NULL::VARCHAR AS alert_id, NULL::VARCHAR AS action, NULL::DATE AS until WHERE false)"


def read_alerts() -> list[dict[str, Any]]:
    today = settings.today()
    live_from = today - dt.timedelta(days=settings.live_window_days())
    sql = ALERTS_SQL.replace("{alert_actions}", "actions.alert_actions" if _has_alert_actions() else NO_ALERT_ACTIONS)
    return _read(sql, [today, live_from], needs=("analytics.alert_events", "actions.deliveries", "actions.tasks"))


def _has_alert_actions() -> bool:
    sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = 'actions' AND table_name = 'alert_actions'"
    return bool(_read(sql))


def read_tasks() -> list[dict[str, Any]]:
    return _read(TASKS_SQL, needs=("actions.tasks",))


ALERT_FIELDS = ("alert_id", "rule_id", "account_id", "partition_date", "episode_start", "severity", "status", "task_id")
TASK_FIELDS = ("task_id", "alert_id", "account_id", "owner_email", "title", "due_date", "status")


def _jsonable(rows: list[dict[str, Any]], fields: Sequence[str]) -> list[dict[str, Any]]:
    return [{f: (r[f].isoformat() if isinstance(r[f], dt.date) else r[f]) for f in fields} for r in rows]


def _print_table(rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    text = [[str("" if r[f] is None else r[f]) for f in fields] for r in rows]
    widths = [max(len(f), *(len(t[i]) for t in text)) for i, f in enumerate(fields)]
    print("  ".join(f.ljust(w) for f, w in zip(fields, widths)))
    for t in text:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))


# --- commands ------------------------------------------------------------------------------


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
    _print_table(live, ("partition_date", "rule_id", "account_id", "account_name", "severity", "status", "owner_email"))
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
    outcome = run_pipeline(_parse_day(args.date_from, "--from"), _parse_day(args.date_to, "--to"))
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


def cmd_alerts(args: argparse.Namespace) -> int:
    rows = read_alerts()
    if args.format == "json":
        print(json.dumps(_jsonable(rows, ALERT_FIELDS), indent=2))
    else:
        _print_table(rows, ALERT_FIELDS)
    return 0


TASK_SINKS_SQL = "SELECT task_id, sink, status, remote_id, url, reason FROM actions.task_sinks ORDER BY task_id, sink"


def read_task_remotes() -> dict[str, list[dict[str, Any]]]:
    """Each task's records in the task sinks (actions.task_sinks), by task id."""
    remotes: dict[str, list[dict[str, Any]]] = {}
    for row in _read(TASK_SINKS_SQL, needs=("actions.task_sinks",)):
        remotes.setdefault(row.pop("task_id"), []).append(row)
    return remotes


def _remote_text(remotes: list[dict[str, Any]]) -> str:
    """`salesforce:00T...` per created or closed record, `salesforce:failed` per failure."""
    return " ".join(
        f"{r['sink']}:{r['remote_id'] if r['remote_id'] else r['status']}"
        + (f"({r['status']})" if r["remote_id"] and r["status"] != "created" else "")
        for r in remotes
    )


def cmd_tasks(args: argparse.Namespace) -> int:
    rows = read_tasks()
    remotes = read_task_remotes() if rows else {}
    if args.format == "json":
        listed = _jsonable(rows, TASK_FIELDS)
        for task in listed:
            task["remote"] = remotes.get(task["task_id"], [])
        print(json.dumps(listed, indent=2))
    else:
        _print_table([{**r, "remote": _remote_text(remotes.get(r["task_id"], []))} for r in rows], (*TASK_FIELDS, "remote"))
    return 0


def _record_alert_action(alert_id: str, action: str, until: dt.date | None, reason: str | None, by: str | None) -> None:
    """Append a snooze or an acknowledgement to the actions store; the alert must exist. The
    warehouse's read copy is refreshed when the warehouse is free (else by the next dispatch)."""
    from cs_pipeline.actions.store import ActionsStore
    from cs_pipeline.resources.warehouse import table_exists

    path = settings.warehouse_path()
    if not path.exists():
        raise CliError(f"warehouse {path} does not exist: run `cs-pipeline demo` or `cs-pipeline run` first")
    con = _connect(path, read_only=True)
    try:
        known = table_exists(con, "analytics", "alert_events") and con.execute(
            "SELECT rule_id FROM analytics.alert_events WHERE alert_id = ? LIMIT 1", [alert_id]
        ).fetchone()
    except Exception:  # noqa: BLE001 - a hand-made warehouse may lack rule_id
        known = con.execute("SELECT NULL FROM analytics.alert_events WHERE alert_id = ? LIMIT 1", [alert_id]).fetchone()
    finally:
        con.close()
    if not known:
        raise CliError(f"unknown alert id {alert_id!r} (see `cs-pipeline alerts`)")
    store = ActionsStore(settings.actions_url())
    store.add_action(alert_id, action, until, reason, by, rule_id=known[0])
    refresh_read_copy(store)


def refresh_read_copy(store) -> bool:
    """Copy the actions store into the warehouse's `actions.*` tables; False when a run holds the warehouse."""
    import duckdb

    try:
        con = duckdb.connect(str(settings.warehouse_path()))
    except duckdb.IOException:
        print("note: the warehouse is in use; its copy of the actions store is refreshed by the next dispatch",
              file=sys.stderr)
        return False
    try:
        store.copy_to_warehouse(con)
    finally:
        con.close()
    return True


def cmd_snooze(args: argparse.Namespace) -> int:
    until = _parse_day(args.until, "--until")
    if until <= settings.today():
        raise CliError(f"--until {until} is not after today ({settings.today()})")
    _record_alert_action(args.alert_id, "snooze", until, args.reason, args.by)
    print(f"{args.alert_id}: snoozed until {until}; it will not notify before then")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    _record_alert_action(args.alert_id, "ack", None, args.note, args.by)
    print(f"{args.alert_id}: acknowledged; it will not notify again in this episode")
    return 0


def cmd_slack_listen(args: argparse.Namespace) -> int:
    """Run the Socket Mode listener until SIGTERM or Ctrl-C (see docs/slack-app.md, deploy/)."""
    import signal
    import threading

    from cs_pipeline.actions.listener import Listener, run_forever
    from cs_pipeline.actions.store import ActionsStore

    bot, app = os.environ.get("SLACK_BOT_TOKEN", "").strip(), os.environ.get("SLACK_APP_TOKEN", "").strip()
    if not bot or not app.startswith("xapp-"):
        raise CliError("slack-listen needs SLACK_BOT_TOKEN (xoxb-…) and SLACK_APP_TOKEN (an xapp-… app-level token "
                       "with connections:write); see docs/slack-app.md")
    listener = Listener(ActionsStore(settings.actions_url()), bot, app,
                        os.environ.get("SLACK_API_URL") or "https://slack.com/api/",
                        os.environ.get("CS_PIPELINE_SLACK_LEADS", ""))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("slack-listen: connected to Slack Socket Mode; waiting for clicks (Ctrl-C to stop)", flush=True)
    try:
        run_forever(listener, stop)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_rules_report(args: argparse.Namespace) -> int:
    from cs_pipeline.actions.report import rules_report
    from cs_pipeline.actions.store import ActionsStore

    rows = rules_report(ActionsStore(settings.actions_url()))
    fields = ("rule_id", "tasks", "acknowledged", "snoozed", "done", "not_useful", "useful_share", "not_useful_reasons")
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, fields)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from cs_pipeline.logic.config import health_variables, load_health_model, load_rules
    from cs_pipeline.resources.config import HEALTH_MODEL_FILE, RULES_FILE

    config_dir = settings.config_dir()
    model = load_health_model(config_dir / HEALTH_MODEL_FILE)
    rules = load_rules(config_dir / RULES_FILE, model)
    print(f"{config_dir / HEALTH_MODEL_FILE}: {len(model.indicators)} indicators")
    print(f"{config_dir / RULES_FILE}: {len(rules.rules)} rules ({', '.join(r.id for r in rules.rules)})")
    if settings.task_sinks_file():
        from cs_pipeline.sinks.config import TaskSinksConfig

        sinks = TaskSinksConfig.load(settings.task_sinks_file(), set(rules.by_id))
        print(f"{settings.task_sinks_file()}: {len(sinks.sinks)} task sinks ({', '.join(sinks.sinks) or 'none'})")
    if settings.sources_file():
        from cs_pipeline.logic.contract import ENTITIES
        from cs_pipeline.sources import load_sources
        from cs_pipeline.sources.files import FilesConnector

        plan = load_sources(settings.sources_file(), FilesConnector(data_dir=str(settings.data_dir())))
        print(f"{settings.sources_file()}: " + ", ".join(f"{e} from {plan.connector_for(e).type}" for e in ENTITIES))
    print("\nVariables a rule may use:")
    variables = health_variables(model)
    width = max(len(v) for v in variables)
    for name, description in variables.items():
        print(f"  {name.ljust(width)}  {description}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cs_pipeline.portfolio import write_report

    out = Path(args.out).resolve() if args.out else None
    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise CliError(f"--out {out}: the report is an HTML file, name it *.html")
    day = _parse_day(args.date, "--date") if args.date else None
    warehouse = settings.warehouse_path()
    if not warehouse.exists():
        raise CliError(f"warehouse {warehouse} does not exist: run `cs-pipeline demo` or `cs-pipeline run` first")
    _connect_read_only(warehouse).close()  # a busy warehouse is named here, with exit code 2
    try:
        path, day, size = write_report(warehouse, out, day, settings.untouched_days())
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    print(f"Portfolio report for {day}: {path} ({size / 1e6:.1f} MB, opens offline)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--warehouse", default=None, help=f"the DuckDB file (default: $CS_PIPELINE_WAREHOUSE, else {settings.DEFAULT_WAREHOUSE})"
    )
    common.add_argument("--config", default=None, help="folder with health_model.yaml and rules.yaml (default: the shipped ones)")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error (or set CS_PIPELINE_DEBUG=1)")

    parser = argparse.ArgumentParser(prog="cs-pipeline", description="Early alerts for Customer Success teams.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", parents=[common], help="generate demo data, run the whole pipeline, show the alerts")
    demo.add_argument("--data-dir", default=None, help="where to write the demo source files (default: beside the warehouse, in demo/)")
    demo.add_argument("--accounts", type=int, default=350)
    demo.add_argument("--days", type=int, default=300)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--drivers", choices=("engagement", "support"), default="engagement",
                      help="what drives churn in the demo data: product engagement (default) or support friction")
    demo.add_argument("--keep-warehouse", action="store_true", help="load into the existing warehouse instead of a fresh one")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", parents=[common], help="materialize every asset for the days FROM..TO, then dispatch live alerts")
    run.add_argument("--data-dir", required=True, help="source folder in the contract's layout")
    run.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    run.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    run.set_defaults(func=cmd_run)

    for name, func, what in (("alerts", cmd_alerts, "every alert"), ("tasks", cmd_tasks, "every task")):
        listing = sub.add_parser(name, parents=[common], help=f"list {what}")
        listing.add_argument("--format", choices=("table", "json"), default="table")
        listing.set_defaults(func=func)

    snooze = sub.add_parser("snooze", parents=[common], help="hold an alert's notifications back until a date")
    snooze.add_argument("alert_id")
    snooze.add_argument("--until", required=True, metavar="YYYY-MM-DD", help="the first day it may notify again")
    snooze.add_argument("--reason", required=True)
    snooze.add_argument("--by", default=None, metavar="EMAIL")
    snooze.set_defaults(func=cmd_snooze)

    ack = sub.add_parser("ack", parents=[common], help="acknowledge an alert: no more notifications in its episode")
    ack.add_argument("alert_id")
    ack.add_argument("--by", default=None, metavar="EMAIL")
    ack.add_argument("--note", default=None)
    ack.set_defaults(func=cmd_ack)

    add_evaluation_commands(sub, common)
    listen = sub.add_parser("slack-listen", parents=[common],
                            help="apply the alert buttons' clicks and serve the App Home (Slack Socket Mode; runs until stopped)")
    listen.set_defaults(func=cmd_slack_listen)
    rules = sub.add_parser("rules-report", parents=[common], help="per rule: alerts, and how CSMs acted on them in Slack")
    rules.add_argument("--format", choices=("table", "json"), default="table")
    rules.set_defaults(func=cmd_rules_report)
    report = sub.add_parser("report", parents=[common], help="write the portfolio report (one self-contained HTML file)")
    report.add_argument("--out", default=None, metavar="FILE.html", help="default: reports/portfolio-report.html beside the warehouse")
    report.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="the day to report on (default: the latest scored day)")
    report.set_defaults(func=cmd_report)

    check = sub.add_parser("check-config", parents=[common], help="validate the health model and rules; list the variables")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from cs_pipeline.runs.launch import Interrupted, LaunchError

    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("CS_PIPELINE_DEBUG"))
    try:
        _apply_common(args)
        return args.func(args)
    except CliError as exc:
        if debug:
            raise
        print(f"cs-pipeline: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RunFailed, LaunchError) as exc:
        if debug:
            raise
        print(f"cs-pipeline: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILED
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"cs-pipeline: {exc or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as exc:
        if debug:
            raise
        # ConfigError and SourceFileError are ValueErrors/OSErrors with a file-and-line message.
        print(f"cs-pipeline: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"cs-pipeline: unexpected {type(exc).__name__}: {first} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
