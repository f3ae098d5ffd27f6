"""The `cs-pipeline` command (CONTRACT.md §5).

Settings reach the Dagster definitions through the same environment variables the Dagster UI
uses, so a run from the command line and a run from `dagster dev` compute the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cs_pipeline import settings

JOB_LOG_LEVEL = "WARNING"


class CliError(Exception):
    """A reason to stop with a one-line message and a non-zero exit code."""


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
    """Materialize every asset for the days first..last in one range run, then dispatch."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from cs_pipeline.partitions import daily_partitions

    if last < first:
        raise CliError(f"--to {last} is before --from {first}")
    partition_start = daily_partitions.start.date()
    if first < partition_start:
        raise CliError(f"--from {first} is before the first partition {partition_start}: set CS_PIPELINE_START_DATE")
    newest = daily_partitions.get_last_partition_key()
    if newest is None or last > dt.date.fromisoformat(newest):
        raise CliError(f"--to {last} is not a complete UTC day yet (the newest partition is {newest})")

    defs = _definitions()
    instance = _instance()
    log_config = {"loggers": {"console": {"config": {"log_level": JOB_LOG_LEVEL}}}}
    say = (lambda *_: None) if quiet else print
    log_file = settings.warehouse_path().parent / "logs" / f"run-{first}-{last}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    say(f"Running the pipeline for {first} .. {last} ({(last - first).days + 1} days) in one range run")
    say(f"  run log (dbt, dlt, Dagster): {log_file}")
    started = time.monotonic()
    # dagster-dbt echoes dbt's log lines to stdout; the command's own output stays a summary.
    with log_file.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        result = defs.resolve_job_def("daily_pipeline").execute_in_process(
            instance=instance,
            run_config=log_config,
            tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()},
            raise_on_error=False,
        )
    _raise_if_failed(result, "daily_pipeline")
    materialized: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        key = event.materialization.asset_key.to_user_string()
        materialized[key] = materialized.get(key, 0) + 1
    say(f"  materialized {len(materialized)} assets: {', '.join(sorted(materialized))}")
    checks = result.get_asset_check_evaluations()
    failed_checks = [c for c in checks if not c.passed]
    say(f"  asset checks: {len(checks) - len(failed_checks)} passed, {len(failed_checks)} failed")
    for check in failed_checks:
        say(f"    FAILED {check.asset_key.to_user_string()} {check.check_name}")
    say(f"  pipeline took {time.monotonic() - started:.1f} s")

    dispatch = defs.resolve_job_def("dispatch_alerts").execute_in_process(
        instance=instance, run_config=log_config, raise_on_error=False
    )
    _raise_if_failed(dispatch, "dispatch_alerts")
    sent = dispatch.output_for_node("send_notifications")
    created = dispatch.output_for_node("create_tasks")
    say(f"Dispatch: {created} tasks created, {sent} notifications sent")
    return {"tasks_created": created, "notifications_sent": sent, "failed_checks": len(failed_checks)}


def _raise_if_failed(result, job: str) -> None:
    if result.success:
        return
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            cause = error
            while cause.cause is not None:
                cause = cause.cause
            message = (cause.message or error.message).strip().splitlines()
            raise CliError(f"{job} failed in step {event.step_key}: {message[-1] if message else 'unknown error'}")
    raise CliError(f"{job} failed (see the Dagster run {result.run_id})")


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
           bool_or(action = 'snooze' AND until > ?) AS snoozed
    FROM {alert_actions} GROUP BY alert_id
)
SELECT l.alert_id, l.rule_id, l.account_id, l.partition_date, l.episode_start, l.severity,
       CASE WHEN m.acknowledged THEN 'acknowledged'
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
    if summary.start_date < settings.parse_date(settings.partitions_start_date(), "CS_PIPELINE_START_DATE"):
        # The demo's history decides where its partitions begin.
        os.environ["CS_PIPELINE_START_DATE"] = summary.start_date.isoformat()
    if settings.warehouse_path().exists() and not args.keep_warehouse:
        # A fresh demo: the generated history replaces whatever an earlier demo loaded.
        settings.warehouse_path().unlink()
    run_pipeline(summary.start_date, summary.end_date)
    _summarise()
    from cs_pipeline.portfolio import write_report

    path, day, _ = write_report(settings.warehouse_path(), None, None, settings.untouched_days())
    print(f"Portfolio report for {day} (KPIs, portfolio map, renewals, follow-through): {path}")
    return 0


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
    run_pipeline(_parse_day(args.date_from, "--from"), _parse_day(args.date_to, "--to"))
    _summarise()
    return 0


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
    """Append a snooze or an acknowledgement to actions.alert_actions; the alert must exist."""
    from cs_pipeline.jobs.dispatch import ensure_actions_tables
    from cs_pipeline.resources.warehouse import table_exists

    path = settings.warehouse_path()
    if not path.exists():
        raise CliError(f"warehouse {path} does not exist: run `cs-pipeline demo` or `cs-pipeline run` first")
    con = _connect(path, read_only=False)
    try:
        known = table_exists(con, "analytics", "alert_events") and con.execute(
            "SELECT 1 FROM analytics.alert_events WHERE alert_id = ? LIMIT 1", [alert_id]
        ).fetchone()
        if not known:
            raise CliError(f"unknown alert id {alert_id!r} (see `cs-pipeline alerts`)")
        ensure_actions_tables(con)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        con.execute("INSERT INTO actions.alert_actions VALUES (?, ?, ?, ?, ?, ?)", [alert_id, action, until, reason, by, now])
    finally:
        con.close()


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


def cmd_check_config(args: argparse.Namespace) -> int:
    from cs_pipeline.logic.config import health_variables, load_health_model, load_rules
    from cs_pipeline.resources.config import HEALTH_MODEL_FILE, RULES_FILE

    config_dir = settings.config_dir()
    model = load_health_model(config_dir / HEALTH_MODEL_FILE)
    rules = load_rules(config_dir / RULES_FILE, model)
    print(f"{config_dir / HEALTH_MODEL_FILE}: {len(model.indicators)} indicators")
    print(f"{config_dir / RULES_FILE}: {len(rules.rules)} rules ({', '.join(r.id for r in rules.rules)})")
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

    report = sub.add_parser("report", parents=[common], help="write the portfolio report (one self-contained HTML file)")
    report.add_argument("--out", default=None, metavar="FILE.html", help="default: reports/portfolio-report.html beside the warehouse")
    report.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="the day to report on (default: the latest scored day)")
    report.set_defaults(func=cmd_report)

    check = sub.add_parser("check-config", parents=[common], help="validate the health model and rules; list the variables")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _apply_common(args)
        return args.func(args)
    except CliError as exc:
        print(f"cs-pipeline: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        # ConfigError and SourceFileError are ValueErrors/OSErrors with a file-and-line message.
        print(f"cs-pipeline: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get("CS_PIPELINE_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"cs-pipeline: unexpected {type(exc).__name__}: {first} (CS_PIPELINE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
