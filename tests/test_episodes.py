"""Alert episodes: consecutive days are one alert, gaps start a new one, re-notify numbering."""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
import pytest

from cs_pipeline.logic.episodes import alert_id, assign_episodes, delivery_status


def day(n: int) -> dt.date:
    return dt.date(2025, 3, 1) + dt.timedelta(days=n - 1)


def matches(*rows: tuple[str, str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "rule_id": [rule for rule, _, _ in rows],
            "account_id": [account for _, account, _ in rows],
            "partition_date": [day(n) for _, _, n in rows],
        },
        schema={"rule_id": pl.String, "account_id": pl.String, "partition_date": pl.Date},
    )


def open_episodes(*rows: tuple[str, str, dt.date]) -> pl.DataFrame:
    return pl.DataFrame(
        {"rule_id": [r[0] for r in rows], "account_id": [r[1] for r in rows], "episode_start": [r[2] for r in rows]},
        schema={"rule_id": pl.String, "account_id": pl.String, "episode_start": pl.Date},
    )


NOTHING_OPEN = open_episodes()


def episodes_of(result: pl.DataFrame, rule: str = "r", account: str = "a") -> list[tuple]:
    rows = result.filter((pl.col("rule_id") == rule) & (pl.col("account_id") == account))
    return list(
        rows.select(
            pl.col("partition_date").dt.day(),
            pl.col("episode_start").dt.day(),
            "day_in_episode",
            "notification_number",
            "notify_due",
        ).iter_rows()
    )


def test_consecutive_days_are_one_episode_and_a_gap_starts_another():
    result = assign_episodes(matches(("r", "a", 1), ("r", "a", 2), ("r", "a", 3), ("r", "a", 5)), NOTHING_OPEN, {"r": 0})
    assert episodes_of(result) == [
        (1, 1, 0, 1, True),
        (2, 1, 1, 1, False),
        (3, 1, 2, 1, False),
        (5, 5, 0, 1, True),  # day 4 was false: a new episode
    ]
    ids = result.get_column("alert_id").to_list()
    assert ids[:3] == [alert_id("r", "a", day(1))] * 3
    assert ids[3] == alert_id("r", "a", day(5))


def test_renotify_numbering():
    days = [("r", "a", n) for n in range(1, 17)]
    result = assign_episodes(matches(*days), NOTHING_OPEN, {"r": 7})
    due = result.filter("notify_due")
    assert due.get_column("day_in_episode").to_list() == [0, 7, 14]
    assert due.get_column("notification_number").to_list() == [1, 2, 3]
    assert result.get_column("notification_number").to_list() == [1] * 7 + [2] * 7 + [3] * 2
    assert result.get_column("alert_id").n_unique() == 1


def test_episode_continues_from_the_previous_run():
    started = day(1) - dt.timedelta(days=10)  # opened 10 days before this range, still true yesterday
    result = assign_episodes(
        matches(("r", "a", 1), ("r", "a", 2), ("r", "a", 4)),
        open_episodes(("r", "a", started)),
        {"r": 7},
    )
    rows = result.select("partition_date", "episode_start", "day_in_episode", "notification_number", "notify_due").rows()
    assert rows == [
        (day(1), started, 10, 2, False),
        (day(2), started, 11, 2, False),
        (day(4), day(4), 0, 1, True),
    ]
    assert result.get_column("alert_id").to_list()[:2] == [alert_id("r", "a", started)] * 2


def test_an_open_episode_does_not_continue_after_a_false_first_day():
    # Account a's rule was true before the range but not on its first day (day 1): day 2 is new.
    result = assign_episodes(
        matches(("r", "a", 2)),
        open_episodes(("r", "a", day(1) - dt.timedelta(days=3))),
        {"r": 7},
        first_date=day(1),
    )
    assert episodes_of(result) == [(2, 2, 0, 1, True)]


def test_open_episodes_only_continue_their_own_rule_and_account():
    result = assign_episodes(
        matches(("r", "a", 1), ("r", "b", 1), ("s", "a", 1)),
        open_episodes(("r", "a", day(1) - dt.timedelta(days=2))),
        {"r": 0, "s": 0},
    )
    assert episodes_of(result, "r", "a") == [(1, 27, 2, 1, False)]  # started on Feb 27
    assert episodes_of(result, "r", "b") == [(1, 1, 0, 1, True)]
    assert episodes_of(result, "s", "a") == [(1, 1, 0, 1, True)]


