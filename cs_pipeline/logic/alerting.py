"""Rules evaluated on account_health (CONTRACT.md §3): matches, episodes and the alert rows.

A rule's condition is compiled once to a polars expression and filters the day's health rows;
episodes, re-notify numbering and the live/backfill status come from `episodes`. Churned accounts
and accounts with no live contract term never match.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from typing import Any

import polars as pl

from cs_pipeline.logic.config import Rule, RuleSet, render
from cs_pipeline.logic.episodes import assign_episodes, delivery_status
from cs_pipeline.logic.expressions import compile_condition, variables

MATCH_SCHEMA = {"rule_id": pl.String, "account_id": pl.String, "partition_date": pl.Date}
OPEN_SCHEMA = {"rule_id": pl.String, "account_id": pl.String, "episode_start": pl.Date}
TREND_FACTS = ("score", "band", "score_7d_ago", "score_30d_ago")

ALERT_SCHEMA = {
    "alert_id": pl.String,
    "rule_id": pl.String,
    "kind": pl.String,
    "account_id": pl.String,
    "partition_date": pl.Date,
    "episode_start": pl.Date,
    "day_in_episode": pl.Int64,
    "notification_number": pl.Int64,
    "notify_due": pl.Boolean,
    "severity": pl.String,
    "live": pl.Boolean,
    "status": pl.String,
    "owner_email": pl.String,
    "segment": pl.String,
    "account_name": pl.String,
    "facts": pl.String,
    "message": pl.String,
    "task_title": pl.String,
    "task_steps": pl.String,
    "task_due_date": pl.Date,
    "task_priority": pl.String,
    # Everything a message needs, as it was when the rule fired: dispatch reads nothing else.
    "rule_description": pl.String,
    "rule_condition": pl.String,
    "task_on_resolve": pl.String,
    "arr": pl.Float64,
    "renewal_date": pl.Date,
    "score": pl.Float64,
    "band": pl.String,
    "score_7d_ago": pl.Float64,
    "score_30d_ago": pl.Float64,
    "top_movers": pl.String,  # JSON [[indicator, change of its contribution vs 30 days before], ...]
}
MOVERS = 3


def eligible(health: pl.DataFrame) -> pl.DataFrame:
    """Churned accounts, and accounts with no live contract term on D, fire no rule."""
    return health.filter((pl.col("status") != "churned") & pl.col("has_live_term").fill_null(False))


def matches(health: pl.DataFrame, rules: RuleSet, known: Collection[str]) -> pl.DataFrame:
    """(rule_id, account_id, partition_date) for every rule whose condition holds."""
    candidates = eligible(health)
    found = []
    for rule in rules.rules:
        scope = candidates.filter(pl.col("segment").is_in(list(rule.segments))) if rule.segments else candidates
        hit = scope.filter(compile_condition(rule.condition, known))
        found.append(hit.select(pl.lit(rule.id).alias("rule_id"), "account_id", "partition_date"))
    if not found:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    return pl.concat(found).cast(MATCH_SCHEMA).sort("partition_date", "rule_id", "account_id")  # type: ignore[arg-type]


def _facts(rule: Rule, row: Mapping[str, Any]) -> dict[str, Any]:
    """The figures behind an alert: what the condition looked at, and the score trend."""
    names = sorted(variables(rule.condition)) + [n for n in TREND_FACTS if n not in variables(rule.condition)]
    return {name: _plain(row.get(name)) for name in names}


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _owner(rule: Rule, row: Mapping[str, Any]) -> str | None:
    owner = rule.task.owner
    return row.get("owner_email") if owner == "account_owner" else owner


def top_movers(now: Mapping[str, Any], then: Mapping[str, Any] | None) -> list[list]:
    """The indicators whose contribution to the score moved most versus 30 days before."""
    if not then:
        return []
    moved = [
        [name.removeprefix("contribution_"), round((now.get(name) or 0.0) - (then.get(name) or 0.0), 3)]
        for name in now
        if name.startswith("contribution_")
    ]
    return sorted((m for m in moved if m[1] != 0), key=lambda m: -abs(m[1]))[:MOVERS]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def alert_rows(
    health: pl.DataFrame,
    rules: RuleSet,
    known: Collection[str],
    open_before: pl.DataFrame,
    today: dt.date,
    live_window_days: int,
    month_before: pl.DataFrame | None = None,
    pinned: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The `alerts` asset's rows for the days in `health`, processed in order.

    `open_before`: episodes (rule_id, account_id, episode_start) whose condition held on the day
    before the first day of `health`, so an episode continues across runs. `month_before`: the
    health rows 30 days before those days (for what moved the score); without it, no movers.
    `pinned`: the (rule_id, account_id, episode_start) of alerts already delivered or tasked,
    which keep their id (`assign_episodes`).
    """
    found = matches(health, rules, known)
    if found.height == 0:
        return pl.DataFrame(schema=ALERT_SCHEMA)
    renotify = {rule.id: rule.renotify_days for rule in rules.rules}
    first_date = health["partition_date"].min()
    episodes = assign_episodes(found, open_before.cast(OPEN_SCHEMA), renotify, first_date=first_date, pinned=pinned)  # type: ignore[arg-type]
    joined = episodes.join(health, on=["account_id", "partition_date"], how="left")
    earlier: dict[tuple, dict] = {}
    if month_before is not None and month_before.height:
        shifted = month_before.with_columns((pl.col("partition_date") + dt.timedelta(days=30)).alias("partition_date"))
        keys = episodes.select("account_id", "partition_date").unique()
        earlier = {(r["account_id"], r["partition_date"]): r
                   for r in shifted.join(keys, on=["account_id", "partition_date"]).iter_rows(named=True)}
    rows = []
    for row in joined.iter_rows(named=True):
        rule = rules.by_id[row["rule_id"]]
        then = earlier.get((row["account_id"], row["partition_date"]))
        status = delivery_status(row["partition_date"], today, live_window_days)
        rows.append(
            {
                "alert_id": row["alert_id"],
                "rule_id": rule.id,
                "kind": rule.kind,
                "account_id": row["account_id"],
                "partition_date": row["partition_date"],
                "episode_start": row["episode_start"],
                "day_in_episode": row["day_in_episode"],
                "notification_number": row["notification_number"],
                "notify_due": row["notify_due"],
                "severity": rule.severity,
                "live": status == "live",
                "status": status,
                "owner_email": _owner(rule, row),
                "segment": row.get("segment"),
                "account_name": row.get("name"),
                "facts": json.dumps(_facts(rule, row), sort_keys=True),
                "message": render(rule.message, row),
                "task_title": render(rule.task.title, row),
                "task_steps": json.dumps([render(step, row) for step in rule.task.steps]),
                "task_due_date": row["partition_date"] + dt.timedelta(days=rule.task.due_in_days),
                "task_priority": rule.task.priority,
                "rule_description": rule.description,
                "rule_condition": rule.condition,
                "task_on_resolve": rule.task.on_resolve,
                "arr": _float(row.get("arr")),
                "renewal_date": row.get("contract_end_date"),
                "score": _float(row.get("score")),
                "band": row.get("band"),
                "score_7d_ago": _float(row.get("score_7d_ago")),
                "score_30d_ago": _float(row.get("score_30d_ago")),
                "top_movers": json.dumps(top_movers(row, then)),
            }
        )
    return pl.DataFrame(rows, schema=ALERT_SCHEMA).sort("partition_date", "rule_id", "account_id")
