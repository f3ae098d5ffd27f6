"""Planted situations: one staged account per default rule, on known days."""

from __future__ import annotations

import math

from cs_pipeline.demo.world import (
    DASHBOARD, DAY_S, HIGH, HOUR_S, LOGIN, NEVER, NONE, NPS_COMMENTS, REPORT, URGENT, WORKFLOW,
    World, add_months,
)


# --------------------------------------------------------------------------------------------
# Planted situations. Offsets are days before end_date (N) or after the window's first day (S).


class _Plant:
    """One staged situation: `shape_account` runs before users exist (seats, contract, usage
    levels), `script` after (user changes, sessions, tickets, NPS) and returns its details."""

    rule: str

    def shape_account(self, w: World, a: int) -> None:
        pass

    def script(self, w: World, a: int) -> dict:
        raise NotImplementedError


class _NoLogin(_Plant):
    """Daily logins until `ago` days before N, then nothing at all."""

    rule = "no_login_20d"

    def __init__(self, last_login_ago: int):
        self.ago = last_login_ago

    def shape_account(self, w: World, a: int) -> None:
        w.acc.usage_to[a] = w.win.end - self.ago + 1

    def script(self, w: World, a: int) -> dict:
        last = w.win.end - self.ago
        return {
            "situation": f"several users log in daily until {w.win.date(last)}, then no event at all",
            "fires_on": w.win.dates(last + 20, w.win.end),
            "may_also_fire": ["health_drop"],  # usage stopping is what that rule watches too
        }


class _NoLoginEarly(_Plant):
    """A silent month early in the window, then daily logins again: an episode that closed
    long before the live window (backfill suppression)."""

    rule = "no_login_20d"
    PAUSE = (6, 35)  # days after S: last login on S+5, logins again from S+35

    def shape_account(self, w: World, a: int) -> None:
        w.acc.pause_from[a], w.acc.pause_to[a] = w.win.start + self.PAUSE[0], w.win.start + self.PAUSE[1]

    def script(self, w: World, a: int) -> dict:
        last, back = w.win.start + self.PAUSE[0] - 1, w.win.start + self.PAUSE[1]
        return {
            "situation": (f"no event from {w.win.date(last + 1)} to {w.win.date(back - 1)}; "
                          "daily logins before and after"),
            "fires_on": w.win.dates(last + 20, back - 1),
            "may_also_fire": ["health_drop"],
        }


class _LowHealthDay90(_Plant):
    """A new customer that never got going: a few logins in its first days, 20 % activation,
    two urgent tickets and a detractor before its 90-day review."""

    rule = "low_health_day_90"

    def __init__(self, first_term_ago: int):
        self.ago = first_term_ago

    def shape_account(self, w: World, a: int) -> None:
        acc, first = w.acc, w.win.end - self.ago
        w.set_first_term(a, first)
        licenses = int(w.rng.integers(12, 26))
        acc.licenses[a], acc.n_users[a] = licenses, round(0.8 * licenses)
        acc.n_active[a], acc.n_deactivated[a] = licenses // 5, 0
        acc.users_from_s[a], acc.users_until_s[a] = (first - 5) * DAY_S, (first + 5) * DAY_S
        acc.settled_by_s[a] = (first + 12) * DAY_S
        acc.engagement[a], acc.core_users[a] = 0.0, 0  # usage is only the scripted logins
        acc.touch_from[a], acc.touch_to[a] = first - 14, first + 15  # a kick-off, then silence
        acc.nps_rate[a] = acc.marketing[a] = 0.0

    def script(self, w: World, a: int) -> dict:
        first = int(w.acc.first_start[a])
        login_from = max(w.win.start, first + 13)  # every seat is activated by first + 12
        login_days = range(login_from, login_from + 3) if login_from + 2 <= first + 60 else range(0)
        for day in login_days:
            for user in w.user_rows(a, range(int(w.acc.n_active[a]))):
                w.add_session(day, int(user), (LOGIN, DASHBOARD))
        w.add_ticket(a, first + 70, URGENT, subject=1)
        w.add_ticket(a, first + 80, URGENT, pending=first + 82, subject=11)
        w.add_nps(a, first + 75, 2, NPS_COMMENTS[0][3])
        also = {"onboarding_checkin": w.win.dates(first + 30, first + 30) + w.win.dates(first + 90, first + 90),
                "nps_detractor": w.win.dates(first + 75, first + 75)}
        if login_days:
            also["no_login_20d"] = w.win.dates(login_days[-1] + 20, w.win.end)
        return {
            "situation": (f"first term from {w.win.date(first)}; 20 % activation; logins only on "
                          f"{[w.win.date(d).isoformat() for d in login_days]}; 2 urgent tickets open; NPS 2"),
            "fires_on": w.win.dates(first + 90, first + 96),
            "score_based": True,
            "also_fires": also,
            "may_also_fire": ["health_drop"],  # its few logins lift the score a month earlier
        }


