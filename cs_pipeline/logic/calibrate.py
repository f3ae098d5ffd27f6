"""Calibrate: fit the health model to churn history, keeping its 0-4 points and its YAML form.

From the backtest's labelled observations (one row per live account and observation date, with
every catalog variable of account_health and `churned`):

1. Time split. The later observation dates (`test_share`, default 40 %) are the test period.
   The fit period is the earlier dates whose churn window ends before the test's first window
   begins (D + lead_max < first test date + lead_min): no churn the test is judged on is seen
   by the fit. Dates in between are purged and reported. When that fit period holds too few
   churned accounts, the test period gives up its earliest dates, one at a time, down to
   `MIN_TEST_SHARE` of the dates, while it keeps enough churned accounts of its own.
2. Candidates: every numeric variable of the catalog, except the contract's timing
   (`days_to_renewal`, `days_since_contract_start`: they say when churn can happen, not whether).
   For each: its direction from its univariate association with churn (the AUC of the value),
   four thresholds at the 20/40/60/80 % quantiles of the fit data (rounded to two significant
   digits so a person can read them), and its missing handling.
3. Absence never helps: a missing CSM touch, NPS answer or ticket figure scores 0 points
   (`missing: zero`), and a ticket count may not score higher for fewer tickets (an account
   with no tickets because nobody uses the product would get full points). Other variables
   score a missing value 0 points too, unless accounts without it churn less than average.
4. Weights: a logistic regression (scikit-learn) of churn on the candidates' points; a
   variable whose weight comes out as "more points, more churn" is dropped and the fit
   repeated, so every weight is positive; weights are normalised to sum 1, the small ones
   (< 5 %) dropped, and at most 8 indicators kept.
5. Validation: the AUC on the test period of the proposed model, the current model and the
   baselines, all scored by the same `score_health` the pipeline uses.

Thresholds only compare values, so a log scale (natural for counts such as events_30d) changes
nothing in the model; it matters only for how thresholds are picked, and quantiles are the same
on any monotone scale.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from cs_pipeline.logic.backtest import BASELINES, MODEL, BacktestError, healthiness
from cs_pipeline.logic.config import HealthModel, event_column, health_model_from_data, indicator_variables
from cs_pipeline.logic.scoring import points_column, score_health

TIMING = ("days_to_renewal", "days_since_contract_start")
# Figures of day D alone: a weekend or a quiet day moves them, so they rank churn by noise.
DAILY = ("active_users", "logins", "events", "lowest_nps_today", "nps_responses_today")
ABSENCE = ("days_since_last_touch", "latest_nps", "lowest_nps_today", "nps_responses_today", "open_tickets", "open_high_priority_tickets")
NO_FEWER_IS_BETTER = ("open_tickets", "open_high_priority_tickets", "nps_responses_today")
QUANTILES = (0.2, 0.4, 0.6, 0.8)
MIN_WEIGHT = 0.05
MAX_INDICATORS = 8
MIN_PRESENT = 0.05
MIN_STRENGTH = 0.55  # a candidate must rank churn alone with an AUC of at least this (either way)
MIN_CHURNERS_FIT = 20
MIN_CHURNERS_TEST = 10
MIN_DATES = 2
MIN_TEST_SHARE = 0.25  # a shorter test period is too noisy to judge a model by
MAX_FIT_ROWS = 400_000
SEED = 11


@dataclass
class Candidate:
    variable: str
    direction: str
    thresholds: list[float]
    missing: str
    univariate_auc: float
    present_share: float
    reason: str = ""
    weight: float = 0.0


@dataclass
class CalibrationResult:
    model: HealthModel
    fit_dates: list[dt.date]
    purged_dates: list[dt.date]
    test_dates: list[dt.date]
    fit_churners: int
    test_churners: int
    auc_test: dict[str, float | None]
    auc_fit: dict[str, float | None]
    chosen: list[Candidate]
    rejected: list[tuple[str, str]]
    changes: list[str] = field(default_factory=list)
    split_note: str = ""  # why the test period is shorter than the default, if it is

    def summary(self) -> dict[str, Any]:
        def r(v):
            return None if v is None else round(v, 4)

        return {
            "fit_dates": [self.fit_dates[0].isoformat(), self.fit_dates[-1].isoformat()],
            "test_dates": [self.test_dates[0].isoformat(), self.test_dates[-1].isoformat()],
            "purged_dates": len(self.purged_dates),
            "fit_churned_accounts": self.fit_churners,
            "test_churned_accounts": self.test_churners,
            "split_note": self.split_note or None,
            "auc_test": {k: r(v) for k, v in self.auc_test.items()},
            "auc_fit": {k: r(v) for k, v in self.auc_fit.items()},
            "indicators": [
                {"variable": c.variable, "weight": c.weight, "direction": c.direction, "thresholds": c.thresholds,
                 "missing": c.missing, "univariate_auc": r(c.univariate_auc)}
                for c in self.chosen
            ],
            "changes": self.changes,
        }


def split_dates(dates: Sequence[dt.date], lead_min: int, lead_max: int, test_share: float = 0.4, n_test: int | None = None):
    """(fit, purged, test) observation dates, in time order: the last `n_test` dates (default:
    `test_share` of them) are the test period."""
    dates = sorted(set(dates))
    n_test = n_test or max(1, round(len(dates) * test_share))
    test = dates[len(dates) - n_test:]
    limit = test[0] + dt.timedelta(days=lead_min - lead_max)
    fit = [d for d in dates[: len(dates) - n_test] if d < limit]
    purged = [d for d in dates[: len(dates) - n_test] if d >= limit]
    return fit, purged, test


def _nice(value: float) -> float:
    """Two significant digits: 1234.5 -> 1200, 0.4567 -> 0.46."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = 1 - int(math.floor(math.log10(abs(value))))
    return float(round(value, digits))


