"""The weekly digest to CS leads: once per ISO week and audience, never twice.

Each audience of the audiences file (logic/weekly_digest.py) gets one Slack message about the
week that ended: GRR/NRR and their movement, renewals due and at risk, the accounts that went
red, alert follow-through by CSM; then the portfolio map as a PNG in the message's thread
(files_upload_v2). Without SLACK_BOT_TOKEN both go to the outbox folder.

Exactly once, as for alerts (jobs/dispatch.py): actions.weekly_digests holds one row per
(week, audience). The row is written `sending` before the post; once `sent` the digest is never
posted again. A row left `sending`, or failed in a way that may have posted, is looked up in
Slack (message metadata: week and audience) before posting again, and stays unsent when Slack
cannot be asked. The image is uploaded at most once per digest: a failed upload is retried by the
next run only when nothing can have been shared (the upload never completed).
"""

import dataclasses
import datetime as dt

import dagster as dg
import polars as pl
import vl_convert

from cs_pipeline import settings
from cs_pipeline.logic import charts
from cs_pipeline.logic.delivery import AMBIGUOUS_SUFFIX, FAILED, SENDING, SENT, must_check_before_resend
from cs_pipeline.logic.portfolio import follow_through, portfolio_map, renewal_pipeline, trailing_retention, went_red
from cs_pipeline.logic.weekly_digest import Audience, DigestContent, load_digest_config, render, week_bounds, week_of
from cs_pipeline.portfolio import alerts_for_follow_through, health_of, latest_health_day, tasks, term_outcomes
from cs_pipeline.resources.slack import EVENT_TYPE_WEEKLY_DIGEST, SlackResource
from cs_pipeline.resources.warehouse import POOL, WarehouseResource

DDL = (
    "CREATE SCHEMA IF NOT EXISTS actions",
    """CREATE TABLE IF NOT EXISTS actions.weekly_digests (
        week VARCHAR, audience VARCHAR, destination VARCHAR, channel VARCHAR, status VARCHAR, reason VARCHAR,
        message_ts VARCHAR, image_status VARCHAR, image_ref VARCHAR, image_reason VARCHAR, attempts BIGINT,
        attempt_started_at TIMESTAMP, updated_at TIMESTAMP, PRIMARY KEY (week, audience))""",
)
COLUMNS = ("week", "audience", "destination", "channel", "status", "reason", "message_ts", "image_status", "image_ref",
           "image_reason", "attempts", "attempt_started_at")
# An upload that failed before files.completeUploadExternal was answered may have shared the file.
IMAGE_MAY_BE_SHARED = ("may have posted it",)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def previous_week(today: dt.date) -> str:
    """The ISO week that ended before `today`'s week began: what a Monday run reports on."""
    return week_of(today - dt.timedelta(days=today.weekday() + 1))


class DigestRunConfig(dg.Config):
    week: str = ""  # ISO week YYYY-Www to report on; empty: the week before today's


def _records(con, week: str) -> dict[str, dict]:
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM actions.weekly_digests WHERE week = ?", [week]).fetchall()
    return {row[1]: dict(zip(COLUMNS, row)) for row in rows}


def _write(con, week: str, audience: str, **fields) -> None:
    """Upsert the (week, audience) row with `fields`; a `sending` status starts an attempt."""
    now = _now()
    row = {"week": week, "audience": audience, **fields, "updated_at": now}
    if fields.get("status") == SENDING:
        row["attempt_started_at"] = now
    names = list(row)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in ("week", "audience"))
    attempts = ", attempts = coalesce(actions.weekly_digests.attempts, 0) + 1" if fields.get("status") == SENDING else ""
    con.execute(
        f"INSERT INTO actions.weekly_digests ({', '.join(names)}, attempts) VALUES ({', '.join('?' for _ in names)}, "
        f"{1 if fields.get('status') == SENDING else 0}) ON CONFLICT (week, audience) DO UPDATE SET {updates}{attempts}",
        [row[n] for n in names],
    )


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
    chart = charts.portfolio_map(points, untouched_days)
    return vl_convert.vegalite_to_png(chart.to_dict(validate=False), scale=1.5)


