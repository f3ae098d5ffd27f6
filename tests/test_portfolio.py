"""The portfolio view's figures (cs_pipeline/logic/portfolio.py) on small frames, without an instance."""

import datetime as dt

import polars as pl
import pytest

from cs_pipeline.logic.portfolio import follow_through, portfolio_map, renewal_pipeline, trailing_retention, went_red

D = dt.date
DAY = D(2025, 6, 30)


def _health(rows: list[dict]) -> pl.DataFrame:
    base = {"partition_date": DAY, "name": "n", "segment": "smb", "owner_email": "ana@x.test", "status": "active",
            "deployment_rate": 0.5, "utilization_rate": 0.5, "arr": 1000.0, "band": "green", "score": 3.0,
            "has_live_term": True, "days_since_last_touch": 5, "days_to_renewal": 200, "contract_end_date": D(2026, 1, 16)}
    return pl.DataFrame([base | row for row in rows])


def test_portfolio_map_marks_untouched_accounts_and_skips_accounts_without_a_live_term():
    health = _health([
        {"account_id": "a1", "days_since_last_touch": 29},
        {"account_id": "a2", "days_since_last_touch": 30},
        {"account_id": "a3", "days_since_last_touch": None},  # never touched
        {"account_id": "a4", "has_live_term": False},
        {"account_id": "a5", "deployment_rate": 0.9, "utilization_rate": 0.2, "band": None},
    ])
    points = portfolio_map(health, untouched_days=30)
    assert points["account_id"].to_list() == ["a1", "a2", "a3", "a5"]
    assert points["untouched"].to_list() == [False, True, True, False]
    assert points.filter(pl.col("account_id") == "a5").select("quadrant", "band").row(0) == ("deployed, not used", "no data")
    assert portfolio_map(health, untouched_days=10)["untouched"].to_list() == [True, True, True, False]


def test_renewal_pipeline_windows_and_risk():
    health = _health([
        {"account_id": "a1", "days_to_renewal": 0, "band": "red"},
        {"account_id": "a2", "days_to_renewal": 90},
        {"account_id": "a3", "days_to_renewal": 91, "band": "red"},
        {"account_id": "a4", "days_to_renewal": 180},
        {"account_id": "a5", "days_to_renewal": 181},
        {"account_id": "a6", "days_to_renewal": -3},
    ])
    pipeline = renewal_pipeline(health)
    assert pipeline.select("account_id", "renewal_window", "at_risk").rows() == [
        ("a1", "0-90 days", True), ("a2", "0-90 days", False), ("a3", "91-180 days", True), ("a4", "91-180 days", False),
    ]


def test_follow_through_per_csm():
    alerts = pl.DataFrame({
        "alert_id": ["x1", "x1", "x2", "x3", "x4", "old"],
        "episode_start": [D(2025, 6, 1), D(2025, 6, 1), D(2025, 6, 10), D(2025, 6, 20), D(2025, 6, 25), D(2025, 1, 1)],
        "owner_email": ["ana", "ana", "ana", "ben", "", "ben"],
        "partition_date": [D(2025, 6, 1), D(2025, 6, 2), D(2025, 6, 10), D(2025, 6, 20), D(2025, 6, 25), D(2025, 6, 25)],
    })
    t = dt.datetime
    tasks = pl.DataFrame({
        "task_id": ["t1", "t2", "t3", "t4"], "alert_id": ["x1", "x2", "x3", "x4"],
        "due_date": [D(2025, 6, 8), D(2025, 6, 17), D(2025, 6, 27), D(2025, 7, 5)],
        "status": ["done", "done", "open", "open"],
        "created_at": [t(2025, 6, 1, 9), t(2025, 6, 10, 9), t(2025, 6, 20, 9), t(2025, 6, 25, 9)],
        "done_at": [t(2025, 6, 3, 9), t(2025, 6, 18, 9), None, None],
    })
    rows = {r["owner_email"]: r for r in follow_through(alerts, tasks, DAY).iter_rows(named=True)}
    assert set(rows) == {"ana", "ben", "unassigned", "all"}  # "old" started before the 90-day window
    ana, ben, everyone = rows["ana"], rows["ben"], rows["all"]
    # ana: x1 done 2 days in, on time; x2 done after 8 days, a day late: median 5
    assert (ana["alerts"], ana["tasks_done"], ana["done_on_time_share"], ana["median_days_to_done"], ana["open_overdue"]) == (
        2, 2, 0.5, 5.0, 0)
    # ben: x3 open past its due date
    assert (ben["alerts"], ben["tasks_done"], ben["done_on_time_share"], ben["open_overdue"]) == (1, 0, 0.0, 1)
    # x4 is not due yet: not in the on-time share
    assert rows["unassigned"]["done_on_time_share"] is None
    assert (everyone["alerts"], everyone["done_on_time_share"], everyone["open_overdue"]) == (4, pytest.approx(1 / 3), 1)


def test_trailing_retention_uses_only_outcomes_known_on_the_day():
    outcomes = pl.DataFrame({
        "account_id": ["a", "b", "c"],
        "end_date": [D(2025, 6, 1), D(2025, 6, 1), D(2025, 6, 10)],
        "arr": [100.0, 100.0, 100.0],
        "next_arr": [150.0, None, 80.0],
        "arr_change": [50.0, None, -20.0],
        "outcome": ["expanded", "churned", "contracted"],
        "outcome_date": [D(2025, 6, 2), D(2025, 6, 1), D(2025, 6, 28)],
    })
    # on 06-20: a renewed (known 06-02); b's churn is known only after 07-01; c renews on 06-28
    assert trailing_retention(outcomes, D(2025, 6, 20)) == {"grr": 1.0, "nrr": 1.5, "arr_up_for_renewal": 100.0}
    late = trailing_retention(outcomes, D(2025, 7, 5))
    assert late == {"grr": pytest.approx(180 / 300), "nrr": pytest.approx(230 / 300), "arr_up_for_renewal": 300.0}
    assert late["grr"] <= 1


def test_went_red_compares_with_a_week_earlier():
    before = DAY - dt.timedelta(days=7)
    health = pl.concat([
        _health([{"account_id": "a1", "band": "yellow"}, {"account_id": "a2", "band": "red"},
                 {"account_id": "a3", "band": "green"}]).with_columns(pl.lit(before).alias("partition_date")),
        _health([{"account_id": "a1", "band": "red"}, {"account_id": "a2", "band": "red"},
                 {"account_id": "a3", "band": "green"}, {"account_id": "a4", "band": "red"}]),
    ])
    assert went_red(health, before, DAY).select("account_id", "band_before").sort("account_id").rows() == [
        ("a1", "yellow"), ("a4", None)]
