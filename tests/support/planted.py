"""A small data set in the contract's layout with hand-planted situations, and its exact alerts.

Written from the contract alone (not by the demo generator), so it checks the pipeline the way a
user's own export would. The test health model scores only `days_since_last_login`
(lower is better, thresholds 14/7/3/1, 0 points when never), so every score is known by hand:
a login on D or D-1 → 4, within 3 days → 3, within 7 → 2, within 14 → 1, else 0 (red below 1.5).

Partitions 2025-03-01 .. 2025-04-30, today 2025-05-01: live partitions are 04-29 and 04-30.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FIRST = dt.date(2025, 3, 1)
LAST = dt.date(2025, 4, 30)
TODAY = dt.date(2025, 5, 1)

HEALTH_MODEL = """
bands: {red: 1.5, yellow: 2.5}
product:
  events: [login, report.created, workflow.run]
  key_features: [report.created, workflow.run]
indicators:
  - name: recency
    variable: days_since_last_login
    weight: 1.0
    direction: lower_is_better
    thresholds: [14, 7, 3, 1]
    missing: zero
"""

OWNERS = {"ana@example.com": "U0ANA", "ben@example.com": "U0BEN"}


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# account_id: (segment, status, owner, licenses, activated users, login days, extra daily events, terms)
ACCOUNTS = {
    "acc_healthy": ("smb", "active", "ana@example.com", 10, 6, days(FIRST, LAST), {"report.created": days(FIRST, LAST)}, [("2024-01-01", "2025-12-31", 12000)]),
    "acc_nologin": ("mid_market", "active", "ana@example.com", 10, 5, days(FIRST, d("2025-04-05")), {}, [("2024-06-01", "2026-05-31", 30000)]),
    "acc_upsell": ("enterprise", "active", "ben@example.com", 10, 9, days(FIRST, LAST), {"report.created": days(FIRST, LAST), "workflow.run": days(d("2025-04-20"), LAST)}, [("2024-02-01", "2026-01-31", 90000)]),
    "acc_detractor": ("smb", "active", "ben@example.com", 10, 3, days(FIRST, LAST), {}, [("2024-03-01", "2026-02-28", 8000)]),
    "acc_tickets": ("mid_market", "active", "", 10, 4, days(FIRST, LAST), {}, [("2024-04-01", "2026-03-31", 25000)]),
    "acc_onboard": ("smb", "active", "ana@example.com", 10, 4, days(FIRST, LAST), {}, [("2025-01-30", "2026-01-29", 6000)]),
    "acc_day90": ("enterprise", "active", "ben@example.com", 10, 2, [FIRST], {}, [("2025-01-25", "2026-01-24", 50000)]),
    "acc_renewal": ("mid_market", "active", "ana@example.com", 10, 3, [FIRST], {}, [("2023-09-01", "2024-08-31", 20000), ("2024-09-01", "2025-08-31", 24000)]),
    "acc_churned": ("smb", "churned", "ben@example.com", 5, 1, [], {}, [("2024-01-01", "2024-12-31", 4000)]),
    "acc_expired": ("smb", "active", "ben@example.com", 5, 1, [], {}, [("2024-03-01", "2025-02-28", 4000)]),
}

# (rule_id, account_id, episode_start, status) — derived by hand from CONTRACT.md §3.
EXPECTED_ALERTS = {
    ("no_login_20d", "acc_nologin", "2025-04-25", "sent"),  # last login 04-05
    ("health_drop", "acc_nologin", "2025-04-07", "sent"),  # 3 points vs 4 thirty days before
    ("upsell_ready", "acc_upsell", "2025-04-20", "sent"),  # 90 % activation, workflow.run from 04-20
    ("nps_detractor", "acc_detractor", "2025-03-10", "suppressed_backfill"),
    ("nps_detractor", "acc_detractor", "2025-04-29", "sent"),
    ("ticket_surge", "acc_tickets", "2025-03-05", "suppressed_backfill"),  # 3 high, closed 03-12
    ("ticket_surge", "acc_tickets", "2025-04-28", "sent"),  # third high/urgent opened 04-28
    ("onboarding_checkin", "acc_onboard", "2025-03-01", "suppressed_backfill"),  # day 30
    ("onboarding_checkin", "acc_onboard", "2025-04-30", "sent"),  # day 90
    ("no_login_20d", "acc_day90", "2025-03-21", "sent"),
    ("health_drop", "acc_day90", "2025-03-31", "suppressed_backfill"),  # ends 04-14
    ("onboarding_checkin", "acc_day90", "2025-04-25", "suppressed_backfill"),  # day 90
    ("low_health_day_90", "acc_day90", "2025-04-25", "sent"),  # days 90-96, score 0
    ("renewal_at_risk", "acc_renewal", "2025-03-09", "sent"),  # red from 03-09, renewal 08-31
    ("no_login_20d", "acc_renewal", "2025-03-21", "sent"),
    ("health_drop", "acc_renewal", "2025-03-31", "suppressed_backfill"),
}

# Rows that break the contract, with the reason the rejected table must give.
REJECTED = {
    ("accounts", "acc_bad"): "segment: 'gold' is not one of enterprise, mid_market, smb",
    ("contracts", "ctr_bad"): "account_id: 'acc_bad' does not exist in accounts",
    ("events", "evt_outside"): "outside its folder's day 2025-03-02",
}


def _ts(day: dt.date, hour: int, minute: int = 0) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write(out: Path) -> Path:
    """Write the data set to `out` and return `out`."""
    out.mkdir(parents=True, exist_ok=True)
    accounts, contracts, users = [], [], []
    events: dict[dt.date, list[dict[str, object]]] = {}
    for number, (account, (segment, status, owner, licenses, activated, login_days, extra, terms)) in enumerate(ACCOUNTS.items()):
        accounts.append([account, account.replace("_", " ").title(), segment, owner, "pro", licenses, status, "2023-01-01T00:00:00Z"])
        for t, (start, end, arr) in enumerate(terms):
            contracts.append([f"ctr_{account}_{t}", account, start, end, arr])
        member_ids = [f"{account}_u{i}" for i in range(activated + 1)]
        for i, user in enumerate(member_ids):
            # The last user has a seat but never activated it.
            activated_at = "" if i == activated else "2024-01-02T09:00:00Z"
            users.append([user, account, f"{user}@{account}.example", "admin" if i == 0 else "member", "2024-01-01T09:00:00+00:00", activated_at, ""])
        active = member_ids[:activated]
        for day in login_days:
            for i, user in enumerate(active):
                events.setdefault(day, []).append({"event_id": f"e_{account}_{user}_{day}_login", "account_id": account, "user_id": user, "event": "login", "occurred_at": _ts(day, 8 + i % 8)})
        for name, on_days in extra.items():
            for day in on_days:
                events.setdefault(day, []).append({"event_id": f"e_{account}_{day}_{name}", "account_id": account, "user_id": active[0], "event": name, "occurred_at": _ts(day, 15)})
    accounts.append(["acc_bad", "Bad Segment", "gold", "", "pro", 3, "active", "2023-01-01T00:00:00Z"])
    contracts.append(["ctr_bad", "acc_bad", "2024-01-01", "2025-12-31", 1000])
    _write_csv(out / "accounts.csv", ["account_id", "name", "segment", "owner_email", "plan", "licenses", "status", "created_at"], accounts)
    _write_csv(out / "contracts.csv", ["contract_id", "account_id", "start_date", "end_date", "arr"], contracts)
    _write_csv(out / "users.csv", ["user_id", "account_id", "email", "role", "created_at", "activated_at", "deactivated_at"], users)

    # A re-delivered login (same id, same folder) counts once; an event stamped outside its folder's
    # day (01:30 at +02:00 is the previous UTC day) is rejected.
    events[d("2025-03-02")].append(dict(events[d("2025-03-02")][0]))
    events[d("2025-03-02")].append({"event_id": "evt_outside", "account_id": "acc_healthy", "user_id": "acc_healthy_u0", "event": "login", "occurred_at": "2025-03-02T01:30:00+02:00"})
    for day in days(FIRST, LAST):
        folder = out / "events" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = events.get(day, [])
        if day == d("2025-03-03"):  # one day as gzipped JSON lines, one as CSV, the rest parquet
            with gzip.open(folder / "part-0.jsonl.gz", "wt") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in rows)
        elif day == d("2025-03-04"):
            _write_csv(folder / "part-0.csv", ["event_id", "account_id", "user_id", "event", "occurred_at"], [list(r.values()) for r in rows])
        else:
            pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in ("event_id", "account_id", "user_id", "event", "occurred_at")])), folder / "part-0.parquet")

    tickets = []
    for n in range(3):  # a surge in March, resolved on 03-12: two versions of each ticket
        tickets.append({"ticket_id": f"t_march_{n}", "account_id": "acc_tickets", "created_at": _ts(d("2025-03-05"), 9 + n), "updated_at": _ts(d("2025-03-05"), 9 + n), "status": "open", "priority": "high", "subject": "Export fails", "csat": None})
        tickets.append({"ticket_id": f"t_march_{n}", "account_id": "acc_tickets", "created_at": _ts(d("2025-03-05"), 9 + n), "updated_at": _ts(d("2025-03-12"), 10), "status": "closed", "priority": "high", "subject": "Export fails", "csat": 3})
    for n, (created, status, priority) in enumerate((("2025-04-26", "open", "urgent"), ("2025-04-27", "open", "high"), ("2025-04-28", "pending", "high"), ("2025-04-28", "open", "normal"))):
        tickets.append({"ticket_id": f"t_april_{n}", "account_id": "acc_tickets", "created_at": _ts(d(created), 11), "updated_at": _ts(d(created), 12), "status": status, "priority": priority, "subject": "Sync broken", "csat": None})
    (out / "tickets.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tickets))

    _write_csv(
        out / "nps_responses.csv",
        ["response_id", "account_id", "user_id", "score", "comment", "submitted_at"],
        [
            ["nps1", "acc_detractor", "acc_detractor_u0", 4, "Too slow", _ts(d("2025-03-10"), 14)],
            ["nps2", "acc_detractor", "acc_detractor_u1", 8, "", _ts(d("2025-04-15"), 14)],
            ["nps3", "acc_detractor", "", 6, "Meh", _ts(d("2025-04-29"), 14)],
            ["nps4", "acc_healthy", "acc_healthy_u1", 10, "Love it", _ts(d("2025-04-02"), 14)],
        ],
    )
    _write_csv(
        out / "activities.csv",
        ["activity_id", "account_id", "owner_email", "type", "occurred_at"],
        [[f"act_{a}", a, "ana@example.com", "call", _ts(d("2025-03-15"), 10)] for a in ACCOUNTS],
    )
    return out
