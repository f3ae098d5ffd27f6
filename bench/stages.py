"""One benchmark stage, run in a fresh process so that its peak RSS is its own.

    python -m bench.stages STAGE '{"day": "2025-06-04", ...}' OUT.json

The harness (`bench/harness.py`) sets the pipeline's environment variables (warehouse, data
directory, today, first partition, DAGSTER_HOME) before starting this process. Every stage runs
the project's real code: assets are invoked directly for one partition (the asset body exactly as
a Dagster run executes it, without the run's start-up), dbt and whole runs go through Dagster.
Module-level helpers the assets call (`query`, the pure compute functions, `replace_date_range`)
are wrapped with timers to split a stage into read / compute / write; nothing else is changed.

Each stage writes one JSON object: seconds (wall time of the stage itself, imports excluded),
rows and what they count, the peak RSS of this process (exact), of its child processes (dbt;
sampled) and of both together (sampled, at least this process's peak), the RSS before the stage
began (imports), and a breakdown in `parts`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

DAY = dt.timedelta(days=1)
PARTS: dict[str, float] = {}


def timed(module: Any, name: str, label: str | None = None) -> None:
    """Replace module.name by a wrapper that adds its wall time to PARTS[label]."""
    original = getattr(module, name)
    key = label or name

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            PARTS[key] = PARTS.get(key, 0.0) + time.perf_counter() - started

    setattr(module, name, wrapper)


def _day(args: dict) -> dt.date:
    return dt.date.fromisoformat(args["day"])


def _resources():
    """The definitions' resources; also builds one throwaway asset context, because the first
    `build_asset_context` of a process costs about 1 s of Dagster's lazy imports, which is the
    harness's start-up, not the asset's work (a real run pays it once per run, not per asset)."""
    import dagster as dg

    from cs_pipeline.definitions import resources

    with dg.build_asset_context():
        pass
    return resources()


@contextlib.contextmanager
def _reloading_exports():
    """Snapshot exports are read and loaded even when unchanged since their last load, as on a
    day when the export job wrote them again (`CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS`)."""
    name = "CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS"
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def _invoke(asset, day: dt.date, **resources) -> list:
    """Run an asset's body for one partition, as a Dagster step would (direct invocation)."""
    import dagster as dg

    with dg.build_asset_context(partition_key=day.isoformat()) as context:
        out = asset(context=context, **resources)
        return list(out) if hasattr(out, "__iter__") and not hasattr(out, "metadata") else [out]


def _metadata(outputs: list) -> dict:
    for item in outputs:
        if hasattr(item, "metadata") and item.metadata and "dagster/row_count" in item.metadata:
            return {k: getattr(v, "value", v) for k, v in item.metadata.items()}
    return {}


def _count(sql: str, params: list | None = None) -> int:
    import duckdb

    from cs_pipeline import settings

    with duckdb.connect(str(settings.warehouse_path()), read_only=True) as con:
        return int(con.execute(sql, params or []).fetchone()[0])


def _materialize(assets: list, *, partition_key: str | None = None, first: dt.date | None = None,
                 last: dt.date | None = None, selection: list | None = None) -> None:
    """A Dagster run of `assets` (one partition, or a range in one run), quiet, raising on failure."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    tags = {}
    if first is not None:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}
    log_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with contextlib.redirect_stdout(io.StringIO()):
        result = dg.materialize(
            assets, partition_key=partition_key, resources=_resources(), instance=_instance(),
            tags=tags, selection=selection, run_config=log_config, raise_on_error=True,
        )
    if not result.success:
        raise RuntimeError("materialization failed")


# --- stages ------------------------------------------------------------------------------------


def stage_ingest_events(args: dict) -> dict:
    """raw_events for one day: read the day's files, validate, write into raw.events (one transaction per day)."""
    import cs_pipeline.assets.events as events
    import cs_pipeline.sources.files as files

    timed(files, "read_event_file", "read_files")
    timed(events, "validate", "validate")
    timed(events, "_insert_day", "insert_into_raw_events")
    r = _resources()
    day = _day(args)
    started = time.perf_counter()
    meta = _metadata(_invoke(events.raw_events, day, warehouse=r["warehouse"], source=r["source"]))
    seconds = time.perf_counter() - started
    PARTS["other"] = seconds - sum(PARTS.values())
    return {"seconds": seconds, "rows": int(meta["dagster/row_count"]), "rows_of": "events loaded",
            "extra": {"rows_rejected": meta.get("rows_rejected"), "duplicates_dropped": meta.get("duplicates_dropped")}}


