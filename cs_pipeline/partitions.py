"""The daily partitions every time-based asset shares, the dates a run covers, and where a run must begin.

The first partition is the data's first day (`settings.partitions_start_date()`): the earliest
`events/date=...` folder of the files source, unless `CS_PIPELINE_START_DATE` says otherwise.
Nothing is known before it, so an episode ongoing on the first partition opens there.

Episodes continue across runs (CONTRACT.md §3): the alerts of a run's first day continue the
episodes open on the day before. That day's alert state must therefore be known: evaluated by an
earlier run, or computable from its account_health, or before the first partition. When it is
not, the run must begin earlier (`run_start_needed`), or `alerts` refuses (`unknown_state_reason`):
a run that guessed would open an ongoing episode on its own first day, and a wider run later
would find the true start, a second alert id, message and task.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from cs_pipeline import settings

DAY = dt.timedelta(days=1)
HEALTH = "analytics.account_health"
EVALUATED = "analytics.alert_evaluated_days"

# Partition D covers [D 00:00, D+1 00:00) UTC; the newest partition is the last complete day.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.partitions_start_date(), timezone="UTC"
)

# History runs as ranges: one run processes its days in order and pays start-up costs once.
range_backfill = dg.BackfillPolicy.single_run()


def first_day() -> dt.date:
    """The first partition as the settings say now. `daily_partitions` was built from the same
    setting when the code location loaded; they differ only if the data gained earlier days since."""
    return dt.date.fromisoformat(settings.partitions_start_date())


def run_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the partition or partition range this run covers."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _days_before(con, table: str, start: dt.date) -> set[dt.date]:
    schema, name = table.split(".")
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchone()[0]
    if not exists:
        return set()
    return {r[0] for r in con.execute(f"SELECT DISTINCT partition_date FROM {table} WHERE partition_date < ?", [start]).fetchall()}


def evaluation_start(con, start: dt.date, first: dt.date) -> tuple[dt.date, dt.date | None]:
    """Where evaluating alerts from `start` must begin, and where a run must begin when it cannot.

    Returns (`evaluate_from`, `resume`). Days before `start` that have account_health but were
    never evaluated are evaluated again, without being written, from `evaluate_from`. `resume` is
    None when the day before `evaluate_from` is known (evaluated, or before the first partition
    `first`); otherwise it is the day a run must begin at: the day after the latest evaluated day,
    or the first partition.
    """
    health = _days_before(con, HEALTH, start)
    evaluated = _days_before(con, EVALUATED, start)
    day = start
    while day - DAY in health and day - DAY not in evaluated:
        day -= DAY
    before = day - DAY
    if before < first or before in evaluated:
        return day, None
    latest = max((d for d in evaluated if d >= first), default=None)
    return day, (latest + DAY if latest else first)


def unknown_state_reason(start: dt.date, resume: dt.date) -> str:
    """The one line that says which days to run first, and why."""
    return (
        f"the alert state of {start - DAY} is unknown (never evaluated, no account_health): run {resume} .. {start - DAY} "
        f"first (`cs-pipeline run --from {resume}` or a backfill from {resume} in the UI), so that episodes ongoing on "
        f"{start} keep the day they began"
    )


def run_start_needed(warehouse_path: Path, first: dt.date) -> tuple[dt.date, str | None]:
    """The first day a run asked to start on `first` must cover, and one line saying why when earlier.

    On a fresh warehouse that is the first partition; afterwards, the day after the latest day
    whose alerts were evaluated. A warehouse another process is writing cannot be read now: the
    run keeps `first` and the `alerts` asset checks again when it runs.
    """
    import duckdb

    from cs_pipeline.resources.warehouse import WarehouseResource

    partition_start = first_day()
    if first <= partition_start:
        return first, None
    if not Path(warehouse_path).exists():
        resume: dt.date | None = partition_start
    else:
        try:
            with WarehouseResource(path=str(warehouse_path)).connect(read_only=True) as con:
                _, resume = evaluation_start(con, first, partition_start)
        except duckdb.Error:  # in use by a writer: the `alerts` asset checks again when it runs
            return first, None
    if resume is None or resume >= first:
        return first, None
    return resume, (
        f"the days {resume} .. {first - DAY} were never evaluated, so the run starts at {resume}: "
        f"episodes ongoing on {first} keep the day they began"
    )
