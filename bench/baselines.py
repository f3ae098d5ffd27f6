"""The baselines the pipeline is measured against, in the same run and on the same files.

- `floor`: one hand-written DuckDB query computing the day's per-account figures straight from
  the day's event files: the least work that answers "who did what on D".
- `pandas_usage_health`: what a team would write instead: account_daily_usage and
  account_health for the day in pandas, from the same inputs the pipeline's assets read (the
  daily marts fct_account_daily_activity and fct_user_monthly_activity, the snapshots), stored
  as the assets store theirs (the day's rows replaced in a DuckDB table, in one transaction; in
  a file of its own, `pandas.duckdb`, so the pipeline's tables are untouched).
- `dlt_row_path`: dlt's default path: the same day's (validated) events handed to dlt as Python
  dicts, next to the Arrow path the pipeline uses, on the same rows.

Each writes the figures it computed to `args["out_frame"]` (parquet) so the harness can check
they equal the pipeline's before it reports any ratio.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cs_pipeline import settings

DAY = dt.timedelta(days=1)


def _model():
    from cs_pipeline.logic.config import HEALTH_MODEL_FILE, load_health_model

    return load_health_model(settings.config_dir() / HEALTH_MODEL_FILE)


def _event_column(event: str) -> str:
    from cs_pipeline.logic.config import event_column

    return event_column(event)


# --- the floor ---------------------------------------------------------------------------------


def floor_sql(files: str, events: list[str]) -> str:
    per_event = "".join(
        f",\n       count(*) FILTER (WHERE event = '{e}') AS {_event_column(e)}" for e in dict.fromkeys(events)
    )
    return f"""SELECT account_id,
       count(DISTINCT user_id) AS active_users,
       count(*) FILTER (WHERE event = 'login') AS logins,
       count(*) AS events{per_event}
FROM read_parquet('{files}')
GROUP BY account_id"""


def floor(args: dict, parts: dict) -> dict:
    import duckdb

    day = dt.date.fromisoformat(args["day"])
    files = str(settings.data_dir() / "events" / f"date={day.isoformat()}" / "*.parquet")
    sql = floor_sql(files, _model().product.events)
    con = duckdb.connect()
    started = time.perf_counter()
    table = con.execute(sql).fetch_arrow_table()
    seconds = time.perf_counter() - started
    events = con.execute(f"SELECT count(*) FROM read_parquet('{files}')").fetchone()[0]
    import pyarrow.parquet as pq

    pq.write_table(table, args["out_frame"])
    return {"seconds": seconds, "rows": int(events), "rows_of": "events", "extra": {"accounts": table.num_rows, "sql": sql}}


# --- pandas ------------------------------------------------------------------------------------


def _read(con, sql: str, params: list | None = None, categorical: bool = False) -> pd.DataFrame:
    """A query as pandas; `categorical`: text columns as categories (ids repeat a lot in the
    per-user daily rows: as Python strings they would take ten times the memory)."""
    table = con.execute(sql, params or []).fetch_arrow_table()
    return table.to_pandas(strings_to_categorical=categorical)


def _dates(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column])
    return frame


def _window_bits(month: pd.Timestamp, first: pd.Timestamp, last: pd.Timestamp) -> int:
    """The active_days bits of the days [first, last] that fall in `month` (bit 0 = the 1st).

    Written again on purpose rather than imported from cs_pipeline.logic.usage: a baseline that
    shares the pipeline's code could not catch a bug in it."""
    lo, hi = max(first, month), min(last, month + pd.offsets.MonthEnd(0))
    return 0 if lo > hi else ((1 << (hi.day - lo.day + 1)) - 1) << (lo.day - 1)


