"""The entity exports (CONTRACT.md §1), each built from the world's arrays with numpy and Arrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from cs_pipeline.demo import churn
from cs_pipeline.demo.world import (
    ACTIVITY_SHARES, ACTIVITY_TYPES, CSAT_SCORES, CSAT_SHARES, DAY_S, ENGAGEMENTS_PER_30D,
    ENGAGEMENT_SHARES, ENGAGEMENT_TYPES, FIRST_NAMES, HEALTHY, HIGH, HOUR_S, LAST_NAMES, LOW,
    NONE, NORMAL, NPS_COMMENTS, NPS_SHARES, PLANS, PRIORITIES, STATUSES,
    TICKETS_PER_30D, TICKET_SUBJECTS, World, add_months,
)
from cs_pipeline.logic.contract import SEGMENTS


# --------------------------------------------------------------------------------------------
# Entity files


def write_entities(w: World, out: Path) -> dict[str, int]:
    tables = {
        "accounts": (_accounts_table(w), "accounts.csv"),
        "contracts": (_contracts_table(w), "contracts.csv"),
        "users": (_users_table(w), "users.csv"),
        "activities": (_activities_table(w), "activities.csv"),
        "engagements": (_engagements_table(w), "engagements.csv"),
        "nps_responses": (_nps_table(w), "nps_responses.csv"),
        "tickets": (_tickets_table(w), "tickets.jsonl"),
    }
    rows = {}
    for entity, (table, name) in tables.items():
        frame = pl.from_arrow(table)
        if name.endswith(".jsonl"):
            frame.write_ndjson(out / name)
        else:
            frame.write_csv(out / name)
        rows[entity] = table.num_rows
    return rows


def _iso(seconds: np.ndarray) -> pa.Array:
    """ISO-8601 UTC text ending in `Z`; NONE becomes an empty cell."""
    seconds = np.asarray(seconds, dtype=np.int64)
    stamps = pa.array(seconds, type=pa.timestamp("s"), mask=seconds < 0)
    # polars formats several times faster than pc.strftime, which matters for a million users.
    return pl.from_arrow(stamps).dt.to_string("%Y-%m-%dT%H:%M:%SZ").to_arrow().cast(pa.string())


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def take(vocabulary: tuple[str, ...] | list[str], index: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(np.asarray(index, dtype=np.int64)))


def ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + zero-padded 1..n, built in Arrow (millions of rows)."""
    width = max(width, len(str(n)))
    numbers = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def _accounts_table(w: World) -> pa.Table:
    acc = w.acc
    owners = pa.array([w.csm_emails[o] if o != NONE else None for o in acc.owner], pa.string())
    return pa.table({
        "account_id": pa.array(w.account_ids),
        "name": pa.array(w.account_names),
        "segment": take(SEGMENTS, acc.segment),
        "owner_email": owners,
        "plan": take(PLANS, acc.plan),
        "licenses": pa.array(acc.licenses),
        "status": take(STATUSES, acc.status),
        "created_at": _iso(acc.created_s),
    })


def _contracts_table(w: World) -> pa.Table:
    """One row per 12-month term; each renewal starts the day after the previous term ends,
    with ARR kept (or a small price uplift), expanded or contracted."""
    acc, rng = w.acc, w.rng
    account = np.repeat(np.arange(acc.n), acc.n_terms)
    term = np.arange(len(account)) - np.repeat(np.cumsum(acc.n_terms) - acc.n_terms, acc.n_terms)
    first = acc.first_start[account]
    start, end = add_months(first, 12 * term), add_months(first, 12 * (term + 1)) - 1
    kind = rng.choice(3, size=len(account), p=(0.6, 0.25, 0.15))
    factor = np.choose(kind, [churn.flat_renewal(rng, len(account)), rng.uniform(1.1, 1.45, len(account)),
                              rng.uniform(0.7, 0.95, len(account))])
    if acc.renewal_factor is not None:  # decided by the hidden engagement (churn.py)
        decided = acc.renewal_factor[account, np.minimum(term, acc.renewal_factor.shape[1] - 1)]
        factor = np.where(np.isnan(decided), factor, decided)
    factor[term == 0] = 1.0
    # ARR of term k = the current ARR (seats x price) over the changes at each renewal since k.
    log_growth = np.cumsum(np.log(factor))
    last_row = np.repeat(np.cumsum(acc.n_terms) - 1, acc.n_terms)
    growth = np.exp(log_growth - log_growth[last_row])
    arr = np.round(acc.arr_base[account] * growth, -1).astype(np.int64)
    contract_ids = [f"{w.account_ids[a].replace('acc_', 'ctr_')}-{t + 1}" for a, t in zip(account, term)]
    return pa.table({
        "contract_id": pa.array(contract_ids),
        "account_id": pa.array(w.account_ids).take(pa.array(account)),
        "start_date": _dates(start),
        "end_date": _dates(end),
        "arr": pa.array(arr),
    })


