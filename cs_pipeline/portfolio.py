"""Reading the portfolio view's inputs from the warehouse, for the report, the portfolio assets
and the weekly digest (one place that knows which tables they come from).

    marts.kpi_retention_monthly, marts.kpi_nps_monthly, marts.fct_term_outcomes   (dbt)
    analytics.account_health, analytics.alert_events                            (Dagster assets)
    actions.tasks        the tasks (a read copy when the actions store lives elsewhere)
    evaluation.*         the health-model backtest, when it has run

A missing table is an empty frame, so a young warehouse still gets a report.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import polars as pl

from cs_pipeline.logic.portfolio import (
    FOLLOW_THROUGH_DAYS, ReportData, follow_through, portfolio_map, renewal_pipeline, trailing_retention,
)
from cs_pipeline.resources.warehouse import WarehouseResource, query, table_exists

# The completion time of a done task, by the first of these columns actions.tasks has (the actions
# store stamps `updated_at` when a task's status changes).
DONE_AT_COLUMNS = ("done_at", "completed_at", "updated_at")
# The backtest's tables (branch backtest: evaluation.backtest_*), the headline first.
BACKTEST_HEADLINES = ("backtest_auc", "backtest_bands")
TASK_SCHEMA = {"task_id": pl.String, "alert_id": pl.String, "due_date": pl.Date, "status": pl.String,
               "created_at": pl.Datetime("us"), "done_at": pl.Datetime("us")}
ALERT_SCHEMA = {"alert_id": pl.String, "episode_start": pl.Date, "owner_email": pl.String, "segment": pl.String,
                "partition_date": pl.Date}
AUDIENCE_ALL = "all"


def table_or_empty(con, name: str, sql: str, params: list | None = None, schema: dict | None = None) -> pl.DataFrame:
    schema_name, table = name.split(".")
    if not table_exists(con, schema_name, table):
        return pl.DataFrame(schema=schema or {})
    return query(con, sql, params or [])


def latest_health_day(con, on_or_before: dt.date | None = None) -> dt.date | None:
    if not table_exists(con, "analytics", "account_health"):
        return None
    row = con.execute(
        "SELECT max(partition_date) FROM analytics.account_health WHERE partition_date <= coalesce(?, DATE '9999-12-31')",
        [on_or_before],
    ).fetchone()
    return row[0] if row else None


def health_of(con, days: list[dt.date]) -> pl.DataFrame:
    return table_or_empty(
        con, "analytics.account_health",
        "SELECT partition_date, account_id, name, segment, owner_email, status, deployment_rate, utilization_rate, "
        "arr, band, score, has_live_term, days_since_last_touch, days_to_renewal, contract_end_date "
        "FROM analytics.account_health WHERE partition_date IN (SELECT unnest(?::DATE[]))",
        [days],
    )


def tasks(con) -> pl.DataFrame:
    """actions.tasks with `done_at`: the store's completion time when it records one, else NULL."""
    if not table_exists(con, "actions", "tasks"):
        return pl.DataFrame(schema=TASK_SCHEMA)
    columns = {r[0] for r in con.execute("DESCRIBE actions.tasks").fetchall()}
    done_at = next((c for c in DONE_AT_COLUMNS if c in columns), None)
    done = f'CAST("{done_at}" AS TIMESTAMP)' if done_at else "CAST(NULL AS TIMESTAMP)"
    return query(con, f"SELECT task_id, alert_id, due_date, status, CAST(created_at AS TIMESTAMP) AS created_at, "
                      f"{done} AS done_at FROM actions.tasks")


def alerts_for_follow_through(con, day: dt.date, window_days: int = FOLLOW_THROUGH_DAYS) -> pl.DataFrame:
    first = day - dt.timedelta(days=window_days - 1)
    return table_or_empty(
        con, "analytics.alert_events",
        "SELECT alert_id, episode_start, owner_email, segment, partition_date FROM analytics.alert_events "
        "WHERE partition_date BETWEEN ? AND ? AND episode_start >= ?",
        [first, day, first], ALERT_SCHEMA,
    )