def thresholds_from_quantiles(values: np.ndarray, direction: str) -> list[float]:
    """Four thresholds from quantiles, rounded, ordered for the direction; the worst bin never empty."""
    qs = [_nice(float(np.quantile(values, q))) for q in QUANTILES]
    low, high = float(values.min()), float(values.max())
    if direction == "higher_is_better":
        qs = list(np.maximum.accumulate(qs))
        if qs[0] <= low:  # the lowest value must score 0 points
            above = values[values > low]
            qs = [max(q, _nice(float(above.min())) if above.size else high) for q in qs]
            if qs[0] <= low:
                qs = [max(q, float(above.min()) if above.size else high) for q in qs]
        return [float(q) for q in qs]
    qs = list(np.maximum.accumulate(qs))  # ascending quantiles, then reversed: 80 % .. 20 %
    qs = qs[::-1]
    if qs[0] >= high:  # the highest value must score 0 points
        below = values[values < high]
        qs = [min(q, _nice(float(below.max())) if below.size else low) for q in qs]
        if qs[0] >= high:
            qs = [min(q, float(below.max()) if below.size else low) for q in qs]
    return [float(q) for q in qs]


def _candidate(frame: pl.DataFrame, variable: str, base_rate: float) -> Candidate | str:
    column = frame[variable].cast(pl.Float64).fill_nan(None)
    present = column.is_not_null()
    share = float(present.mean() or 0.0)
    if share < MIN_PRESENT:
        return f"present in {share:.1%} of the fit rows (fewer than {MIN_PRESENT:.0%})"
    values = column.filter(present).to_numpy()
    y = frame["churned"].filter(present).cast(pl.Int8).to_numpy()
    if values.min() == values.max():
        return "the same value on every fit row"
    if y.min() == y.max():
        return "no churn among the rows that have it"
    value_auc = float(roc_auc_score(y, values))
    if max(value_auc, 1 - value_auc) < MIN_STRENGTH:
        return f"alone it ranks churn with AUC {max(value_auc, 1 - value_auc):.2f} (below {MIN_STRENGTH})"
    direction = "lower_is_better" if value_auc > 0.5 else "higher_is_better"
    if direction == "lower_is_better" and variable in NO_FEWER_IS_BETTER:
        return "fewer went with less churn, but scoring fewer as healthier would give an account with none (nobody uses the product) full points"
    missing_churn = frame["churned"].filter(~present).mean()
    missing = "zero"
    if variable not in ABSENCE and missing_churn is not None and float(missing_churn) < base_rate:
        missing = "exclude"
    return Candidate(
        variable=variable, direction=direction, thresholds=thresholds_from_quantiles(values, direction), missing=missing,
        univariate_auc=max(value_auc, 1 - value_auc), present_share=share,
    )


