"""latest_on_or_before: the latest row per account on or before each day, for few and many days."""

import datetime as dt
import random

import polars as pl
import pytest

from cs_pipeline.logic import latest
from cs_pipeline.logic.latest import latest_on_or_before

D = dt.date


def naive(rows: pl.DataFrame, on: str, dates: list[dt.date], values: list[str], order: list[str]) -> pl.DataFrame:
    out = []
    for day in sorted(set(dates)):
        for (account,), group in rows.filter(pl.col(on) <= day).group_by("account_id"):
            last = group.sort([on, *order]).row(-1, named=True)
            out.append({"account_id": account, "partition_date": day, **{v: last[v] for v in values}})
    return pl.DataFrame(out, schema={"account_id": pl.String, "partition_date": pl.Date, **{v: rows.schema[v] for v in values}})


def sample_rows(seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = {(f"a{rng.randrange(12)}", D(2025, 1, 1) + dt.timedelta(days=rng.randrange(60))) for _ in range(150)}
    return pl.DataFrame(
        [{"account_id": a, "day": d, "at": dt.datetime.combine(d, dt.time(rng.randrange(24))), "score": rng.randrange(11)}
         for a, d in rows]
    )


@pytest.mark.parametrize("n_days", [1, 3, latest.FEW_DAYS, latest.FEW_DAYS + 1, 40])
def test_matches_a_scan_per_day(n_days: int) -> None:
    rows = sample_rows(n_days)
    dates = sorted(random.Random(n_days).sample([D(2024, 12, 20) + dt.timedelta(days=i) for i in range(80)], n_days))
    got = latest_on_or_before(rows.lazy(), "day", dates, ["score", "day"], ["at"]).collect()
    expected = naive(rows, "day", dates, ["score", "day"], ["at"])
    assert got.sort("account_id", "partition_date").equals(expected.sort("account_id", "partition_date"))


def test_ties_on_the_day_are_ordered_by_the_order_columns() -> None:
    rows = pl.DataFrame({
        "account_id": ["a", "a", "a", "b"],
        "day": [D(2025, 1, 2), D(2025, 1, 2), D(2025, 1, 1), D(2025, 1, 3)],
        "at": [dt.datetime(2025, 1, 2, 9), dt.datetime(2025, 1, 2, 8), dt.datetime(2025, 1, 1, 23), dt.datetime(2025, 1, 3)],
        "score": [9, 1, 5, 7],
    })
    got = latest_on_or_before(rows.lazy(), "day", [D(2025, 1, 1), D(2025, 1, 2), D(2025, 1, 5)], ["score"], ["at"]).collect()
    assert sorted(got.rows()) == [
        ("a", D(2025, 1, 1), 5), ("a", D(2025, 1, 2), 9), ("a", D(2025, 1, 5), 9), ("b", D(2025, 1, 5), 7),
    ]
