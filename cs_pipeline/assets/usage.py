"""`account_daily_usage`: per account and day, activity, seats and rolling windows (polars)."""


import datetime as dt

import dagster as dg
import polars as pl

from cs_pipeline.assets.common import daily_asset, per_partition_result, table_preview
from cs_pipeline.logic.config import event_column
from cs_pipeline.logic.usage import WINDOWS, account_daily_usage as compute_usage, window_sums_sql, window_users_sql
from cs_pipeline.partitions import days, run_dates
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import WarehouseResource, query, replace_date_range

TABLE = "analytics.account_daily_usage"
ACCOUNT_DAYS = "marts.fct_account_daily_activity"
USER_MONTHS = "marts.fct_user_monthly_activity"
LOOKBACK = max(WINDOWS) - 1
# events_prev_30d reads the 30 days before the 30-day window.
PREVIOUS_LOOKBACK = 2 * max(WINDOWS) - 1
VALID_IN_RUN = "valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"


def _check_event_columns(con, columns: list[str], first: dt.date, end: dt.date) -> None:
    """Every product event of the health model has its count column, filled on every day read.

    dbt adds the column of an event added to the health model on its next run; the days built
    before hold NULL there, and summing them as zeros would understate the 30-day counts."""
    present = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
            "AND table_name = 'fct_account_daily_activity'"
        ).fetchall()
    }
    missing = [c for c in columns if c not in present]
    if missing:
        raise dg.Failure(
            f"{ACCOUNT_DAYS} has no column {', '.join(missing)} for the health model's product events: "
            "materialize dbt_daily_models for these days first"
        )
    if not columns:
        return
    unfilled = con.execute(
        f"SELECT min(activity_date), max(activity_date) FROM {ACCOUNT_DAYS} WHERE activity_date BETWEEN ? AND ? AND ("
        + " OR ".join(f"{c} IS NULL" for c in columns) + ")",
        [first, end],
    ).fetchone()
    if unfilled and unfilled[0] is not None:
        raise dg.Failure(
            f"{ACCOUNT_DAYS} was built for {unfilled[0]} .. {unfilled[1]} before a product event was added to the "
            f"health model ({', '.join(columns)}): re-run dbt_daily_models (and this asset) for those days"
        )


@daily_asset(
    description="Per account and UTC day: active users, logins, events per product event, rolling 7/30-day "
    "figures, days since last login, license activation, deployment and utilization rates.",
    group_name="analytics",
    deps=[
        *[
            dg.AssetDep(
                dg.AssetKey(["marts", mart]),
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-PREVIOUS_LOOKBACK, allow_nonexistent_upstream_partitions=True),
            )
            for mart in ("fct_account_daily_activity", "fct_user_monthly_activity")
        ],
        dg.AssetKey(["marts", "dim_accounts"]),
        dg.AssetKey(["staging", "stg_raw__users"]),
        dg.AssetKey(["marts", "dim_accounts_history"]),
        dg.AssetKey(["marts", "dim_users_history"]),
    ],
)
def account_daily_usage(context: dg.AssetExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig) -> dg.MaterializeResult:
    start, end = run_dates(context)
    model = cs_config.health_model()
    first = start - dt.timedelta(days=LOOKBACK)
    event_columns = [event_column(e) for e in dict.fromkeys(model.product.events)]
    with warehouse.connect() as con:
        # The versions valid on some day of the run: each day reads its licenses and users.
        accounts = query(con, f"SELECT account_id, licenses, valid_from, valid_to FROM marts.dim_accounts_history WHERE {VALID_IN_RUN}", [end, start])
        users = query(
            con,
            "SELECT account_id, created_at, activated_at, deactivated_at, valid_from, valid_to "
            f"FROM marts.dim_users_history WHERE {VALID_IN_RUN}",
            [end, start],
        )
        _check_event_columns(con, event_columns, first, end)
        dates = days(start, end)
        account_days = query(
            con,
            "SELECT activity_date, account_id, active_users, logins, events"
            + "".join(f", {c}" for c in event_columns)
            + f" FROM {ACCOUNT_DAYS} WHERE activity_date BETWEEN ? AND ?",
            [start, end],
        )
        window_sums = query(con, *window_sums_sql(dates, model.product.events, ACCOUNT_DAYS))
        window_users = query(con, *window_users_sql(dates, USER_MONTHS))
        # Days with a login in the run, plus each account's last login before it (one narrow
        # row per account and day of history: the only read that grows with the days kept).
        login_days = query(
            con,
            f"SELECT account_id, activity_date FROM {ACCOUNT_DAYS} WHERE logins > 0 AND activity_date BETWEEN ? AND ? "
            f"UNION ALL SELECT account_id, max(activity_date) FROM {ACCOUNT_DAYS} "
            "WHERE logins > 0 AND activity_date < ? GROUP BY account_id",
            [start, end, start],
        )
        usage = compute_usage(
            dates, accounts, users, account_days, window_sums, window_users, login_days,
            model.product.events, model.product.key_features,
        )
        replace_date_range(con, TABLE, usage, start, end)
    context.log.info(f"{TABLE}: {usage.height} rows for {start} .. {end}")
    by_day = {
        day: {
            "dagster/row_count": usage.filter(pl.col("partition_date") == day).height,
            "preview": table_preview(usage.filter(pl.col("partition_date") == day)),
        }
        for day in dates
    }
    # The rows the run read belong to the run, not to a day: they are on each of its partitions.
    return per_partition_result(
        context, by_day, {"table": TABLE, "run_days": len(dates), "window_rows": window_sums.height + window_users.height}
    )
