"""Data at a chosen scale: the demo generator, with its knobs solved for users and events per day.

The generator's knobs are `users_per_account` (mean seats bought per account) and
`events_per_user_day` (mean events in an active user's day); the benchmark asks for users in the
users export and events per day. For a given world the expected events on a day are linear in
`events_per_user_day - 1`, so the knob is solved exactly from the generator's own world (each
user's session propensity, the account's usage level that day and the weekday factor) before
anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from cs_pipeline.demo import events as ev, population, world as g


def expected_events(spec: g.DemoSpec, days: list[dt.date]) -> tuple[float, float, float]:
    """(fixed, per_extra, users): mean expected events over `days` = fixed + per_extra * (events_per_user_day - 1)."""
    end = spec.end_date
    assert end is not None
    win = g.Window(start=g.day_number(end) - spec.days + 1, end=g.day_number(end))
    world = population.build_world(spec, win)
    u, acc = world.users, world.acc
    gamma = u.extra_events / max(spec.events_per_user_day - 1.0, 1e-9)
    fixed = per_extra = 0.0
    for day in days:
        n = g.day_number(day)
        level = ev.usage_level(acc, win, n)[u.account]
        weekday_factor = g.WEEKEND_FACTOR if (n + 3) % 7 >= 5 else 1.0
        can = (u.from_day <= n) & (n < u.to_day) & (level > 0)
        p = np.clip(u.propensity * level * weekday_factor, 0.0, 1.0)
        fixed += float(np.sum(can * p) + np.sum(can * (1 - p) * u.forced))
        per_extra += float(np.sum(can * p * gamma))
    return fixed / len(days), per_extra / len(days), float(u.n)


def spec_for(accounts: int, users_per_account: float, events_per_day: int, days: int, end: dt.date,
             seed: int = 7, *, mean_over_window: bool = False) -> g.DemoSpec:
    """A DemoSpec with about `accounts * users_per_account` users and `events_per_day` events on
    `end` (or, with `mean_over_window`, on average over the `days` days, weekends included).

    The generator's `users_per_account` is the mean of seats *bought*; the users export has a
    few more (deactivated users stay in it), so that knob is scaled to give the asked count.
    """
    spec = g.DemoSpec(accounts=accounts, days=days, end_date=end, users_per_account=users_per_account,
                      events_per_user_day=6.0, seed=seed)
    window = [end - dt.timedelta(days=i) for i in range(days)] if mean_over_window else [end]
    fixed, per_extra, users = expected_events(spec, window)
    for _ in range(2):  # seats are whole numbers, so the count is not quite linear in the knob
        if users <= 0:
            break
        spec = dataclasses.replace(spec, users_per_account=round(spec.users_per_account * accounts * users_per_account / users, 4))
        fixed, per_extra, users = expected_events(spec, window)
    if per_extra <= 0:
        return spec
    knob = 1.0 + max(events_per_day - fixed, 0.0) / per_extra
    return dataclasses.replace(spec, events_per_user_day=round(max(knob, 1.0001), 4))