def pandas_usage(day: pd.Timestamp, accounts: pd.DataFrame, users: pd.DataFrame, account_days: pd.DataFrame,
                 user_months: pd.DataFrame, login_days: pd.DataFrame, events: list[str], key_features: list[str]) -> pd.DataFrame:
    """account_daily_usage for one day, written the way a pandas user would, from the same marts."""
    events = list(dict.fromkeys(events))
    event_columns = [_event_column(e) for e in events]
    out = accounts[["account_id", "licenses"]].set_index("account_id")
    today = account_days[account_days["activity_date"] == day].set_index("account_id")
    out = out.join(today[["active_users", "logins", "events", *event_columns]], how="left")
    for days in (7, 30):
        first = day - pd.Timedelta(days=days - 1)
        window = account_days[(account_days["activity_date"] >= first) & (account_days["activity_date"] <= day)]
        summed = ["logins", "events", *(event_columns if days == 30 else [])]
        sums = window.groupby("account_id", observed=True)[summed].sum().add_suffix(f"_{days}d")
        sums.index = sums.index.astype(str)
        months = user_months["activity_month"]
        bits = months.map({m: _window_bits(m, first, day) for m in months.unique()}).astype("int64")
        active = user_months[(user_months["active_days"] & bits) != 0]
        users_in_window = active.groupby("account_id", observed=True)["user_id"].nunique().rename(f"active_users_{days}d")
        users_in_window.index = users_in_window.index.astype(str)
        out = out.join(users_in_window, how="left").join(sums, how="left")
    end = day + pd.Timedelta(days=1)
    assigned = (users["created_at"].isna() | (users["created_at"] < end)) & (
        users["deactivated_at"].isna() | (users["deactivated_at"] >= end))
    activated = assigned & users["activated_at"].notna() & (users["activated_at"] < end)
    seats = pd.DataFrame({"account_id": users["account_id"], "assigned_users": assigned, "activated_users": activated})
    before = account_days[(account_days["activity_date"] <= day - pd.Timedelta(days=30))
                          & (account_days["activity_date"] >= day - pd.Timedelta(days=59))]
    prev = before.groupby("account_id", observed=True)["events"].sum().rename("events_prev_30d")
    prev.index = prev.index.astype(str)
    out = out.join(prev, how="left")
    out = out.join(seats.groupby("account_id").sum(), how="left")
    counts = [c for c in out.columns if c != "licenses"]
    out[counts] = out[counts].fillna(0).astype("int64")
    last_login = login_days[login_days["activity_date"] <= day].groupby("account_id", observed=True)["activity_date"].max()
    last_login.index = last_login.index.astype(str)
    out["last_login_date"] = last_login
    out["days_since_last_login"] = (day - out["last_login_date"]).dt.days
    licenses = out["licenses"].astype("float64")
    out["license_activation_rate"] = (out["activated_users"] / licenses).where(licenses > 0)
    out["deployment_rate"] = (out["assigned_users"] / licenses).where(licenses > 0)
    out["utilization_rate"] = (out["active_users_30d"] / out["activated_users"]).where(out["activated_users"] > 0)
    out["activity_trend_30d"] = (out["events_30d"] / out["events_prev_30d"]).where(out["events_prev_30d"] > 0)
    used = sum((out[_event_column(k) + "_30d"] > 0).astype("int64") for k in key_features) if key_features else 0
    out["key_features_used_30d"] = used
    out["all_key_features_used_30d"] = (out["key_features_used_30d"] == len(key_features)) if key_features else False
    out["partition_date"] = day
    return out.reset_index()


def _score(frame: pd.DataFrame, model) -> pd.DataFrame:
    """points, contributions, score and band of the health model, in pandas."""
    present = pd.Series(0.0, index=frame.index)
    weights, points = {}, {}
    for ind in model.indicators:
        value = pd.to_numeric(frame[ind.variable], errors="coerce").astype("float64")
        thresholds = np.tile(np.array(ind.thresholds, dtype="float64"), (len(frame), 1))
        weight = np.full(len(frame), float(ind.weight))
        for segment, override in ind.segments.items():
            rows = (frame["segment"] == segment).to_numpy()
            if override.thresholds is not None:
                thresholds[rows] = override.thresholds
            if override.weight is not None:
                weight[rows] = override.weight
        v = value.to_numpy()[:, None]
        reached = (v >= thresholds) if ind.direction == "higher_is_better" else (v <= thresholds)
        pts = pd.Series(reached.sum(axis=1).astype("float64"), index=frame.index)
        missing = value.isna()
        pts[missing] = 0.0 if ind.missing == "zero" else np.nan
        points[ind.name], weights[ind.name] = pts, pd.Series(weight, index=frame.index)
        present += weights[ind.name].where(pts.notna(), 0.0)
    score = pd.Series(0.0, index=frame.index)
    any_present = pd.Series(False, index=frame.index)
    for ind in model.indicators:
        contribution = (weights[ind.name] * points[ind.name] / present).where(points[ind.name].notna() & (present > 0))
        frame[f"points_{ind.name}"] = points[ind.name]
        frame[f"contribution_{ind.name}"] = contribution
        score = score + contribution.fillna(0.0)
        any_present |= contribution.notna()
    frame["score"] = score.round(3).where(any_present)
    frame["band"] = np.where(frame["score"].isna(), None,
                             np.where(frame["score"] < model.bands.red, "red",
                                      np.where(frame["score"] < model.bands.yellow, "yellow", "green")))
    return frame