def _users_table(w: World) -> pa.Table:
    u = w.users
    n_pairs = len(FIRST_NAMES) * len(LAST_NAMES)
    # Distinct first.last within an account (7 is coprime with the pair count), numbered after.
    pair = (u.rank * 7 + u.account * 13) % n_pairs
    suffix = u.rank // n_pairs
    suffix_text = pc.if_else(pa.array(suffix > 0), pc.cast(pa.array(suffix), pa.string()), "")
    email = pc.binary_join_element_wise(
        take(FIRST_NAMES, pair // len(LAST_NAMES)), ".", take(LAST_NAMES, pair % len(LAST_NAMES)),
        suffix_text, "@", take(w.domains, u.account), "",
    )
    return pa.table({
        "user_id": ids("usr_", u.n, 6),
        "account_id": take(w.account_ids, u.account),
        "email": email,
        "role": pc.if_else(pa.array(u.admin), "admin", "member"),
        "created_at": _iso(u.created_s),
        "activated_at": _iso(u.activated_s),
        "deactivated_at": _iso(u.deactivated_s),
    })


def _per_account_span(rng: np.random.Generator, begin: np.ndarray, stop: np.ndarray, rate_per_day: np.ndarray):
    """Poisson many instants per account, uniform over days [begin, stop): (account, seconds)."""
    span = np.maximum(stop - begin, 0)
    count = rng.poisson(rate_per_day * span)
    account = np.repeat(np.arange(len(span)), count)
    seconds = begin[account] * DAY_S + (rng.random(len(account)) * span[account] * DAY_S).astype(np.int64)
    return account, seconds


def _activities_table(w: World) -> pa.Table:
    """CSM touch points at the account's cadence (a few days of jitter), from 90 days before the
    window; owners log them, an unowned account's touch is logged by whichever CSM helped."""
    acc, rng, win = w.acc, w.rng, w.win
    begin = np.maximum(acc.touch_from, win.start - 90)
    stop = np.minimum(acc.touch_to, acc.life_end)
    count = np.maximum(np.ceil((stop - begin) / acc.cadence), 0).astype(np.int64)
    account = np.repeat(np.arange(acc.n), count)
    k = np.arange(len(account)) - np.repeat(np.cumsum(count) - count, count)
    day = begin[account] + k * acc.cadence[account] + rng.integers(0, 3, len(account))
    hour = (rng.uniform(8, 18, len(account)) - acc.tz_hours[account]) % 24
    kind = rng.choice(len(ACTIVITY_TYPES), size=len(account), p=ACTIVITY_SHARES)
    helper = rng.integers(0, len(w.csm_emails), len(account))
    keep = day < stop[account]
    account, day, hour, kind, helper = account[keep], day[keep], hour[keep], kind[keep], helper[keep]
    order = np.lexsort((account, day))
    account, day, hour, kind, helper = account[order], day[order], hour[order], kind[order], helper[order]
    owner = np.where(acc.owner[account] != NONE, acc.owner[account], helper)
    return pa.table({
        "activity_id": ids("act_", len(account), 6),
        "account_id": take(w.account_ids, account),
        "owner_email": take(w.csm_emails, owner),
        "type": take(ACTIVITY_TYPES, kind),
        "occurred_at": _iso(day * DAY_S + (hour * HOUR_S).astype(np.int64)),
    })


def _engagements_table(w: World) -> pa.Table:
    acc, rng, win = w.acc, w.rng, w.win
    begin = np.maximum(acc.created_s // DAY_S + 1, win.start - 90)
    rate = np.array(ENGAGEMENTS_PER_30D)[acc.segment] / 30 * acc.marketing * acc.engagement.clip(0.3)
    account, seconds = _per_account_span(rng, begin, acc.life_end, rate)
    order = np.lexsort((account, seconds))
    account, seconds = account[order], seconds[order]
    kind = rng.choice(len(ENGAGEMENT_TYPES), size=len(account), p=ENGAGEMENT_SHARES)
    return pa.table({
        "engagement_id": ids("eng_", len(account), 6),
        "account_id": take(w.account_ids, account),
        "type": take(ENGAGEMENT_TYPES, kind),
        "occurred_at": _iso(seconds),
    })


def _nps_table(w: World) -> pa.Table:
    """Survey answers from 180 days before the window on; calm accounts answer 7-10 only, the
    others skew positive with some detractors. Plants add their own answers."""
    acc, rng, win, u = w.acc, w.rng, w.win, w.users
    begin = np.maximum(acc.created_s // DAY_S + 1, win.start - 180)
    rate = np.clip(0.3 * acc.n_users, 0.5, 40) / 180 * acc.nps_rate
    account, seconds = _per_account_span(rng, begin, acc.life_end, rate)
    n = len(account)
    score = np.where(acc.calm[account], rng.choice([7, 8, 9, 10], size=n, p=(0.1, 0.25, 0.3, 0.35)),
                     rng.choice(11, size=n, p=NPS_SHARES))
    score = churn.support_nps(w, account, seconds, score)
    first_row = np.searchsorted(u.account, account)
    user = first_row + (rng.random(n) * acc.n_users[account]).astype(np.int64)
    user[rng.random(n) < 0.15] = NONE  # anonymous answers
    comment = _nps_comments(rng, score)

    scripted = w.nps
    account = np.concatenate([account, [s["account"] for s in scripted]]).astype(np.int64)
    seconds = np.concatenate([seconds, [s["submitted_s"] for s in scripted]]).astype(np.int64)
    score = np.concatenate([score, [s["score"] for s in scripted]]).astype(np.int64)
    user = np.concatenate([user, [s["user"] for s in scripted]]).astype(np.int64)
    comment = comment + [s["comment"] for s in scripted]
    order = np.lexsort((account, seconds))
    user_ids = ids("usr_", u.n, 6).take(pa.array(np.maximum(user[order], 0)))
    return pa.table({
        "response_id": ids("nps_", len(order), 6),
        "account_id": take(w.account_ids, account[order]),
        "user_id": pc.if_else(pa.array(user[order] >= 0), user_ids, pa.scalar(None, pa.string())),
        "score": pa.array(score[order]),
        "comment": pa.array([comment[i] for i in order], pa.string()),
        "submitted_at": _iso(seconds[order]),
    })


def _nps_comments(rng: np.random.Generator, score: np.ndarray) -> list[str | None]:
    group = np.digitize(score, [7, 9])  # detractor, passive, promoter
    pick = rng.integers(0, 1000, len(score))
    silent = rng.random(len(score)) < 0.35
    return [None if s else NPS_COMMENTS[g][p % len(NPS_COMMENTS[g])] for g, p, s in zip(group, pick, silent)]


def _tickets_table(w: World) -> pa.Table:
    """Helpdesk export: every version of each ticket as it changed (open, maybe pending, then
    resolved or closed), ordered by updated_at; the latest version of a ticket wins."""
    t = _draw_tickets(w)
    n = len(t["account"])
    order = np.lexsort((t["account"], t["created_s"]))
    t = {k: v[order] for k, v in t.items()}
    ticket_ids = ids("T-", n, 6)

    # version rows: (ticket, updated_s, status)  status: 0 open, 1 pending, 2 resolved, 3 closed
    rows = np.arange(n)
    pending = t["pending_s"] >= 0
    resolved = t["resolved_s"] >= 0
    ticket = np.concatenate([rows, rows[pending], rows[resolved]])
    updated = np.concatenate([t["created_s"], t["pending_s"][pending], t["resolved_s"][resolved]])
    status = np.concatenate([np.zeros(n, np.int64), np.ones(pending.sum(), np.int64),
                             np.where(t["closed"][resolved], 3, 2)])
    csat = np.where(status >= 2, t["csat"][ticket], NONE)
    version = np.lexsort((status, ticket, updated))
    ticket, updated, status, csat = ticket[version], updated[version], status[version], csat[version]
    return pa.table({
        "ticket_id": ticket_ids.take(pa.array(ticket)),
        "account_id": take(w.account_ids, t["account"][ticket]),
        "created_at": _iso(t["created_s"][ticket]),
        "updated_at": _iso(updated),
        "status": take(("open", "pending", "resolved", "closed"), status),
        "priority": take(PRIORITIES, t["priority"][ticket]),
        "subject": take(TICKET_SUBJECTS, t["subject"][ticket]),
        "csat": pa.array(csat, pa.int64(), mask=csat < 0),
    })


def _draw_tickets(w: World) -> dict[str, np.ndarray]:
    acc, rng, win = w.acc, w.rng, w.win
    begin = np.maximum(acc.created_s // DAY_S + 1, win.start - 60)
    rate = np.array(TICKETS_PER_30D)[acc.segment] / 30 * np.where(acc.calm, 0.5, 1.0)
    account, created = _per_account_span(rng, begin, acc.life_end, rate)
    n = len(account)
    priority = np.where(acc.calm[account], rng.choice([LOW, NORMAL], size=n),
                        rng.choice(4, size=n, p=(0.35, 0.45, 0.15, 0.05)))
    # Some healthy accounts had one high-priority ticket, fixed within a day and a half: real
    # helpdesks have them, and a single one never makes a surge.
    first_of_account = np.r_[True, account[1:] != account[:-1]] if n else np.zeros(0, bool)
    one_high = first_of_account & (acc.profile[account] == HEALTHY) & (rng.random(n) < 0.3)
    priority[one_high] = HIGH
    hours = np.where(priority >= HIGH, rng.exponential(20, n), rng.exponential(72, n))
    hours[one_high] = rng.uniform(2, 36, one_high.sum())
    resolved = created + (hours * HOUR_S).astype(np.int64) + 60
    resolved[resolved >= win.end_s] = NONE  # still open when the export was taken
    until = np.where(resolved >= 0, resolved, win.end_s - 1)
    pending = np.where(rng.random(n) < 0.5, created + (rng.random(n) * (until - created)).astype(np.int64), NONE)
    pending[(pending >= 0) & (pending <= created)] = NONE
    drawn = {
        "account": account, "created_s": created, "pending_s": pending, "resolved_s": resolved,
        "priority": priority.astype(np.int64), "closed": rng.random(n) < 0.4,
        "subject": rng.integers(0, len(TICKET_SUBJECTS), n),
        "csat": np.where(rng.random(n) < 0.6, rng.choice(CSAT_SCORES, size=n, p=CSAT_SHARES), NONE),
    }
    scripted = {
        "account": [s["account"] for s in w.tickets], "created_s": [s["created_s"] for s in w.tickets],
        "pending_s": [s["pending_s"] for s in w.tickets], "resolved_s": [s["resolved_s"] for s in w.tickets],
        "priority": [s["priority"] for s in w.tickets], "closed": [False] * len(w.tickets),
        "subject": [s["subject"] for s in w.tickets], "csat": [NONE] * len(w.tickets),
    }
    drawn["csat"] = churn.support_csat(w, account, resolved, drawn["csat"])
    parts = [drawn, {k: np.array(v, dtype=drawn[k].dtype) for k, v in scripted.items()}]
    bursts = churn.support_bursts(w)
    if bursts is not None:
        m = len(bursts["account"])
        parts.append({**bursts, "pending_s": np.full(m, NONE, np.int64), "closed": rng.random(m) < 0.4,
                      "subject": rng.integers(0, len(TICKET_SUBJECTS), m)})
    return {k: np.concatenate([part[k].astype(drawn[k].dtype) for part in parts]) for k in drawn}