def stage_ingest_snapshots(args: dict) -> dict:
    """raw_snapshots: every snapshot entity (accounts, users, ...) read, validated and replaced in
    one dlt run (forced: the set-up loaded the same files already); then the same asset again on
    the unchanged files, which skips them (`seconds_when_unchanged`, what a daily run pays)."""
    from cs_pipeline.assets.ingest import raw_snapshots

    with _reloading_exports():
        started = time.perf_counter()
        _materialize([raw_snapshots])
        seconds = time.perf_counter() - started
    again = time.perf_counter()
    _materialize([raw_snapshots])
    unchanged = time.perf_counter() - again
    tables = ("accounts", "contracts", "users", "tickets", "nps_responses", "activities", "engagements")
    rows = {t: _count(f"SELECT count(*) FROM raw.{t}") for t in tables}
    return {"seconds": seconds, "rows": sum(rows.values()), "rows_of": "snapshot rows loaded",
            "extra": {"by_table": rows, "seconds_when_unchanged": round(unchanged, 3)}}


def stage_dbt_staging(args: dict) -> dict:
    """dbt build of the snapshot models: staging tables, contract terms, the account dimension."""
    from cs_pipeline.assets.dbt import dbt_models

    started = time.perf_counter()
    _materialize([dbt_models])
    seconds = time.perf_counter() - started
    tables = ("staging.stg_raw__accounts", "staging.stg_raw__contracts", "staging.stg_raw__users", "staging.stg_raw__tickets",
              "staging.stg_raw__nps_responses", "staging.stg_raw__activities", "staging.stg_raw__engagements",
              "marts.fct_contract_terms", "marts.dim_accounts")
    rows = {t: _count(f"SELECT count(*) FROM {t}") for t in tables}
    return {"seconds": seconds, "rows": sum(rows.values()), "rows_of": "rows built", "extra": {"by_table": rows}}


def stage_dbt_daily(args: dict) -> dict:
    """dbt build of the daily models for one day: the events view and fct_user_daily_activity."""
    from cs_pipeline.assets.dbt import dbt_daily_models

    day = _day(args)
    started = time.perf_counter()
    _materialize([dbt_daily_models], partition_key=day.isoformat())
    seconds = time.perf_counter() - started
    events = _count("SELECT count(*) FROM raw.events WHERE event_date = ?", [day])
    built = _count("SELECT count(*) FROM marts.fct_user_daily_activity WHERE activity_date = ?", [day])
    return {"seconds": seconds, "rows": events, "rows_of": "events aggregated", "extra": {"fct_user_daily_activity_rows": built}}


def stage_usage(args: dict) -> dict:
    """account_daily_usage for one day (asset body: its reads, the polars computation, its write)."""
    import cs_pipeline.assets.usage as usage

    timed(usage, "query", "read")
    timed(usage, "compute_usage", "compute")
    timed(usage, "replace_date_range", "write")
    r = _resources()
    started = time.perf_counter()
    meta = _metadata(_invoke(usage.account_daily_usage, _day(args), warehouse=r["warehouse"], cs_config=r["cs_config"]))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": int(meta["dagster/row_count"]), "rows_of": "account-days",
            "extra": {"window_rows": meta.get("window_rows")}}


def stage_health(args: dict) -> dict:
    """account_health for one day (asset body: reads, score and context in polars, write)."""
    import cs_pipeline.assets.health as health

    timed(health, "query", "read")
    timed(health, "compute_health", "compute")
    timed(health, "replace_date_range", "write")
    r = _resources()
    started = time.perf_counter()
    meta = _metadata(_invoke(health.account_health, _day(args), warehouse=r["warehouse"], cs_config=r["cs_config"]))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": int(meta["dagster/row_count"]), "rows_of": "account-days"}


