"""Backtest: does the health score (and does each rule) come before churn? Pure polars + scikit-learn.

Observation dates are taken every N days in [D1, D2]. On each date D, every account live on D
(a contract term covers D, hence not churned: see `live`) is one observation,
labelled 1 when the account churns between D + lead_min and D + lead_max days (default 30..90).
A churn is a contract term with outcome `churned` in `marts.fct_term_outcomes`, on its
`outcome_date` (the term's end).

Censoring: a churn on day C is only known 30 days later (a renewal may still start within 30
days of the end date), and only while the data lasts. A date D is kept only when its whole label
window is known: D + lead_max <= `outcomes_known_until`; the others are dropped and reported.

Scores are "higher = healthier", so the AUC for churn is the AUC of -score. Baselines, computed
on the same observations: days since the last login (fewer = healthier; never logged in = the
worst) and 30-day activity (events_30d).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl


RENEWAL_GRACE_DAYS = 30  # fct_term_outcomes: renewed when the next term starts within 30 days
DECILES = 10
MODEL = "model"
BASELINES = ("days_since_last_login", "events_30d")


class BacktestError(ValueError):
    """Input that cannot be backtested (no churn, a range outside the data...): one line."""


@dataclass(frozen=True)
class BacktestSpec:
    first: dt.date
    last: dt.date
    every_days: int = 15
    lead_min: int = 30
    lead_max: int = 90

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise BacktestError(f"--to {self.last} is before --from {self.first}")
        if self.every_days < 1:
            raise BacktestError(f"--every must be 1 day or more, got {self.every_days}")
        if not 0 <= self.lead_min <= self.lead_max:
            raise BacktestError(f"--lead {self.lead_min}:{self.lead_max}: needs 0 <= MIN <= MAX")

    @property
    def dates(self) -> list[dt.date]:
        count = (self.last - self.first).days // self.every_days + 1
        return [self.first + dt.timedelta(days=i * self.every_days) for i in range(count)]


def parse_lead(text: str) -> tuple[int, int]:
    """'30:90' -> (30, 90)."""
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError:
        raise BacktestError(f"--lead must be MIN:MAX days, like 30:90, got {text!r}") from None
    return low, high


def outcomes_known_until(today: dt.date, last_data_day: dt.date) -> dt.date:
    """The last day whose churns are known: 30 days of renewal grace before today, within the data."""
    return min(today - dt.timedelta(days=1), last_data_day) - dt.timedelta(days=RENEWAL_GRACE_DAYS)


def split_censored(spec: BacktestSpec, known_until: dt.date) -> tuple[list[dt.date], list[dt.date]]:
    """(kept, censored) observation dates: kept when D + lead_max <= known_until."""
    kept = [d for d in spec.dates if d + dt.timedelta(days=spec.lead_max) <= known_until]
    return kept, [d for d in spec.dates if d not in kept]


def churn_events(outcomes: pl.DataFrame) -> pl.DataFrame:
    """(account_id, churn_date) from fct_term_outcomes rows (outcome, outcome_date)."""
    return (
        outcomes.filter((pl.col("outcome") == "churned") & pl.col("outcome_date").is_not_null())
        .select("account_id", pl.col("outcome_date").cast(pl.Date).alias("churn_date"))
        .unique()
    )


def label(rows: pl.DataFrame, churns: pl.DataFrame, lead_min: int, lead_max: int) -> pl.DataFrame:
    """`rows` (partition_date, account_id, ...) with `churned` (bool) and `churn_date` (the first churn in the window)."""
    window = (
        rows.select("partition_date", "account_id")
        .join(churns, on="account_id", how="inner")
        .filter(
            pl.col("churn_date").is_between(
                pl.col("partition_date") + dt.timedelta(days=lead_min), pl.col("partition_date") + dt.timedelta(days=lead_max)
            )
        )
        .group_by("partition_date", "account_id")
        .agg(pl.col("churn_date").min())
    )
    return rows.join(window, on=["partition_date", "account_id"], how="left").with_columns(
        pl.col("churn_date").is_not_null().alias("churned")
    )


def live(health: pl.DataFrame) -> pl.DataFrame:
    """Accounts live on D: a contract term covers D. An account is churned only after its last
    term ends (CONTRACT.md §3), so this leaves churned accounts out by itself; the `status`
    column is not read, because a history built before point-in-time status holds today's
    snapshot status on every past day (a later churner would look churned all along)."""
    return health.filter(pl.col("has_live_term").fill_null(False))


def observations(health: pl.DataFrame, churns: pl.DataFrame, dates: Sequence[dt.date], spec: BacktestSpec) -> pl.DataFrame:
    """Live accounts on each date, labelled."""
    return label(live(health.filter(pl.col("partition_date").is_in(list(dates)))), churns, spec.lead_min, spec.lead_max)


def healthiness(frame: pl.DataFrame) -> dict[str, pl.Series]:
    """Each score as "higher = healthier": the model's score and the two baselines."""
    never = frame["days_since_last_login"].max()
    worst = (never if never is not None else 0) + 1
    return {
        MODEL: frame["score"].cast(pl.Float64).fill_null(0.0),
        "days_since_last_login": -frame["days_since_last_login"].cast(pl.Float64).fill_null(float(worst)),
        "events_30d": frame["events_30d"].cast(pl.Float64).fill_null(0.0),
    }