def term_outcomes(con) -> pl.DataFrame:
    return table_or_empty(con, "marts.fct_term_outcomes",
                  "SELECT account_id, end_date, arr, next_arr, arr_change, outcome, outcome_date FROM marts.fct_term_outcomes")


def kpis(con, table: str, audience: str = AUDIENCE_ALL) -> pl.DataFrame:
    """A KPI mart's rows for everyone (`all`), or for one segment (`segment:enterprise`) or CSM (`owner:ana@…`)."""
    segment, owner = AUDIENCE_ALL, AUDIENCE_ALL
    if audience.startswith("segment:"):
        segment = audience.split(":", 1)[1]
    elif audience.startswith("owner:"):
        owner = audience.split(":", 1)[1]
    return table_or_empty(con, f"marts.{table}", f"SELECT * FROM marts.{table} WHERE segment = ? AND owner_email = ? ORDER BY period_month",
                  [segment, owner])


def backtest_headline(con) -> tuple[pl.DataFrame | None, str]:
    """The backtest's headline, when its tables exist: evaluation.backtest_auc (else _bands, else a
    table named like a summary or headline, else the first); (None, "") when there is none."""
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'evaluation' ORDER BY table_name").fetchall()]
    if not names:
        return None, ""
    chosen = next((n for n in (*BACKTEST_HEADLINES, *names) if n in names and (n in BACKTEST_HEADLINES or "summary" in n
                                                                           or "headline" in n)), names[0])
    return query(con, f'SELECT * FROM evaluation."{chosen}" LIMIT 10'), f"evaluation.{chosen}"


def report_data(con, day: dt.date, untouched_days: int) -> ReportData:
    health = health_of(con, [day])
    backtest, source = backtest_headline(con)
    return ReportData(
        day=day,
        retention=kpis(con, "kpi_retention_monthly"),
        nps=kpis(con, "kpi_nps_monthly"),
        points=portfolio_map(health, untouched_days) if health.height else pl.DataFrame(schema={"untouched": pl.Boolean, "arr": pl.Float64}),
        pipeline=renewal_pipeline(health) if health.height else pl.DataFrame(
            schema={"at_risk": pl.Boolean, "arr": pl.Float64, "days_to_renewal": pl.Int64}),
        follow_through=follow_through(alerts_for_follow_through(con, day), tasks(con), day),
        trailing=trailing_retention(term_outcomes(con), day) if table_exists(con, "marts", "fct_term_outcomes") else {},
        untouched_days=untouched_days,
        backtest=backtest,
        backtest_source=source,
        backtest_report=_backtest_report(),
    )


def _backtest_report() -> str:
    """The backtest's HTML report (branch backtest writes reports/health_backtest.html beside the warehouse)."""
    from cs_pipeline import settings

    path = settings.warehouse_path().parent / "reports" / "health_backtest.html"
    return path.as_uri() if path.exists() else ""


def write_atomically(path: Path, content: str | bytes) -> Path:
    """Write `content` to `path` through a temporary file, so a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_report(warehouse: Path, out: Path | None, day: dt.date | None, untouched_days: int) -> tuple[Path, dt.date, int]:
    """`cs-pipeline report`: the report of `day` (default: the latest day with health) to `out`
    (default: reports/portfolio-report.html beside the warehouse). Returns (path, day, bytes)."""
    from cs_pipeline.logic.portfolio_report import render_report

    with WarehouseResource(path=str(warehouse)).connect(read_only=True) as con:
        chosen = day or latest_health_day(con)
        if chosen is None:
            raise FileNotFoundError(f"warehouse {warehouse} has no analytics.account_health yet: run the pipeline first")
        page = render_report(report_data(con, chosen, untouched_days))
    path = write_atomically(out or warehouse.parent / "reports" / "portfolio-report.html", page)
    return path, chosen, len(page.encode("utf-8"))