def deliver(con, slack: SlackResource, week: str, audience: Audience, text: str, blocks: list[dict], png: bytes,
            row: dict | None, log) -> str:
    """Send one audience's digest at most once; returns what happened (`sent`, `skipped`, `failed`, ...)."""
    key = {"week": week, "audience": audience.name}
    if not slack.uses_slack:
        if row and row["status"] == SENT:
            return "skipped"
        _write(con, week, audience.name, destination="outbox", channel=audience.channel, status=SENDING)
        outbox_key = f"weekly-digest-{week}-{audience.name}"
        delivery = slack.write_to_outbox(outbox_key, {"channel": audience.channel, "text": text, "blocks": blocks} | key,
                                         attachment=(".png", png))
        _write(con, week, audience.name, status=delivery.status, reason=delivery.reason,
               image_status=delivery.status, image_ref=delivery.path)
        return delivery.status
    outcome = "skipped"
    if not row or row["status"] != SENT:
        if row and must_check_before_resend(row["destination"], row["status"], row["reason"]):
            try:
                found = slack.find_post(row["channel"], row["attempt_started_at"], EVENT_TYPE_WEEKLY_DIGEST, key)
            except Exception as err:  # noqa: BLE001 - an unanswered check must not become a second post
                _write(con, week, audience.name, status=FAILED,
                       reason=f"could not check whether it was posted ({slack._reason(err)}); {AMBIGUOUS_SUFFIX}")
                return FAILED
            if found is not None:
                _write(con, week, audience.name, status=SENT, channel=found[0], message_ts=found[1],
                       reason="found in Slack after an interrupted attempt")
                row = {**row, "status": SENT, "channel": found[0], "message_ts": found[1]}
        if not row or row["status"] != SENT:
            _write(con, week, audience.name, destination="slack", channel=audience.channel, status=SENDING, reason=None)
            delivery = slack.post_to_channel(audience.channel, text, blocks, EVENT_TYPE_WEEKLY_DIGEST, key)
            _write(con, week, audience.name, status=delivery.status, reason=delivery.reason, channel=delivery.channel,
                   message_ts=delivery.message_ts)
            if delivery.status != SENT:
                log.warning(f"weekly digest {week} {audience.name}: {delivery.reason}")
                return FAILED
            row = {**(row or {}), "status": SENT, "channel": delivery.channel, "message_ts": delivery.message_ts,
                   "image_status": None, "image_reason": None}
            outcome = SENT
    if row.get("image_status") == SENT or row.get("image_status") == SENDING or (
        row.get("image_status") == FAILED and any(s in (row.get("image_reason") or "") for s in IMAGE_MAY_BE_SHARED)
    ):
        return outcome
    _write(con, week, audience.name, image_status=SENDING, image_reason=None)
    upload = slack.upload_image(row["channel"], png, f"portfolio-map-{week}-{audience.name}.png",
                                f"Portfolio map {week} · {audience.name}", thread_ts=row["message_ts"])
    _write(con, week, audience.name, image_status=upload.status, image_ref=upload.message_ts, image_reason=upload.reason)
    if upload.status != SENT:
        log.warning(f"weekly digest {week} {audience.name}: image not shared: {upload.reason}")
        return "image_failed"
    return outcome if outcome != "skipped" else "image_sent"


@dg.op(pool=POOL, description="Send the weekly digest of a week to each audience of the audiences file, once.")
def send_weekly_digests(context: dg.OpExecutionContext, config: DigestRunConfig, warehouse: WarehouseResource,
                        slack: SlackResource) -> dg.Output[int]:
    today = settings.today()
    week = config.week or previous_week(today)
    try:
        monday, sunday = week_bounds(week)
    except ValueError:
        raise dg.Failure(f"week must be an ISO week such as 2025-W18, got {week!r}") from None
    if sunday >= today:
        raise dg.Failure(f"week {week} ends on {sunday}: a digest reports on a week that is over (today is {today})")
    audiences = load_digest_config(settings.weekly_digest_file()).audiences
    untouched = settings.untouched_days()
    outcomes: dict[str, str] = {}
    with warehouse.connect() as con:
        for statement in DDL:
            con.execute(statement)
        day = latest_health_day(con, sunday)
        if day is None or day < monday:
            context.log.info(f"weekly digest {week}: no health scored in that week; nothing to send")
            return dg.Output(0, metadata={"week": week, "sent": 0})
        before = day - dt.timedelta(days=7)
        health = health_of(con, [before, day])
        frames = WeekFrames(day, before, health, term_outcomes(con), alerts_for_follow_through(con, day), tasks(con))
        records = _records(con, week)
        for audience in audiences:
            row = records.get(audience.name)
            if row and row["status"] == SENT and row["image_status"] in (SENT, SENDING):
                outcomes[audience.name] = "skipped"
                continue
            content, points = _content(week, audience, frames, untouched)
            text, blocks = render(content)
            png = map_png(points, untouched)
            outcomes[audience.name] = deliver(con, slack, week, audience, text, blocks, png, row, context.log)
    sent = sum(1 for o in outcomes.values() if o == SENT)
    context.log.info(f"weekly digest {week}: " + ", ".join(f"{a} {o}" for a, o in outcomes.items()))
    failed = [a for a, o in outcomes.items() if o in (FAILED, "image_failed")]
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
