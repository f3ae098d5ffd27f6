"""The benchmark harness (`python -m bench`) at a tiny scale: it runs every stage and baseline,
its figures are consistent, and its baselines compute the pipeline's numbers. Timings are never
asserted: they are measured, at scale, in BENCHMARKS.md."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from bench import harness
from bench.baselines import floor_sql

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
DAY = harness.MEASURED_DAY.isoformat()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    benchmarks = root / "BENCHMARKS.md"
    benchmarks.write_text((ROOT / "BENCHMARKS.md").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CS_PIPELINE_", "SLACK_", "DAGSTER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--accounts", "30", "--users-per-account", "8", "--events-per-day", "2000",
         "--days", "3", "--skip-backfill", "--dispatch-alerts", "2", "--slack-latency", "0",
         "--row-path-sample", "1000", "--evaluation-accounts", "400", "--work-dir", str(root), "--keep",
         "--results-dir", str(root / "results"), "--benchmarks-md", str(benchmarks)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result_file] = (root / "results").glob("bench-*.json")
    [work] = root.glob("cs-bench-*")
    return json.loads(result_file.read_text()), work / "daily", benchmarks, done.stdout


def _all_measurements(result):
    return {**result["stages"], **{f"baseline_{k}": v for k, v in result["baselines"].items()}}


def test_every_stage_and_baseline_ran(run):
    result, _, _, stdout = run
    assert set(result["stages"]) == {"ingest_snapshots", "ingest_events", "dbt_staging", "dbt_daily", "usage", "health",
                                     "alerts", "portfolio", "dispatch", "daily_end_to_end", "backtest_calibrate"}
    assert set(result["baselines"]) == {"floor", "pandas", "dlt_rows"}
    assert result["machine"]["cores"] >= 1 and result["machine"]["memory_gb"] > 0
    assert {"duckdb", "polars", "dlt", "pandas"} <= set(result["machine"]["versions"])
    assert "| target | measured | met |" in stdout


def test_figures_are_consistent(run):
    result, _, _, _ = run
    for name, stage in _all_measurements(result).items():
        assert stage["seconds"] > 0, name
        assert stage["rows"] >= 0, name
        assert math.isclose(stage["rows_per_s"], stage["rows"] / stage["seconds"], rel_tol=1e-9), name
        assert stage["peak_rss_mb"] > 0, name
        assert sum(stage["parts"].values()) <= stage["seconds"] * 1.001 + 1e-3, name
    s, c = result["stages"], result["comparisons"]
    events = s["ingest_events"]["rows"]
    assert events == result["scale"]["events_on_measured_day"] == s["dbt_daily"]["rows"] == s["daily_end_to_end"]["rows"]
    assert result["baselines"]["floor"]["rows"] == events
    assert s["usage"]["rows"] == s["health"]["rows"] == s["alerts"]["rows"] == result["baselines"]["pandas"]["rows"] == 30
    assert s["dispatch"]["rows"] == 2 and s["dispatch"]["extra"]["failed"] == 0
    assert math.isclose(c["usage_health_s"], s["usage"]["seconds"] + s["health"]["seconds"])
    assert math.isclose(c["usage_health_vs_floor"], c["usage_health_s"] / c["floor_s"])
    assert math.isclose(c["ingest_vs_row_path"], s["ingest_events"]["rows_per_s"] / result["baselines"]["dlt_rows"]["rows_per_s"])
    assert all(isinstance(t["met"], bool) for t in result["targets"])


def test_baselines_compute_the_pipelines_figures(run):
    result, _, _, _ = run
    checks = result["checks"]
    assert checks["floor"]["differences"] == {} and checks["pandas"]["differences"] == {}
    assert {"active_users", "logins", "events", "events_report_created"} <= set(checks["floor"]["columns"])
    assert {"active_users_7d", "active_users_30d", "logins_30d", "events_workflow_run_30d", "score"} <= set(checks["pandas"]["columns"])


def test_the_floor_query_gives_the_usage_table_for_the_day(run):
    """Independently of the harness: the floor SQL on the day's files equals account_daily_usage."""
    _, site, _, _ = run
    sql = floor_sql(str(site / "data" / "events" / f"date={DAY}" / "*.parquet"), ["login", "report.created", "workflow.run"])
    with duckdb.connect(str(site / "warehouse.duckdb"), read_only=True) as con:
        floor = pl.from_arrow(con.execute(sql).fetch_arrow_table())
        usage = pl.from_arrow(con.execute(
            "SELECT account_id, active_users, logins, events, events_report_created, events_workflow_run "
            "FROM analytics.account_daily_usage WHERE partition_date = ?", [DAY]).fetch_arrow_table())
    assert floor.height > 0 and floor["events"].sum() == usage["events"].sum()
    joined = floor.join(usage, on="account_id", how="left", suffix="_pipeline")
    for column in ("active_users", "logins", "events", "events_report_created", "events_workflow_run"):
        assert (joined[column] == joined[f"{column}_pipeline"]).all(), column


def test_a_baseline_that_computes_something_else_is_caught(run):
    _, site, _, _ = run
    pipeline = harness._pipeline_rows(_site(site), harness.MEASURED_DAY)
    wrong = pipeline.with_columns(pl.col("logins_30d") + (pl.col("account_id") == pipeline["account_id"][0]).cast(pl.Int64))
    assert harness.same_figures(pipeline, pipeline, ["logins_30d", "score", "band"]) == {}
    problems = harness.same_figures(pipeline, wrong, ["logins_30d", "active_users"])
    assert set(problems) == {"logins_30d"} and problems["logins_30d"]["rows"] == 1
    floor_like = pipeline.filter(pl.col("events") > 0).select("account_id", "events").head(3)
    missing_zeros = harness.same_figures(pipeline, floor_like, ["events"], absent_means_zero=True)
    assert "events" in missing_zeros  # accounts with events left out of a floor are not zeros


def _site(path: Path):
    site = harness.Site.__new__(harness.Site)
    site.root, site.warehouse = path, path / "warehouse.duckdb"
    return site


def test_the_run_adds_a_row_to_benchmarks_md_and_keeps_the_demo_section(run):
    result, _, benchmarks, _ = run
    text = benchmarks.read_text()
    assert "## Demo end to end (`bench/demo.py`)" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith(harness.ROWS_HEADER))
    table = []
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert table[-1].startswith(f"| {result['when'][:16]} | 30 accounts")
