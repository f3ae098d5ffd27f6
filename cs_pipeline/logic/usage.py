"""Per-account daily usage (CONTRACT.md §2, `account_daily_usage`), as polars expressions.

Everything is built from two small daily marts that dbt keeps, never by rescanning raw events
or per-user rows, so a day's cost does not grow with the history kept:

- `marts.fct_account_daily_activity`: per account and day, active users, logins, events and a
  count per product event. A day's figures are its row; the 7- and 30-day sums add up 7 or 30
  rows per account (`window_sums_sql`).
- `marts.fct_user_monthly_activity`: per user and month, a bitmask of the days with activity.
  Distinct active users over a window are the users with a bit set inside it, in at most two
  months: one row per user instead of one per user, day and event (`window_users_sql`).

The two window aggregates run in DuckDB, next to their rows (a polars group-by on the same rows
cost twice as much, most of it moving them out of the warehouse); polars joins them with the
day's figures, seats and last login and derives the rates.

Every figure is "as of the end of D": nothing after D is used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from cs_pipeline.logic.config import event_column
from cs_pipeline.logic.history import as_of, seats
from cs_pipeline.logic.latest import latest_on_or_before

WINDOWS = (7, 30)
DAY = dt.timedelta(days=1)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def window_bits(month: dt.date, first: dt.date, last: dt.date) -> int:
    """The bits of `fct_user_monthly_activity.active_days` for the days of [first, last] in `month`."""
    next_month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    lo, hi = max(first, month), min(last, next_month - DAY)
    if lo > hi:
        return 0
    return ((1 << (hi.day - lo.day + 1)) - 1) << (lo.day - 1)


def window_sums_sql(dates: Sequence[dt.date], events: Sequence[str], table: str) -> tuple[str, list]:
    """SQL (and its parameters) for the logins, events and product-event counts summed over each
    window to each day of `dates`, from `table` (fct_account_daily_activity's columns), and
    `events_prev_30d`: the events of the 30 days before the 30-day window (days D-59..D-30).

    DuckDB sums them where the rows are: the window rows stay in the warehouse, and only one row
    per account and day reaches polars."""
    longest = max(WINDOWS)
    sums = []
    for days in WINDOWS:
        per_event = [event_column(e) for e in dict.fromkeys(events)] if days == longest else []
        sums += [
            f"(sum(d.{c}) FILTER (WHERE d.activity_date > {{day}} - {days}))::BIGINT AS {c}_{days}d"
            for c in ["logins", "events", *per_event]
        ]
    if len(dates) == 1:
        # The daily run (one day) needs no join: the day is a constant, and grouping by the account
        # alone is twice as fast as by (day, account) after a join. It scans both 30-day windows.
        day = f"DATE '{dates[0].isoformat()}'"
        previous = f"(sum(d.events) FILTER (WHERE d.activity_date <= {day} - {longest}))::BIGINT AS events_prev_{longest}d"
        sql = (
            f"SELECT {day} AS partition_date, d.account_id, {', '.join(s.format(day=day) for s in sums)}, {previous} "
            f"FROM {table} AS d WHERE d.activity_date BETWEEN ? AND ? GROUP BY d.account_id"
        )
        return sql, [dates[0] - dt.timedelta(days=2 * longest - 1), dates[0]]
    # A range: the 30-day sums for each day and for each day 30 days before it; the previous
    # window is the 30-day sum of D-30 (a self-join, not a second 30-row scan per day).
    wanted = sorted(set(dates))
    extended = sorted(set(wanted) | {d - dt.timedelta(days=longest) for d in wanted})
    bounds = [min(extended) - dt.timedelta(days=longest - 1), max(extended)]
    names = [s.rsplit(" AS ", 1)[1] for s in sums]
    # Inside the join every row is in the 30-day window: its sums need no filter.
    sums = [s if not s.endswith(f"_{longest}d") else s.replace(f" FILTER (WHERE d.activity_date > {{day}} - {longest})", "")
            for s in sums]
    sql = (
        "WITH w AS (SELECT unnest(?::DATE[]) AS partition_date), "
        f"sums AS (SELECT w.partition_date, d.account_id, {', '.join(s.format(day='w.partition_date') for s in sums)} "
        f"FROM w JOIN {table} AS d ON d.activity_date BETWEEN w.partition_date - {longest - 1} AND w.partition_date "
        "WHERE d.activity_date BETWEEN ? AND ? GROUP BY w.partition_date, d.account_id), "
        f"prev AS (SELECT partition_date + {longest} AS partition_date, account_id, events_{longest}d AS events_prev_{longest}d FROM sums) "
        f"SELECT partition_date, account_id, {', '.join(names)}, prev.events_prev_{longest}d "
        "FROM sums FULL JOIN prev USING (partition_date, account_id) "
        "WHERE partition_date IN (SELECT unnest(?::DATE[]))"
    )
    return sql, [extended, *bounds, wanted]


def window_users_sql(dates: Sequence[dt.date], table: str) -> tuple[str, list]:
    """SQL (and its parameters) for the distinct users active in each window to each day of
    `dates`, from `table` (fct_user_monthly_activity's columns): the users with a bit inside the
    window in either of its months.

    Counted in DuckDB: the user-month rows (1.4M string ids at 1M users) never leave the
    warehouse, which halves the cost of reading them and counting in polars."""
    rows = []
    longest = max(WINDOWS)
    for day in dates:
        first = {days: day - dt.timedelta(days=days - 1) for days in WINDOWS}
        for month in sorted({month_start(first[longest]), month_start(day)}):
            rows.append((day, month, *[window_bits(month, first[days], day) for days in WINDOWS]))
    columns = [list(column) for column in zip(*rows)]
    # Per user first (was the user active in each window, in either month), then per account:
    # twice as fast as count(DISTINCT user_id) over the same rows.
    flags = ", ".join(f"bool_or(m.active_days & w.bits_{days} <> 0) AS in_{days}" for days in WINDOWS)
    counts = ", ".join(f"count(*) FILTER (WHERE in_{days})::BIGINT AS active_users_{days}d" for days in WINDOWS)
    sql = (
        "WITH w AS (SELECT unnest(?::DATE[]) AS partition_date, unnest(?::DATE[]) AS activity_month, "
        + ", ".join(f"unnest(?::BIGINT[]) AS bits_{days}" for days in WINDOWS)
        + f"), per_user AS (SELECT w.partition_date, m.account_id, m.user_id, {flags} "
        f"FROM w JOIN {table} AS m USING (activity_month) WHERE m.active_days & w.bits_{longest} <> 0 "
        "GROUP BY w.partition_date, m.account_id, m.user_id) "
        f"SELECT partition_date, account_id, {counts} FROM per_user GROUP BY partition_date, account_id"
    )
    return sql, columns


def _day_figures(account_days: pl.LazyFrame, events: Sequence[str]) -> pl.LazyFrame:
    """Each day's own figures, keyed like the usage rows."""
    day_columns = ["active_users", "logins", "events", *[event_column(e) for e in events]]
    return account_days.select(pl.col("activity_date").alias("partition_date"), "account_id", *day_columns)


def _last_login(frame: pl.LazyFrame, login_days: pl.LazyFrame, dates: Sequence[dt.date]) -> pl.LazyFrame:
    """The latest day with a login on or before D, from all history (no scan per day)."""
    last = latest_on_or_before(login_days, "activity_date", dates, ["activity_date"]).rename({"activity_date": "last_login_date"})
    return frame.join(last, on=["account_id", "partition_date"], how="left").with_columns(
        (pl.col("partition_date") - pl.col("last_login_date")).dt.total_days().alias("days_since_last_login")
    )


def _rates(key_features: Sequence[str]) -> list[pl.Expr]:
    licenses = pl.col("licenses")
    used = [(pl.col(event_column(k) + "_30d") > 0).cast(pl.Int64) for k in key_features]
    key_used = pl.sum_horizontal(used) if used else pl.lit(0, pl.Int64)
    return [
        pl.when(licenses > 0).then(pl.col("activated_users") / licenses).alias("license_activation_rate"),
        pl.when(licenses > 0).then(pl.col("assigned_users") / licenses).alias("deployment_rate"),
        pl.when(pl.col("activated_users") > 0)
        .then(pl.col("active_users_30d") / pl.col("activated_users"))
        .alias("utilization_rate"),
        key_used.alias("key_features_used_30d"),
        # 30-day activity against the 30 days before: below 1 is a decline; no figure (not
        # infinity) when the earlier window had no events.
        pl.when(pl.col("events_prev_30d") > 0)
        .then(pl.col("events_30d") / pl.col("events_prev_30d"))
        .alias("activity_trend_30d"),
        (key_used == len(key_features) if key_features else pl.lit(False)).alias("all_key_features_used_30d"),
    ]


def count_columns(events: Sequence[str]) -> list[str]:
    """Every count column of account_daily_usage (zero, not null, when nothing happened)."""
    columns = ["active_users", "logins", "events", *[event_column(e) for e in events]]
    for days in WINDOWS:
        columns += [f"active_users_{days}d", f"logins_{days}d", f"events_{days}d"]
    columns += [event_column(e) + "_30d" for e in events]
    return columns + ["events_prev_30d", "assigned_users", "activated_users"]


def account_daily_usage(
    dates: Sequence[dt.date],
    accounts: pl.DataFrame,
    users: pl.DataFrame,
    account_days: pl.DataFrame,
    window_sums: pl.DataFrame,
    window_users: pl.DataFrame,
    login_days: pl.DataFrame,
    events: Sequence[str],
    key_features: Sequence[str],
) -> pl.DataFrame:
    """One row per (partition_date, account_id) for every account and every day in `dates`.

    `accounts`: account_id, licenses; `users`: account_id, created_at, activated_at,
    deactivated_at; both optionally with the days of their versions (valid_from, valid_to:
    marts.dim_accounts_history and dim_users_history), so a day reads the licenses and the
    users of the account valid on it (`logic.history`). `account_days`: rows of fct_account_daily_activity (activity_date,
    account_id, active_users, logins, events, one column per event) for the days of `dates`.
    `window_sums` and `window_users`: the results of `window_sums_sql` and `window_users_sql`
    for `dates` (partition_date, account_id and the window columns; accounts without activity
    may be absent). `login_days`: (account_id, activity_date) for every day with a login in
    `dates`, plus each account's last login before them.
    """
    events = list(dict.fromkeys(events))
    if not dates:
        return pl.DataFrame()
    # Licenses and seats as of each day: the accounts' and users' versions valid on it.
    licenses = accounts.lazy().with_columns(pl.col("licenses").cast(pl.Int64)).select(
        "account_id", "licenses", *[c for c in ("valid_from", "valid_to") if c in accounts.columns]
    )
    counts = count_columns(events)
    key = ["partition_date", "account_id"]
    frame = (
        as_of(licenses, dates)
        .join(_day_figures(account_days.lazy(), events), on=key, how="left")
        .join(seats(users.lazy(), dates), on=key, how="left")
        .join(window_sums.lazy(), on=key, how="left")
        .join(window_users.lazy(), on=key, how="left")
        .with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts)
    )
    frame = _last_login(frame, login_days.lazy(), dates).with_columns(_rates(key_features))
    ordered = [*key, *counts[:-2], "activity_trend_30d", "last_login_date", "days_since_last_login",
               "licenses", "assigned_users", "activated_users", "license_activation_rate", "deployment_rate",
               "utilization_rate", "key_features_used_30d", "all_key_features_used_30d"]
    return frame.select(ordered).sort(key).collect()
