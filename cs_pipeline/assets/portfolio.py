"""The portfolio view: the deployment x utilization map, the renewal pipeline and alert
follow-through per day (group `portfolio`), and the daily HTML report (group `reporting`).

The figures come from cs_pipeline/logic/portfolio.py; the inputs from cs_pipeline/portfolio.py.
"""

import datetime as dt

import dagster as dg
import polars as pl

from cs_pipeline import settings
from cs_pipeline.assets.common import daily_asset, table_preview, unique_rows_check
from cs_pipeline.logic.portfolio import follow_through, portfolio_map as compute_map, renewal_pipeline as compute_pipeline
from cs_pipeline.partitions import days, run_dates
from cs_pipeline.portfolio import alerts_for_follow_through, health_of, report_data, tasks, write_atomically
from cs_pipeline.resources.warehouse import WarehouseResource, replace_date_range

MAP_TABLE = "analytics.portfolio_map"
PIPELINE_TABLE = "analytics.renewal_pipeline"
FOLLOW_THROUGH_TABLE = "analytics.alert_follow_through"
KPI_MARTS = [dg.AssetKey(["marts", "kpi_retention_monthly"]), dg.AssetKey(["marts", "kpi_nps_monthly"])]


@daily_asset(
    description="Per live account and day: deployment and utilization rate (the two axes of the portfolio map), "
    "ARR, band, and whether a CSM touched it in the last CS_PIPELINE_UNTOUCHED_DAYS (30) days.",
    group_name="portfolio",
    deps=["account_health"],
    check_specs=[dg.AssetCheckSpec("one_row_per_account_day", asset="portfolio_map", description="(partition_date, account_id) is unique.")],
)
def portfolio_map(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    start, end = run_dates(context)
    untouched = settings.untouched_days()
    with warehouse.connect() as con:
        points = compute_map(health_of(con, days(start, end)), untouched)
        replace_date_range(con, MAP_TABLE, points, start, end)
    last = points.filter(pl.col("partition_date") == end)
    quadrants = last.group_by("quadrant").len().sort("quadrant")
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": points.height, "table": MAP_TABLE, "untouched_after_days": untouched,
        "untouched_on_last_day": int(last["untouched"].sum()),
        "quadrants_on_last_day": dg.MetadataValue.json(dict(zip(quadrants["quadrant"].to_list(), quadrants["len"].to_list()))),
    })
    yield unique_rows_check(points, "one_row_per_account_day", ["partition_date", "account_id"])


@daily_asset(
    description="Per day: the live terms ending in the next 90 and 180 days, with the account's band that day.",
    group_name="portfolio",
    deps=["account_health"],
)
def renewal_pipeline(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    start, end = run_dates(context)
    with warehouse.connect() as con:
        pipeline = compute_pipeline(health_of(con, days(start, end)))
        replace_date_range(con, PIPELINE_TABLE, pipeline, start, end)
    last = pipeline.filter(pl.col("partition_date") == end)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": pipeline.height, "table": PIPELINE_TABLE,
        "renewals_in_90_days": last.filter(pl.col("days_to_renewal") <= 90).height,
        "at_risk_on_last_day": last.filter(pl.col("at_risk")).height,
        "arr_at_risk_on_last_day": float(last.filter(pl.col("at_risk"))["arr"].sum()),
        "preview": table_preview(last.sort("at_risk", "arr", descending=True)),
    })


@daily_asset(
    description="Per CSM and day: alerts opened in the 90 days to the day, their tasks done, the share done by the "
    "due date, the median time to done, and open tasks past due (from alert_events and actions.tasks).",
    group_name="portfolio",
    deps=["alerts"],
)
def alert_follow_through(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    start, end = run_dates(context)
    with warehouse.connect() as con:
        task_rows = tasks(con)
        frames = [follow_through(alerts_for_follow_through(con, day), task_rows, day) for day in days(start, end)]
        rows = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
        if rows.height:
            replace_date_range(con, FOLLOW_THROUGH_TABLE, rows, start, end)
    last = rows.filter(pl.col("partition_date") == end) if rows.height else rows
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows.height, "table": FOLLOW_THROUGH_TABLE,
        "preview": table_preview(last) if last.height else dg.MetadataValue.md("(no alerts in the window)"),
    })


def report_path(day: dt.date) -> str:
    return str(settings.reports_dir() / f"portfolio-report-{day}.html")


@daily_asset(
    description="The portfolio report of the day as one self-contained HTML file: KPI trends, the portfolio map, "
    "the renewal pipeline, alert follow-through and the backtest headline. A range run writes its last day.",
    group_name="reporting",
    deps=["portfolio_map", "renewal_pipeline", "alert_follow_through", *KPI_MARTS],
)
def portfolio_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    _, end = run_dates(context)
    with warehouse.connect() as con:
        data = report_data(con, end, settings.untouched_days())
    from cs_pipeline.logic.portfolio_report import chart_names, render_report  # altair: only the step that draws needs it

    page = render_report(data)
    path = write_atomically(settings.reports_dir() / f"portfolio-report-{end}.html", page)
    context.log.info(f"portfolio report for {end}: {path}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "url": dg.MetadataValue.url(path.as_uri()),
        "charts": dg.MetadataValue.json(chart_names(page)),
        "bytes": len(page.encode("utf-8")),
        "live_accounts": data.points.height,
    })
