"""`account_daily_usage`: per account and day, activity, seats and rolling windows (polars)."""


import datetime as dt

import dagster as dg

from cs_pipeline.assets.common import daily_asset, table_preview
from cs_pipeline.logic.usage import WINDOWS, account_daily_usage as compute_usage
from cs_pipeline.partitions import days, run_dates
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import WarehouseResource, query, replace_date_range

TABLE = "analytics.account_daily_usage"
LOOKBACK = max(WINDOWS) - 1


@daily_asset(
    description="Per account and UTC day: active users, logins, events per product event, rolling 7/30-day "
    "figures, days since last login, license activation, deployment and utilization rates.",
    group_name="analytics",
    deps=[
        dg.AssetDep(
            dg.AssetKey(["marts", "fct_user_daily_activity"]),
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK, allow_nonexistent_upstream_partitions=True),
        ),
        dg.AssetKey(["marts", "dim_accounts"]),
        dg.AssetKey(["staging", "stg_raw__users"]),
    ],
)
def account_daily_usage(context: dg.AssetExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig) -> dg.MaterializeResult:
    start, end = run_dates(context)
    model = cs_config.health_model()
    with warehouse.connect() as con:
        accounts = query(con, "SELECT account_id, licenses FROM marts.dim_accounts")
        users = query(con, "SELECT account_id, created_at, activated_at, deactivated_at FROM staging.stg_raw__users")
        activity = query(
            con,
            "SELECT activity_date, account_id, user_id, event, event_count FROM marts.fct_user_daily_activity "
            "WHERE activity_date BETWEEN ? AND ?",
            [start - dt.timedelta(days=LOOKBACK), end],
        )
        # Days with a login in the run, plus each account's last login before it: enough for the
        # as-of join, and it does not grow with the history kept.
        login_days = query(
            con,
            "SELECT DISTINCT account_id, activity_date FROM marts.fct_user_daily_activity "
            "WHERE event = 'login' AND activity_date BETWEEN ? AND ? "
            "UNION ALL SELECT account_id, max(activity_date) FROM marts.fct_user_daily_activity "
            "WHERE event = 'login' AND activity_date < ? GROUP BY account_id",
            [start, end, start],
        )
        usage = compute_usage(days(start, end), accounts, users, activity, login_days, model.product.events, model.product.key_features)
        replace_date_range(con, TABLE, usage, start, end)
    context.log.info(f"{TABLE}: {usage.height} rows for {start} .. {end}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": usage.height,
            "table": TABLE,
            "days": (end - start).days + 1,
            "accounts": accounts.height,
            "activity_rows_read": activity.height,
            "preview": table_preview(usage.filter(usage["partition_date"] == end)),
        }
    )
