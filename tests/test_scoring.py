"""Health scoring: points per threshold, weights renormalised over present indicators, bands."""

from __future__ import annotations

import math

import polars as pl
import pytest

from cs_pipeline.logic.config import health_model_from_data, load_health_model
from cs_pipeline.logic.scoring import score_health
from cs_pipeline.settings import SHIPPED_CONFIG_DIR


def model_with(**changes):
    data = {
        "product": {"events": ["login"]},
        "indicators": [
            {
                "name": "usage",
                "variable": "utilization_rate",
                "weight": 3,
                "direction": "higher_is_better",
                "thresholds": [0.2, 0.4, 0.6, 0.8],
                "segments": {"enterprise": {"thresholds": [0.1, 0.2, 0.3, 0.4]}, "smb": {"weight": 1}},
            },
            {
                "name": "recency",
                "variable": "days_since_last_login",
                "weight": 1,
                "direction": "lower_is_better",
                "thresholds": [14, 7, 3, 1],
                "missing": "zero",
            },
            {
                "name": "nps",
                "variable": "latest_nps",
                "weight": 2,
                "direction": "higher_is_better",
                "thresholds": [3, 5, 7, 9],
            },
        ],
    }
    data.update(changes)
    return health_model_from_data(data)


FRAME = pl.DataFrame(
    {
        "account_id": ["mid", "ent", "smb", "low", "none"],
        "segment": ["mid_market", "enterprise", "smb", "mid_market", None],
        "utilization_rate": [0.5, 0.5, 0.8, 0.1, float("nan")],
        "days_since_last_login": [5, None, 1, 30, 0],
        "latest_nps": [9, None, 2, 4, None],
    }
)


def scored(model=None, frame=FRAME) -> dict[str, dict]:
    result = score_health(frame, model or model_with())
    return {row["account_id"]: row for row in result.iter_rows(named=True)}


def test_points_by_threshold_and_segment():
    rows = scored()
    # mid: 0.5 reaches 0.2 and 0.4; 5 days is within 14 and 7; NPS 9 reaches all four.
    assert [rows["mid"][f"points_{n}"] for n in ("usage", "recency", "nps")] == [2, 2, 4]
    # ent: enterprise thresholds (0.1 .. 0.4) give 0.5 all four; no login ever counts as 0; no NPS is left out.
    assert [rows["ent"][f"points_{n}"] for n in ("usage", "recency", "nps")] == [4, 0, None]
    # smb: a value equal to a threshold reaches it (0.8, 1 day).
    assert [rows["smb"][f"points_{n}"] for n in ("usage", "recency", "nps")] == [4, 4, 0]
    assert [rows["low"][f"points_{n}"] for n in ("usage", "recency", "nps")] == [0, 0, 1]
    # NaN is no figure, like null.
    assert [rows["none"][f"points_{n}"] for n in ("usage", "recency", "nps")] == [None, 4, None]


def test_scores_and_contributions_by_hand():
    rows = scored()
    # mid: (3*2 + 1*2 + 2*4) / (3 + 1 + 2) = 16/6
    assert rows["mid"]["score"] == 2.667
    assert rows["mid"]["contribution_usage"] == pytest.approx(1.0)
    assert rows["mid"]["contribution_recency"] == pytest.approx(2 / 6)
    assert rows["mid"]["contribution_nps"] == pytest.approx(8 / 6)
    assert rows["mid"]["band"] == "green"
    # ent: NPS left out, weights 3 + 1: (3*4 + 1*0) / 4
    assert rows["ent"]["score"] == 3.0
    assert rows["ent"]["contribution_nps"] is None
    # smb: usage weight overridden to 1: (1*4 + 1*4 + 2*0) / 4
    assert rows["smb"]["score"] == 2.0
    assert rows["smb"]["contribution_usage"] == pytest.approx(1.0)
    assert rows["smb"]["band"] == "yellow"
    # low: (0 + 0 + 2*1) / 6
    assert rows["low"]["score"] == 0.333
    assert rows["low"]["band"] == "red"
    # none: only recency is present: 4 / 1
    assert rows["none"]["score"] == 4.0


def test_contributions_add_up_to_the_score():
    for row in scored().values():
        contributions = [row[f"contribution_{n}"] or 0.0 for n in ("usage", "recency", "nps")]
        assert math.isclose(sum(contributions), row["score"], abs_tol=0.0005)


def test_no_indicator_present_means_no_score():
    model = model_with()
    data = model.model_dump()
    data["indicators"][1]["missing"] = "exclude"
    frame = pl.DataFrame(
        {"account_id": ["x"], "segment": ["smb"], "utilization_rate": [None], "days_since_last_login": [None], "latest_nps": [None]},
        schema_overrides={"utilization_rate": pl.Float64, "days_since_last_login": pl.Int64, "latest_nps": pl.Int64},
    )
    row = scored(health_model_from_data(data), frame)["x"]
    assert row["score"] is None
    assert row["band"] is None
    assert row["points_usage"] is None


