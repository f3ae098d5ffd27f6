"""`python -m bench`: the pipeline's stages at a chosen scale, against baselines, in one run.

    python -m bench                       # the full scale of BENCHMARKS.md (100k accounts, 10M events/day)
    python -m bench --accounts 2000 --users-per-account 10 --events-per-day 200000 --days 31 \\
                    --backfill-accounts 200 --backfill-events-per-day 5000 --backfill-days 40

What it does, in a temporary folder (removed at the end unless --keep):
1. Generates data in the contract's layout (the demo generator; its events-per-user knob solved
   so that the measured day has --events-per-day events and the users export about
   --accounts x --users-per-account users). The measured day D is a Wednesday; the --days before
   and including it are generated.
2. Set-up, not a result: loads the snapshots with the real assets and the days before D (by
   default their fct_user_daily_activity rows, built by DuckDB from the files with the dbt
   models' SQL, then the real dbt activity marts on them; --history-load pipeline runs ingest +
   dbt on them), then account_daily_usage for D-30 and D-7, which account_health's trend reads.
3. Runs each stage of D in a fresh process (so each peak RSS is its own): ingest (snapshots,
   events), dbt (staging, daily), account_daily_usage, account_health, alerts.
4. Baselines on the same files and warehouse, each in a fresh process: the floor (one DuckDB query
   over D's event files), pandas (usage + health for D), dlt's row path (a sample of D's events
   as dicts, and the same rows as Arrow). Their figures are checked equal to the pipeline's
   before any ratio is reported: a mismatch stops the run.
5. Dispatch: the dispatch job sends --dispatch-alerts live alerts of D to a loopback
   Slack-compatible server that enforces 1 message per second per channel.
6. D end to end: one `run_pipeline(D, D)` (every asset, then dispatch to the outbox).
7. Backfill: its own data (--backfill-*) and warehouse, the whole history as one range run, one
   day alone for comparison, and usage + health at day 31 and at the last day of history (the
   same 30-day windows, three times the history kept).
Writes bench/results/bench-<UTC time>.json and inserts a row in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASURED_DAY = dt.date(2025, 6, 4)  # a Wednesday: weekends have a quarter of the traffic
ROWS_HEADER = "| when (UTC) | scale |"


# --- sites: a data folder, a warehouse and a Dagster home ----------------------------------------


class Site:
    def __init__(self, root: Path, first: dt.date, last: dt.date):
        self.root, self.first, self.last = root, first, last
        self.data = root / "data"
        self.warehouse = root / "warehouse.duckdb"
        root.mkdir(parents=True, exist_ok=True)
        (root / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CS_PIPELINE_", "SLACK_"))}
        env.update({
            "CS_PIPELINE_WAREHOUSE": str(self.warehouse),
            "CS_PIPELINE_DATA_DIR": str(self.data),
            "CS_PIPELINE_OUTBOX": str(self.root / "outbox"),
            "CS_PIPELINE_TODAY": (self.last + dt.timedelta(days=1)).isoformat(),
            "CS_PIPELINE_START_DATE": self.first.isoformat(),
            "DAGSTER_HOME": str(self.root),
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        })
        env.update(extra)
        return env


def run_stage(site: Site, stage: str, args: dict[str, Any] | None = None, say=print, **env: str) -> dict[str, Any]:
    """Run one stage in a fresh Python process; its JSON result, with rows/s."""
    out = site.root / f"stage-{stage}-{time.monotonic_ns()}.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.stages", stage, json.dumps(args or {}), str(out)],
        cwd=site.root, env=site.env(**env), capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-4000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    result["process_seconds"] = time.monotonic() - started
    result["rows_per_s"] = result["rows"] / result["seconds"] if result["seconds"] > 0 else None
    say(f"  {stage:<18} {result['seconds']:8.2f} s  {result['rows']:>12,} {result['rows_of']:<22} "
        f"{(result['rows_per_s'] or 0):>14,.0f}/s  peak RSS {result['peak_rss_mb']:,.0f} MB"
        + (f" (with children {result['tree_peak_rss_mb']:,.0f} MB)" if result["child_peak_rss_mb"] else ""))
    return result


def generate(site: Site, accounts: int, users_per_account: float, events_per_day: int, days: int, seed: int,
             mean_over_window: bool = False) -> dict[str, Any]:
    """Write the site's data in a fresh process (the generator's arrays do not stay in this one)."""
    code = (
        "import json, sys, time, datetime as dt\n"
        "from bench.scale import spec_for\n"
        "from cs_pipeline.demo.generator import generate\n"
        "a = json.loads(sys.argv[1])\n"
        "t = time.perf_counter()\n"
        "spec = spec_for(a['accounts'], a['upa'], a['epd'], a['days'], dt.date.fromisoformat(a['end']), a['seed'],"
        " mean_over_window=a['mean'])\n"
        "s = generate(a['out'], spec)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'rows': s.rows, 'users_per_account_knob': spec.users_per_account,"
        " 'events_per_user_day_knob': spec.events_per_user_day}))\n"
    )
    args = {"accounts": accounts, "upa": users_per_account, "epd": events_per_day, "days": days,
            "end": site.last.isoformat(), "seed": seed, "out": str(site.data), "mean": mean_over_window}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=site.root, env=site.env(),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"generating data failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- checking that baselines compute the pipeline's figures ------------------------------------------


def _pipeline_rows(site: Site, day: dt.date) -> Any:
    import duckdb
    import polars as pl

    with duckdb.connect(str(site.warehouse), read_only=True) as con:
        return pl.from_arrow(con.execute("SELECT * FROM analytics.account_health WHERE partition_date = ?", [day]).fetch_arrow_table())


def same_figures(pipeline: Any, other: Any, columns: list[str], *, key: str = "account_id",
                 absent_means_zero: bool = False, tolerance: float = 1e-9) -> dict[str, Any]:
    """Compare `columns` of two frames keyed by `key`; the differences found (empty when equal).

    absent_means_zero: `other` only has keys with activity (the floor reads event files), so a
    key missing from it must have zeros in the pipeline.
    """
    import polars as pl

    other = other.select(key, *columns)
    problems: dict[str, Any] = {}
    joined = pipeline.select(key, *columns).join(other, on=key, how="left" if absent_means_zero else "full",
                                                 suffix="__other", coalesce=True)
    missing = other.join(pipeline.select(key), on=key, how="anti").height
    if missing:
        problems["keys_only_in_baseline"] = missing
    if not absent_means_zero and joined.height != pipeline.height:
        problems["row_count"] = {"pipeline": pipeline.height, "baseline": other.height}
    for column in columns:
        a, b = pl.col(column), pl.col(f"{column}__other")
        if absent_means_zero:
            b = b.fill_null(0)
        dtype = joined.schema[column]
        if dtype.is_numeric():
            a_f, b_f = a.cast(pl.Float64), b.cast(pl.Float64)
            ok = (a_f.is_null() & b_f.is_null()) | ((a_f - b_f).abs() <= tolerance)
        elif dtype == pl.Date:
            ok = a.eq_missing(b.cast(pl.Date))
        else:
            ok = a.cast(pl.String).eq_missing(b.cast(pl.String))
        bad = joined.filter(~ok.fill_null(False))
        if bad.height:
            problems[column] = {"rows": bad.height, "example": bad.select(key, column, f"{column}__other").head(3).to_dicts()}
    return problems


def _usage_columns(site: Site) -> tuple[list[str], list[str]]:
    from cs_pipeline.logic.config import HEALTH_MODEL_FILE, event_column, load_health_model
    from cs_pipeline.logic.usage import count_columns
    from cs_pipeline import settings

    model = load_health_model(settings.config_dir() / HEALTH_MODEL_FILE)
    day_columns = ["active_users", "logins", "events", *[event_column(e) for e in dict.fromkeys(model.product.events)]]
    return day_columns, count_columns(model.product.events)


def check_baselines(site: Site, day: dt.date, floor_frame: Path, pandas_frame: Path) -> dict[str, Any]:
    """The floor and pandas must produce the pipeline's figures for `day`; raises otherwise."""
    import polars as pl

    pipeline = _pipeline_rows(site, day)
    day_columns, counts = _usage_columns(site)
    floor = pl.read_parquet(floor_frame)
    floor_problems = same_figures(pipeline, floor, day_columns, absent_means_zero=True)
    pandas_columns = [*counts, "last_login_date", "days_since_last_login", "license_activation_rate", "deployment_rate",
                      "utilization_rate", "activity_trend_30d", "key_features_used_30d", "all_key_features_used_30d", "latest_nps",
                      "open_tickets", "open_high_priority_tickets", "days_since_last_touch", "has_live_term",
                      "days_to_renewal", "nps_responses_today", "band", "score_7d_ago", "score_30d_ago"]
    pandas = pl.read_parquet(pandas_frame)
    pandas_problems = same_figures(pipeline, pandas, pandas_columns)
    # The score is rounded to 3 decimals on both sides; a tie may round either way.
    pandas_problems |= same_figures(pipeline, pandas, ["score"], tolerance=0.0011)
    checks = {
        "floor": {"columns": day_columns, "accounts_with_events": floor.height, "accounts": pipeline.height,
                  "differences": floor_problems},
        "pandas": {"columns": [*pandas_columns, "score"], "accounts": pandas.height, "differences": pandas_problems},
    }
    if floor_problems or pandas_problems:
        raise AssertionError("a baseline does not compute the pipeline's figures:\n" + json.dumps(checks, indent=2, default=str))
    return checks


