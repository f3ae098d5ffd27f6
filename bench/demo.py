"""Benchmark: the demo end to end, and what range runs save over one run per day.

    .venv/bin/python bench/demo.py [--accounts 200] [--days 150] [--per-day-sample 5]

Measures, in one process on one machine:
- generating the demo data;
- the whole history as ONE range run (what `cs-pipeline demo` does), then dispatch;
- the baseline: the same pipeline run one partition at a time for a sample of days, whose
  per-day cost times the number of days is what history would cost without range runs.
Writes bench/results/demo-<UTC time>.json and adds a row to BENCHMARKS.md's demo table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, object]:
    memory_kb = 0
    cpu = platform.processor()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {p: metadata.version(p) for p in ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb", "polars", "dlt")}
    return {"cores": os.cpu_count(), "memory_gb": round(memory_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "versions": versions}


DEMO_SECTION = "## Demo end to end"


def insert_demo_row(path: Path, row: str) -> None:
    """Add `row` after the last row of the demo table (the first table under DEMO_SECTION)."""
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(DEMO_SECTION))
    in_table, last = False, None
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("|"):
            in_table, last = True, i
        elif in_table:
            break
    if last is None:
        raise ValueError(f"{path}: no table under '{DEMO_SECTION}'")
    lines.insert(last + 1, row + "\n")
    path.write_text("".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--per-day-sample", type=int, default=5, help="days run one at a time for the baseline")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    os.environ.update({
        "CS_PIPELINE_WAREHOUSE": str(work / "warehouse.duckdb"),
        "CS_PIPELINE_DATA_DIR": str(work / "demo"),
        "CS_PIPELINE_OUTBOX": str(work / "outbox"),
        "DAGSTER_HOME": str(work),
    })
    os.environ.pop("SLACK_BOT_TOKEN", None)
    from cs_pipeline import settings
    from cs_pipeline.cli.running import run_pipeline
    from cs_pipeline.demo.generator import DemoSpec, generate

    end = settings.today() - dt.timedelta(days=1)
    timings: dict[str, float] = {}
    started = time.monotonic()
    summary = generate(work / "demo", DemoSpec(accounts=args.accounts, days=args.days, end_date=end))
    timings["generate_s"] = time.monotonic() - started

    started = time.monotonic()
    run_pipeline(summary.start_date, summary.end_date, quiet=True)
    timings["range_run_and_dispatch_s"] = time.monotonic() - started

    # Baseline: the last few days again, one partition per run, as a per-day schedule would.
    sample = [summary.end_date - dt.timedelta(days=i) for i in range(args.per_day_sample)][::-1]
    started = time.monotonic()
    for day in sample:
        run_pipeline(day, day, quiet=True)
    per_day = (time.monotonic() - started) / len(sample)
    timings["per_day_run_s"] = per_day
    timings["history_one_run_per_day_estimate_s"] = per_day * args.days
    timings["demo_end_to_end_s"] = timings["generate_s"] + timings["range_run_and_dispatch_s"]

    result = {
        "benchmark": "demo",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "scale": {"accounts": args.accounts, "days": args.days, "rows": summary.rows},
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "speedup_range_vs_per_day": round(timings["history_one_run_per_day_estimate_s"] / timings["range_run_and_dispatch_s"], 1),
        "target": "demo end to end < 180 s",
    }
    out = ROOT / "bench" / "results" / f"demo-{result['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    row = (
        f"| {result['when'][:16]} | demo | {args.accounts} accounts x {args.days} days, {summary.rows.get('events', 0):,} events "
        f"| {timings['demo_end_to_end_s']:.0f} s (generate {timings['generate_s']:.0f} s + range run {timings['range_run_and_dispatch_s']:.0f} s) "
        f"| one run per day: {per_day:.1f} s/day → ~{timings['history_one_run_per_day_estimate_s']:.0f} s "
        f"({result['speedup_range_vs_per_day']}x) | {m['cores']} cores, {m['memory_gb']} GB, {m['cpu']} |"
    )
    insert_demo_row(ROOT / "BENCHMARKS.md", row)
    print(json.dumps(result, indent=2))
    print(f"\nwrote {out} and a row in BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
