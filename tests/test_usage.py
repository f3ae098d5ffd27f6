"""account_daily_usage's figures from the daily marts, on hand-made rows (window aggregates in an in-memory DuckDB)."""

import datetime as dt

import duckdb
import polars as pl
import pytest

from cs_pipeline.logic.usage import account_daily_usage, window_bits, window_sums_sql, window_users_sql
from cs_pipeline.resources.warehouse import query

D = dt.date
EVENTS = ["login", "report.created"]


@pytest.mark.parametrize(
    ("month", "first", "last", "bits"),
    [
        (D(2025, 1, 1), D(2025, 1, 1), D(2025, 1, 1), 0b1),
        (D(2025, 1, 1), D(2025, 1, 3), D(2025, 1, 5), 0b11100),
        (D(2025, 1, 1), D(2024, 12, 20), D(2025, 1, 2), 0b11),  # the window starts in December
        (D(2024, 12, 1), D(2024, 12, 30), D(2025, 1, 2), 0b11 << 29),  # December 30-31
        (D(2025, 2, 1), D(2025, 1, 1), D(2025, 1, 31), 0),  # no day of the window in February
        (D(2024, 2, 1), D(2024, 2, 1), D(2024, 2, 29), (1 << 29) - 1),  # a leap February, whole
    ],
)
def test_window_bits_are_the_window_days_of_the_month(month, first, last, bits):
    assert window_bits(month, first, last) == bits


def _account_days(rows):
    return pl.DataFrame(
        rows,
        schema=["activity_date", "account_id", "active_users", "logins", "events", "events_login", "events_report_created"],
        orient="row",
    )


def _usage(day, account_days, user_months, login_days):
    return _usage_range([day], account_days, user_months, login_days)


def _usage_range(dates, account_days, user_months, login_days):
    accounts = pl.DataFrame({"account_id": ["A1", "A2"], "licenses": [4, 0]})
    users = pl.DataFrame(
        {
            "account_id": ["A1", "A1", "A1", "A2"],
            "created_at": [dt.datetime(2024, 1, 1)] * 3 + [None],
            "activated_at": [dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 2), None, None],
            "deactivated_at": [None, dt.datetime(2025, 2, 4, 12), None, None],
        }
    )
    months = pl.DataFrame(user_months, schema=["activity_month", "account_id", "user_id", "active_days"], orient="row")
    logins = pl.DataFrame(login_days, schema=["account_id", "activity_date"], orient="row")
    days = _account_days(account_days)
    con = duckdb.connect()
    con.register("account_days", days.to_arrow())
    con.register("user_months", months.to_arrow())
    sums = query(con, *window_sums_sql(dates, EVENTS, "account_days"))
    active = query(con, *window_users_sql(dates, "user_months"))
    return account_daily_usage(dates, accounts, users, days.filter(pl.col("activity_date").is_in(dates)), sums, active,
                               logins, EVENTS, ["report.created"])


# Account A1's history: U1 was active on Jan 6, Jan 10, Jan 30, Feb 3 and Feb 5; U2 on Jan 10 only.
A1_DAYS = [
    (D(2025, 1, 6), "A1", 1, 1, 1, 1, 0),
    (D(2025, 1, 10), "A1", 2, 2, 5, 2, 3),
    (D(2025, 1, 30), "A1", 1, 0, 2, 0, 2),
    (D(2025, 2, 3), "A1", 1, 1, 1, 1, 0),
    (D(2025, 2, 5), "A1", 1, 0, 4, 0, 1),
]
A1_MONTHS = [
    (D(2025, 1, 1), "A1", "U1", (1 << 5) | (1 << 9) | (1 << 29)),
    (D(2025, 1, 1), "A1", "U2", 1 << 9),
    (D(2025, 2, 1), "A1", "U1", (1 << 2) | (1 << 4)),
]


def test_windows_across_a_month_boundary_count_each_user_once():
    # On Feb 5 the 7-day window is Jan 30 .. Feb 5 and the 30-day window Jan 7 .. Feb 5 (Jan 6 is
    # outside both).
    login_days = [("A1", D(2025, 2, 3))]
    usage = _usage(D(2025, 2, 5), A1_DAYS, A1_MONTHS, login_days)
    a1, a2 = usage.to_dicts()
    assert {k: a1[k] for k in ("active_users", "events", "events_report_created", "active_users_7d", "logins_7d",
                                "events_7d", "active_users_30d", "logins_30d", "events_30d",
                                "events_login_30d", "events_report_created_30d")} == {
        "active_users": 1, "events": 4, "events_report_created": 1,
        "active_users_7d": 1, "logins_7d": 1, "events_7d": 7,
        "active_users_30d": 2, "logins_30d": 3, "events_30d": 12,
        "events_login_30d": 3, "events_report_created_30d": 6,
    }
    assert (a1["last_login_date"], a1["days_since_last_login"]) == (D(2025, 2, 3), 2)
    # Seats at the end of Feb 5: U2 was deactivated on Feb 4, U3 never activated.
    assert (a1["assigned_users"], a1["activated_users"], a1["license_activation_rate"]) == (2, 1, 0.25)
    assert a1["utilization_rate"] == 2.0 and a1["all_key_features_used_30d"] is True
    # No activity at all: zeros, not nulls; no licenses: no rates.
    assert (a2["active_users_30d"], a2["events_30d"], a2["last_login_date"], a2["license_activation_rate"]) == (0, 0, None, None)


