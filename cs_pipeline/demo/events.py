"""Product events: one Parquet file per day, each day drawn from its own random stream."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cs_pipeline.demo import churn
from cs_pipeline.demo.world import (
    DASHBOARD, DAY_S, EVENTS, FOLLOW_UP_SHARES, HOUR_S, LOGIN, SESSION_US, US, WEEKEND_FACTOR,
    WORKFLOW, Accounts, Window, World,
)
from cs_pipeline.demo.tables import ids, take


# --------------------------------------------------------------------------------------------
# Events: one Parquet file per day, each built from numpy arrays.


def write_events(w: World, out: Path, say: Callable[[str], None]) -> int:
    events_dir = out / "events"
    for old in events_dir.glob("date=*"):  # days of an earlier run must not linger
        shutil.rmtree(old)
    user_ids = ids("usr_", w.users.n, 6)
    user_accounts = take(w.account_ids, w.users.account)
    scripted = _scripted_events(w)
    total = 0
    for i, day in enumerate(range(w.win.start, w.win.end + 1)):
        rng = np.random.default_rng([w.spec.seed, day])  # a day's events depend on nothing else drawn
        user, code, offset_us = _random_day(w, day, rng)
        on_day = slice(*np.searchsorted(scripted[0], [day, day + 1]))
        user = np.concatenate([user, scripted[1][on_day]])
        code = np.concatenate([code, scripted[2][on_day]])
        offset_us = np.concatenate([offset_us, scripted[3][on_day]])
        date = w.win.date(day)
        table = pa.table({
            "event_id": ids(f"evt_{date:%Y%m%d}_", len(user), 7),
            "account_id": user_accounts.take(pa.array(user)),
            "user_id": user_ids.take(pa.array(user)),
            "event": take(EVENTS, code),
            "occurred_at": pa.array(day * DAY_S * US + offset_us, pa.timestamp("us", tz="UTC")),
        })
        folder = events_dir / f"date={date.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        # zstd halves the files for the same time as snappy; event ids are unique, so a
        # dictionary would only cost time.
        pq.write_table(table, folder / "part-0.parquet", compression="zstd",
                       use_dictionary=["account_id", "user_id", "event"])
        total += table.num_rows
        if (i + 1) % 10 == 0 or i + 1 == w.win.days:
            say(f"events: {i + 1}/{w.win.days} days written ({total:,} events)")
    return total


def _random_day(w: World, day: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who has a session on `day` and what they do: (user, event code, µs since midnight).
    Each session starts with a login; its other events follow within four hours."""
    u, acc = w.users, w.acc
    level = usage_level(acc, w.win, day)[u.account]
    weekday_factor = WEEKEND_FACTOR if (day + 3) % 7 >= 5 else 1.0  # 1970-01-01 was a Thursday
    can = (u.from_day <= day) & (day < u.to_day) & (level > 0)
    drawn = rng.random(u.n) < u.propensity * level * weekday_factor
    who = np.flatnonzero(can & (drawn | u.forced))

    # A core user who would not have come that day only logs in for a quick look, so that the
    # weekend rhythm survives the daily logins of healthy accounts.
    per_session = np.where(drawn[who], 1 + rng.poisson(u.extra_events[who]), 1)
    user = np.repeat(who, per_session)
    is_login = np.zeros(len(user), bool)
    is_login[np.cumsum(per_session) - per_session] = True
    code = rng.choice(len(EVENTS), size=len(user), p=FOLLOW_UP_SHARES)
    code[~acc.uses_workflows[u.account[user]] & (code == WORKFLOW)] = DASHBOARD
    code[is_login] = LOGIN

    local_start = rng.normal(10.5, 2.5, len(who)).clip(6, 21)
    start = (((local_start - acc.tz_hours[u.account[who]]) % 24) * HOUR_S * US).astype(np.int64)
    start = np.minimum(start, DAY_S * US - 2)
    room = np.repeat(np.minimum(SESSION_US, DAY_S * US - 1 - start), per_session)
    offset = np.repeat(start, per_session) + 1 + (rng.random(len(user)) * room).astype(np.int64)
    offset[is_login] = start
    return user, code.astype(np.int64), offset


def usage_level(acc: Accounts, win: Window, day: int) -> np.ndarray:
    """Per account: how busy it is on `day` (0 = nobody uses the product)."""
    progress = (day - win.start) / max(win.days - 1, 1)
    level = acc.engagement * (1.0 + (acc.trend - 1.0) * progress) * churn.activity_factor(acc, day)
    live = (acc.usage_from <= day) & (day < acc.usage_to) & ~((acc.pause_from <= day) & (day < acc.pause_to))
    return np.where(live, level, 0.0)


def _scripted_events(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plants' sessions as (day, user, code, µs since midnight) arrays sorted by day; events of
    a session follow its login a minute apart."""
    rows = [(day, user, code, int(hour * HOUR_S * US) + j * 60 * US)
            for day, user, codes, hour in w.sessions for j, code in enumerate(codes)]
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    if not rows:
        return tuple(np.zeros(0, np.int64) for _ in range(4))  # type: ignore[return-value]
    return tuple(np.array(col, dtype=np.int64) for col in zip(*rows))  # type: ignore[return-value]