def test_rules_and_accounts_are_independent_and_extra_columns_are_kept():
    frame = matches(("r", "b", 2), ("r", "a", 1), ("s", "a", 2), ("r", "a", 2)).with_columns(
        pl.lit("x").alias("severity")
    )
    result = assign_episodes(frame, NOTHING_OPEN, {"r": 1, "s": 0})
    assert result.select("partition_date", "rule_id", "account_id").rows() == [
        (day(1), "r", "a"),
        (day(2), "r", "a"),
        (day(2), "r", "b"),
        (day(2), "s", "a"),
    ]
    assert episodes_of(result, "r", "a") == [(1, 1, 0, 1, True), (2, 1, 1, 2, True)]  # renotify daily
    assert result.get_column("severity").to_list() == ["x"] * 4


def test_a_delivered_alert_keeps_its_id_when_earlier_days_are_found():
    # Delivered as (r, a, day 5); a wider run now finds the condition true from day 2: days 2-4 are
    # an earlier episode of their own, and day 5 on is still the delivered alert, numbered from day 5.
    stretch = matches(*[("r", "a", n) for n in range(2, 9)], ("r", "b", 3), ("r", "b", 4), ("r", "b", 5))
    result = assign_episodes(stretch, NOTHING_OPEN, {"r": 3}, pinned=open_episodes(("r", "a", day(5)), ("r", "c", day(4))))
    assert episodes_of(result) == [
        (2, 2, 0, 1, True), (3, 2, 1, 1, False), (4, 2, 2, 1, False),
        (5, 5, 0, 1, True), (6, 5, 1, 1, False), (7, 5, 2, 1, False), (8, 5, 3, 2, True),
    ]
    assert set(result.filter(pl.col("partition_date") >= day(5), pl.col("account_id") == "a")["alert_id"]) == {alert_id("r", "a", day(5))}
    assert [start for _, start, *_ in episodes_of(result, "r", "b")] == [3, 3, 3]  # other pins change nothing


def test_a_pinned_start_on_the_first_day_does_not_continue_the_day_before():
    # The day before the range now holds an episode (a wider history), but the delivered alert began on day 1.
    result = assign_episodes(matches(("r", "a", 1), ("r", "a", 2)), open_episodes(("r", "a", day(1) - dt.timedelta(days=4))),
                             {"r": 0}, first_date=day(1), pinned=open_episodes(("r", "a", day(1))))
    assert episodes_of(result) == [(1, 1, 0, 1, True), (2, 1, 1, 1, False)]
    same = assign_episodes(matches(("r", "a", 1), ("r", "a", 2)), NOTHING_OPEN, {"r": 0}, pinned=open_episodes(("r", "a", day(1))))
    assert same.equals(assign_episodes(matches(("r", "a", 1), ("r", "a", 2)), NOTHING_OPEN, {"r": 0}))


def test_recomputing_gives_the_same_ids():
    frame = matches(("r", "a", 1), ("r", "a", 2), ("s", "b", 2))
    first = assign_episodes(frame, NOTHING_OPEN, {"r": 3, "s": 3})
    again = assign_episodes(frame.reverse(), NOTHING_OPEN, {"r": 3, "s": 3})
    assert first.equals(again)


def test_alert_id_is_deterministic():
    expected = "al_" + hashlib.sha256(b"no_login_20d|acc_1|2025-03-01").hexdigest()[:16]
    assert alert_id("no_login_20d", "acc_1", dt.date(2025, 3, 1)) == expected
    assert alert_id("no_login_20d", "acc_1", dt.date(2025, 3, 2)) != expected
    assert alert_id("no_login_20d", "acc_2", dt.date(2025, 3, 1)) != expected


def test_empty_matches_keep_the_output_columns():
    result = assign_episodes(matches(), NOTHING_OPEN, {})
    assert result.is_empty()
    assert result.schema["episode_start"] == pl.Date
    assert result.schema["notify_due"] == pl.Boolean
    assert result.schema["alert_id"] == pl.String


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no renotify_days for rule"):
        assign_episodes(matches(("r", "a", 1)), NOTHING_OPEN, {})
    with pytest.raises(ValueError, match="twice"):
        assign_episodes(matches(("r", "a", 1), ("r", "a", 1)), NOTHING_OPEN, {"r": 0})
    with pytest.raises(ValueError, match="episode_start"):
        assign_episodes(matches(("r", "a", 1)), pl.DataFrame({"rule_id": [], "account_id": []}), {"r": 0})


def test_delivery_status():
    today = dt.date(2025, 3, 10)
    assert delivery_status(dt.date(2025, 3, 10), today, 2) == "live"
    assert delivery_status(dt.date(2025, 3, 8), today, 2) == "live"
    assert delivery_status(dt.date(2025, 3, 7), today, 2) == "suppressed_backfill"
    assert delivery_status(dt.date(2025, 3, 10), today, 0) == "live"
    assert delivery_status(dt.date(2025, 3, 9), today, 0) == "suppressed_backfill"