# --- dispatch --------------------------------------------------------------------------------


def build_dispatch_warehouse(site: Site, path: Path, day: dt.date, alerts: int) -> dict[str, Any]:
    """A warehouse holding `alerts` live alerts of `day` (real ones first; copies with new ids when
    the day has fewer) and the health and account rows their messages read."""
    import duckdb
    import polars as pl

    path.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):  # its actions store (deliveries already sent would be skipped)
        path.with_name(f"{path.stem}.actions.sqlite{suffix}").unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute(f"ATTACH '{site.warehouse}' AS src (READ_ONLY)")
        real = pl.from_arrow(con.execute(
            "SELECT * FROM src.analytics.alert_events WHERE partition_date = ? ORDER BY alert_id", [day]).fetch_arrow_table())
        pool = real if real.height else pl.from_arrow(con.execute(
            "SELECT * FROM src.analytics.alert_events ORDER BY partition_date DESC, alert_id").fetch_arrow_table())
        if pool.height == 0:
            raise RuntimeError("the warehouse has no alerts to dispatch at this scale")
        chosen = real.head(alerts)
        copy = 1
        while chosen.height < alerts:
            extra = pool.head(alerts - chosen.height).with_columns(
                (pl.col("alert_id") + f"-copy{copy}").alias("alert_id"), pl.lit(day).alias("partition_date"),
                pl.lit(True).alias("live"), pl.lit("live").alias("status"))
            chosen = pl.concat([chosen, extra])
            copy += 1
        con.execute("CREATE SCHEMA analytics")
        con.execute("CREATE SCHEMA marts")
        con.register("_chosen", chosen.to_arrow())
        con.execute("CREATE TABLE analytics.alert_events AS SELECT * FROM _chosen")
        con.execute("""CREATE TABLE analytics.account_health AS SELECT h.* FROM src.analytics.account_health h
                       WHERE h.account_id IN (SELECT account_id FROM _chosen) AND h.partition_date IN (?, ?)""",
                    [day, day - dt.timedelta(days=30)])
        con.execute("CREATE TABLE marts.dim_accounts AS SELECT * FROM src.marts.dim_accounts")
        owners = [r[0] for r in con.execute("SELECT DISTINCT owner_email FROM _chosen WHERE owner_email IS NOT NULL").fetchall()]
        con.unregister("_chosen")
    return {"alerts": chosen.height, "real_live_alerts": real.height, "owners": owners}


