"""The health model file (health_model.yaml): bands, the product's events, the indicators."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cs_pipeline.logic.config.errors import ConfigProblem
from cs_pipeline.logic.contract import SEGMENTS
from cs_pipeline.logic.config.validation import validate
from cs_pipeline.logic.config.variables import SCORE_VARIABLES, event_column, numeric_inputs
from cs_pipeline.logic.config.yaml_files import Document, read_document


Segment = Literal["enterprise", "mid_market", "smb"]
assert get_args(Segment) == SEGMENTS, "the contract's segments and the model's must agree"
Direction = Literal["higher_is_better", "lower_is_better"]

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# Event names become column names ('report.created' -> events_report_created), so they may only
# hold what a column name can, with '.' as a separator.
_EVENT_NAME = re.compile(r"[a-z][a-z0-9]*(?:[._][a-z0-9]+)*")
# A weight is relative to the others; past this, a sum of weights could overflow to infinity.
MAX_WEIGHT = 1_000_000


class Strict(BaseModel):
    # Unknown keys are errors: a misspelt 'severty:' must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


# Finite numbers only: `.inf` or `.nan` in a weight or threshold made every score NaN, every band green.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Weight = Annotated[float, Field(gt=0, le=MAX_WEIGHT, allow_inf_nan=False)]
Thresholds = Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]


class Bands(Strict):
    """Score below `red` is red, below `yellow` is yellow, otherwise green."""

    red: float = Field(1.5, ge=0, le=4, allow_inf_nan=False)
    yellow: float = Field(2.5, ge=0, le=4, allow_inf_nan=False)


class Product(Strict):
    events: list[str] = Field(min_length=1)
    key_features: list[str] = []


class SegmentOverride(Strict):
    thresholds: Thresholds | None = None
    weight: Weight | None = None


class Indicator(Strict):
    name: str
    variable: str
    description: str = ""
    weight: Weight
    direction: Direction
    thresholds: Thresholds
    missing: Literal["exclude", "zero"] = "exclude"
    segments: dict[Segment, SegmentOverride] = {}

    def thresholds_for(self, segment: str | None) -> list[float]:
        override = self.segments.get(segment) if segment else None  # type: ignore[arg-type]
        return override.thresholds if override and override.thresholds else self.thresholds

    def weight_for(self, segment: str | None) -> float:
        override = self.segments.get(segment) if segment else None  # type: ignore[arg-type]
        return override.weight if override and override.weight else self.weight


class HealthModel(Strict):
    bands: Bands = Bands()
    product: Product
    indicators: list[Indicator] = Field(min_length=1)

    @property
    def by_name(self) -> dict[str, Indicator]:
        return {indicator.name: indicator for indicator in self.indicators}

    @model_validator(mode="after")
    def _check(self) -> HealthModel:
        for problem in _health_model_problems(self):
            raise problem
        return self


def _health_model_problems(model: HealthModel) -> Iterator[ConfigProblem]:
    if model.bands.red > model.bands.yellow:
        yield ConfigProblem(("bands", "yellow"), f"must be at least red ({model.bands.red})")
    yield from _product_problems(model.product)
    allowed = numeric_inputs(model.product.events, model.product.key_features)
    score_outputs = {name for name, _kind, _description in SCORE_VARIABLES}
    seen: dict[str, int] = {}
    for index, indicator in enumerate(model.indicators):
        at = ("indicators", index)
        if not SNAKE_CASE.fullmatch(indicator.name):
            yield ConfigProblem((*at, "name"), f"{indicator.name!r} must be snake_case, like 'utilization_rate'")
        if indicator.name in seen:
            first = seen[indicator.name]
            yield ConfigProblem((*at, "name"), f"duplicate indicator name {indicator.name!r} (also indicators[{first}])")
        seen.setdefault(indicator.name, index)
        if indicator.variable not in allowed:
            why = (
                "is computed from the indicators; an indicator must score a usage or context figure"
                if indicator.variable in score_outputs or indicator.variable.startswith(("points_", "contribution_"))
                else "is not a numeric usage or context variable"
            )
            yield ConfigProblem((*at, "variable"), f"{indicator.variable!r} {why}", sorted(allowed))
        yield from _threshold_problems(indicator.thresholds, indicator.direction, (*at, "thresholds"))
        for segment, override in indicator.segments.items():
            if override.thresholds is not None:
                yield from _threshold_problems(
                    override.thresholds, indicator.direction, (*at, "segments", segment, "thresholds")
                )


def _product_problems(product: Product) -> Iterator[ConfigProblem]:
    columns: dict[str, int] = {}
    for index, event in enumerate(product.events):
        at = ("product", "events", index)
        if not _EVENT_NAME.fullmatch(event):
            yield ConfigProblem(at, f"{event!r} must be lowercase words joined by '.' or '_', like 'report.created'")
        column = event_column(event)
        if column in columns:
            other = product.events[columns[column]]
            yield ConfigProblem(at, f"{event!r} and {other!r} would share the column {column}")
        columns.setdefault(column, index)
    for index, feature in enumerate(product.key_features):
        if feature not in product.events:
            at = ("product", "key_features", index)
            yield ConfigProblem(at, f"{feature!r} is not one of product.events", product.events)


def _threshold_problems(thresholds: list[float], direction: str, at: tuple) -> Iterator[ConfigProblem]:
    ascending = direction == "higher_is_better"
    ordered = sorted(thresholds, reverse=not ascending)
    if thresholds != ordered:
        order = "ascending (higher_is_better)" if ascending else "descending (lower_is_better)"
        yield ConfigProblem(at, f"must be {order}, got {thresholds}")


def health_model_from_data(data: Any, source: str = "<health model>") -> HealthModel:
    """Validate an already-parsed health model (a dict), with errors naming `source`."""
    return validate(HealthModel, Document(source, data, {}))


def load_health_model(path: Path) -> HealthModel:
    """Read and validate a health model file; ConfigError names the file, line and field."""
    return validate(HealthModel, read_document(Path(path)))