def stage_alerts(args: dict) -> dict:
    """alerts for one day: every rule evaluated on the day's account_health, episodes, alert rows."""
    import cs_pipeline.assets.alerts as alerts

    timed(alerts, "query", "read")
    timed(alerts, "alert_rows", "evaluate")
    timed(alerts, "replace_date_range", "write")
    r = _resources()
    day = _day(args)
    started = time.perf_counter()
    meta = _metadata(_invoke(alerts.alerts, day, warehouse=r["warehouse"], cs_config=r["cs_config"]))
    seconds = time.perf_counter() - started
    accounts = _count("SELECT count(*) FROM analytics.account_health WHERE partition_date = ?", [day])
    return {"seconds": seconds, "rows": accounts, "rows_of": "accounts evaluated",
            "extra": {"alert_rows": meta.get("dagster/row_count"), "alerts": meta.get("alerts"),
                      "live_alerts": meta.get("live_alerts")}}


def stage_portfolio(args: dict) -> dict:
    """What the portfolio view adds to a daily run: the dbt KPI marts (dbt's own time for the two
    models and for their tests; the separate invocation that measures them is in extra as
    kpi_marts_dbt_invocation),
    the portfolio map, renewal pipeline and alert follow-through of the day, and the HTML report."""
    import dagster as dg

    import cs_pipeline.assets.portfolio as portfolio
    import cs_pipeline.logic.portfolio_report as portfolio_report
    from cs_pipeline.assets.dbt import dbt_models

    timed(portfolio_report, "render_report", "report_render")  # the asset imports it when it runs
    timed(portfolio, "report_data", "report_read")
    r = _resources()
    day = _day(args)
    kpi_keys = [dg.AssetKey(["marts", "kpi_retention_monthly"]), dg.AssetKey(["marts", "kpi_nps_monthly"])]
    begun = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = dg.materialize([dbt_models], resources=r, instance=_instance(), selection=kpi_keys, raise_on_error=True,
                                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    # In a daily run the KPI marts are built by the same `dbt build` as the other snapshot models:
    # what they add is dbt's own time for the two models and their tests, not a dbt process of
    # their own. Summed, though dbt runs them on 4 threads: an upper bound.
    invocation = time.perf_counter() - begun
    PARTS["kpi_marts"] = sum(_dbt_seconds(e.materialization.metadata) for e in result.get_asset_materialization_events())
    PARTS["kpi_marts_tests"] = sum(_dbt_seconds(check.metadata) for check in result.get_asset_check_evaluations())
    started = time.perf_counter() - PARTS["kpi_marts"] - PARTS["kpi_marts_tests"]
    for asset in (portfolio.portfolio_map, portfolio.renewal_pipeline, portfolio.alert_follow_through):
        begun = time.perf_counter()
        _invoke(asset, day, warehouse=r["warehouse"])
        PARTS[asset.key.to_user_string()] = time.perf_counter() - begun
    begun = time.perf_counter()
    report = _invoke(portfolio.portfolio_report, day, warehouse=r["warehouse"])[0].metadata
    PARTS["portfolio_report"] = time.perf_counter() - begun
    seconds = time.perf_counter() - started
    accounts = _count("SELECT count(*) FROM analytics.account_health WHERE partition_date = ?", [day])
    # Parts add up to the stage: the report's read and render are inside portfolio_report.
    inside_report = {name: round(PARTS.pop(name, 0.0), 4) for name in ("report_read", "report_render")}
    return {"seconds": seconds, "rows": accounts, "rows_of": "accounts",
            "extra": {"report_bytes": getattr(report["bytes"], "value", report["bytes"]), "map_rows": _count(
                "SELECT count(*) FROM analytics.portfolio_map WHERE partition_date = ?", [day]),
                "kpi_marts_dbt_invocation": round(invocation, 4), **inside_report}}


def _dbt_seconds(metadata) -> float:
    """dbt's own time for one node (dagster-dbt's `Execution Duration`), 0 when absent."""
    return float(getattr(metadata.get("Execution Duration"), "value", 0) or 0)


def stage_dispatch(args: dict) -> dict:
    """The dispatch job (tasks + one Slack message per live alert) against SLACK_API_URL."""
    from cs_pipeline.definitions import defs

    log_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = defs.resolve_job_def("dispatch_alerts").execute_in_process(instance=_instance(), run_config=log_config)
    seconds = time.perf_counter() - started
    if not result.success:
        raise RuntimeError("the dispatch job failed")
    # Counted from the warehouse, not from the job's op outputs, which may be named differently.
    sent = _count("SELECT count(*) FROM actions.deliveries WHERE status = 'sent'")
    failed = _count("SELECT count(*) FROM actions.deliveries WHERE status <> 'sent'")
    tasks = _count("SELECT count(*) FROM actions.tasks")
    return {"seconds": seconds, "rows": sent, "rows_of": "alerts sent", "extra": {"failed": failed, "tasks_created": tasks}}


def stage_run(args: dict) -> dict:
    """`run_pipeline(first, last)`: one range run of every asset, then the dispatch job (outbox).

    The snapshot exports are reloaded as if they had been exported again, as a daily export job
    does (`CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS`): the set-up loaded the same files already, and
    a run that skipped them would measure less than a real day."""
    from cs_pipeline.cli.running import run_pipeline

    first, last = dt.date.fromisoformat(args["first"]), dt.date.fromisoformat(args["last"])
    with _reloading_exports(), contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        outcome = run_pipeline(first, last, quiet=True)
        seconds = time.perf_counter() - started
    events = _count("SELECT count(*) FROM raw.events WHERE event_date BETWEEN ? AND ?", [first, last])
    # Where the run's time went: each step's wall time, from the Dagster instance's event log.
    instance = _instance()
    steps: dict[str, float] = {}
    for run in reversed(instance.get_runs(limit=2)):
        for stat in instance.get_run_step_stats(run.run_id):
            if stat.start_time and stat.end_time:
                steps[f"{run.job_name}.{stat.step_key}"] = round(stat.end_time - stat.start_time, 3)
    PARTS.update({f"step {k}": v for k, v in steps.items()})
    return {"seconds": seconds, "rows": events, "rows_of": "events", "extra": {**outcome, "days": (last - first).days + 1}}


def stage_load_history(args: dict) -> dict:
    """Set-up: ingest and dbt for the history days, as range runs of `chunk` days each."""
    from cs_pipeline.assets.dbt import dbt_daily_models, dbt_models
    from cs_pipeline.assets.events import raw_events
    from cs_pipeline.assets.ingest import raw_snapshots

    first, last = dt.date.fromisoformat(args["first"]), dt.date.fromisoformat(args["last"])
    chunk = int(args.get("chunk", 5))
    started = time.perf_counter()
    _materialize([raw_snapshots, dbt_models])
    day = first
    while day <= last:
        end = min(day + dt.timedelta(days=chunk - 1), last)
        _materialize([raw_events, dbt_daily_models], first=day, last=end)
        day = end + DAY
    seconds = time.perf_counter() - started
    events = _count("SELECT count(*) FROM raw.events WHERE event_date BETWEEN ? AND ?", [first, last])
    return {"seconds": seconds, "rows": events, "rows_of": "events", "extra": {"days": (last - first).days + 1}}


FCT_FROM_FILES = """
INSERT INTO marts.fct_user_daily_activity
SELECT event_date AS activity_date, account_id, user_id, event, count(*) AS event_count
FROM (
    SELECT CAST(event_id AS VARCHAR) AS event_id, CAST(account_id AS VARCHAR) AS account_id,
           CAST(user_id AS VARCHAR) AS user_id, CAST(event AS VARCHAR) AS event,
           CAST(occurred_at AS TIMESTAMP) AS occurred_at, DATE '{day}' AS event_date
    FROM read_parquet('{files}')
    QUALIFY row_number() OVER (PARTITION BY event_date, event_id ORDER BY occurred_at, account_id, user_id, event) = 1
)
GROUP BY ALL
"""


def stage_load_history_sql(args: dict) -> dict:
    """Set-up at scale: snapshots through the real assets; the history days' per-user daily
    activity built by DuckDB straight from the files, with the SQL of ingestion (one row per
    event_id and day) and of fct_user_daily_activity's aggregate; then the real dbt models D's
    usage reads (fct_account_daily_activity, fct_user_monthly_activity) for those days, in one
    range run. raw.events keeps no history days: no stage of D reads them."""
    import duckdb

    from cs_pipeline import settings
    from cs_pipeline.assets.dbt import dbt_daily_models, dbt_models
    from cs_pipeline.assets.ingest import raw_snapshots

    first, last = dt.date.fromisoformat(args["first"]), dt.date.fromisoformat(args["last"])
    started = time.perf_counter()
    _materialize([raw_snapshots, dbt_models])
    PARTS["snapshots_and_dbt_staging"] = time.perf_counter() - started
    with duckdb.connect(str(settings.warehouse_path())) as con:
        con.execute("SET memory_limit = '6GB'")
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute("""CREATE TABLE IF NOT EXISTS marts.fct_user_daily_activity (
            activity_date DATE, account_id VARCHAR, user_id VARCHAR, event VARCHAR, event_count BIGINT)""")
        con.execute("DELETE FROM marts.fct_user_daily_activity WHERE activity_date BETWEEN ? AND ?", [first, last])
        day = first
        while day <= last:
            folder = settings.data_dir() / "events" / f"date={day.isoformat()}"
            if any(folder.glob("*.parquet")):
                con.execute(FCT_FROM_FILES.format(day=day.isoformat(), files=str(folder / "*.parquet")))
            day += DAY
    seconds = time.perf_counter() - started
    PARTS["fct_user_daily_activity_from_files"] = seconds - PARTS["snapshots_and_dbt_staging"]
    import dagster as dg

    marts = [dg.AssetKey(["marts", "fct_account_daily_activity"]), dg.AssetKey(["marts", "fct_user_monthly_activity"])]
    _materialize([dbt_daily_models], first=first, last=last, selection=marts)
    PARTS["activity_marts_dbt"] = time.perf_counter() - started - seconds
    seconds = time.perf_counter() - started
    rows = _count("SELECT coalesce(sum(event_count), 0) FROM marts.fct_user_daily_activity WHERE activity_date BETWEEN ? AND ?",
                  [first, last])
    return {"seconds": seconds, "rows": rows, "rows_of": "events", "extra": {"days": (last - first).days + 1}}


def stage_usage_health(args: dict) -> dict:
    """account_daily_usage then account_health for one day, in one process (for history growth)."""
    import cs_pipeline.assets.health as health
    import cs_pipeline.assets.usage as usage

    r = _resources()
    day = _day(args)
    started = time.perf_counter()
    meta = _metadata(_invoke(usage.account_daily_usage, day, warehouse=r["warehouse"], cs_config=r["cs_config"]))
    PARTS["usage"] = time.perf_counter() - started
    _invoke(health.account_health, day, warehouse=r["warehouse"], cs_config=r["cs_config"])
    seconds = time.perf_counter() - started
    PARTS["health"] = seconds - PARTS["usage"]
    history = _count("SELECT count(DISTINCT activity_date) FROM marts.fct_account_daily_activity WHERE activity_date <= ?", [day])
    return {"seconds": seconds, "rows": int(meta["dagster/row_count"]), "rows_of": "account-days",
            "extra": {"history_days": history, "window_rows": meta.get("window_rows")}}


def stage_backtest_calibrate(args: dict) -> dict:
    """`cs-pipeline backtest` then `calibrate` (their code paths, report included) over a synthetic
    churn history: account_health on the observation dates every 15 days of `days` days for
    `accounts` accounts, the outcomes and the alerts (bench/evaluation.py; its synthesis and
    write are set-up, reported apart)."""
    import duckdb

    from bench.evaluation import synthetic_history, write_warehouse
    from cs_pipeline import settings
    from cs_pipeline.assets.backtest import backtest, labelled_observations
    from cs_pipeline.logic.backtest import BacktestSpec
    from cs_pipeline.logic.calibrate import calibrate, to_yaml
    from cs_pipeline.logic.config import load_config
    from cs_pipeline.logic.report import write_report

    end, today = dt.date(2025, 12, 31), dt.date(2026, 3, 1)
    path = Path(args["warehouse"])
    path.parent.mkdir(parents=True, exist_ok=True)
    mark = time.perf_counter()
    frames = synthetic_history(int(args["accounts"]), int(args["days"]), seed=int(args.get("seed", 5)), end=end)
    write_warehouse(path, *frames)
    synthesized = time.perf_counter() - mark
    model, rules = load_config(settings.SHIPPED_CONFIG_DIR)
    spec = BacktestSpec(end - dt.timedelta(days=int(args["days"]) - 1), end)
    started = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    try:
        result = backtest(con, spec, model, today, [r.id for r in rules.rules])
        PARTS["backtest"] = time.perf_counter() - started
        mark = time.perf_counter()
        frame = labelled_observations(con, spec, model, today)
        PARTS["calibrate_read"] = time.perf_counter() - mark
    finally:
        con.close()
    mark = time.perf_counter()
    calibration = calibrate(frame, model)
    (path.parent / "proposed_health_model.yaml").write_text(to_yaml(calibration, model, str(path)))
    PARTS["calibrate_fit"] = time.perf_counter() - mark
    mark = time.perf_counter()
    write_report(path.parent / "calibration.html", result, calibration)
    PARTS["report"] = time.perf_counter() - mark
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": frame.height, "rows_of": "account-days observed",
            "extra": {"synthesize_and_write_s": round(synthesized, 2), "accounts": int(args["accounts"]), "days": int(args["days"]),
                      "observation_dates": len(result.dates), "auc_model": result.auc["model"],
                      "auc_calibrated_test": calibration.auc_test["calibrated"]}}


