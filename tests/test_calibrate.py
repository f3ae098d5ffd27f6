"""Calibration on a synthetic history where churn follows a hidden engagement the model never sees."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cs_pipeline.logic.backtest import BacktestError
from cs_pipeline.logic.calibrate import calibrate, split_dates, thresholds_from_quantiles, to_yaml
from cs_pipeline.logic.config import health_model_from_data, load_health_model

D = dt.date
CURRENT = health_model_from_data({
    "product": {"events": ["login"]},
    "indicators": [
        {"name": "activation", "variable": "license_activation_rate", "weight": 0.5, "direction": "higher_is_better",
         "thresholds": [0.3, 0.5, 0.65, 0.8]},
        {"name": "support_load", "variable": "open_high_priority_tickets", "weight": 0.5, "direction": "lower_is_better",
         "thresholds": [3, 2, 1, 0]},
    ],
})


def history(accounts=1500, dates=14, seed=3):
    """Every 15 days; engagement drifts; low engagement churns; activation is pure noise; tickets
    come with use (so no tickets is a bad sign); NPS is answered by a fifth of the accounts."""
    rng = np.random.default_rng(seed)
    days = [D(2025, 1, 1) + dt.timedelta(days=15 * i) for i in range(dates)]
    engagement = rng.normal(size=accounts)
    frames = []
    for i, day in enumerate(days):
        engagement = 0.9 * engagement + 0.45 * rng.normal(size=accounts)
        churn = rng.random(accounts) < 1 / (1 + np.exp(3.2 + 1.6 * engagement))
        events = np.round(np.exp(3.5 + engagement + 0.3 * rng.normal(size=accounts))) * (engagement > -2.2)
        nps = np.where(rng.random(accounts) < 0.2, np.clip(np.round(7 + 1.5 * engagement), 0, 10), np.nan)
        frames.append(pl.DataFrame({
            "partition_date": [day] * accounts,
            "account_id": [f"A{a}" for a in range(accounts)],
            "segment": rng.choice(["smb", "mid_market", "enterprise"], size=accounts),
            "events_30d": events.astype(np.int64),
            "days_since_last_login": np.where(events > 0, np.minimum(60, rng.exponential(3 / np.exp(engagement))), np.nan),
            "license_activation_rate": rng.random(accounts),
            "open_high_priority_tickets": rng.poisson(np.clip(0.3 + 0.3 * engagement, 0.01, None)),
            "latest_nps": nps,
            "churned": churn,
        }).with_columns(pl.col("days_since_last_login").fill_nan(None).cast(pl.Int64), pl.col("latest_nps").fill_nan(None)))
    return pl.concat(frames)


def test_the_time_split_leaves_no_churn_window_shared_with_the_test():
    dates = [D(2025, 1, 1) + dt.timedelta(days=15 * i) for i in range(14)]
    fit, purged, test = split_dates(dates, 30, 90)
    assert len(test) == 6 and fit and purged
    assert max(fit) + dt.timedelta(days=90) < min(test) + dt.timedelta(days=30)


def test_thresholds_are_readable_quantiles_and_the_worst_value_scores_nothing():
    values = np.array([0] * 30 + list(range(1, 71)), dtype=float)
    up = thresholds_from_quantiles(values, "higher_is_better")
    assert up == sorted(up) and up[0] > 0
    down = thresholds_from_quantiles(values, "lower_is_better")
    assert down == sorted(down, reverse=True) and down[0] < 70
    assert thresholds_from_quantiles(np.array([1234.5, 2345.6, 3456.7, 4567.8, 9999.0]), "higher_is_better")[0] == 2100.0


def test_calibrate_recovers_activity_and_never_rewards_absence(tmp_path):
    result = calibrate(history(), CURRENT)
    assert result.split_note == ""  # enough churn for the default split
    chosen = {c.variable: c for c in result.chosen}
    assert "events_30d" in chosen and chosen["events_30d"].direction == "higher_is_better"
    assert "license_activation_rate" not in chosen  # noise
    assert abs(sum(c.weight for c in result.chosen) - 1) < 0.02
    # No ticket count ever scores fewer as healthier; a missing NPS is 0 points.
    assert all(not (c.variable.endswith("tickets") and c.direction == "lower_is_better") for c in result.chosen)
    assert all(c.missing == "zero" for c in result.chosen if c.variable == "latest_nps")
    assert result.auc_test["calibrated"] > 0.75 > result.auc_test["model"]
    assert result.auc_test["calibrated"] >= result.auc_test["events_30d"] - 0.02
    assert any(line.startswith("removed license_activation_rate") for line in result.changes)
    path = tmp_path / "health_model.yaml"
    path.write_text(to_yaml(result, CURRENT, "test"))
    assert [i.variable for i in load_health_model(path).indicators] == [c.variable for c in result.chosen]


def test_a_fit_period_short_of_churners_takes_dates_from_the_test_period_and_says_so():
    """14 dates every 15 days: by default the last 6 are the test and the first 4 the fit. Here the
    fit's 4 dates hold 15 churned accounts (20 needed), the 5th date 10 more: the test gives up its
    first date, so the fit has 5 dates and 25 churned accounts, and the test 5 dates and 15."""
    frame = history(accounts=600)
    dates = sorted(frame["partition_date"].unique().to_list())
    quiet = frame.group_by("account_id").agg(pl.col("events_30d").mean()).sort("events_30d")["account_id"].to_list()
    churn_on = {a: dates[:4] for a in quiet[:15]} | {a: dates[4:5] for a in quiet[15:25]} | {a: dates[9:] for a in quiet[25:40]}
    rows = [(a, d) for a, days in churn_on.items() for d in days]
    churned = pl.DataFrame(rows, schema=["account_id", "partition_date"], orient="row").with_columns(churned=pl.lit(True))
    frame = frame.drop("churned").join(churned, on=["account_id", "partition_date"], how="left").with_columns(pl.col("churned").fill_null(False))

    result = calibrate(frame, CURRENT)
    assert (result.fit_dates, result.test_dates) == (dates[:5], dates[9:])
    assert (result.fit_churners, result.test_churners) == (25, 15)
    assert "last 5 of 14 observation dates, not 6" in result.split_note and "left 15 churned accounts" in result.split_note
    assert result.summary()["split_note"] == result.split_note
    assert f"# Note: {result.split_note}." in to_yaml(result, CURRENT, "test")

    # Without the 5th date's churners no shorter test period helps: refused with the default split's figures.
    with pytest.raises(BacktestError, match=r"15 churned account\(s\) in the fit period .* widen --from/--to"):
        calibrate(frame.with_columns(pl.col("churned") & ~pl.col("account_id").is_in(quiet[15:25])), CURRENT)


def test_too_few_churners_or_dates_say_how_many_are_needed():
    frame = history(accounts=150)
    with pytest.raises(BacktestError, match=r"too few churn events: \d+ churned account\(s\) .* at least 20"):
        calibrate(frame.with_columns(pl.col("churned") & (pl.col("account_id").str.len_chars() < 3)), CURRENT)
    with pytest.raises(BacktestError, match="too short a history: 4 usable observation date"):
        calibrate(frame.filter(pl.col("partition_date") < D(2025, 3, 1)), CURRENT)
