"""`health_backtest`: the health score and every rule checked against churn, after each run.

It is an unpartitioned asset downstream of `alerts`, so `daily_pipeline` (which selects every
asset) materializes it once at the end of each run, daily or range, after the day's alerts: the
figures are always those of the history the run just wrote, with no separate schedule or
automation daemon to keep running. It reads account_health on the observation dates (every
`every_days` days over all the history whose churn outcome is known), the outcomes mart and the
alert episodes, and writes the `evaluation.backtest_*` tables and an HTML report.

The reading functions here are shared with `cs-pipeline backtest` and `calibrate`.
"""


import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from cs_pipeline import settings
from cs_pipeline.logic.backtest import (
    BacktestError,
    BacktestResult,
    BacktestSpec,
    churn_events,
    observations,
    outcomes_known_until,
    run_backtest,
    split_censored,
    tables,
)
from cs_pipeline.logic.config import HealthModel, indicator_variables
from cs_pipeline.logic.scoring import score_health
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import POOL, WarehouseResource, query, table_exists

HEALTH = "analytics.account_health"
CONTEXT = ["partition_date", "account_id", "segment", "status", "owner_email", "has_live_term"]
ALERT_COLUMNS = "rule_id, account_id, episode_start, partition_date, owner_email"


def health_days(con) -> tuple[dt.date, dt.date]:
    """The first and last day of account_health; BacktestError when there is none."""
    if not table_exists(con, "analytics", "account_health"):
        raise BacktestError(f"the warehouse has no {HEALTH}: run the pipeline first (`cs-pipeline run`)")
    first, last = con.execute(f"SELECT min(partition_date), max(partition_date) FROM {HEALTH}").fetchone()
    if first is None:
        raise BacktestError(f"{HEALTH} is empty: run the pipeline first (`cs-pipeline run`)")
    return first, last


def read_health(con, dates: list[dt.date], model: HealthModel, columns: list[str] | None = None) -> pl.DataFrame:
    """account_health on `dates`, re-scored with `model` (the same `score_health` the pipeline runs).

    `columns`: the variables wanted besides the context and the model's own (default: every
    numeric catalog variable, for calibration)."""
    present = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analytics' AND table_name = 'account_health'"
    ).fetchall()}
    wanted = [*CONTEXT, "days_since_last_login", "events_30d", *[i.variable for i in model.indicators],
              *(columns if columns is not None else indicator_variables(model))]
    needed = [*CONTEXT, "days_since_last_login", "events_30d", *[i.variable for i in model.indicators]]
    missing = [c for c in dict.fromkeys(needed) if c not in present]
    if missing:
        raise BacktestError(
            f"{HEALTH} has no column {', '.join(missing)}: re-run the pipeline over the range so it is computed"
        )
    select = ", ".join(f'"{c}"' for c in dict.fromkeys(wanted) if c in present)
    health = query(con, f"SELECT {select} FROM {HEALTH} WHERE partition_date IN (SELECT unnest(?::DATE[]))", [dates])
    return score_health(health, model)


def read_outcomes(con) -> pl.DataFrame:
    if not table_exists(con, "marts", "fct_term_outcomes"):
        raise BacktestError("the warehouse has no marts.fct_term_outcomes: run the pipeline first")
    return query(con, "SELECT account_id, outcome, outcome_date FROM marts.fct_term_outcomes")


def read_alerts(con, spec: BacktestSpec) -> pl.DataFrame:
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame(schema={"rule_id": pl.String, "account_id": pl.String, "episode_start": pl.Date,
                                    "partition_date": pl.Date, "owner_email": pl.String})
    return query(con, f"SELECT {ALERT_COLUMNS} FROM analytics.alert_events WHERE episode_start BETWEEN ? AND ?",
                 [spec.first, spec.last])


def known_until(con, today: dt.date) -> dt.date:
    return outcomes_known_until(today, health_days(con)[1])


def check_range(con, spec: BacktestSpec) -> None:
    first, last = health_days(con)
    if spec.last < first or spec.first > last:
        raise BacktestError(f"--from {spec.first} --to {spec.last} is outside the data: {HEALTH} holds {first} .. {last}")


