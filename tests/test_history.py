"""logic.history: the version valid on each day, seats as of each day, and the status of a day."""

import datetime as dt

import polars as pl
import pytest

from cs_pipeline.logic import history
from cs_pipeline.logic.history import FIRST_DAY, accounts_on_days, as_of, seats

D = dt.date
T = dt.datetime
DAYS = [D(2024, 12, 31), D(2025, 1, 4), D(2025, 1, 5), D(2025, 1, 9), D(2025, 1, 10), D(2025, 1, 11)]

# A: recorded by the load of 01-01 (extended back), changed by the load of 01-10.
# B: recorded on 01-01, gone from the export of 01-05. C: in no load before 01-10 (extended back).
ACCOUNTS = pl.DataFrame(
    {
        "account_id": ["A", "A", "B", "C"],
        "segment": ["smb", "enterprise", "smb", "smb"],
        "status": ["active", "churned", "active", "churned"],
        "valid_from": [FIRST_DAY, D(2025, 1, 10), FIRST_DAY, FIRST_DAY],
        "valid_to": [D(2025, 1, 10), None, D(2025, 1, 5), None],
        "recorded_from": [D(2025, 1, 1), D(2025, 1, 10), D(2025, 1, 1), D(2025, 1, 10)],
        "is_current": [False, True, False, True],
    }
)
TERMS = pl.DataFrame(
    {
        "account_id": ["A", "B", "C", "C"],
        "start_date": [D(2025, 1, 1), D(2024, 1, 1), D(2024, 1, 1), D(2025, 1, 1)],
        "end_date": [D(2025, 1, 8), D(2025, 12, 1), D(2024, 12, 31), D(2025, 1, 3)],
        "churned_at": [D(2025, 1, 8), None, None, D(2025, 1, 3)],
    }
)


def _by_day(frame: pl.LazyFrame, *columns: str) -> dict[tuple[str, dt.date], tuple]:
    rows = frame.collect().sort("account_id", "partition_date")
    return {(r["account_id"], r["partition_date"]): tuple(r[c] for c in columns) for r in rows.iter_rows(named=True)}


def test_each_day_reads_the_version_valid_on_it_and_days_before_the_first_load_the_earliest():
    got = _by_day(as_of(ACCOUNTS.lazy(), DAYS), "segment")
    assert got == {
        **{("A", day): ("smb",) for day in DAYS[:4]},
        **{("A", day): ("enterprise",) for day in DAYS[4:]},
        ("B", DAYS[0]): ("smb",), ("B", DAYS[1]): ("smb",),  # gone from 01-05 on: no row
        **{("C", day): ("smb",) for day in DAYS},
    }


def test_status_comes_from_the_terms_until_a_load_reports_one():
    got = _by_day(accounts_on_days(ACCOUNTS.lazy(), TERMS.lazy(), DAYS), "status", "segment")
    # A: trial before its first term (12-31, before the load of 01-01), then the reported
    # `active` (even after its term ended on 01-08: the load of 01-01 said so), then `churned`.
    assert [got[("A", day)][0] for day in DAYS] == ["trial", "active", "active", "active", "churned", "churned"]
    # C: its export says `churned` from 01-10; before, its terms say active, then churned from
    # the day after the end of its last term without a successor (01-03).
    assert [got[("C", day)][0] for day in DAYS] == ["active", "churned", "churned", "churned", "churned", "churned"]
    assert list(accounts_on_days(ACCOUNTS.lazy(), TERMS.lazy(), DAYS).collect_schema()) == ["account_id", "segment", "status", "partition_date"]


def test_an_account_without_terms_is_a_trial_and_a_frame_without_history_holds_on_every_day():
    plain = pl.DataFrame({"account_id": ["N"], "status": ["active"]})
    got = _by_day(accounts_on_days(plain.lazy(), TERMS.lazy(), DAYS[:2]), "status")
    assert got == {("N", DAYS[0]): ("active",), ("N", DAYS[1]): ("active",)}  # recorded on every day
    unrecorded = plain.with_columns(recorded_from=pl.lit(D(2026, 1, 1)))
    assert set(_by_day(accounts_on_days(unrecorded.lazy(), TERMS.lazy(), DAYS[:2]), "status").values()) == {("trial",)}


@pytest.mark.parametrize("few_days", [8, 0], ids=["one_pass", "running_sum"])
def test_seats_count_the_users_of_the_account_on_each_day(few_days, monkeypatch):
    monkeypatch.setattr(history, "FEW_DAYS", few_days)
    users = pl.DataFrame(
        {
            "account_id": ["A", "A", "A", "B", "A"],
            "created_at": [T(2024, 1, 1), T(2025, 1, 4, 12), T(2024, 1, 1), None, T(2024, 1, 1)],
            "activated_at": [T(2025, 1, 5), None, T(2024, 1, 1), T(2024, 1, 1), T(2024, 1, 1)],
            # u3 is deactivated during 01-09: not a seat at the end of that day.
            "deactivated_at": [None, None, T(2025, 1, 9, 3), None, None],
            # u5 moves from A to B with the load of 01-10.
            "valid_from": [FIRST_DAY, FIRST_DAY, FIRST_DAY, FIRST_DAY, FIRST_DAY],
            "valid_to": [None, None, None, None, D(2025, 1, 10)],
        }
    )
    moved = pl.DataFrame(
        {"account_id": ["B"], "created_at": [T(2024, 1, 1)], "activated_at": [T(2024, 1, 1)], "deactivated_at": [None],
         "valid_from": [D(2025, 1, 10)], "valid_to": [None]},
        schema=users.schema,
    )
    got = _by_day(seats(pl.concat([users, moved]).lazy(), DAYS), "assigned_users", "activated_users")
    assert [got[("A", day)] for day in DAYS] == [(3, 2), (4, 2), (4, 3), (3, 2), (2, 1), (2, 1)]
    assert [got[("B", day)] for day in DAYS] == [(1, 1)] * 4 + [(2, 2)] * 2
    # Without history columns every user counts on every day, as before.
    plain = users.drop("valid_from", "valid_to")
    assert _by_day(seats(plain.lazy(), [D(2025, 1, 11)]), "assigned_users", "activated_users") == {
        ("A", D(2025, 1, 11)): (3, 2), ("B", D(2025, 1, 11)): (1, 1),
    }
