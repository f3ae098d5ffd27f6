"""`cs-pipeline report`: the portfolio report, one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from cs_pipeline import settings
from cs_pipeline.cli.common import CliError, connect, existing_warehouse, parse_day


def cmd_report(args: argparse.Namespace) -> int:
    from cs_pipeline.portfolio import write_report

    out = Path(args.out).resolve() if args.out else None
    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise CliError(f"--out {out}: the report is an HTML file, name it *.html")
    day = parse_day(args.date, "--date") if args.date else None
    warehouse = existing_warehouse()
    connect(warehouse).close()  # a busy warehouse is named here, with exit code 2
    try:
        path, day, size = write_report(warehouse, out, day, settings.untouched_days())
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    print(f"Portfolio report for {day}: {path} ({size / 1e6:.1f} MB, opens offline)")
    return 0