def slack_server(users: dict[str, str], latency: float):
    """The tests' loopback Slack server limiting chat.postMessage to 1 message/s per channel: its
    own `per_channel_limit_per_second` when it has one, else bench/slack.py's subclass."""
    import inspect

    from tests.support.slack_server import SlackServer

    if "per_channel_limit_per_second" in inspect.signature(SlackServer.__init__).parameters:
        return SlackServer(users=users, token="xoxb-bench", latency_seconds=latency, per_channel_limit_per_second=1.0)
    from bench.slack import RateLimitedSlackServer

    return RateLimitedSlackServer(users=users, token="xoxb-bench", latency_seconds=latency)


def run_dispatch(site: Site, day: dt.date, alerts: int, latency: float, say=print) -> dict[str, Any]:
    path = site.root / "dispatch.duckdb"
    prepared = build_dispatch_warehouse(site, path, day, alerts)
    users = {email: f"U{i:09d}" for i, email in enumerate(prepared["owners"])}
    with slack_server(users, latency) as server:
        result = run_stage(site, "dispatch", {}, say=say, CS_PIPELINE_WAREHOUSE=str(path),
                           SLACK_BOT_TOKEN="xoxb-bench", SLACK_API_URL=server.url)
        channels = {m["channel_id"] for m in server.messages}
        result["extra"].update({
            "alerts_prepared": prepared["alerts"], "real_live_alerts_on_day": prepared["real_live_alerts"],
            "channels": len(channels), "messages_received": len(server.messages),
            "rate_limited_answers": getattr(server, "rate_limited_posts", getattr(server, "rate_limited", None)),
            "server_latency_s": latency, "per_channel_limit": "1 message/s (HTTP 429, Retry-After)",
        })
    path.unlink(missing_ok=True)
    return result


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--users-per-account", type=float, default=10.0)
    p.add_argument("--events-per-day", type=int, default=10_000_000, help="events on the measured day")
    p.add_argument("--days", type=int, default=31, help="days of events generated, ending with the measured day")
    p.add_argument("--history-load", choices=("sql", "pipeline"), default="sql",
                   help="set-up of the days before D: 'pipeline' runs ingest + dbt on them (about 100,000 events/s "
                        "on 2 cores); 'sql' builds their fct_user_daily_activity rows with the dbt model's SQL in DuckDB "
                        "straight from the files, then the real dbt activity marts on them (what D's usage reads), "
                        "ten times faster")
    p.add_argument("--history-chunk", type=int, default=5, help="days per range run with --history-load pipeline")
    p.add_argument("--backfill-accounts", type=int, default=1_000)
    p.add_argument("--backfill-users-per-account", type=float, default=10.0)
    p.add_argument("--backfill-events-per-day", type=int, default=100_000)
    p.add_argument("--backfill-days", type=int, default=90)
    p.add_argument("--dispatch-alerts", type=int, default=300)
    p.add_argument("--slack-latency", type=float, default=0.05, help="seconds the loopback Slack adds to every answer")
    p.add_argument("--row-path-sample", type=int, default=200_000, help="events loaded through dlt's row path")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-backfill", action="store_true")
    p.add_argument("--evaluation-accounts", type=int, default=100_000, help="accounts of the backtest + calibrate stage")
    p.add_argument("--evaluation-days", type=int, default=365, help="days of history of the backtest + calibrate stage")
    p.add_argument("--work-dir", default=None, help="where the data and warehouses go (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--benchmarks-md", default=str(ROOT / "BENCHMARKS.md"), help="file to add the row to ('' for none)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cs-bench-", dir=args.work_dir))
    try:
        result = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = write_result(result, Path(args.results_dir))
    if args.benchmarks_md:
        add_row(Path(args.benchmarks_md), result)
    print(render_summary(result))
    print(f"\nwrote {out}" + (f" and a row in {args.benchmarks_md}" if args.benchmarks_md else ""))
    return 0


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench.demo import machine

    day = MEASURED_DAY
    first = day - dt.timedelta(days=args.days - 1)
    site = Site(work / "daily", first, day)
    stages: dict[str, dict[str, Any]] = {}
    setup: dict[str, Any] = {}
    print(f"work folder: {work}")
    print(f"generating {args.days} days ({first} .. {day}) for {args.accounts:,} accounts")
    gen = generate(site, args.accounts, args.users_per_account, args.events_per_day, args.days, args.seed)
    setup["generate"] = {**gen, "data_bytes": _bytes_under(site.data),
                         "measured_day_bytes": _bytes_under(site.data / "events" / f"date={day.isoformat()}")}
    print(f"  {gen['rows']['users']:,} users, {gen['rows']['events']:,} events in {gen['seconds']:.0f} s; "
          f"{setup['generate']['data_bytes'] / 1e9:.2f} GB")

    if args.days > 1:
        print(f"set-up: loading the history {first} .. {day - dt.timedelta(days=1)}")
        stage = "load_history" if args.history_load == "pipeline" else "load_history_sql"
        setup["load_history"] = run_stage(site, stage, {"first": first.isoformat(), "last": (day - dt.timedelta(days=1)).isoformat(),
                                                        "chunk": args.history_chunk})
        for back in (30, 7):
            earlier = day - dt.timedelta(days=back)
            if earlier >= first:
                setup[f"usage_d_minus_{back}"] = run_stage(site, "usage", {"day": earlier.isoformat()})

    print(f"stages for {day}, each in a fresh process:")
    d = {"day": day.isoformat()}
    for stage in ("ingest_snapshots", "ingest_events", "dbt_staging", "dbt_daily", "usage", "health", "alerts", "portfolio"):
        # The set-up loads no alerts before the day: it is evaluated as the first partition (no
        # earlier episode to continue), which `alerts` otherwise refuses.
        first_partition = {"CS_PIPELINE_START_DATE": day.isoformat()} if stage == "alerts" else {}
        stages[stage] = run_stage(site, stage, d, **first_partition)

    print("baselines, same files and warehouse:")
    floor_frame, pandas_frame = site.root / "floor.parquet", site.root / "pandas.parquet"
    baselines = {
        "floor": run_stage(site, "floor", {**d, "out_frame": str(floor_frame)}),
        "pandas": run_stage(site, "pandas", {**d, "out_frame": str(pandas_frame)}),
        "dlt_rows": run_stage(site, "dlt_rows", {**d, "sample": args.row_path_sample, "tmp": str(site.root)}),
    }
    checks = check_baselines(site, day, floor_frame, pandas_frame)
    print(f"  checked: the floor's {len(checks['floor']['columns'])} daily figures and pandas' "
          f"{len(checks['pandas']['columns'])} usage and health figures equal the pipeline's for {checks['pandas']['accounts']:,} accounts")

    print(f"dispatch of {args.dispatch_alerts} alerts to a loopback Slack (1 message/s per channel, {args.slack_latency} s latency):")
    stages["dispatch"] = run_dispatch(site, day, args.dispatch_alerts, args.slack_latency)

    print(f"{day} end to end (one run of every asset, then dispatch to the outbox):")
    # D is the first partition here too: the set-up evaluated no alerts before D, so `cs-pipeline
    # run` would otherwise reach back to the data's first day (a 31-day range run, not a day).
    stages["daily_end_to_end"] = run_stage(site, "run", {"first": day.isoformat(), "last": day.isoformat()},
                                           CS_PIPELINE_START_DATE=day.isoformat())
    setup["warehouse_bytes"] = site.warehouse.stat().st_size

    print(f"backtest + calibrate over {args.evaluation_days} days of {args.evaluation_accounts:,} accounts (synthetic churn history):")
    stages["backtest_calibrate"] = run_stage(site, "backtest_calibrate", {
        "accounts": args.evaluation_accounts, "days": args.evaluation_days, "seed": args.seed,
        "warehouse": str(work / "evaluation" / "warehouse.duckdb")})

    backfill: dict[str, Any] = {}
    if not args.skip_backfill:
        backfill = run_backfill(args, work)
        stages["backfill"] = backfill["range_run"]

    result = {
        "benchmark": "bench",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(sys.argv[1:]) if argv_is_cli() else None,
        "machine": _machine(machine),
        "code": code_version(),
        "scale": {"accounts": args.accounts, "users": gen["rows"]["users"], "users_per_account": args.users_per_account,
                  "events_per_day_asked": args.events_per_day, "events_on_measured_day": stages["ingest_events"]["rows"],
                  "days": args.days, "measured_day": day.isoformat(), "events_total": gen["rows"]["events"]},
        "setup": setup,
        "stages": stages,
        "baselines": baselines,
        "checks": checks,
        "backfill": backfill,
    }
    result["comparisons"] = comparisons(result)
    result["targets"] = targets(result, args)
    return result