def test_configured_bands():
    rows = scored(model_with(bands={"red": 2.0, "yellow": 3.0}))
    assert {key: row["band"] for key, row in rows.items()} == {
        "mid": "yellow",
        "ent": "green",
        "smb": "yellow",  # 2.0 is not below red = 2.0
        "low": "red",
        "none": "green",
    }


def test_output_types_and_lazy_frames():
    result = score_health(FRAME.lazy(), model_with()).collect()
    assert result.schema["points_usage"] == pl.Int64
    assert result.schema["contribution_usage"] == pl.Float64
    assert result.schema["score"] == pl.Float64
    assert result.schema["band"] == pl.String
    assert result.columns[: len(FRAME.columns)] == FRAME.columns
    assert not any(column.startswith("_") for column in result.columns)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="latest_nps"):
        score_health(FRAME.drop("latest_nps"), model_with())


SHIPPED_FRAME = pl.DataFrame(
    {
        "account_id": ["dead", "dead_enterprise", "healthy", "healthy_enterprise", "healthy_smb", "small_but_alive"],
        "segment": ["mid_market", "enterprise", "mid_market", "enterprise", "smb", "smb"],
        "events_30d": [0, 12, 700, 2400, 450, 70],
        "active_users_30d": [0, 1, 8, 30, 6, 2],
        "activity_trend_30d": [None, 0.3, 1.0, 0.97, 1.1, 0.9],
        "utilization_rate": [0.0, 0.05, 0.9, 0.7, 0.95, 1.0],
        "license_activation_rate": [0.25, 0.2, 0.6, 0.85, 0.7, 1.0],
        "days_since_last_login": [35, None, 0, 0, 1, 2],
        "key_features_used_30d": [0, 0, 2, 2, 1, 1],
        "open_high_priority_tickets": [3, 2, 0, 0, 0, 0],
        "latest_nps": [4, 6, 9, 9, 9, None],
        "days_since_last_touch": [5, 10, 10, 3, 40, None],
    }
)


def test_shipped_model_scores_a_dead_account_red_and_a_healthy_one_green():
    model = load_health_model(SHIPPED_CONFIG_DIR / "health_model.yaml")
    rows = {row["account_id"]: row for row in score_health(SHIPPED_FRAME, model).iter_rows(named=True)}
    for account in ("dead", "dead_enterprise"):
        assert rows[account]["score"] < 1.5 and rows[account]["band"] == "red", rows[account]
    for account in ("healthy", "healthy_enterprise", "healthy_smb"):
        assert rows[account]["score"] >= 2.5 and rows[account]["band"] == "green", rows[account]
    # dead: no trend (left out: 0.90 of the weight remains), csm_engagement 4 (5 days), the rest 0.
    assert rows["dead"]["score"] == round(0.10 * 4 / 0.90, 3)
    # A small account with every seat used is not perfect: its absolute activity is low.
    assert rows["small_but_alive"]["band"] == "yellow", rows["small_but_alive"]


def test_shipped_model_never_scores_absence_above_presence():
    """No CSM touch, no ticket and no survey answer never raise the score (issue 11 §4): a missing
    touch scores no more than any touch, and tickets and NPS answers do not move the score."""
    model = load_health_model(SHIPPED_CONFIG_DIR / "health_model.yaml")
    base = score_health(SHIPPED_FRAME, model)["score"]
    absent = SHIPPED_FRAME.with_columns(
        pl.lit(None, pl.Int64).alias("days_since_last_touch"), pl.lit(0).alias("open_high_priority_tickets"),
        pl.lit(None, pl.Int64).alias("latest_nps"),
    )
    for touch in (None, 0, 45, 400):
        for tickets in (0, 5):
            for nps in (None, 0, 10):
                present = SHIPPED_FRAME.with_columns(
                    pl.lit(touch, pl.Int64).alias("days_since_last_touch"), pl.lit(tickets).alias("open_high_priority_tickets"),
                    pl.lit(nps, pl.Int64).alias("latest_nps"),
                )
                assert (score_health(absent, model)["score"] <= score_health(present, model)["score"]).all()
    assert base.len() == SHIPPED_FRAME.height
    for indicator in model.indicators:
        assert indicator.variable not in ("open_tickets", "open_high_priority_tickets", "latest_nps"), indicator.name
        if indicator.variable in ("days_since_last_touch", "days_since_last_login", "utilization_rate"):
            assert indicator.missing == "zero", indicator.name
