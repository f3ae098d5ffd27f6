"""The backtest's pure logic on hand-made frames: labels, censoring, AUCs, deciles, bands, rules."""

import datetime as dt

import polars as pl
import pytest

from cs_pipeline.logic.backtest import (
    BacktestError,
    BacktestSpec,
    label,
    outcomes_known_until,
    parse_lead,
    rule_metrics,
    run_backtest,
    split_censored,
)

D = dt.date


def _health(rows):
    """(day, account, score, band, days_since_last_login, events_30d, segment, status, has_live_term)"""
    return pl.DataFrame(
        rows,
        schema={"partition_date": pl.Date, "account_id": pl.String, "score": pl.Float64, "band": pl.String,
                "days_since_last_login": pl.Int64, "events_30d": pl.Int64, "segment": pl.String, "status": pl.String,
                "has_live_term": pl.Boolean},
        orient="row",
    ).with_columns(pl.lit("csm@example.com").alias("owner_email"))


def _outcomes(rows):
    return pl.DataFrame(rows, schema={"account_id": pl.String, "outcome": pl.String, "outcome_date": pl.Date}, orient="row")


def test_observation_dates_and_censoring():
    spec = BacktestSpec(D(2025, 1, 1), D(2025, 3, 1), every_days=30)
    assert spec.dates == [D(2025, 1, 1), D(2025, 1, 31), D(2025, 3, 2)][:2] + ([] if D(2025, 3, 2) > spec.last else [])
    # Churns are known 30 days after they happen, and only within the data.
    known = outcomes_known_until(today=D(2025, 6, 1), last_data_day=D(2025, 5, 20))
    assert known == D(2025, 4, 20)
    kept, censored = split_censored(spec, known)
    assert kept == [D(2025, 1, 1)] and censored == [D(2025, 1, 31)]  # Jan 31 + 90 = May 1 > Apr 20
    assert parse_lead("30:90") == (30, 90)
    with pytest.raises(BacktestError, match="MIN:MAX"):
        parse_lead("30-90")
    with pytest.raises(BacktestError, match="before --from"):
        BacktestSpec(D(2025, 2, 1), D(2025, 1, 1))


def test_a_row_is_positive_only_when_the_churn_falls_in_its_lead_window():
    rows = pl.DataFrame({"partition_date": [D(2025, 1, 1)] * 3, "account_id": ["A", "B", "C"]})
    churns = pl.DataFrame({"account_id": ["A", "B", "C"], "churn_date": [D(2025, 1, 31), D(2025, 1, 30), D(2025, 4, 2)]})
    labelled = label(rows, churns, 30, 90).sort("account_id")
    # A: day 30 (in), B: day 29 (too soon to act on), C: day 91 (too far).
    assert labelled["churned"].to_list() == [True, False, False]


def test_auc_lift_bands_and_baselines():
    day = D(2025, 1, 1)
    # Four churners with low scores and long login gaps; six healthy ones. One churned account is
    # not live (no term): never an observation.
    rows = [
        (day, "C1", 0.5, "red", 40, 1, "smb", "active", True),
        (day, "C2", 1.0, "red", 30, 5, "smb", "active", True),
        (day, "C3", 2.0, "yellow", 1, 50, "enterprise", "active", True),
        (day, "C4", 3.0, "green", 25, 2, "smb", "active", True),
        *[(day, f"H{i}", 2.6 + i * 0.2, "green", i, 100 + i, "smb" if i % 2 else "enterprise", "active", True) for i in range(6)],
        (day, "X", 0.1, "red", 90, 0, "smb", "active", False),
    ]
    outcomes = _outcomes([(a, "churned", D(2025, 2, 15)) for a in ("C1", "C2", "C3", "C4", "X")] + [("H1", "renewed", D(2025, 2, 1))])
    spec = BacktestSpec(day, day, every_days=15)
    result = run_backtest(_health(rows), outcomes, pl.DataFrame(schema={"rule_id": pl.String, "account_id": pl.String,
                          "episode_start": pl.Date, "partition_date": pl.Date, "owner_email": pl.String}), spec, D(2025, 6, 1))
    assert (result.observations, result.churners) == (10, 4)
    # Score: C4 (3.0) outranks H0 (2.6) and H1 (2.8) and ties H2: 24 pairs, 2.5 inverted.
    assert result.auc["model"] == pytest.approx(21.5 / 24)
    # Days since last login: C3 (1 day) is outranked by H1..H5 and ties H1: (24 - 5 - 0.5) / 24.
    assert result.auc["days_since_last_login"] == pytest.approx((24 - 4 - 0.5) / 24)
    bands = {r["band"]: r for r in result.bands.to_dicts()}
    assert (bands["red"]["rows"], bands["red"]["churn_rate"]) == (2, 1.0)
    lift = result.lift.filter(pl.col("score") == "model").sort("decile")
    assert lift["decile"].to_list() == list(range(1, 11)) and lift["churned"][0] == 1 and lift["lift"][0] == pytest.approx(2.5)
    segments = {r["segment"]: r for r in result.segments.to_dicts()}
    assert segments["smb"]["churned"] == 3 and segments["enterprise"]["churned"] == 1