def code_version() -> dict[str, Any]:
    """The commit the pipeline code came from, and whether cs_pipeline/ or dbt/ differed from it.

    A copy without .git (e.g. `git archive HEAD`, to measure a commit while the work tree moves)
    names its commit in a `.commit` file beside bench/."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "cs_pipeline", "dbt"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return {"commit": commit, "pipeline_code_modified": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        marker = ROOT / ".commit"
        return {"commit": marker.read_text().strip() if marker.exists() else None, "pipeline_code_modified": False,
                "copy": str(ROOT)}


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("__main__.py", "harness.py")


def _machine(machine) -> dict[str, Any]:
    from importlib import metadata

    m = machine()
    for package in ("pandas", "pyarrow", "numpy", "slack-sdk"):
        m["versions"][package] = metadata.version(package)
    return m


def run_backfill(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    day = MEASURED_DAY
    first = day - dt.timedelta(days=args.backfill_days - 1)
    site = Site(work / "backfill", first, day)
    print(f"backfill: generating {args.backfill_days} days for {args.backfill_accounts:,} accounts")
    gen = generate(site, args.backfill_accounts, args.backfill_users_per_account, args.backfill_events_per_day,
                   args.backfill_days, args.seed, mean_over_window=True)
    print(f"  {gen['rows']['events']:,} events in {gen['seconds']:.0f} s")
    print(f"backfill: {first} .. {day} as one range run, then dispatch:")
    range_run = run_stage(site, "run", {"first": first.isoformat(), "last": day.isoformat()})
    print("backfill: one day alone, as a run per partition would do it:")
    one_day = run_stage(site, "run", {"first": day.isoformat(), "last": day.isoformat()})
    growth: dict[str, Any] = {}
    if args.backfill_days >= 45:  # both days have full 30-day windows; the later one has kept more history
        early = first + dt.timedelta(days=30)
        print(f"history kept: usage + health for {early} (31 days kept) and for {day} ({args.backfill_days} days kept):")
        growth = {"early": run_stage(site, "usage_health", {"day": early.isoformat()}),
                  "late": run_stage(site, "usage_health", {"day": day.isoformat()})}
    return {"scale": {"accounts": args.backfill_accounts, "users": gen["rows"]["users"], "days": args.backfill_days,
                      "events": gen["rows"]["events"], "events_per_day_asked": args.backfill_events_per_day},
            "generate": gen, "range_run": range_run, "one_day_run": one_day, "history_growth": growth}


# --- figures derived from the stages -----------------------------------------------------------


def comparisons(result: dict[str, Any]) -> dict[str, Any]:
    s, b = result["stages"], result["baselines"]
    usage_health = s["usage"]["seconds"] + s["health"]["seconds"]
    compute_only = s["usage"]["parts"].get("compute", 0) + s["health"]["parts"].get("compute", 0)
    out: dict[str, Any] = {
        "usage_health_s": usage_health,
        "usage_health_compute_s": compute_only,
        "floor_s": b["floor"]["seconds"],
        "usage_health_vs_floor": usage_health / b["floor"]["seconds"],
        "pandas_s": b["pandas"]["seconds"],
        "pandas_vs_usage_health": b["pandas"]["seconds"] / usage_health,
        # Without the writes on both sides: reads and computation only.
        "pandas_vs_usage_health_without_writes": (b["pandas"]["seconds"] - b["pandas"]["parts"].get("write", 0))
        / (usage_health - s["usage"]["parts"].get("write", 0) - s["health"]["parts"].get("write", 0)),
        "ingest_events_per_s": s["ingest_events"]["rows_per_s"],
        "dlt_row_path_rows_per_s": b["dlt_rows"]["rows_per_s"],
        "ingest_vs_row_path": s["ingest_events"]["rows_per_s"] / b["dlt_rows"]["rows_per_s"],
        "arrow_vs_row_path_same_rows": b["dlt_rows"]["extra"]["arrow_rows_per_s_same_rows"] / b["dlt_rows"]["rows_per_s"],
        "dispatch_alerts_per_s": s["dispatch"]["rows_per_s"],
        "end_to_end_peak_rss_mb": s["daily_end_to_end"]["tree_peak_rss_mb"],
    }
    bf = result.get("backfill") or {}
    if bf:
        days = bf["scale"]["days"]
        out["backfill_s"] = bf["range_run"]["seconds"]
        out["backfill_one_run_per_day_estimate_s"] = bf["one_day_run"]["seconds"] * days
        out["backfill_range_vs_per_day"] = out["backfill_one_run_per_day_estimate_s"] / bf["range_run"]["seconds"]
        growth = bf.get("history_growth") or {}
        if growth:
            out["history_growth_usage_health_ratio"] = growth["late"]["seconds"] / growth["early"]["seconds"]
            out["history_growth_days"] = [growth["early"]["extra"]["history_days"], growth["late"]["extra"]["history_days"]]
    return out


def targets(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    c, s = result["comparisons"], result["stages"]
    full = args.accounts >= 100_000 and args.events_per_day >= 10_000_000
    backfill_full = args.backfill_accounts >= 1_000 and args.backfill_events_per_day >= 100_000 and args.backfill_days >= 90
    e2e = s["daily_end_to_end"]["seconds"]
    rows = [
        ("daily partition end to end < 60 s", f"{e2e:.1f} s", e2e < 60, full),
        ("daily partition peak RSS < 4 GB", f"{c['end_to_end_peak_rss_mb']:,.0f} MB", c["end_to_end_peak_rss_mb"] < 4096, full),
        ("usage + health within 1.3x of the floor", f"{c['usage_health_vs_floor']:.2f}x ({c['usage_health_s']:.2f} s vs {c['floor_s']:.2f} s)",
         c["usage_health_vs_floor"] <= 1.3, True),
        ("usage + health >= 2x faster than pandas",
         f"{c['pandas_vs_usage_health']:.2f}x (reads and computation only: {c['pandas_vs_usage_health_without_writes']:.2f}x)",
         c["pandas_vs_usage_health"] >= 2, True),
        ("ingest >= 1,000,000 events/s", f"{c['ingest_events_per_s']:,.0f} events/s", c["ingest_events_per_s"] >= 1_000_000, full),
        ("ingest >= 25x dlt's row path", f"{c['ingest_vs_row_path']:.1f}x", c["ingest_vs_row_path"] >= 25, True),
        ("alert evaluation for 100,000 accounts < 2 s", f"{s['alerts']['seconds']:.2f} s for {s['alerts']['rows']:,} accounts",
         s["alerts"]["seconds"] < 2, full),
        ("KPI marts + portfolio tables + report add < 10 s a day", f"{s['portfolio']['seconds']:.2f} s for {s['portfolio']['rows']:,} accounts",
         s["portfolio"]["seconds"] < 10, full),
    ]
    bc = s.get("backtest_calibrate")
    if bc:
        rows.append(("backtest + calibrate, 365 days of 100,000 accounts < 300 s", f"{bc['seconds']:.1f} s", bc["seconds"] < 300,
                     args.evaluation_accounts >= 100_000 and args.evaluation_days >= 365))
    if "backfill_s" in c:
        rows.append(("90-day backfill (1,000 accounts, 100k events/day) < 180 s", f"{c['backfill_s']:.1f} s", c["backfill_s"] < 180, backfill_full))
    if "history_growth_usage_health_ratio" in c:
        days = c["history_growth_days"]
        rows.append((f"usage + health not growing with history kept (day {days[1]} / day {days[0]} <= 1.2)",
                     f"{c['history_growth_usage_health_ratio']:.2f}x", c["history_growth_usage_health_ratio"] <= 1.2, True))
    return [{"target": t, "measured": m, "met": bool(ok), "at_target_scale": scale} for t, m, ok, scale in rows]


# --- output ------------------------------------------------------------------------------------------


def write_result(result: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"bench-{result['when'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out


STAGE_TITLES = {
    "ingest_snapshots": "ingest snapshots (dlt)",
    "ingest_events": "ingest one day of events (polars, DuckDB)",
    "dbt_staging": "dbt staging + marts",
    "dbt_daily": "dbt daily (events -> fct_user_daily_activity)",
    "usage": "account_daily_usage, one day",
    "health": "account_health, one day",
    "alerts": "alert evaluation, one day",
    "portfolio": "KPI marts, portfolio tables, report",
    "dispatch": "dispatch to loopback Slack",
    "daily_end_to_end": "daily partition end to end",
    "backfill": "history backfill, one range run",
    "backtest_calibrate": "backtest + calibrate (synthetic churn history)",
}


def render_summary(result: dict[str, Any]) -> str:
    lines = ["", "| stage | seconds | rows | rows/s | peak RSS: process (with children) |", "|---|---:|---:|---:|---:|"]
    measured = list(result["stages"].items()) + [(f"baseline: {k}", v) for k, v in result["baselines"].items()]
    for name, stage in measured:
        title = STAGE_TITLES.get(name, name)
        lines.append(f"| {title} | {stage['seconds']:.2f} | {stage['rows']:,} {stage['rows_of']} | {stage['rows_per_s'] or 0:,.0f} "
                     f"| {stage['peak_rss_mb']:,.0f} MB ({stage['tree_peak_rss_mb']:,.0f} MB) |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        scale = "" if t["at_target_scale"] else " (not at the target's scale)"
        lines.append(f"| {t['target']} | {t['measured']}{scale} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def benchmark_row(result: dict[str, Any]) -> str:
    s, c, m, sc = result["stages"], result["comparisons"], result["machine"], result["scale"]
    met = sum(t["met"] for t in result["targets"])
    backfill = (f"{c['backfill_s']:.0f} s ({result['backfill']['scale']['days']} d x {result['backfill']['scale']['accounts']:,} acc; "
                f"{c['backfill_range_vs_per_day']:.0f}x vs a run per day)" if "backfill_s" in c else "-")
    growth = f"{c['history_growth_usage_health_ratio']:.2f}x" if "history_growth_usage_health_ratio" in c else "-"
    return (
        f"| {result['when'][:16]} | {sc['accounts']:,} accounts, {sc['users']:,} users, {sc['events_on_measured_day']:,} events/day, {sc['days']} days "
        f"| {s['daily_end_to_end']['seconds']:.1f} s, {c['end_to_end_peak_rss_mb'] / 1024:.1f} GB "
        f"| {c['ingest_events_per_s']:,.0f} ev/s ({c['ingest_vs_row_path']:.0f}x row path) "
        f"| {c['usage_health_s']:.2f} s ({c['usage_health_vs_floor']:.2f}x floor {c['floor_s']:.2f} s; pandas {c['pandas_vs_usage_health']:.1f}x slower) "
        f"| {growth} "
        f"| {s['alerts']['seconds']:.2f} s "
        f"| {c['dispatch_alerts_per_s']:.1f} alerts/s "
        f"| {backfill} "
        f"| {met}/{len(result['targets'])} "
        f"| {m['cores']} cores, {m['memory_gb']} GB, {m['cpu']} |"
    )


def add_row(path: Path, result: dict[str, Any]) -> None:
    """Insert the run's row at the end of the `python -m bench` results table."""
    lines = path.read_text().splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith(ROWS_HEADER)), None)
    if header is None:
        raise RuntimeError(f"{path} has no results table starting with {ROWS_HEADER!r}")
    end = header + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, benchmark_row(result))
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