def pandas_health(dates: list[pd.Timestamp], usage: pd.DataFrame, accounts: pd.DataFrame, terms: pd.DataFrame,
                  nps: pd.DataFrame, tickets: pd.DataFrame, activities: pd.DataFrame, model) -> pd.DataFrame:
    """account_health for the last of `dates` (the others give the 7/30-day trend), in pandas."""
    frames = []
    first_term = terms.groupby("account_id")["start_date"].min().rename("first_term_start")
    touch_days = activities.assign(touch_date=activities["occurred_at"].dt.normalize())[["account_id", "touch_date"]]
    for day in dates:
        f = accounts.merge(usage[usage["partition_date"] == day].drop(columns="partition_date"), on="account_id", how="left")
        f["partition_date"] = day
        live = terms[(terms["start_date"] <= day) & (terms["end_date"] >= day)].sort_values("start_date", kind="stable")
        live = live.drop_duplicates("account_id", keep="last").set_index("account_id")[["end_date", "arr"]]
        live = live.rename(columns={"end_date": "contract_end_date"})
        f = f.join(first_term, on="account_id").join(live, on="account_id")
        f["has_live_term"] = f["contract_end_date"].notna()
        f["days_since_contract_start"] = (day - f["first_term_start"]).dt.days
        f["days_to_renewal"] = (f["contract_end_date"] - day).dt.days
        last_touch = touch_days[touch_days["touch_date"] <= day].groupby("account_id")["touch_date"].max()
        f["days_since_last_touch"] = (day - f["account_id"].map(last_touch)).dt.days
        answered = nps[nps["submitted_date"] <= day].sort_values("submitted_at", kind="stable")
        f["latest_nps"] = f["account_id"].map(answered.drop_duplicates("account_id", keep="last").set_index("account_id")["score"])
        today = nps[nps["submitted_date"] == day].groupby("account_id")["score"]
        f["lowest_nps_today"] = f["account_id"].map(today.min())
        f["nps_responses_today"] = f["account_id"].map(today.size()).fillna(0).astype("int64")
        end = day + pd.Timedelta(days=1)
        open_at_end = (tickets["created_at"] < end) & (tickets["resolved_at"].isna() | (tickets["resolved_at"] >= end))
        high = open_at_end & tickets["priority"].isin(["high", "urgent"])
        opened = pd.DataFrame({"account_id": tickets["account_id"], "open_tickets": open_at_end,
                               "open_high_priority_tickets": high}).groupby("account_id").sum()
        f = f.join(opened, on="account_id")
        f[["open_tickets", "open_high_priority_tickets"]] = f[["open_tickets", "open_high_priority_tickets"]].fillna(0).astype("int64")
        f = _score(f, model)
        f.loc[f["active_users"].isna(), ["score", "band"]] = None
        frames.append(f)
    result = frames[-1]
    for back, earlier in zip((7, 30), (frames[-2], frames[0])):
        result[f"score_{back}d_ago"] = result["account_id"].map(earlier.set_index("account_id")["score"]).astype("float64")
        result[f"score_change_{back}d"] = (result["score"].astype("float64") - result[f"score_{back}d_ago"]).round(3)
    return result


def _store(path: Path, day: dt.date, frames: dict[str, pd.DataFrame]) -> None:
    """Replace the day's rows of each table, in one transaction, as the assets do theirs."""
    import duckdb

    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        for table, frame in frames.items():
            con.register("_incoming", frame)
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _incoming LIMIT 0")
            con.execute(f"DELETE FROM {table} WHERE partition_date = ?", [day])
            con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")
            con.unregister("_incoming")
        con.execute("COMMIT")
    finally:
        con.close()