def _candidate_model(current: HealthModel, candidates: Sequence[Candidate]) -> HealthModel:
    return health_model_from_data(
        {
            "bands": current.bands.model_dump(),
            "product": current.product.model_dump(),
            "indicators": [
                {"name": c.variable, "variable": c.variable, "weight": c.weight or 1.0, "direction": c.direction,
                 "thresholds": c.thresholds, "missing": c.missing}
                for c in candidates
            ],
        },
        "<calibrated health model>",
    )


def _sample(frame: pl.DataFrame) -> pl.DataFrame:
    """At most MAX_FIT_ROWS rows: every churned row, a random share of the others (slopes unchanged)."""
    if frame.height <= MAX_FIT_ROWS:
        return frame
    positives = frame.filter(pl.col("churned"))
    negatives = frame.filter(~pl.col("churned"))
    keep = max(MAX_FIT_ROWS - positives.height, min(negatives.height, 10 * positives.height))
    return pl.concat([positives, negatives.sample(n=min(keep, negatives.height), seed=SEED)])


def _weights(points: pl.DataFrame, y: np.ndarray, candidates: list[Candidate]) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Positive weights from a logistic regression on the points, dropping wrong-signed ones."""
    dropped: list[tuple[str, str]] = []
    live = list(candidates)
    while live:
        x = np.column_stack(
            [points[points_column(c.variable)].cast(pl.Float64).fill_null(points[points_column(c.variable)].mean() or 0.0).to_numpy()
             for c in live]
        )
        # One BLAS thread: the problem is small (a few hundred thousand rows, a few dozen columns)
        # and BLAS threads only contend with each other there (4x slower on 2 busy cores).
        with threadpool_limits(limits=1):
            fit = LogisticRegression(C=1.0, max_iter=500).fit(x, y)
        health = -fit.coef_[0]  # more points, less churn: a positive health weight
        wrong = [c for c, w in zip(live, health) if w <= 0]
        if not wrong:
            for c, w in zip(live, health):
                c.weight = float(w)
            break
        for c in wrong:
            dropped.append((c.variable, "with the other indicators, more points went with more churn"))
        live = [c for c in live if c not in wrong]
    if not live:
        return [], dropped
    total = sum(c.weight for c in live)
    for c in live:
        c.weight /= total
    keep = sorted(live, key=lambda c: -c.weight)
    for c in keep[MAX_INDICATORS:]:
        dropped.append((c.variable, f"beyond the {MAX_INDICATORS} largest weights ({c.weight:.1%})"))
    keep = keep[:MAX_INDICATORS]
    small = [c for c in keep if c.weight < MIN_WEIGHT]
    for c in small:
        dropped.append((c.variable, f"weight {c.weight:.1%} below {MIN_WEIGHT:.0%}"))
    keep = [c for c in keep if c.weight >= MIN_WEIGHT] or keep[:1]
    total = sum(c.weight for c in keep)
    for c in keep:
        c.weight = round(c.weight / total, 2) or 0.01
    return keep, dropped


def _aucs(frame: pl.DataFrame, models: dict[str, HealthModel]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    y = frame["churned"].cast(pl.Int8).to_numpy()
    if y.min(initial=0) == y.max(initial=0):
        return {name: None for name in [*models, *BASELINES]}
    for name, model in models.items():
        scored = score_health(frame.drop("score", "band", strict=False), model)
        out[name] = float(roc_auc_score(y, -scored["score"].fill_null(0.0).to_numpy()))
    base = healthiness(frame.with_columns(pl.lit(0.0).alias("score")) if "score" not in frame.columns else frame)
    for name in BASELINES:
        out[name] = float(roc_auc_score(y, -base[name].to_numpy()))
    return out


class Split(NamedTuple):
    fit: list[dt.date]
    purged: list[dt.date]
    test: list[dt.date]
    fit_churners: int
    test_churners: int
    note: str = ""  # why the test period is shorter than the default, if it is


def _split(frame: pl.DataFrame, dates: list[dt.date], lead_min: int, lead_max: int, test_share: float) -> Split:
    """The time split and the churned accounts of its fit and test periods.

    The default split (`test_share` of the dates for the test) when its fit period has enough
    churned accounts; else the first shorter test period that leaves both periods enough; else
    the default split, which the caller refuses with its figures."""
    churned = frame.filter(pl.col("churned")).group_by("partition_date").agg(pl.col("account_id").unique())
    by_date = {row[0]: set(row[1]) for row in churned.iter_rows()}

    def churners(period: list[dt.date]) -> int:
        return len(set().union(*(by_date.get(d, set()) for d in period)))

    def split(n_test: int | None) -> Split:
        fit, purged, test = split_dates(dates, lead_min, lead_max, test_share, n_test)
        return Split(fit, purged, test, churners(fit), churners(test))

    default = split(None)
    if default.fit_churners >= MIN_CHURNERS_FIT:
        return default
    shortest = max(MIN_DATES, math.ceil(len(dates) * MIN_TEST_SHARE))
    for n_test in range(len(default.test) - 1, shortest - 1, -1):
        shorter = split(n_test)
        if shorter.fit_churners >= MIN_CHURNERS_FIT and shorter.test_churners >= MIN_CHURNERS_TEST and len(shorter.fit) >= MIN_DATES:
            return shorter._replace(note=(
                f"the test period is the last {n_test} of {len(dates)} observation dates, not {len(default.test)} "
                f"({test_share:.0%}): that split left {default.fit_churners} churned accounts in the fit period, "
                f"fewer than {MIN_CHURNERS_FIT}"))
    return default


def calibrate(frame: pl.DataFrame, current: HealthModel, lead_min: int = 30, lead_max: int = 90, test_share: float = 0.4) -> CalibrationResult:
    """Fit a health model to `frame` (labelled observations: see `backtest.observations`)."""
    dates = sorted(frame["partition_date"].unique().to_list())
    fit_dates, purged, test_dates, fit_churners, test_churners, split_note = _split(frame, dates, lead_min, lead_max, test_share)
    fit = frame.filter(pl.col("partition_date").is_in(fit_dates))
    test = frame.filter(pl.col("partition_date").is_in(test_dates))
    span = f"{dates[0]} .. {dates[-1]}" if dates else "the range"
    if len(fit_dates) < MIN_DATES or len(test_dates) < MIN_DATES:
        gap = lead_max - lead_min
        raise BacktestError(
            f"too short a history: {len(dates)} usable observation date(s) in {span} give {len(fit_dates)} fit and "
            f"{len(test_dates)} test date(s); at least {MIN_DATES} of each are needed, with {gap} days between them "
            f"(about {2 * MIN_DATES + math.ceil(gap / 15) + 1} dates every 15 days: widen --from/--to or lower --every)"
        )
    if fit_churners < MIN_CHURNERS_FIT or test_churners < MIN_CHURNERS_TEST:
        raise BacktestError(
            f"too few churn events: {fit_churners} churned account(s) in the fit period ({fit_dates[0]} .. {fit_dates[-1]}) "
            f"and {test_churners} in the test period ({test_dates[0]} .. {test_dates[-1]}); at least {MIN_CHURNERS_FIT} "
            f"and {MIN_CHURNERS_TEST} are needed (a shorter test period, down to {MIN_TEST_SHARE:.0%} of the dates, "
            "did not give them either: widen --from/--to)"
        )
    sample = _sample(fit)
    base_rate = float(sample["churned"].mean() or 0.0)
    allowed = indicator_variables(current)
    candidates: list[Candidate] = []
    daily = {*DAILY, *(event_column(e) for e in current.product.events)}
    rejected: list[tuple[str, str]] = [(v, "contract timing: it says when churn can happen, not whether") for v in TIMING if v in allowed]
    rejected += [(v, "a figure of day D alone (weekday noise); its 7- and 30-day windows are candidates") for v in allowed if v in daily]
    for variable in allowed:
        if variable in TIMING or variable in daily or variable not in frame.columns:
            continue
        found = _candidate(sample, variable, base_rate)
        if isinstance(found, str):
            rejected.append((variable, found))
        else:
            candidates.append(found)
    points = score_health(sample.drop("score", "band", strict=False), _candidate_model(current, candidates))
    chosen, dropped = _weights(points, sample["churned"].cast(pl.Int8).to_numpy(), candidates)
    rejected += dropped
    if not chosen:
        raise BacktestError("no catalog variable is associated with churn in the fit period: nothing to calibrate")
    proposed = _candidate_model(current, chosen)
    models = {"calibrated": proposed, MODEL: current}
    result = CalibrationResult(
        model=proposed, fit_dates=fit_dates, purged_dates=purged, test_dates=test_dates, fit_churners=fit_churners,
        test_churners=test_churners, auc_test=_aucs(test, models), auc_fit=_aucs(fit, models), chosen=chosen,
        rejected=rejected, split_note=split_note,
    )
    result.changes = changes(current, result)
    return result


def changes(current: HealthModel, result: CalibrationResult) -> list[str]:
    """What changed from the current model, and why, one line each."""
    lines = []
    now = {i.variable: i for i in current.indicators}
    new = {c.variable: c for c in result.chosen}
    why = dict(result.rejected)
    for c in result.chosen:
        old = now.get(c.variable)
        what = (f"weight {c.weight:.2f}, {c.direction}, thresholds {c.thresholds}, missing: {c.missing} "
                f"(alone it ranks churn with AUC {c.univariate_auc:.2f}; present on {c.present_share:.0%} of rows)")
        if old is None:
            lines.append(f"added {c.variable}: {what}")
        else:
            lines.append(f"kept {c.variable} (was weight {old.weight:.2f}, {old.direction}, thresholds {old.thresholds}, "
                         f"missing: {old.missing}): {what}")
    for variable, old in now.items():
        if variable not in new:
            lines.append(f"removed {variable} (was weight {old.weight:.2f}): {why.get(variable, 'not chosen')}")
    return lines


def to_yaml(result: CalibrationResult, current: HealthModel, source: str) -> str:
    """The proposed health_model.yaml: the shipped form, with a comment on each indicator."""
    a = result.auc_test
    lines = [
        "# Health model proposed by `cs-pipeline calibrate` from churn history; read it, edit it, then use it",
        "# with --config (this folder) or copy it over the active health_model.yaml.",
        f"# Fitted on {result.fit_dates[0]} .. {result.fit_dates[-1]} ({result.fit_churners} churned accounts), "
        f"tested on {result.test_dates[0]} .. {result.test_dates[-1]} ({result.test_churners}).",
        *([f"# Note: {result.split_note}."] if result.split_note else []),
        f"# AUC on the test period: calibrated {_f(a.get('calibrated'))}, current {_f(a.get(MODEL))}, "
        f"days since last login {_f(a.get('days_since_last_login'))}, 30-day events {_f(a.get('events_30d'))}.",
        f"# Source: {source}",
        "# Points: how many of the four thresholds a value reaches (>= for higher_is_better, <= for lower_is_better).",
        "",
        "bands:",
        f"  red: {current.bands.red}",
        f"  yellow: {current.bands.yellow}",
        "",
        "product:",
        "  events:",
        *[f"    - {e}" for e in current.product.events],
        "  key_features:" + ("" if current.product.key_features else " []"),
        *[f"    - {e}" for e in current.product.key_features],
        "",
        "indicators:",
    ]
    for c in result.chosen:
        lines += [
            f"  # alone, ranks churn with AUC {c.univariate_auc:.2f}; present on {c.present_share:.0%} of rows",
            f"  - name: {c.variable}",
            f"    variable: {c.variable}",
            f"    weight: {c.weight}",
            f"    direction: {c.direction}",
            f"    thresholds: [{', '.join(_g(t) for t in c.thresholds)}]",
            f"    missing: {c.missing}",
        ]
    return "\n".join(lines) + "\n"


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _g(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