def _baseline(name: str) -> Callable[[dict], dict]:
    def run(args: dict) -> dict:
        from bench import baselines

        return getattr(baselines, name)(args, PARTS)

    return run


STAGES: dict[str, Callable[[dict], dict]] = {
    "ingest_events": stage_ingest_events,
    "ingest_snapshots": stage_ingest_snapshots,
    "dbt_staging": stage_dbt_staging,
    "dbt_daily": stage_dbt_daily,
    "usage": stage_usage,
    "health": stage_health,
    "alerts": stage_alerts,
    "dispatch": stage_dispatch,
    "portfolio": stage_portfolio,
    "run": stage_run,
    "load_history": stage_load_history,
    "load_history_sql": stage_load_history_sql,
    "usage_health": stage_usage_health,
    "backtest_calibrate": stage_backtest_calibrate,
    "floor": _baseline("floor"),
    "pandas": _baseline("pandas_usage_health"),
    "dlt_rows": _baseline("dlt_row_path"),
}


class TreeSampler:
    """Samples the RSS of this process's children (dbt, dlt workers) every 50 ms.

    A child's own `ru_maxrss` cannot be used: Linux counts in it the parent's memory at the fork
    before the exec, so a dbt started by a 1 GB process would report 1 GB. Sampling can miss a
    spike shorter than 50 ms; this process's own peak is exact (`ru_maxrss`).
    """

    def __init__(self, interval: float = 0.05):
        import threading

        self.interval = interval
        self.children_peak = 0
        self.tree_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                children = 0
                for child in me.children(recursive=True):
                    try:
                        children += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.children_peak = max(self.children_peak, children)
                self.tree_peak = max(self.tree_peak, children + me.memory_info().rss)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


BASELINES = ("floor", "pandas", "dlt_rows")  # need no Dagster


def main(argv: list[str]) -> int:
    stage, args, out = argv[0], json.loads(argv[1]), Path(argv[2])
    import warnings

    warnings.filterwarnings("ignore")
    if stage not in BASELINES:
        import cs_pipeline.definitions  # noqa: F401 - imports paid before the clock starts

    rss_start = psutil.Process().memory_info().rss
    with TreeSampler() as sampler:
        result = STAGES[stage](args)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result.update({
        "stage": stage,
        "peak_rss_mb": round(self_peak / 2**20, 1),
        "child_peak_rss_mb": round(sampler.children_peak / 2**20, 1),
        "tree_peak_rss_mb": round(max(self_peak, sampler.tree_peak) / 2**20, 1),
        "rss_at_start_mb": round(rss_start / 2**20, 1),
        "parts": {k: round(v, 4) for k, v in PARTS.items()},
    })
    out.write_text(json.dumps(result, default=str, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
