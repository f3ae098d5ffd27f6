"""Alert episodes: one alert per stretch of consecutive days a rule holds for an account.

A rule that stays true day after day must not message a CSM every morning. Days on which it
holds in a row form one episode, opened on its first day and identified by (rule, account,
episode start), so recomputing any day gives the same alert id and never a second alert. Within
an episode a notification is due on day 0 and then every `renotify_days` days.

Acted-on alerts keep their identity. A run always knows the alert state of the day before it
(`cs_pipeline.partitions`), so an episode's start is the data's. When that could not hold (the
first partition was moved earlier after go-live, or late data filled days before a delivered
alert's start), the days found before a delivered alert's start form an earlier episode of their
own, and the delivered alert goes on under its id: its message is never sent twice and its task
never doubled (`pinned`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

import polars as pl

__all__ = ["alert_id", "assign_episodes", "delivery_status", "LIVE", "SUPPRESSED_BACKFILL"]

LIVE = "live"
SUPPRESSED_BACKFILL = "suppressed_backfill"

_KEY = ["rule_id", "account_id"]
_ADDED = {
    "episode_start": pl.Date,
    "day_in_episode": pl.Int64,
    "notification_number": pl.Int64,
    "notify_due": pl.Boolean,
    "alert_id": pl.String,
}


def alert_id(rule_id: str, account_id: str, episode_start: dt.date) -> str:
    """The deterministic id of an episode's alert: same rule, account and start, same id."""
    digest = hashlib.sha256(f"{rule_id}|{account_id}|{episode_start.isoformat()}".encode()).hexdigest()
    return "al_" + digest[:16]


def delivery_status(partition_date: dt.date, today: dt.date, live_window_days: int) -> str:
    """'live' when the partition is at most `live_window_days` before today, else 'suppressed_backfill'."""
    return LIVE if partition_date >= today - dt.timedelta(days=live_window_days) else SUPPRESSED_BACKFILL