class _HealthDrop(_Plant):
    """A very healthy account whose usage stops completely 30-31 days before N, then half its
    seats are removed, urgent tickets pile up and a detractor answers the survey. The stop is
    placed so that on N the 30-day usage window is empty while N-30 was still a normal day:
    every usage indicator falls at once, whatever the weights."""

    rule = "health_drop"

    def __init__(self, last_active_ago: int):
        self.ago = last_active_ago

    def shape_account(self, w: World, a: int) -> None:
        acc, last = w.acc, w.win.end - self.ago
        licenses = max(int(acc.licenses[a]), 12)
        acc.licenses[a] = licenses
        acc.n_active[a] = math.floor(0.87 * licenses)  # high, but below the upsell threshold
        acc.n_users[a] = max(int(acc.n_users[a]), int(acc.n_active[a]))
        acc.n_deactivated[a] = 0
        acc.engagement[a], acc.core_users[a] = 1.0, 4
        acc.usage_to[a] = last + 1
        acc.touch_to[a] = last - 6

    def script(self, w: World, a: int) -> dict:
        last = w.win.end - self.ago
        active = int(w.acc.n_active[a])
        removed = w.user_rows(a, range(active - round(0.5 * active), active))
        w.users.deactivated_s[removed] = (last + 14) * DAY_S + 11 * HOUR_S
        w.users.to_day[removed] = last + 14
        w.add_ticket(a, last + 7, URGENT, subject=4)
        w.add_ticket(a, last + 9, URGENT, pending=last + 10, subject=11)
        w.add_ticket(a, last + 11, HIGH, subject=3)
        w.add_nps(a, last + 9, 1, NPS_COMMENTS[0][0])
        return {
            "situation": (f"healthy with daily use until {w.win.date(last)}, then no event; half the seats removed "
                          f"on {w.win.date(last + 14)}; 3 high/urgent tickets open; NPS 1; no CSM touch since "
                          f"{w.win.date(last - 7)}"),
            "fires_on": w.win.dates(w.win.end, w.win.end),
            "score_based": True,
            "also_fires": {"no_login_20d": w.win.dates(last + 20, w.win.end),
                           "nps_detractor": w.win.dates(last + 9, last + 9),
                           "ticket_surge": w.win.dates(last + 11, w.win.end)},
        }