def pandas_usage_health(args: dict, parts: dict) -> dict:
    """Read the inputs the assets read, compute usage then health for the day in pandas, store both."""
    import duckdb

    day = pd.Timestamp(args["day"])
    model = _model()
    started = time.perf_counter()
    con = duckdb.connect(str(settings.warehouse_path()), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    d = day.date()
    accounts = _read(con, "SELECT account_id, licenses, name, segment, status, owner_email, plan FROM marts.dim_accounts")
    users = _dates(_read(con, "SELECT account_id, created_at, activated_at, deactivated_at FROM staging.stg_raw__users"),
                   "created_at", "activated_at", "deactivated_at")
    event_columns = "".join(f", {_event_column(e)}" for e in dict.fromkeys(model.product.events))
    account_days = _dates(_read(con, f"SELECT activity_date, account_id, active_users, logins, events{event_columns} "
                                     "FROM marts.fct_account_daily_activity WHERE activity_date BETWEEN ? AND ?",
                                [d - dt.timedelta(days=59), d], categorical=True), "activity_date")
    user_months = _dates(_read(con, "SELECT activity_month, account_id, user_id, active_days FROM marts.fct_user_monthly_activity "
                                    "WHERE activity_month BETWEEN ? AND ? AND active_days <> 0",
                               [(d - dt.timedelta(days=29)).replace(day=1), d.replace(day=1)], categorical=True), "activity_month")
    login_days = _dates(_read(con, "SELECT account_id, activity_date FROM marts.fct_account_daily_activity "
                                   "WHERE logins > 0 AND activity_date <= ?", [d], categorical=True), "activity_date")
    trend_days = [day - pd.Timedelta(days=30), day - pd.Timedelta(days=7)]
    earlier = _dates(_read(con, "SELECT * FROM analytics.account_daily_usage WHERE partition_date IN (?, ?)",
                           [t.date() for t in trend_days]), "partition_date", "last_login_date")
    terms = _dates(_read(con, "SELECT account_id, start_date, end_date, arr FROM marts.fct_contract_terms"), "start_date", "end_date")
    nps = _dates(_read(con, "SELECT account_id, submitted_at, submitted_date, score FROM staging.stg_raw__nps_responses"),
                 "submitted_at", "submitted_date")
    tickets = _dates(_read(con, "SELECT account_id, created_at, resolved_at, priority FROM staging.stg_raw__tickets"),
                     "created_at", "resolved_at")
    activities = _dates(_read(con, "SELECT account_id, occurred_at FROM staging.stg_raw__activities"), "occurred_at")
    con.close()
    parts["read"] = time.perf_counter() - started
    mark = time.perf_counter()
    usage = pandas_usage(day, accounts, users, account_days, user_months, login_days, model.product.events, model.product.key_features)
    parts["usage"] = time.perf_counter() - mark
    mark = time.perf_counter()
    both = pd.concat([earlier, usage.drop(columns="licenses")], ignore_index=True)
    health = pandas_health([*trend_days, day], both, accounts.drop(columns="licenses"), terms, nps, tickets, activities, model)
    parts["health"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _store(Path(args["out_frame"]).with_name("pandas.duckdb"), day.date(), {"usage": usage, "health": health})
    parts["write"] = time.perf_counter() - mark
    seconds = time.perf_counter() - started
    keep = [c for c in health.columns if c in set(usage.columns) | {"score", "band", "score_7d_ago", "score_30d_ago",
            "latest_nps", "open_tickets", "open_high_priority_tickets", "days_since_last_touch", "has_live_term",
            "days_to_renewal", "nps_responses_today"}]
    health[keep].to_parquet(args["out_frame"])
    return {"seconds": seconds, "rows": len(health), "rows_of": "account-days",
            "extra": {"account_day_rows_read": len(account_days), "user_month_rows_read": len(user_months)}}


# --- dlt's row path ----------------------------------------------------------------------------


def dlt_row_path(args: dict, parts: dict) -> dict:
    """The first `sample` valid events of the day loaded by dlt as dicts, then as one Arrow table."""
    import dlt
    import polars as pl

    from cs_pipeline.assets.ingest import _column_hints
    from cs_pipeline.logic.contract import validate
    from cs_pipeline.logic.exports import event_day_files, read_event_file

    day = dt.date.fromisoformat(args["day"])
    sample = int(args["sample"])
    paths = event_day_files(settings.data_dir(), day)
    frame = pl.concat([read_event_file(p) for p in paths], how="diagonal_relaxed").head(sample)
    valid = validate("events", frame, day=day).valid.with_columns(pl.lit(day).alias("event_date"))
    hints = {**_column_hints("events"), "event_date": {"data_type": "date", "nullable": False}}
    work = Path(tempfile.mkdtemp(prefix="dlt-rows-", dir=args.get("tmp")))
    results = {}
    try:
        for path, data in (("rows", lambda: (row for row in valid.iter_rows(named=True))),
                           ("arrow", lambda: [valid.to_arrow()])):
            pipeline = dlt.pipeline(
                pipeline_name=f"bench_{path}", destination=dlt.destinations.duckdb(str(work / f"{path}.duckdb")),
                dataset_name="raw", pipelines_dir=str(work / ".dlt"), progress=None,
            )
            started = time.perf_counter()
            pipeline.run(dlt.resource(data(), name="events", write_disposition="replace", columns=hints))
            seconds = time.perf_counter() - started
            loaded = pipeline.last_trace.last_normalize_info.row_counts.get("events", 0)
            if loaded != valid.height:
                raise RuntimeError(f"dlt {path} path loaded {loaded} of {valid.height} rows")
            results[path] = seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"seconds": results["rows"], "rows": valid.height, "rows_of": "events (as dicts)",
            "extra": {"arrow_seconds_same_rows": results["arrow"],
                      "arrow_rows_per_s_same_rows": valid.height / results["arrow"]}}