def test_a_range_run_gives_each_day_the_figures_of_its_own_run():
    """A backfill computes many days at once; each day's windows must be exactly that day's."""
    account_days = [*A1_DAYS, (D(2025, 2, 5), "A2", 1, 1, 1, 1, 0)]
    user_months = [*A1_MONTHS, (D(2025, 2, 1), "A2", "U4", 1 << 4)]
    login_days = [("A1", D(2025, 1, 6)), ("A1", D(2025, 1, 10)), ("A1", D(2025, 2, 3)), ("A2", D(2025, 2, 5))]
    dates = [D(2025, 1, 31), D(2025, 2, 4), D(2025, 2, 5), D(2025, 2, 8)]
    together = _usage_range(dates, account_days, user_months, login_days)
    alone = pl.concat([_usage_range([day], account_days, user_months, login_days) for day in dates])
    assert together.equals(alone)
    by_day = {(r["partition_date"], r["account_id"]): r for r in together.to_dicts()}
    # Feb 8: the 7-day window (Feb 2 .. 8) holds U1 on Feb 3 and 5; the 30-day one (Jan 10 ..) also U2.
    assert (by_day[D(2025, 2, 8), "A1"]["active_users_7d"], by_day[D(2025, 2, 8), "A1"]["active_users_30d"]) == (1, 2)
    assert by_day[D(2025, 2, 8), "A1"]["events_7d"] == 5 and by_day[D(2025, 2, 8), "A1"]["events_30d"] == 12
    # Jan 31: the 30-day window (Jan 2 .. 31) still holds Jan 6.
    assert by_day[D(2025, 1, 31), "A1"]["logins_30d"] == 3 and by_day[D(2025, 1, 31), "A1"]["active_users_7d"] == 1
    assert by_day[D(2025, 2, 4), "A2"]["active_users_30d"] == 0 and by_day[D(2025, 2, 5), "A2"]["active_users_7d"] == 1


def test_the_previous_30_days_and_the_trend_one_day_or_a_range():
    """events_prev_30d sums days D-59..D-30; activity_trend_30d is events_30d over it, no value when it is 0."""
    early = [(D(2024, 12, 10), "A1", 1, 1, 6, 1, 0), (D(2024, 12, 27), "A1", 1, 0, 10, 0, 2)]
    account_days = [*early, *A1_DAYS, (D(2025, 1, 3), "A2", 1, 1, 4, 1, 0)]
    dates = [D(2025, 2, 5), D(2025, 2, 8), D(2025, 3, 5)]
    together = _usage_range(dates, account_days, A1_MONTHS, [("A1", D(2025, 2, 3))])
    alone = pl.concat([_usage_range([day], account_days, A1_MONTHS, [("A1", D(2025, 2, 3))]) for day in dates])
    assert together.equals(alone)
    row = {(r["partition_date"], r["account_id"]): r for r in together.to_dicts()}
    # Feb 5: the previous window is Dec 8 .. Jan 6 (Dec 10, Dec 27, Jan 6: 17 events), the current one 12.
    assert (row[D(2025, 2, 5), "A1"]["events_prev_30d"], row[D(2025, 2, 5), "A1"]["events_30d"]) == (17, 12)
    assert row[D(2025, 2, 5), "A1"]["activity_trend_30d"] == 12 / 17
    # Feb 8: Dec 11 .. Jan 9 (Dec 27 and Jan 6: 11); A2's only events (Jan 3) are in its previous window.
    assert row[D(2025, 2, 8), "A1"]["events_prev_30d"] == 11
    assert (row[D(2025, 2, 8), "A2"]["events_prev_30d"], row[D(2025, 2, 8), "A2"]["activity_trend_30d"]) == (4, 0.0)
    # Mar 5: nothing in Jan 5 .. Feb 3 except Jan 6, 10, 30 and Feb 3 (9 events); A2 had none before: no trend.
    assert row[D(2025, 3, 5), "A1"]["events_prev_30d"] == 9
    assert (row[D(2025, 3, 5), "A2"]["events_prev_30d"], row[D(2025, 3, 5), "A2"]["activity_trend_30d"]) == (0, None)


def test_usage_refuses_days_built_before_a_product_event_was_configured():
    """An event added to the health model gets its column on the next dbt run, NULL on older
    days: summing those as zeros would understate the 30-day counts, so the asset stops and says
    which days to re-run."""
    import dagster as dg
    import duckdb

    from cs_pipeline.assets.usage import _check_event_columns

    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.fct_account_daily_activity (activity_date DATE, account_id VARCHAR, events_login BIGINT)")
    with pytest.raises(dg.Failure, match="no column events_report_created"):
        _check_event_columns(con, ["events_login", "events_report_created"], D(2025, 1, 1), D(2025, 1, 30))
    con.execute("ALTER TABLE marts.fct_account_daily_activity ADD COLUMN events_report_created BIGINT")
    con.execute("INSERT INTO marts.fct_account_daily_activity VALUES ('2025-01-03', 'A1', 1, NULL), ('2025-01-09', 'A1', 1, NULL),"
                " ('2025-01-10', 'A1', 1, 0)")
    with pytest.raises(dg.Failure, match="built for 2025-01-03 .. 2025-01-09 before a product event was added"):
        _check_event_columns(con, ["events_login", "events_report_created"], D(2025, 1, 1), D(2025, 1, 30))
    _check_event_columns(con, ["events_login", "events_report_created"], D(2025, 1, 10), D(2025, 1, 30))  # no error