class _RenewalAtRisk(_Plant):
    """A dead account (one login on the window's first day, nothing after; 20 % activation;
    urgent tickets; a detractor months ago; no CSM touch) whose term ends `ends_in` days after N."""

    rule = "renewal_at_risk"

    def __init__(self, ends_in: int):
        self.ends_in = ends_in

    def shape_account(self, w: World, a: int) -> None:
        acc, term_end = w.acc, w.win.end + self.ends_in
        w.set_first_term(a, int(add_months(term_end + 1, -36)))  # in its third year
        licenses = int(w.rng.integers(10, 31))
        acc.licenses[a], acc.n_users[a] = licenses, round(0.8 * licenses)
        acc.n_active[a], acc.n_deactivated[a] = max(2, round(0.2 * licenses)), 0
        acc.users_from_s[a] = NONE
        acc.engagement[a], acc.core_users[a] = 0.0, 0
        acc.touch_to[a] = w.win.start - 60  # the last CSM touch was two months before the window
        acc.nps_rate[a] = acc.marketing[a] = 0.0

    def script(self, w: World, a: int) -> dict:
        start = w.win.start
        w.add_session(start, w.first_user(a), (LOGIN,))
        w.add_ticket(a, start - 20, URGENT, subject=2)
        w.add_ticket(a, start + 10, URGENT, pending=start + 11, subject=0)
        w.add_nps(a, start - 40, 3, NPS_COMMENTS[0][2])
        term_end = int(add_months(w.acc.first_start[a], 36)) - 1
        return {
            "situation": (f"term ends {w.win.date(term_end)}; one login on {w.win.date(start)} and nothing after; "
                          "20 % activation; 2 urgent tickets open; last NPS 3; no CSM touch in the window"),
            "fires_on": w.win.dates(max(term_end - 180, w.win.end - 29), term_end - 90),
            "condition_days": w.win.dates(term_end - 180, term_end - 90),
            "score_based": True,
            "also_fires": {"no_login_20d": w.win.dates(start + 20, w.win.end)},
            "may_also_fire": ["health_drop"],  # early in the window, after its one login
        }


class _UpsellReady(_Plant):
    """Activation jumps from ~82 % to >= 92 % of licenses on one day; both key features are used
    every day."""

    rule = "upsell_ready"

    def __init__(self, reached_ago: int):
        self.ago = reached_ago

    def shape_account(self, w: World, a: int) -> None:
        acc = w.acc
        licenses = int(w.rng.integers(12, 41))
        acc.licenses[a] = licenses
        acc.n_active[a], acc.n_deactivated[a] = math.ceil(0.92 * licenses), 0
        acc.n_users[a] = max(int(acc.n_active[a]), round(0.95 * licenses))

    def script(self, w: World, a: int) -> dict:
        reached, licenses = w.win.end - self.ago, int(w.acc.licenses[a])
        before = math.floor(0.82 * licenses)
        late = w.user_rows(a, range(before, int(w.acc.n_active[a])))
        w.users.created_s[late] = (reached - 10) * DAY_S + 10 * HOUR_S
        w.users.activated_s[late] = reached * DAY_S + 11 * HOUR_S
        w.users.from_day[late] = reached + 1
        for day in range(w.win.start, w.win.end + 1):
            w.add_session(day, w.first_user(a), (LOGIN, REPORT, WORKFLOW), hour=8.0)
        return {
            "situation": (f"{len(late)} seats activated on {w.win.date(reached)}: activation "
                          f"{before}/{licenses} -> {w.acc.n_active[a]}/{licenses}; report.created and "
                          "workflow.run every day"),
            "fires_on": w.win.dates(reached, w.win.end),
        }


class _NpsDetractor(_Plant):
    rule = "nps_detractor"

    def __init__(self, score: int, *, ago: int | None = None, after_start: int | None = None):
        self.score, self.ago, self.after_start = score, ago, after_start

    def script(self, w: World, a: int) -> dict:
        day = w.win.end - self.ago if self.ago is not None else w.win.start + self.after_start
        w.add_nps(a, day, self.score, NPS_COMMENTS[0][1])
        return {"situation": f"NPS {self.score} on {w.win.date(day)}; every other response 7-10",
                "fires_on": w.win.dates(day, day)}