def assign_episodes(
    matches: pl.DataFrame,
    open_before: pl.DataFrame,
    renotify_days: Mapping[str, int],
    *,
    first_date: dt.date | None = None,
    pinned: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add episode_start, day_in_episode, notification_number, notify_due and alert_id to `matches`.

    `matches` holds (rule_id, account_id, partition_date, ...) for every day a rule held, over a
    range of days processed together. `open_before` holds (rule_id, account_id, episode_start) of
    the episodes that were still true on the day before the range; a match on the range's first
    day continues such an episode. `first_date` is the range's first day; it defaults to the
    earliest date in `matches`, which is wrong only when nothing matched on the real first day,
    so callers that know the range should pass it. `pinned` holds (rule_id, account_id,
    episode_start) of alerts already delivered or tasked: a stretch of days that runs through
    such a start is split there, so that alert keeps its id. The result is sorted by
    partition_date, rule_id, account_id.
    """
    _check_inputs(matches, open_before, renotify_days)
    if matches.is_empty():
        return matches.with_columns([pl.lit(None, dtype=dtype).alias(name) for name, dtype in _ADDED.items()])
    if first_date is None:
        first_date = matches.get_column("partition_date").min()

    episodes = (
        matches.join(_pins(pinned), on=[*_KEY, "partition_date"], how="left")
        .sort([*_KEY, "partition_date"])
        .with_columns(_run_start().alias("_run_start"))
        .join(_carried_episodes(open_before), on=_KEY, how="left")
        .with_columns(_episode_start(first_date).alias("episode_start"))
        .with_columns(_days_between("episode_start", "partition_date").alias("day_in_episode"))
        .join(_renotify_frame(renotify_days), on="rule_id", how="left")
        .with_columns(
            _notification_number().alias("notification_number"),
            _notify_due().alias("notify_due"),
        )
        .drop(["_run_start", "_carried_start", "_renotify_days", "_pinned"])
    )
    return _with_alert_ids(episodes).sort(["partition_date", *_KEY])


def _check_inputs(matches: pl.DataFrame, open_before: pl.DataFrame, renotify_days: Mapping[str, int]) -> None:
    for name, frame, columns in (
        ("matches", matches, [*_KEY, "partition_date"]),
        ("open_before", open_before, [*_KEY, "episode_start"]),
    ):
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise ValueError(f"assign_episodes: {name} has no column(s) {', '.join(missing)}")
    if matches.select([*_KEY, "partition_date"]).is_duplicated().any():
        raise ValueError("assign_episodes: matches holds a (rule_id, account_id, partition_date) twice")
    if open_before.select(_KEY).is_duplicated().any():
        raise ValueError("assign_episodes: open_before holds two open episodes for one (rule_id, account_id)")
    unknown = sorted(set(matches.get_column("rule_id").unique().to_list()) - set(renotify_days))
    if unknown:
        raise ValueError(f"assign_episodes: no renotify_days for rule(s) {', '.join(unknown)}")


def _pins(pinned: pl.DataFrame | None) -> pl.DataFrame:
    schema = {"rule_id": pl.String, "account_id": pl.String, "partition_date": pl.Date, "_pinned": pl.Boolean}
    if pinned is None or pinned.is_empty():
        return pl.DataFrame(schema=schema)
    return pinned.select(*_KEY, pl.col("episode_start").cast(pl.Date).alias("partition_date"), pl.lit(True).alias("_pinned")).unique().cast(schema)  # type: ignore[arg-type]


def _run_start() -> pl.Expr:
    """The first day of each run of consecutive days (frame sorted by key and date); a pinned
    start (an acted-on alert's) begins a run of its own."""
    date = pl.col("partition_date")
    gap = _days_between(date.shift(1), date).over(_KEY)
    starts_run = gap.is_null() | (gap != 1) | pl.col("_pinned").fill_null(False)
    run_number = starts_run.cast(pl.Int64).cum_sum().over(_KEY)
    return date.min().over([*_KEY, run_number.alias("_run")])


def _carried_episodes(open_before: pl.DataFrame) -> pl.DataFrame:
    return open_before.select(*_KEY, pl.col("episode_start").cast(pl.Date).alias("_carried_start"))


def _episode_start(first_date: dt.date) -> pl.Expr:
    # Only a run that begins on the range's first day touches yesterday, so only it can continue
    # an episode that was open then; any later run follows a day where the rule was false.
    # A pinned day starts a run of its own (the pinned alert's), which never continues another.
    pinned_run = pl.col("_pinned").fill_null(False).any().over([*_KEY, "_run_start"])
    continues = (pl.col("_run_start") == pl.lit(first_date)) & pl.col("_carried_start").is_not_null() & ~pinned_run
    return pl.when(continues).then(pl.col("_carried_start")).otherwise(pl.col("_run_start"))


def _days_between(start, end) -> pl.Expr:
    start = pl.col(start) if isinstance(start, str) else start
    end = pl.col(end) if isinstance(end, str) else end
    return (end - start).dt.total_days().cast(pl.Int64)


def _renotify_frame(renotify_days: Mapping[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"rule_id": list(renotify_days), "_renotify_days": [int(days) for days in renotify_days.values()]},
        schema={"rule_id": pl.String, "_renotify_days": pl.Int64},
    )


def _notification_number() -> pl.Expr:
    days, interval = pl.col("day_in_episode"), pl.col("_renotify_days")
    return pl.when(interval > 0).then(1 + days // interval).otherwise(1)


def _notify_due() -> pl.Expr:
    days, interval = pl.col("day_in_episode"), pl.col("_renotify_days")
    return pl.when(interval > 0).then(days % interval == 0).otherwise(days == 0)


def _with_alert_ids(episodes: pl.DataFrame) -> pl.DataFrame:
    # sha256 is not a polars expression, so ids are computed once per episode (a handful a day),
    # not per row, and joined back.
    distinct = episodes.select([*_KEY, "episode_start"]).unique()
    ids = distinct.with_columns(
        pl.Series(
            "alert_id",
            [alert_id(*row) for row in distinct.iter_rows()],
            dtype=pl.String,
        )
    )
    return episodes.join(ids, on=[*_KEY, "episode_start"], how="left")
