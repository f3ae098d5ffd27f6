"""The health score: weighted indicators mapped to 0-4 points, on a polars frame.

For each indicator the value is compared with its four thresholds; its points are how many of
them it reaches (>= for higher_is_better, <= for lower_is_better). The score is the weighted mean
of the points of the indicators that have a value, so a missing figure (no NPS survey yet) does
not drag an account down unless the model says `missing: zero`. Each indicator's contribution is
its weighted points over the weights present, so the contributions add up to the score.
"""

from __future__ import annotations

from typing import TypeVar

import polars as pl

from cs_pipeline.logic.config import SEGMENTS, HealthModel, Indicator

__all__ = ["score_health", "points_column", "contribution_column"]

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

SCORE_DECIMALS = 3


def points_column(indicator: str) -> str:
    return f"points_{indicator}"


def contribution_column(indicator: str) -> str:
    return f"contribution_{indicator}"


def score_health(frame: Frame, model: HealthModel) -> Frame:
    """Add points_<indicator>, contribution_<indicator>, score and band to `frame`.

    `frame` needs `segment` and every indicator's variable. The score is null (and the band with
    it) when no indicator has a value. Works on a DataFrame or a LazyFrame.
    """
    _require_columns(frame, model)
    weights = "_weight_{}"
    with_points = frame.with_columns(
        *[_points(indicator).alias(points_column(indicator.name)) for indicator in model.indicators],
        *[_weight(indicator).alias(weights.format(indicator.name)) for indicator in model.indicators],
    )
    present_weight = pl.sum_horizontal(
        [_present_weight(indicator, weights.format(indicator.name)) for indicator in model.indicators]
    )
    with_contributions = with_points.with_columns(
        *[
            _contribution(indicator, weights.format(indicator.name), present_weight).alias(
                contribution_column(indicator.name)
            )
            for indicator in model.indicators
        ]
    )
    contributions = [pl.col(contribution_column(indicator.name)) for indicator in model.indicators]
    any_present = pl.any_horizontal([c.is_not_null() for c in contributions])
    score = pl.when(any_present).then(pl.sum_horizontal(contributions).round(SCORE_DECIMALS))
    return (
        with_contributions.with_columns(score.alias("score"))
        .with_columns(_band(model).alias("band"))
        .drop([weights.format(indicator.name) for indicator in model.indicators])
    )


def _require_columns(frame: pl.DataFrame | pl.LazyFrame, model: HealthModel) -> None:
    available = set(frame.collect_schema().names())
    needed = ["segment", *dict.fromkeys(indicator.variable for indicator in model.indicators)]
    missing = [name for name in needed if name not in available]
    if missing:
        raise ValueError(f"score_health: the frame has no column(s) {', '.join(missing)}")


def _by_segment(default: float, overrides: dict[str, float]) -> pl.Expr:
    """A per-row constant: the segment's override where there is one, else the default."""
    expression = pl.lit(default, dtype=pl.Float64)
    for segment in SEGMENTS:
        if segment in overrides and overrides[segment] != default:
            expression = pl.when(pl.col("segment") == segment).then(pl.lit(overrides[segment])).otherwise(expression)
    return expression


def _threshold(indicator: Indicator, position: int) -> pl.Expr:
    overrides = {
        segment: override.thresholds[position]
        for segment, override in indicator.segments.items()
        if override.thresholds is not None
    }
    return _by_segment(indicator.thresholds[position], overrides)


def _weight(indicator: Indicator) -> pl.Expr:
    overrides = {
        segment: override.weight for segment, override in indicator.segments.items() if override.weight is not None
    }
    return _by_segment(indicator.weight, overrides)


def _points(indicator: Indicator) -> pl.Expr:
    # NaN (0/0 upstream) is no figure, like null.
    value = pl.col(indicator.variable).cast(pl.Float64).fill_nan(None)
    if indicator.direction == "higher_is_better":
        reached = [value >= _threshold(indicator, i) for i in range(4)]
    else:
        reached = [value <= _threshold(indicator, i) for i in range(4)]
    points = pl.sum_horizontal([r.cast(pl.Int64) for r in reached])
    when_missing = pl.lit(0, dtype=pl.Int64) if indicator.missing == "zero" else pl.lit(None, dtype=pl.Int64)
    return pl.when(value.is_null()).then(when_missing).otherwise(points).cast(pl.Int64)


def _present_weight(indicator: Indicator, weight_column: str) -> pl.Expr:
    present = pl.col(points_column(indicator.name)).is_not_null()
    return pl.when(present).then(pl.col(weight_column)).otherwise(0.0)


def _contribution(indicator: Indicator, weight_column: str, present_weight: pl.Expr) -> pl.Expr:
    points = pl.col(points_column(indicator.name))
    return pl.when(points.is_not_null() & (present_weight > 0)).then(
        pl.col(weight_column) * points / present_weight
    )


def _band(model: HealthModel) -> pl.Expr:
    score = pl.col("score")
    return (
        pl.when(score.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(score < model.bands.red)
        .then(pl.lit("red"))
        .when(score < model.bands.yellow)
        .then(pl.lit("yellow"))
        .otherwise(pl.lit("green"))
    )
