"""The `cs-pipeline` command (CONTRACT.md §5): its parser, and the exit code of every outcome.

The commands live by subject: `running` (run, demo), `alerts` (alerts, tasks, snooze, ack,
rules-report, slack-listen), `evaluation` (backtest, calibrate), `report`, `check_config`;
`common` holds what they share (errors, exit codes, the options every command takes, reading).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cs_pipeline import settings
from cs_pipeline.cli.alerts import cmd_ack, cmd_alerts, cmd_rules_report, cmd_slack_listen, cmd_snooze, cmd_tasks
from cs_pipeline.cli.check_config import cmd_check_config
from cs_pipeline.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CliError,
    RunFailed,
    apply_common,
)
from cs_pipeline.cli.evaluation import cmd_backtest, cmd_calibrate
from cs_pipeline.cli.report import cmd_report
from cs_pipeline.cli.running import cmd_demo, cmd_run


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

    bt = sub.add_parser("backtest", parents=[common], help="check the health model (--config) and the alerts against churn history")
    _add_evaluation_options(bt)
    bt.add_argument("--format", choices=("table", "json"), default="table")
    bt.set_defaults(func=cmd_backtest)
    cal = sub.add_parser("calibrate", parents=[common], help="fit the health model to churn history; write a proposed health_model.yaml")
    _add_evaluation_options(cal)
    cal.add_argument("--out", required=True, metavar="FILE", help="where to write the proposed health_model.yaml")
    cal.add_argument("--apply", action="store_true", help="also replace the health_model.yaml of --config DIR (a backup is kept)")
    cal.set_defaults(func=cmd_calibrate)

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


def _add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help="first observation date")
    parser.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD", help="last observation date")
    parser.add_argument("--every", type=int, default=None, metavar="N",
                        help="days between observation dates (default: 15 for backtest, 10 for calibrate: more rows to fit)")
    parser.add_argument("--lead", default="30:90", metavar="MIN:MAX", help="churn window after each date, in days (default 30:90)")
    parser.add_argument("--report", default=None, metavar="FILE.html", help="also write the HTML report there")


def main(argv: Sequence[str] | None = None) -> int:
    from cs_pipeline.runs.launch import Interrupted, LaunchError

    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("CS_PIPELINE_DEBUG"))
    try:
        apply_common(args)
        return args.func(args)
    except CliError as exc:
        if debug:
            raise
        print(f"cs-pipeline: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"cs-pipeline: {exc or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RunFailed, LaunchError, ValueError, OSError) as exc:
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
