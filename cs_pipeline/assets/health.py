"""`account_health`: the 0-4 score from the health model, its trend, and the context rules use."""


import dagster as dg
import polars as pl

from cs_pipeline.assets.common import daily_asset, per_partition_result, table_preview, unique_rows_check
from cs_pipeline.logic.health import TREND_DAYS, account_health as compute_health, dates_needed
from cs_pipeline.partitions import days, run_dates
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import WarehouseResource, query, replace_date_range

TABLE = "analytics.account_health"


def day_figures(health: pl.DataFrame, day) -> dict:
    """The metadata of one partition: its rows, bands and mean score, the lowest scores first."""
    on_day = health.filter(pl.col("partition_date") == day)
    bands = on_day.group_by("band").len().sort("band").to_dict(as_series=False)
    mean = on_day["score"].mean()
    return {
        "dagster/row_count": on_day.height,
        "bands": dg.MetadataValue.json({str(b): n for b, n in zip(bands["band"], bands["len"])}),
        "mean_score": round(float(mean), 3) if mean is not None else None,
        "preview": table_preview(
            on_day.sort("score", nulls_last=True).select(
                "partition_date", "account_id", "name", "segment", "score", "band", "score_change_30d",
                "days_since_last_login", "utilization_rate", "license_activation_rate", "open_high_priority_tickets", "latest_nps",
            )
        ),
    }


@daily_asset(
    description="Per account and UTC day: health score (0-4) and band from the health model, each indicator's "
    "points and contribution, the change versus 7 and 30 days earlier, and the contract, NPS, ticket and "
    "CSM-touch context that rules use. Each day reads the account's attributes valid on it and its status on it "
    "(from contract terms before the load that reported one).",
    group_name="analytics",
    deps=[
        dg.AssetDep(
            "account_daily_usage",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-max(TREND_DAYS), allow_nonexistent_upstream_partitions=True),
        ),
        dg.AssetKey(["marts", "dim_accounts"]),
        dg.AssetKey(["marts", "dim_accounts_history"]),
        dg.AssetKey(["marts", "fct_contract_terms"]),
        dg.AssetKey(["staging", "stg_raw__nps_responses"]),
        dg.AssetKey(["staging", "stg_raw__tickets"]),
        dg.AssetKey(["staging", "stg_raw__activities"]),
    ],
    check_specs=[
        dg.AssetCheckSpec("score_within_scale", asset="account_health", description="Every score is between 0 and 4."),
        dg.AssetCheckSpec("one_row_per_account_day", asset="account_health", description="(partition_date, account_id) is unique."),
    ],
)
def account_health(context: dg.AssetExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig):
    start, end = run_dates(context)
    model = cs_config.health_model()
    dates = days(start, end)
    needed = dates_needed(dates)
    with warehouse.connect() as con:
        # Only the days scored: for one day that is D, D-7 and D-30, not the 31 days between.
        usage = query(
            con,
            "SELECT * FROM analytics.account_daily_usage WHERE partition_date BETWEEN ? AND ? "
            "AND partition_date IN (SELECT unnest(?::DATE[]))",
            [needed[0], needed[-1], needed],
        )
        # Every version valid on some day read: each day gets its own segment, owner and status.
        accounts = query(
            con,
            "SELECT account_id, name, segment, status, owner_email, plan, valid_from, valid_to, recorded_from "
            "FROM marts.dim_accounts_history WHERE valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)",
            [needed[-1], needed[0]],
        )
        terms = query(con, "SELECT account_id, start_date, end_date, arr, churned_at FROM marts.fct_contract_terms")
        nps = query(con, "SELECT account_id, submitted_at, submitted_date, score FROM staging.stg_raw__nps_responses")
        tickets = query(con, "SELECT account_id, created_at, resolved_at, priority FROM staging.stg_raw__tickets")
        activities = query(con, "SELECT account_id, occurred_at FROM staging.stg_raw__activities")
        health = compute_health(dates, usage, accounts, terms, nps, tickets, activities, model)
        replace_date_range(con, TABLE, health, start, end)
    context.log.info(f"{TABLE}: {health.height} rows for {start} .. {end}")
    yield per_partition_result(context, {day: day_figures(health, day) for day in dates}, {"table": TABLE})
    scores = health["score"].drop_nulls()
    out_of_scale = int(((scores < 0) | (scores > 4)).sum())
    yield dg.AssetCheckResult(check_name="score_within_scale", passed=out_of_scale == 0, metadata={"out_of_scale": out_of_scale})
    yield unique_rows_check(health, "one_row_per_account_day", ["partition_date", "account_id"])