def auc(churned: pl.Series, health: pl.Series) -> float | None:
    """AUC of -health for churn; None with only one class."""
    y = churned.cast(pl.Int8).to_numpy()
    if y.min(initial=0) == y.max(initial=0) or len(y) == 0:
        return None
    from sklearn.metrics import roc_auc_score  # here: scikit-learn takes 1 s to import, and every run's process loads this module

    return float(roc_auc_score(y, -health.to_numpy()))


def aucs(frame: pl.DataFrame) -> dict[str, float | None]:
    return {name: auc(frame["churned"], values) for name, values in healthiness(frame).items()}


def lift_by_decile(frame: pl.DataFrame) -> pl.DataFrame:
    """Per score and decile (1 = the least healthy 10 %): rows, churned, churn rate and lift over the base rate."""
    base = frame["churned"].mean() or 0.0
    parts = []
    for name, values in healthiness(frame).items():
        n = frame.height
        ranked = frame.select("churned").with_columns(
            values.alias("health"),
            ((values.rank("ordinal") - 1) * DECILES // max(n, 1) + 1).cast(pl.Int64).alias("decile"),
        )
        parts.append(
            ranked.group_by("decile")
            .agg(pl.len().alias("rows"), pl.col("churned").sum().cast(pl.Int64).alias("churned"))
            .with_columns(pl.lit(name).alias("score"))
        )
    out = pl.concat(parts).with_columns((pl.col("churned") / pl.col("rows")).alias("churn_rate"))
    return out.with_columns((pl.col("churn_rate") / base if base else pl.lit(None, pl.Float64)).alias("lift")).select(
        "score", "decile", "rows", "churned", "churn_rate", "lift"
    ).sort("score", "decile")


def churn_by_band(frame: pl.DataFrame) -> pl.DataFrame:
    order = {"red": 0, "yellow": 1, "green": 2}
    return (
        frame.group_by(pl.col("band").fill_null("none"))
        .agg(pl.len().alias("rows"), pl.col("churned").sum().cast(pl.Int64).alias("churned"))
        .with_columns(
            (pl.col("churned") / pl.col("rows")).alias("churn_rate"),
            (pl.col("rows") / frame.height).alias("share_of_rows"),
            pl.col("band").replace_strict(order, default=3).alias("_order"),
        )
        .sort("_order")
        .drop("_order")
    )


def by_segment(frame: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for segment in sorted(frame["segment"].drop_nulls().unique().to_list()):
        part = frame.filter(pl.col("segment") == segment)
        red = part.filter(pl.col("band") == "red")
        rows.append(
            {
                "segment": segment,
                "rows": part.height,
                "churned": int(part["churned"].sum()),
                "churn_rate": float(part["churned"].mean() or 0.0),
                "red_churn_rate": float(red["churned"].mean()) if red.height else None,
                **{f"auc_{name}": value for name, value in aucs(part).items()},
            }
        )
    schema = {"segment": pl.String, "rows": pl.Int64, "churned": pl.Int64, "churn_rate": pl.Float64,
              "red_churn_rate": pl.Float64, **{f"auc_{n}": pl.Float64 for n in (MODEL, *BASELINES)}}
    return pl.DataFrame(rows, schema=schema)


# --- rules -------------------------------------------------------------------------------------

RULE_SCHEMA = {
    "rule_id": pl.String, "alerts": pl.Int64, "accounts_flagged": pl.Int64, "alerts_judged": pl.Int64,
    "precision": pl.Float64, "churners": pl.Int64, "churners_warned_30d": pl.Int64, "warned_share": pl.Float64,
    "median_lead_days": pl.Float64, "alerts_per_csm_week": pl.Float64,
}


def episodes(alert_events: pl.DataFrame) -> pl.DataFrame:
    """One row per alert (rule_id, account_id, episode_start) with its owner, from alert_events rows."""
    return alert_events.group_by("rule_id", "account_id", "episode_start").agg(
        pl.col("owner_email").sort_by("partition_date").first()
    )


def rule_metrics(
    alert_events: pl.DataFrame,
    churns: pl.DataFrame,
    spec: BacktestSpec,
    known_until: dt.date,
    csms: int,
    rule_ids: Sequence[str] = (),
) -> pl.DataFrame:
    """Per rule: alerts (episodes starting in [first, last]), accounts flagged, precision (the account
    churned within lead_max days after the episode start; only episodes whose window is known are
    judged), the share of churners warned lead_min+ days ahead (an episode starting lead_max to
    lead_min days before the churn), the median lead time of warned churners, alerts per CSM per week."""
    horizon, early = dt.timedelta(days=spec.lead_max), dt.timedelta(days=spec.lead_min)
    eps = episodes(alert_events).filter(pl.col("episode_start").is_between(spec.first, spec.last))
    # Churners whose warning window lies in the range: churn in [first + lead_min, last + lead_max], known.
    judged_churns = churns.filter(
        pl.col("churn_date").is_between(spec.first + early, min(spec.last + horizon, known_until))
    )
    weeks = ((spec.last - spec.first).days + 1) / 7
    ids = list(dict.fromkeys([*rule_ids, *sorted(eps["rule_id"].unique().to_list())]))
    rows = []
    for rule_id in ids:
        mine = eps.filter(pl.col("rule_id") == rule_id)
        judged = mine.filter(pl.col("episode_start") + horizon <= known_until)
        hit = (
            judged.join(churns, on="account_id", how="inner")
            .filter((pl.col("churn_date") > pl.col("episode_start")) & (pl.col("churn_date") <= pl.col("episode_start") + horizon))
            .select("account_id", "episode_start").unique()
        )
        before = (
            judged_churns.join(mine.select("account_id", "episode_start"), on="account_id", how="inner")
            .filter(pl.col("episode_start").is_between(pl.col("churn_date") - horizon, pl.col("churn_date") - pl.duration(days=1)))
            .group_by("account_id", "churn_date")
            .agg(pl.col("episode_start").min())
            .with_columns((pl.col("churn_date") - pl.col("episode_start")).dt.total_days().alias("lead_days"))
        )
        warned = before.filter(pl.col("lead_days") >= spec.lead_min)
        rows.append(
            {
                "rule_id": rule_id,
                "alerts": mine.height,
                "accounts_flagged": mine["account_id"].n_unique(),
                "alerts_judged": judged.height,
                "precision": hit.height / judged.height if judged.height else None,
                "churners": judged_churns.height,
                "churners_warned_30d": warned.height,
                "warned_share": warned.height / judged_churns.height if judged_churns.height else None,
                "median_lead_days": float(before["lead_days"].median()) if before.height else None,
                "alerts_per_csm_week": mine.height / csms / weeks if csms and weeks else None,
            }
        )
    return pl.DataFrame(rows, schema=RULE_SCHEMA)


# --- the whole backtest ------------------------------------------------------------------------


@dataclass
class BacktestResult:
    spec: BacktestSpec
    known_until: dt.date
    dates: list[dt.date]
    censored: list[dt.date]
    observations: int
    accounts: int
    churners: int
    positives: int
    auc: dict[str, float | None]
    lift: pl.DataFrame
    bands: pl.DataFrame
    segments: pl.DataFrame
    rules: pl.DataFrame
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures scripts read (`--format json`)."""
        return {
            "from": self.spec.first.isoformat(),
            "to": self.spec.last.isoformat(),
            "every_days": self.spec.every_days,
            "lead_days": [self.spec.lead_min, self.spec.lead_max],
            "outcomes_known_until": self.known_until.isoformat(),
            "observation_dates": [d.isoformat() for d in self.dates],
            "censored_dates": [d.isoformat() for d in self.censored],
            "observations": self.observations,
            "accounts": self.accounts,
            "churned_accounts": self.churners,
            "auc": {MODEL: _round(self.auc[MODEL]), "baselines": {b: _round(self.auc[b]) for b in BASELINES}},
            "rules": {
                r["rule_id"]: {
                    "alerts": r["alerts"],
                    "precision": _round(r["precision"]),
                    "warned_share": _round(r["warned_share"]),
                    "median_lead_days": r["median_lead_days"],
                    "alerts_per_csm_week": _round(r["alerts_per_csm_week"]),
                }
                for r in self.rules.to_dicts()
            },
            "notes": self.notes,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def censoring_note(spec: BacktestSpec, known_until: dt.date, censored: Sequence[dt.date]) -> str | None:
    if not censored:
        return None
    return (
        f"{len(censored)} observation date(s) from {min(censored)} dropped: their {spec.lead_min}-{spec.lead_max} day "
        f"churn window is not fully known (churns are known up to {known_until}: {RENEWAL_GRACE_DAYS} days of renewal "
        "grace before today, within the data)"
    )


def run_backtest(
    health: pl.DataFrame,
    outcomes: pl.DataFrame,
    alert_events: pl.DataFrame,
    spec: BacktestSpec,
    known_until: dt.date,
    rule_ids: Sequence[str] = (),
) -> BacktestResult:
    """The backtest of `health` (account_health rows of the observation dates, scored by the model
    under test) against `outcomes` (fct_term_outcomes rows), and of each rule's `alert_events`.

    Raises BacktestError when no observation date is usable or no churn falls in any label window."""
    kept, censored = split_censored(spec, known_until)
    if not kept:
        raise BacktestError(
            f"no observation date in {spec.first} .. {spec.last} has a known {spec.lead_min}-{spec.lead_max} day outcome: "
            f"churns are known up to {known_until}, so --from must be on or before {known_until - dt.timedelta(days=spec.lead_max)}"
        )
    have = set(health["partition_date"].unique().to_list())
    missing = [d for d in kept if d not in have]
    if len(missing) == len(kept):
        raise BacktestError(
            f"account_health has no rows on the observation dates {kept[0]} .. {kept[-1]}: the range is outside the data"
        )
    churns = churn_events(outcomes)
    frame = observations(health, churns, kept, spec)
    positives = int(frame["churned"].sum())
    if positives == 0:
        raise BacktestError(
            f"no live account churned {spec.lead_min}-{spec.lead_max} days after any observation date in "
            f"{spec.first} .. {kept[-1]}: nothing to backtest against (widen the range)"
        )
    notes = [n for n in [censoring_note(spec, known_until, censored)] if n]
    if missing:
        notes.append(f"{len(missing)} observation date(s) have no account_health rows: {', '.join(map(str, missing))}")
    csms = frame["owner_email"].drop_nulls().n_unique() if "owner_email" in frame.columns else 0
    return BacktestResult(
        spec=spec,
        known_until=known_until,
        dates=kept,
        censored=censored,
        observations=frame.height,
        accounts=frame["account_id"].n_unique(),
        churners=frame.filter(pl.col("churned"))["account_id"].n_unique(),
        positives=positives,
        auc=aucs(frame),
        lift=lift_by_decile(frame),
        bands=churn_by_band(frame),
        segments=by_segment(frame),
        rules=rule_metrics(alert_events, churns, spec, known_until, csms, rule_ids),
        notes=notes,
    )


def tables(result: BacktestResult, run_at: Mapping[str, Any] | None = None) -> dict[str, pl.DataFrame]:
    """The warehouse tables of a backtest (schema `evaluation`)."""
    stamp = {"from_date": result.spec.first, "to_date": result.spec.last, **(run_at or {})}
    auc_rows = pl.DataFrame(
        {"score": [MODEL, *BASELINES], "auc": [result.auc[MODEL], *[result.auc[b] for b in BASELINES]]},
        schema={"score": pl.String, "auc": pl.Float64},
    )
    return {
        name: frame.with_columns(pl.lit(v).alias(k) for k, v in stamp.items())
        for name, frame in {
            "backtest_auc": auc_rows,
            "backtest_lift": result.lift,
            "backtest_bands": result.bands,
            "backtest_segments": result.segments,
            "backtest_rules": result.rules,
        }.items()
    }
