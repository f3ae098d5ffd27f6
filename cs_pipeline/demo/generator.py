"""Deterministic demo data in the contract's `files` layout, with planted alert situations.

`generate()` builds a small world of accounts and writes it the way a CRM, a helpdesk, a survey
tool and a product database would export it (CONTRACT.md §1). Every account has a profile:

- *healthy*: a settled customer: first term started long before the window, renewal far away,
  stable seats with 60-85 % activation, several users logging in every day, calm tickets
  (low/normal, at most one short high-priority one) and NPS of 7-10 only. These accounts must
  fire no default rule on any day of the window.
- *planted*: a healthy-looking account in which one situation is staged so that one default rule
  fires on known days (`_plant_catalogue`). `planted.json` names the accounts and the days.
- *noise*: a realistic random mix (trials, new logos, busy helpdesks, detractors...) whose
  renewals, expansions, contractions and churn follow a hidden engagement (`churn.py`, with the
  `engagement` or `support` drivers). Anything may fire on these; nothing is promised about them.

The package, by subject: `world` (the spec, constants, calendar and the arrays), `population`
(drawing accounts and users), `plants` (the staged situations), `churn` (the hidden engagement),
`tables` and `events` (the exports); this module writes them and is the command line.

All randomness comes from `numpy.random.default_rng(seed)`, and each day's events from a stream
seeded with `(seed, day)`, so a spec always gives byte-identical files. Arrays are built with
numpy and pyarrow, never row by row: benchmarks ask for a million users and ten million events a
day.

Limits, by design: situations are planted only when the window has at least 60 days (they need
a month of normal history before the last month), and all of them (20 accounts) only when there
are at least 29 accounts, since 30 % are kept healthy; fewer accounts plant the first ones of
`_plant_catalogue`. Healthy accounts avoid 90-180 days to renewal on every day for windows of up
to 234 days; beyond that, that part of renewal_at_risk can hold early in the window and only
their green band keeps the rule quiet.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from cs_pipeline import settings
from cs_pipeline.demo.churn import DRIVERS
from cs_pipeline.demo.world import CHURNED, DemoSpec, DemoSummary, Window, World, day_number
from cs_pipeline.demo.population import build_world
from cs_pipeline.demo.tables import write_entities
from cs_pipeline.demo.events import write_events


def generate(
    out_dir: Path | str,
    spec: DemoSpec = DemoSpec(),
    *,
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write the demo source data for `spec` into `out_dir` (replacing what an earlier run wrote)."""
    _validate(spec)
    say = progress or (lambda _msg: None)
    end = spec.end_date or settings.today() - dt.timedelta(days=1)
    win = Window(start=day_number(end) - spec.days + 1, end=day_number(end))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    world = build_world(spec, win)
    say(f"{len(world.account_ids)} accounts, {world.users.n} users; writing entity files")
    rows = write_entities(world, out)
    rows["events"] = write_events(world, out, say)
    _write_planted_json(world, out)
    say(f"done: {rows['events']:,} events over {win.days} days")
    return DemoSummary(
        out_dir=out,
        start_date=win.date(win.start),
        end_date=win.date(win.end),
        rows=rows,
        planted={rule: list(ids) for rule, ids in world.planted.items()},
        healthy=list(world.healthy),
        churned=_churned(world),
    )


def _validate(spec: DemoSpec) -> None:
    if spec.accounts < 1 or spec.days < 1:
        raise ValueError(f"accounts and days must be >= 1, got {spec.accounts} and {spec.days}")
    if spec.users_per_account <= 0 or spec.events_per_user_day <= 0:
        raise ValueError("users_per_account and events_per_user_day must be > 0")
    if spec.drivers not in DRIVERS:
        raise ValueError(f"drivers must be one of {', '.join(DRIVERS)}, got {spec.drivers!r}")


def _churned(w: World) -> dict[str, str]:
    """Account id -> the end_date of its last term, for accounts churned by the window's end."""
    rows = np.flatnonzero(w.acc.status == CHURNED)
    last_day = w.acc.life_end[rows] - 1
    return {w.account_ids[a]: w.win.date(d).isoformat() for a, d in zip(rows, last_day)}


# --------------------------------------------------------------------------------------------
# planted.json and the command line


def _write_planted_json(w: World, out: Path) -> None:
    spec = dataclasses.asdict(w.spec)
    spec["end_date"] = w.win.date(w.win.end).isoformat()
    document = {
        "spec": spec,
        "start_date": w.win.date(w.win.start).isoformat(),
        "end_date": w.win.date(w.win.end).isoformat(),
        "planted": w.planted,
        "healthy": w.healthy,
        "details": w.details,
        "churned": _churned(w),  # the ground truth a backtest should find (never read by the pipeline)
    }
    (out / "planted.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cs_pipeline.demo.generator",
                                     description="Write deterministic demo source data.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--accounts", type=int, default=DemoSpec.accounts)
    parser.add_argument("--days", type=int, default=DemoSpec.days)
    parser.add_argument("--seed", type=int, default=DemoSpec.seed)
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--users-per-account", type=float, default=DemoSpec.users_per_account)
    parser.add_argument("--events-per-user-day", type=float, default=DemoSpec.events_per_user_day)
    parser.add_argument("--drivers", choices=DRIVERS, default=DemoSpec.drivers,
                        help="what drives churn (default: engagement)")
    args = parser.parse_args(argv)
    spec = DemoSpec(accounts=args.accounts, days=args.days, end_date=args.end_date, seed=args.seed,
                    users_per_account=args.users_per_account, events_per_user_day=args.events_per_user_day,
                    drivers=args.drivers)
    began = time.perf_counter()
    summary = generate(args.out_dir, spec, progress=lambda msg: print(msg, file=sys.stderr))
    print(f"wrote {summary.out_dir} ({summary.start_date}..{summary.end_date}) in {time.perf_counter() - began:.1f} s")
    for entity, count in summary.rows.items():
        print(f"  {entity:<14} {count:>12,}")
    print(f"  healthy accounts: {len(summary.healthy)}")
    print(f"  churned accounts: {len(summary.churned)} (drivers: {spec.drivers})")
    for rule, accounts in summary.planted.items():
        print(f"  planted {rule:<20} {', '.join(accounts) or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
