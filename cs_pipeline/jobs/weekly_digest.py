"""The weekly digest to CS leads: once per ISO week and audience, never twice.

Each audience of the audiences file (logic/weekly_digest.py) gets one Slack message about the
week that ended: GRR/NRR and their movement, renewals due and at risk, the accounts that went
red, alert follow-through by CSM; then the portfolio map as a PNG in the message's thread
(files_upload_v2). Without SLACK_BOT_TOKEN both go to the outbox folder.

Both parts go through the delivery protocol of the alerts (`cs_pipeline.actions.protocol`), each
with its row in the actions store's `weekly_digests` (week, audience, part): recorded `sending`
before the post, never sent again once `sent`, an attempt in doubt looked up in Slack before any
new one (`cs_pipeline.actions.weekly`). The op ends by refreshing the warehouse's read copy
(`actions.weekly_digests`).
"""

import dataclasses
import datetime as dt

import dagster as dg
import polars as pl
import vl_convert

from cs_pipeline import settings
from cs_pipeline.actions.resource import ActionsResource
from cs_pipeline.actions.store import weekly_digests
from cs_pipeline.actions.weekly import MAP, MESSAGE, outcomes_of, send_parts
from cs_pipeline.logic.delivery import SENT
from cs_pipeline.logic.portfolio import follow_through, portfolio_map, renewal_pipeline, trailing_retention, went_red
from cs_pipeline.logic.weekly_digest import Audience, DigestContent, load_digest_config, render, week_bounds, week_of
from cs_pipeline.portfolio import alerts_for_follow_through, health_of, latest_health_day, tasks, term_outcomes
from cs_pipeline.resources.slack import SlackResource
from cs_pipeline.resources.warehouse import POOL, WarehouseResource


def previous_week(today: dt.date) -> str:
    """The ISO week that ended before `today`'s week began: what a Monday run reports on."""
    return week_of(today - dt.timedelta(days=today.weekday() + 1))


class DigestRunConfig(dg.Config):
    week: str = ""  # ISO week YYYY-Www to report on; empty: the week before today's


@dataclasses.dataclass
class WeekFrames:
    day: dt.date
    before: dt.date
    health: pl.DataFrame
    outcomes: pl.DataFrame
    alerts: pl.DataFrame
    tasks: pl.DataFrame


def _content(week: str, audience: Audience, frames: WeekFrames, untouched_days: int) -> tuple[DigestContent, pl.DataFrame]:
    health = frames.health.filter(audience.covers())
    today_health = health.filter(pl.col("partition_date") == frames.day)
    accounts = today_health.select("account_id")
    outcomes = frames.outcomes.join(accounts, on="account_id", how="semi")
    alerts = frames.alerts.filter(audience.covers())
    now, before = trailing_retention(outcomes, frames.day), trailing_retention(outcomes, frames.before)
    pipeline = renewal_pipeline(today_health)
    points = portfolio_map(today_health, untouched_days)
    content = DigestContent(
        week=week, audience=audience, last_day=frames.day,
        grr=now["grr"], nrr=now["nrr"], grr_before=before["grr"], nrr_before=before["nrr"],
        renewals_due=pipeline.filter(pl.col("days_to_renewal") <= 90),
        went_red=went_red(health, frames.before, frames.day),
        follow_through=follow_through(alerts, frames.tasks, frames.day),
        accounts=points.height, untouched=int(points["untouched"].sum()) if points.height else 0,
    )
    return content, points


def map_png(points: pl.DataFrame, untouched_days: int) -> bytes:
    from cs_pipeline.logic import charts  # altair: only the op that draws needs it

    chart = charts.portfolio_map(points, untouched_days)
    return vl_convert.vegalite_to_png(chart.to_dict(validate=False), scale=1.5)


def _made(week: str, audience: Audience, frames: WeekFrames, untouched: int) -> tuple[str, list[dict], bytes]:
    """The digest's text, blocks and map PNG for one audience."""
    content, points = _content(week, audience, frames, untouched)
    text, blocks = render(content)
    return text, blocks, map_png(points, untouched)


@dg.op(pool=POOL, description="Send the weekly digest of a week to each audience of the audiences file, once.")
def send_weekly_digests(context: dg.OpExecutionContext, config: DigestRunConfig, warehouse: WarehouseResource,
                        slack: SlackResource, actions: ActionsResource) -> dg.Output[int]:
    today = settings.today()
    week = config.week or previous_week(today)
    try:
        monday, sunday = week_bounds(week)
    except ValueError:
        raise dg.Failure(f"week must be an ISO week such as 2025-W18, got {week!r}") from None
    if sunday >= today:
        raise dg.Failure(f"week {week} ends on {sunday}: a digest reports on a week that is over (today is {today})")
    audiences = load_digest_config(settings.weekly_digest_file()).audiences
    untouched, store = settings.untouched_days(), actions.store()
    with warehouse.connect() as con:
        day = latest_health_day(con, sunday)
        if day is None or day < monday:
            context.log.info(f"weekly digest {week}: no health scored in that week; nothing to send")
            return dg.Output(0, metadata={"week": week, "sent": 0})
        before = day - dt.timedelta(days=7)
        health = health_of(con, [before, day])
        frames = WeekFrames(day, before, health, term_outcomes(con), alerts_for_follow_through(con, day), tasks(con))
        try:
            sent = send_parts(store, slack, week, audiences, lambda a: _made(week, a, frames, untouched),
                              actions.settle_seconds, context.log)
        finally:
            store.copy_to_warehouse(con, [weekly_digests])  # the rest is the dispatch job's to refresh
    outcomes = outcomes_of(store, week, [a.name for a in audiences])
    context.log.info(f"weekly digest {week}: {sent} posted; " + "; ".join(
        f"{a} message {o[MESSAGE]}, map {o[MAP]}" for a, o in outcomes.items()))
    failed = [a for a, o in outcomes.items() if any(status != SENT for status in o.values())]
    if failed:
        raise dg.Failure(f"weekly digest {week}: not delivered to {', '.join(failed)}; the next run retries what is safe to retry",
                         metadata={"outcomes": dg.MetadataValue.json(outcomes)})
    return dg.Output(sent, metadata={"week": week, "last_day": str(day), "outcomes": dg.MetadataValue.json(outcomes)})


@dg.job(description="The weekly digest to CS leads (run by weekly_digest_schedule on Mondays for the week before).")
def weekly_digest():
    send_weekly_digests()


@dg.schedule(job=weekly_digest, cron_schedule="0 9 * * 1", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Mondays 09:00 UTC, after the daily run: the digest of the week that ended; one run per week (run key).")
def weekly_digest_schedule(context: dg.ScheduleEvaluationContext):
    week = previous_week(context.scheduled_execution_time.date())
    return dg.RunRequest(run_key=f"weekly-digest-{week}",
                         run_config={"ops": {"send_weekly_digests": {"config": {"week": week}}}})