def backtest(con, spec: BacktestSpec, model: HealthModel, today: dt.date, rule_ids: list[str] = ()) -> BacktestResult:
    """The backtest of `model` and of the stored alerts, from the warehouse."""
    check_range(con, spec)
    until = known_until(con, today)
    kept, _ = split_censored(spec, until)
    health = read_health(con, kept or spec.dates, model, columns=[])
    return run_backtest(health, read_outcomes(con), read_alerts(con, spec), spec, until, rule_ids)


def labelled_observations(con, spec: BacktestSpec, model: HealthModel, today: dt.date) -> pl.DataFrame:
    """Live accounts on the kept observation dates with every catalog variable and `churned` (for calibrate)."""
    check_range(con, spec)
    until = known_until(con, today)
    kept, _ = split_censored(spec, until)
    if not kept:
        raise BacktestError(
            f"no observation date in {spec.first} .. {spec.last} has a known outcome: churns are known up to {until}"
        )
    return observations(read_health(con, kept, model), churn_events(read_outcomes(con)), kept, spec)


class BacktestConfig(dg.Config):
    every_days: int = 15
    lead_min_days: int = 30
    lead_max_days: int = 90


def report_path() -> Path:
    return settings.warehouse_path().parent / "reports" / "health_backtest.html"


def _write_tables(con, result: BacktestResult) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS evaluation")
    for name, frame in tables(result, {"computed_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}).items():
        con.register("_backtest", frame.to_arrow())
        try:
            con.execute(f"CREATE OR REPLACE TABLE evaluation.{name} AS SELECT * FROM _backtest")
        finally:
            con.unregister("_backtest")


@dg.asset(
    description="The health score (AUC against days since last login and 30-day events, lift by decile, churn by "
    "band and segment) and every rule (precision, share of churners warned 30+ days ahead, lead time, alerts per CSM "
    "per week) checked against churn from marts.fct_term_outcomes; tables in schema evaluation and an HTML report.",
    group_name="evaluation",
    kinds={"polars", "duckdb"},
    deps=["alerts", dg.AssetKey(["marts", "fct_term_outcomes"])],
    pool=POOL,
)
def health_backtest(context: dg.AssetExecutionContext, config: BacktestConfig, warehouse: WarehouseResource,
                    cs_config: PipelineConfig) -> dg.MaterializeResult:
    model = cs_config.health_model()
    rules = cs_config.rules(model)
    today = settings.today()
    with warehouse.connect() as con:
        try:
            first, last = health_days(con)
            spec = BacktestSpec(first, last, config.every_days, config.lead_min_days, config.lead_max_days)
            result = backtest(con, spec, model, today, [r.id for r in rules.rules])
        except BacktestError as error:
            # Too little history is a state, not a failure: the run that wrote it succeeded.
            context.log.info(f"health_backtest: {error}")
            return dg.MaterializeResult(metadata={"status": dg.MetadataValue.text(f"not computed: {error}")})
        _write_tables(con, result)
    from cs_pipeline.logic.report import write_report  # altair: imported by the step that draws, not by every process

    path = write_report(report_path(), result)
    summary = result.summary()
    rules_md = "| rule | alerts | precision | warned 30d+ | median lead (days) | per CSM/week |\n|---|---:|---:|---:|---:|---:|\n" + "\n".join(
        f"| {r['rule_id']} | {r['alerts']} | {_pct(r['precision'])} | {_pct(r['warned_share'])} | "
        f"{'' if r['median_lead_days'] is None else round(r['median_lead_days'])} | "
        f"{'' if r['alerts_per_csm_week'] is None else round(r['alerts_per_csm_week'], 2)} |"
        for r in result.rules.to_dicts()
    )
    return dg.MaterializeResult(
        metadata={
            "status": "computed",
            "auc_model": _num(result.auc["model"]),
            "auc_days_since_last_login": _num(result.auc["days_since_last_login"]),
            "auc_events_30d": _num(result.auc["events_30d"]),
            "observation_dates": len(result.dates),
            "censored_dates": len(result.censored),
            "observations": result.observations,
            "churned_accounts": result.churners,
            "rules": dg.MetadataValue.md(rules_md),
            "summary": dg.MetadataValue.json(summary),
            "report": dg.MetadataValue.path(str(path)),
            "report_link": dg.MetadataValue.url(path.resolve().as_uri()),
        }
    )


def _num(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(value, 4)) if value is not None else dg.MetadataValue.text("n/a")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