class _TicketSurge(_Plant):
    """High/urgent tickets opened on consecutive days; `tickets` holds (created, priority,
    resolved or None), days relative to N (negative) or to S (`from_start`)."""

    rule = "ticket_surge"

    def __init__(self, tickets: tuple[tuple[int, int, int | None], ...], *, from_start: bool = False):
        self.tickets, self.from_start = tickets, from_start

    def script(self, w: World, a: int) -> dict:
        anchor = w.win.start if self.from_start else w.win.end
        spans = []
        for i, (created, priority, resolved) in enumerate(self.tickets):
            created_day = anchor + created
            resolved_day = None if resolved is None else anchor + resolved
            pending = created_day + 1 if i % 2 else None  # some wait on the customer: still counts
            w.add_ticket(a, created_day, priority, resolved=resolved_day, pending=pending, subject=5 + i)
            spans.append((created_day, resolved_day if resolved_day is not None else NEVER))
        surge = [d for d in range(w.win.start, w.win.end + 1) if sum(c <= d < r for c, r in spans) >= 3]
        outcome = "resolved a week later" if self.from_start else "still open"
        return {
            "situation": (f"{len(spans)} high/urgent tickets opened {w.win.date(spans[0][0])}.."
                          f"{w.win.date(spans[-1][0])}; {outcome}"),
            "fires_on": [w.win.date(d).isoformat() for d in surge],
        }


class _Onboarding(_Plant):
    """A new customer ramping up well: seats activated in its first two weeks, daily use."""

    rule = "onboarding_checkin"

    def __init__(self, first_term_ago: int):
        self.ago = first_term_ago

    def shape_account(self, w: World, a: int) -> None:
        acc, first = w.acc, w.win.end - self.ago
        w.set_first_term(a, first)
        acc.users_from_s[a], acc.users_until_s[a] = (first - 7) * DAY_S, (first + 7) * DAY_S
        acc.settled_by_s[a] = (first + 14) * DAY_S
        acc.usage_from[a], acc.touch_from[a], acc.cadence[a] = first, first - 10, 7

    def script(self, w: World, a: int) -> dict:
        first = int(w.acc.first_start[a])
        days = [first + 30, first + 90, first + 180]
        return {"situation": f"first term from {w.win.date(first)}; seats activated within two weeks; daily use",
                "fires_on": [d for day in days for d in w.win.dates(day, day)]}


def plant_catalogue() -> list[_Plant]:
    """In priority order: with few accounts only the first ones are planted. The first plant of
    each rule is still true on N-1 or N, so with today = end_date + 1 and the default live window
    it is sent live; most others closed earlier and are recorded as suppressed backfill."""
    late_surge = ((-15, HIGH, None), (-14, URGENT, None), (-13, HIGH, None))
    late_surge_2 = ((-9, URGENT, None), (-8, HIGH, None), (-7, HIGH, None), (-7, URGENT, None))
    early_surge = ((20, HIGH, 28), (21, URGENT, 29), (22, HIGH, 31))
    first_of_each = [
        _NoLogin(last_login_ago=30), _LowHealthDay90(first_term_ago=93), _HealthDrop(last_active_ago=31),
        _RenewalAtRisk(ends_in=120), _UpsellReady(reached_ago=30), _NpsDetractor(5, ago=1),
        _TicketSurge(late_surge), _Onboarding(first_term_ago=31),
    ]
    second_of_each = [
        _NoLogin(last_login_ago=27), _LowHealthDay90(first_term_ago=110), _HealthDrop(last_active_ago=30),
        _RenewalAtRisk(ends_in=150), _UpsellReady(reached_ago=22), _NpsDetractor(3, ago=12),
        _TicketSurge(late_surge_2), _Onboarding(first_term_ago=100),
    ]
    early_in_window = [
        _NoLoginEarly(), _NpsDetractor(2, after_start=10), _TicketSurge(early_surge, from_start=True),
        _Onboarding(first_term_ago=195),
    ]
    return first_of_each + second_of_each + early_in_window