def test_no_churn_and_a_range_outside_the_data_are_refused():
    day = D(2025, 1, 1)
    health = _health([(day, "A", 2.0, "yellow", 1, 5, "smb", "active", True)])
    spec = BacktestSpec(day, day)
    empty_alerts = pl.DataFrame(schema={"rule_id": pl.String, "account_id": pl.String, "episode_start": pl.Date,
                                        "partition_date": pl.Date, "owner_email": pl.String})
    with pytest.raises(BacktestError, match="no live account churned"):
        run_backtest(health, _outcomes([]), empty_alerts, spec, D(2025, 6, 1))
    with pytest.raises(BacktestError, match="outside the data"):
        run_backtest(health, _outcomes([]), empty_alerts, BacktestSpec(D(2024, 1, 1), D(2024, 1, 1)), D(2025, 6, 1))
    with pytest.raises(BacktestError, match="known up to 2025-02-01"):
        run_backtest(health, _outcomes([]), empty_alerts, spec, D(2025, 2, 1))


def test_rule_precision_warning_share_lead_time_and_noise():
    spec = BacktestSpec(D(2025, 1, 1), D(2025, 3, 31), lead_min=30, lead_max=90)
    alert_rows = pl.DataFrame(
        {
            "rule_id": ["r"] * 5,
            # A: warned 60 days ahead (two days of one episode); B: warned 10 days ahead; C: never churns;
            # D: episode too late to be judged (its 90 days are not known).
            "account_id": ["A", "A", "B", "C", "D"],
            "episode_start": [D(2025, 1, 10), D(2025, 1, 10), D(2025, 2, 5), D(2025, 1, 20), D(2025, 3, 20)],
            "partition_date": [D(2025, 1, 10), D(2025, 1, 11), D(2025, 2, 5), D(2025, 1, 20), D(2025, 3, 20)],
            "owner_email": ["x@e.com"] * 5,
        }
    )
    churns = pl.DataFrame({"account_id": ["A", "B", "E"], "churn_date": [D(2025, 3, 11), D(2025, 2, 15), D(2025, 3, 1)]})
    metrics = rule_metrics(alert_rows, churns, spec, known_until=D(2025, 5, 10), csms=2, rule_ids=["r", "quiet"])
    r, quiet = metrics.to_dicts()
    assert (r["alerts"], r["accounts_flagged"], r["alerts_judged"]) == (4, 4, 3)
    assert r["precision"] == pytest.approx(2 / 3)
    # Churners in [Jan 31, May 10]: A, B, E; only A was warned 30+ days ahead.
    assert (r["churners"], r["churners_warned_30d"]) == (3, 1) and r["warned_share"] == pytest.approx(1 / 3)
    assert r["median_lead_days"] == pytest.approx((60 + 10) / 2)
    assert r["alerts_per_csm_week"] == pytest.approx(4 / 2 / (90 / 7))
    assert (quiet["alerts"], quiet["precision"]) == (0, None)
