"""The dispatch job: create each live alert's task, send its Slack message, close resolved alerts.

What is live is decided from the warehouse each time an op runs, not passed between ops, and
the ops that write are in the one-at-a-time `duckdb` pool, so two dispatch runs never overlap.

Never twice once sent. Before the first post the delivery rows of all the messages to post are
written as `sending` (the outbox rows, idempotency key `alert_id#n`), in one statement; the
outcomes replace them in batches of 100 (and at the end, or when the run stops on an error).
No message is posted before its row says `sending`, so a crash can leave rows `sending`, never
a posted message recorded as unsent. A row an earlier run left `sending` (it died between
posting and recording) or `failed` with "Slack may have posted it" is first looked up in Slack
(conversations.history since the attempt, by the message's metadata): found, it becomes `sent`
with that ts; not found, it is posted; when Slack cannot be asked, nothing is posted and the
next run asks again.

Bursts. Messages go out critical first, then warning, then info, older day first; posts to one
channel are spaced by `min_seconds_between_posts_per_channel` while other channels go on, and a
429 pauses only its channel for its Retry-After.

Snoozed (`cs-pipeline snooze`) and acknowledged (`cs-pipeline ack`) alerts do not notify. A sent
alert no longer open on the latest evaluated live day is closed: its task becomes `done` or
`obsolete` (its rule's `task.on_resolve`) and its owner gets one "resolved" message
(actions.notices, keyed (alert_id, 'closed')); a `keep_open` rule's alert only ends, quietly.

Task sinks (`CS_PIPELINE_TASK_SINKS`, see `cs_pipeline.sinks.config`). Last, each open task goes
to the sinks its rule maps to (Salesforce Task, HubSpot task, signed webhook) once, and the remote
task of a `done` or `obsolete` one is closed with that outcome; actions.task_sinks keeps, per
(task_id, sink), the remote id and link, or why it failed (tried again next run). A sink's
failure never touches Slack delivery. Tasks are linked to their account's CRM record, and
messages link to it, through the write-back file's CRM id mapping (`cs_pipeline.sinks.crm_ids`);
an account without a CRM id gets its task unlinked, the reason recorded.
"""

import dataclasses
import datetime as dt
import json
import os
import time

import dagster as dg
import polars as pl

from cs_pipeline import settings
from cs_pipeline.assets.crm_writeback import CrmWritebackResource
from cs_pipeline.logic.config import ConfigError
from cs_pipeline.logic.delivery import (
    AMBIGUOUS_SUFFIX,
    FAILED,
    SENDING,
    SENT,
    Action,
    ChannelPacer,
    idempotency_key,
    is_resolved,
    must_check_before_resend,
    muted_by,
    send_order,
    split_for_digest,
)
from cs_pipeline.messages import AlertMessage, ResolvedMessage
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.slack import (
    EVENT_TYPE_DIGEST,
    EVENT_TYPE_RESOLVED,
    MAX_RETRY_AFTER_SECONDS,
    Address,
    Delivery,
    SlackResource,
)
from cs_pipeline.resources.warehouse import POOL, WarehouseResource, query, table_exists
from cs_pipeline.sinks import SinkError, TaskRequest
from cs_pipeline.sinks.config import TaskSinksConfig, TaskSinksResource
from cs_pipeline.sinks.crm_ids import CrmIdMapping, record_url

FAILED_TAG = "cs_pipeline/failed_deliveries"
DIGEST = "digest"

ACTIONS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS actions",
    """CREATE TABLE IF NOT EXISTS actions.tasks (
        task_id VARCHAR PRIMARY KEY, alert_id VARCHAR UNIQUE, account_id VARCHAR, owner_email VARCHAR,
        title VARCHAR, steps VARCHAR, due_date DATE, priority VARCHAR, status VARCHAR, created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS actions.deliveries (
        alert_id VARCHAR, notification_number BIGINT, destination VARCHAR, channel VARCHAR, status VARCHAR,
        reason VARCHAR, attempts BIGINT, message_ts VARCHAR, first_attempt_at TIMESTAMP, updated_at TIMESTAMP,
        PRIMARY KEY (alert_id, notification_number))""",
    """CREATE TABLE IF NOT EXISTS actions.alert_actions (
        alert_id VARCHAR, action VARCHAR, until DATE, reason VARCHAR, "by" VARCHAR, "at" TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS actions.alert_state (
        alert_id VARCHAR PRIMARY KEY, state VARCHAR, last_open_day DATE, closed_on DATE, closed_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS actions.notices (
        alert_id VARCHAR, kind VARCHAR, destination VARCHAR, channel VARCHAR, status VARCHAR, reason VARCHAR,
        attempts BIGINT, message_ts VARCHAR, attempt_started_at TIMESTAMP, updated_at TIMESTAMP,
        PRIMARY KEY (alert_id, kind))""",
    "ALTER TABLE actions.notices ADD COLUMN IF NOT EXISTS members VARCHAR",
    "ALTER TABLE actions.deliveries ADD COLUMN IF NOT EXISTS idempotency_key VARCHAR",
    "ALTER TABLE actions.deliveries ADD COLUMN IF NOT EXISTS attempt_started_at TIMESTAMP",
    """CREATE TABLE IF NOT EXISTS actions.task_sinks (
        task_id VARCHAR, alert_id VARCHAR, sink VARCHAR, remote_id VARCHAR, url VARCHAR, status VARCHAR,
        reason VARCHAR, attempts BIGINT, updated_at TIMESTAMP, PRIMARY KEY (task_id, sink))""",
)


def ensure_actions_tables(con) -> None:
    for statement in ACTIONS_DDL:
        con.execute(statement)


def live_alerts(con, today: dt.date, live_window_days: int) -> pl.DataFrame:
    """Alerts open on a live partition (at most `live_window_days` before today), one row each.

    The row is the alert's latest day: its current notification number, message and task. An
    alert whose episode closed before the live window has no such row and is never sent.
    """
    if not table_exists(con, "analytics", "alert_events"):
        return pl.DataFrame()
    return query(
        con,
        """SELECT * FROM analytics.alert_events WHERE partition_date >= ?
           QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1
           ORDER BY alert_id""",
        [today - dt.timedelta(days=live_window_days)],
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dg.op(pool=POOL, description="Create one task per live alert in actions.tasks (idempotent: one task per alert id).")
def create_tasks(context: dg.OpExecutionContext, warehouse: WarehouseResource, cs_config: PipelineConfig) -> int:
    today = settings.today()
    with warehouse.connect() as con:
        ensure_actions_tables(con)
        alerts = live_alerts(con, today, cs_config.live_window_days)
        if alerts.height == 0:
            context.log.info("no live alerts")
            return 0
        tasks = alerts.select(
            ("task_" + pl.col("alert_id").str.strip_prefix("al_")).alias("task_id"),
            "alert_id",
            "account_id",
            "owner_email",
            pl.col("task_title").alias("title"),
            pl.col("task_steps").alias("steps"),
            pl.col("task_due_date").alias("due_date"),
            pl.col("task_priority").alias("priority"),
            pl.lit("open").alias("status"),
            pl.lit(_now()).alias("created_at"),
        )
        con.register("_tasks", tasks.to_arrow())
        before = con.execute("SELECT count(*) FROM actions.tasks").fetchone()[0]
        con.execute("INSERT INTO actions.tasks SELECT * FROM _tasks ON CONFLICT DO NOTHING")
        created = con.execute("SELECT count(*) FROM actions.tasks").fetchone()[0] - before
        con.unregister("_tasks")
    context.log.info(f"tasks: {created} created, {alerts.height - created} already existed")
    context.add_output_metadata({"tasks_created": created, "live_alerts": alerts.height})
    return created


def _crm_ids(resource: CrmWritebackResource, log) -> CrmIdMapping | None:
    """The accounts' CRM id mapping (the write-back file's); None, with a warning, when that file is broken."""
    try:
        return resource.crm_ids()
    except SinkError as error:
        log.warning(f"CRM ids unknown: {error}")
        return None


def _messages(
    con, alerts: pl.DataFrame, cs_config: PipelineConfig, crm_ids: CrmIdMapping | None = CrmIdMapping(), log=None
) -> list[AlertMessage]:
    """Build each alert's message with its account's figures, what moved its score, its rule's
    condition and, when `CS_PIPELINE_CRM_RECORD_URL` is set, the link to its CRM record (none
    when `crm_ids` is None or the account has no CRM id)."""
    rules = cs_config.rules()
    crm_url = settings.crm_record_url()
    crm: dict[str, str | None] = {}
    if crm_url and crm_ids is not None:
        try:
            crm = crm_ids.lookup(con, alerts["account_id"].to_list())
        except SinkError as error:  # a wrong mapping costs the links, never the messages
            if log is not None:
                log.warning(f"alert messages go without CRM links: {error}")
    keys = alerts.select(
        "account_id", "partition_date", (pl.col("partition_date") - dt.timedelta(days=30)).alias("month_before")
    ).unique()
    con.register("_keys", keys.to_arrow())
    health = query(
        con,
        """SELECT h.*, d.renewal_date FROM analytics.account_health h
           JOIN _keys k USING (account_id, partition_date)
           LEFT JOIN marts.dim_accounts d USING (account_id)""",
    )
    earlier = query(
        con,
        """SELECT h.*, k.partition_date AS alert_date FROM analytics.account_health h
           JOIN _keys k ON h.account_id = k.account_id AND h.partition_date = k.month_before""",
    )
    con.unregister("_keys")
    by_account = {(row["account_id"], row["partition_date"]): row for row in health.iter_rows(named=True)}
    before = {(row["account_id"], row["alert_date"]): row for row in earlier.iter_rows(named=True)}
    base_url = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
    messages = []
    for alert in alerts.iter_rows(named=True):
        key = (alert["account_id"], alert["partition_date"])
        now, then = by_account.get(key, {}), before.get(key, {})
        movers = sorted(
            (
                (name.removeprefix("contribution_"), round((now.get(name) or 0.0) - (then.get(name) or 0.0), 3))
                for name in now
                if name.startswith("contribution_") and then
            ),
            key=lambda item: -abs(item[1]),
        )
        rule = rules.by_id.get(alert["rule_id"])
        messages.append(
            AlertMessage(
                alert_id=alert["alert_id"],
                notification_number=alert["notification_number"],
                rule_id=alert["rule_id"],
                rule_description=rule.description if rule else alert["rule_id"],
                severity=alert["severity"],
                account_id=alert["account_id"],
                account_name=alert["account_name"] or alert["account_id"],
                segment=alert["segment"] or "",
                owner_email=alert["owner_email"],
                partition_date=alert["partition_date"],
                episode_start=alert["episode_start"],
                arr=now.get("arr"),
                renewal_date=now.get("contract_end_date") or now.get("renewal_date"),
                score=now.get("score"),
                band=now.get("band"),
                score_7d_ago=now.get("score_7d_ago"),
                score_30d_ago=now.get("score_30d_ago"),
                top_movers=[m for m in movers if m[1] != 0][:3],
                facts=json.loads(alert["facts"]),
                message=alert["message"],
                task_title=alert["task_title"],
                task_steps=json.loads(alert["task_steps"]),
                task_due_date=alert["task_due_date"],
                task_priority=alert["task_priority"],
                dagster_url=f"{base_url}/assets/alerts?view=partitions&partition={alert['partition_date']}",
                condition=rule.condition if rule else "",
                crm_url=record_url(crm_url, crm.get(alert["account_id"])),
            )
        )
    return messages


DELIVERY_COLUMNS = (
    "alert_id", "notification_number", "destination", "channel", "status", "reason", "attempts", "message_ts",
    "first_attempt_at", "updated_at", "idempotency_key", "attempt_started_at",
)


@dataclasses.dataclass
class SendCounts:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    found_posted: int = 0
    rate_limited: int = 0
    in_digests: int = 0
    seconds: float = 0.0

    @property
    def alerts_per_second(self) -> float:
        return round(self.sent / self.seconds, 2) if self.seconds > 0 else 0.0


def _deliveries(con) -> dict[tuple[str, int], dict]:
    cursor = con.execute(f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM actions.deliveries")
    return {(row[0], row[1]): dict(zip(DELIVERY_COLUMNS, row)) for row in cursor.fetchall()}


def _mark_all_sending(con, items: list[tuple[AlertMessage, str, str]]) -> None:
    """The outbox rows of every message about to be posted, as one statement before the first post
    (a DuckDB upsert costs milliseconds, so not one per message). A run that dies after Slack
    posted a message leaves its row `sending`, and the next run looks for it before posting again."""
    now = _now()
    batch = pl.DataFrame(
        [(m.alert_id, m.notification_number, destination, channel, idempotency_key(m.alert_id, m.notification_number))
         for m, destination, channel in items],
        schema={"alert_id": pl.String, "notification_number": pl.Int64, "destination": pl.String,
                "channel": pl.String, "idempotency_key": pl.String},
        orient="row",
    )
    con.register("_sending", batch.to_arrow())
    try:
        con.execute(
            """INSERT INTO actions.deliveries (alert_id, notification_number, destination, channel, status, reason,
                 attempts, message_ts, first_attempt_at, updated_at, idempotency_key, attempt_started_at)
               SELECT alert_id, notification_number, destination, channel, 'sending', NULL, 1, NULL, ?, ?,
                 idempotency_key, ? FROM _sending
               ON CONFLICT (alert_id, notification_number) DO UPDATE SET
                 destination = excluded.destination, channel = excluded.channel, status = 'sending', reason = NULL,
                 attempts = actions.deliveries.attempts + 1, updated_at = excluded.updated_at,
                 idempotency_key = excluded.idempotency_key, attempt_started_at = excluded.attempt_started_at""",
            [now, now, now],
        )
    finally:
        con.unregister("_sending")


def _record(con, msg: AlertMessage, delivery: Delivery) -> None:
    _record_all(con, [(msg, delivery)])


def _record_all(con, outcomes: list[tuple[AlertMessage, Delivery]]) -> None:
    """The outcomes of attempts, as one statement; counts an attempt only when `_mark_all_sending` did not."""
    now = _now()
    batch = pl.DataFrame(
        [(m.alert_id, m.notification_number, d.destination, d.channel, d.status, d.reason, d.message_ts,
          idempotency_key(m.alert_id, m.notification_number)) for m, d in outcomes],
        schema={"alert_id": pl.String, "notification_number": pl.Int64, "destination": pl.String,
                "channel": pl.String, "status": pl.String, "reason": pl.String, "message_ts": pl.String,
                "idempotency_key": pl.String},
        orient="row",
    )
    con.register("_outcomes", batch.to_arrow())
    try:
        con.execute(
            """INSERT INTO actions.deliveries (alert_id, notification_number, destination, channel, status, reason,
                 attempts, message_ts, first_attempt_at, updated_at, idempotency_key, attempt_started_at)
               SELECT alert_id, notification_number, destination, channel, status, reason, 1, message_ts, ?, ?,
                 idempotency_key, ? FROM _outcomes
               ON CONFLICT (alert_id, notification_number) DO UPDATE SET
                 destination = excluded.destination, channel = excluded.channel, status = excluded.status,
                 reason = excluded.reason,
                 attempts = actions.deliveries.attempts + CASE WHEN actions.deliveries.status = 'sending' THEN 0 ELSE 1 END,
                 message_ts = excluded.message_ts, updated_at = excluded.updated_at,
                 attempt_started_at = coalesce(actions.deliveries.attempt_started_at, excluded.attempt_started_at)""",
            [now, now, now],
        )
    finally:
        con.unregister("_outcomes")


def _check_slack(con, msg: AlertMessage, row: dict, slack: SlackResource) -> str:
    """Look in Slack for the message an earlier attempt may have posted; record what is found.

    `found` (recorded `sent`), `absent` (the caller posts it), or `unsure`: Slack could not be
    asked, so it stays ambiguous and is checked again next run, never posted on a guess.
    """
    since = row["attempt_started_at"] or row["first_attempt_at"] or row["updated_at"]
    try:
        found = slack.find_alert_post(row["channel"], msg.alert_id, msg.notification_number, since)
    except Exception as err:  # noqa: BLE001 - an unanswered check must not become a second post
        reason = f"could not check whether it was posted ({slack._reason(err)}); {AMBIGUOUS_SUFFIX}"
        _record(con, msg, Delivery(destination="slack", channel=row["channel"], status="failed", reason=reason))
        return "unsure"
    if found is None:
        return "absent"
    channel_id, ts = found
    _record(con, msg, Delivery(destination="slack", channel=channel_id, status="sent", message_ts=ts,
                               reason="found in Slack after an interrupted attempt"))
    return "found"


def send_all(con, messages: list[AlertMessage], slack: SlackResource, log=None) -> SendCounts:
    """Send every message not yet sent, at most once each; see the module docstring."""
    counts = SendCounts()
    started = time.monotonic()
    existing = _deliveries(con)
    pacer: ChannelPacer[tuple[AlertMessage, Address]] = ChannelPacer(slack.min_seconds_between_posts_per_channel)
    to_write: list[AlertMessage] = []
    to_post: list[tuple[AlertMessage, Address]] = []
    for msg in messages:
        row = existing.get((msg.alert_id, msg.notification_number))
        if row and row["status"] == SENT:
            counts.skipped += 1
            continue
        if row and slack.uses_slack and must_check_before_resend(row["destination"], row["status"], row["reason"]):
            outcome = _check_slack(con, msg, row, slack)
            if outcome != "absent":
                counts.found_posted += outcome == "found"
                counts.failed += outcome == "unsure"  # the sensor's retry checks again
                continue
        if not slack.uses_slack:
            to_write.append(msg)
            continue
        address = slack.address_alert(msg)
        if isinstance(address, Delivery):
            _count(counts, msg, address, con, log)
            continue
        to_post.append((msg, address))
        pacer.add(address.channel, (msg, address))
    outcomes = _Outcomes(con, counts, log)
    try:
        if to_write:
            _mark_all_sending(con, [(msg, "outbox", slack._addressee(msg)) for msg in to_write])
            for msg in to_write:
                outcomes.add(msg, slack.write_alert_to_outbox(msg))
        if to_post:
            _mark_all_sending(con, [(msg, "slack", address.channel) for msg, address in to_post])
            _post_paced(pacer, slack, counts, outcomes)
    finally:
        outcomes.flush()
    counts.seconds = time.monotonic() - started
    return counts


class _Outcomes:
    """Outcomes of posts, recorded FLUSH_EVERY at a time in one statement.

    Losing the unrecorded ones in a crash is safe: their rows are still `sending`, so the next
    run looks each one up in Slack before posting it (and a write to the outbox is rewritten).
    """

    FLUSH_EVERY = 100

    def __init__(self, con, counts: SendCounts, log) -> None:
        self.con, self.counts, self.log = con, counts, log
        self.pending: list[tuple[AlertMessage, Delivery]] = []

    def add(self, msg: AlertMessage, delivery: Delivery) -> None:
        self.pending.append((msg, delivery))
        _tally(self.counts, msg, delivery, self.log)
        if len(self.pending) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            _record_all(self.con, self.pending)
            self.pending = []


def _post_paced(pacer: ChannelPacer, slack: SlackResource, counts: SendCounts, outcomes: _Outcomes) -> None:
    """Post in order, one channel at most every `min_seconds_between_posts_per_channel`; a 429
    puts its message back and pauses that channel for its Retry-After, up to `rate_limit_retries`
    (its row stays `sending`: it is recorded once, with its final outcome)."""
    backoffs: dict[tuple[str, int], int] = {}
    while (step := pacer.next(time.monotonic())) is not None:
        channel, (msg, address), wait = step
        if wait > 0:
            time.sleep(wait)
        delivery = slack.post_alert(msg, address)
        pacer.posted(channel, time.monotonic())
        key = (msg.alert_id, msg.notification_number)
        if delivery.retry_after is not None:
            counts.rate_limited += 1
            backoffs[key] = backoffs.get(key, 0) + 1
            if backoffs[key] <= slack.rate_limit_retries and delivery.retry_after <= MAX_RETRY_AFTER_SECONDS:
                pacer.back_off(channel, (msg, address), delivery.retry_after, time.monotonic())
                continue
        outcomes.add(msg, delivery)


def _count(counts: SendCounts, msg: AlertMessage, delivery: Delivery, con, log) -> None:
    _record(con, msg, delivery)
    _tally(counts, msg, delivery, log)


def _tally(counts: SendCounts, msg: AlertMessage, delivery: Delivery, log) -> None:
    if delivery.status == SENT:
        counts.sent += 1
        return
    counts.failed += 1
    if log is not None:
        log.warning(f"{msg.alert_id} #{msg.notification_number}: {delivery.reason}")


def alert_actions(con, alert_ids: list[str]) -> dict[str, list[Action]]:
    """The snoozes and acknowledgements recorded by `cs-pipeline snooze` / `ack`, per alert id."""
    found: dict[str, list[Action]] = {}
    if not alert_ids:
        return found
    rows = con.execute(
        "SELECT alert_id, action, until, \"at\" FROM actions.alert_actions WHERE list_contains(?, alert_id) ORDER BY \"at\"",
        [alert_ids],
    ).fetchall()
    for alert_id, action, until, at in rows:
        found.setdefault(alert_id, []).append(Action(action=action, until=until, at=at))
    return found


def _without_muted(con, alerts: pl.DataFrame, today: dt.date) -> tuple[pl.DataFrame, int]:
    """The alerts that may notify today, and how many were held back by a snooze or an ack."""
    if alerts.height == 0:
        return alerts, 0
    actions = alert_actions(con, alerts["alert_id"].to_list())
    keep = [
        muted_by(actions.get(r["alert_id"], []), today, r["episode_start"]) is None for r in alerts.iter_rows(named=True)
    ]
    kept = alerts.filter(pl.Series(keep, dtype=pl.Boolean))
    return kept, alerts.height - kept.height


# ------------------------------------------------------------------ digests


def plan_sending(
    con, messages: list[AlertMessage], slack: SlackResource
) -> tuple[list[AlertMessage], dict[str, list[AlertMessage]], int]:
    """(messages to send alone, new digest members per addressee, members held by an unsure digest).

    First settles digests an earlier run left unsure. Only an alert with no delivery yet, or
    whose digest surely failed, may go to a digest; one already tried alone stays alone, and
    one in a digest that may have been posted is held until that digest is settled.
    """
    held = settle_digests(con, slack)
    existing = _deliveries(con)
    eligible, alone = [], []
    for msg in messages:
        row = existing.get((msg.alert_id, msg.notification_number))
        if row is None or (row["destination"] == DIGEST and row["status"] == FAILED
                           and not (row["reason"] or "").endswith(AMBIGUOUS_SUFFIX)):
            eligible.append(msg)
        elif row["destination"] != DIGEST:
            alone.append(msg)
    keys = [(slack.addressee(m), m.severity) for m in eligible]
    cap = slack.max_alerts_per_csm_per_day
    alone_idx, digest_idx = split_for_digest(keys, _sent_alone_today(con, messages, slack), cap, slack.digest_severities)
    chosen = {id(eligible[i]) for i in alone_idx} | {id(m) for m in alone}
    alone_all = [m for m in messages if id(m) in chosen]
    digests: dict[str, list[AlertMessage]] = {}
    for i in digest_idx:
        digests.setdefault(keys[i][0], []).append(eligible[i])
    return alone_all, digests, held


def _sent_alone_today(con, messages: list[AlertMessage], slack: SlackResource) -> dict[str, int]:
    """Alert messages each addressee got alone since midnight UTC, among these alerts."""
    midnight = _now().replace(hour=0, minute=0, second=0, microsecond=0)
    sent = {
        (r[0], r[1]) for r in con.execute(
            "SELECT alert_id, notification_number FROM actions.deliveries "
            "WHERE status = 'sent' AND destination <> 'digest' AND updated_at >= ?", [midnight]
        ).fetchall()
    }
    counts: dict[str, int] = {}
    for msg in messages:
        if (msg.alert_id, msg.notification_number) in sent:
            counts[slack.addressee(msg)] = counts.get(slack.addressee(msg), 0) + 1
    return counts


def send_digests(con, digests: dict[str, list[AlertMessage]], slack: SlackResource, today: dt.date,
                 counts: SendCounts, log=None) -> None:
    """One digest per addressee: its notice and its members' rows written `sending` first."""
    for addressee, members in digests.items():
        digest_id = _next_digest_id(con, addressee, today)
        destination, channel = ("slack", None) if slack.uses_slack else ("outbox", addressee)
        if slack.uses_slack:
            address = slack.address_alert(members[0])
            if isinstance(address, Delivery):
                for msg in members:
                    _count(counts, msg, dataclasses.replace(address, destination=DIGEST), con, log)
                continue
            channel = address.channel
        sending = Delivery(destination, channel, SENDING)
        _write_notice(con, digest_id, DIGEST, sending, members=[[m.alert_id, m.notification_number] for m in members])
        _mark_all_sending(con, [(msg, DIGEST, channel) for msg in members])
        delivery = slack.deliver_digest(digest_id, members)
        _settle_digest(con, digest_id, members, delivery)
        if delivery.status == SENT:
            counts.in_digests += len(members)
        else:
            counts.failed += len(members)
            if log is not None:
                log.warning(f"digest {digest_id}: {delivery.reason}")


def _next_digest_id(con, addressee: str, today: dt.date) -> str:
    prefix = f"digest:{addressee}:{today.isoformat()}:"
    done = con.execute(
        "SELECT count(*) FROM actions.notices WHERE kind = 'digest' AND starts_with(alert_id, ?)", [prefix]
    ).fetchone()[0]
    return f"{prefix}{done + 1}"


def _settle_digest(con, digest_id: str, members: list, delivery: Delivery) -> None:
    """Record a digest's outcome on its notice and on each member's delivery row."""
    _write_notice(con, digest_id, DIGEST, delivery)
    reason = f"in the daily digest {digest_id}" if delivery.status == SENT else delivery.reason
    now = _now()
    for member in members:
        alert_id, number = (member.alert_id, member.notification_number) if isinstance(member, AlertMessage) else member
        con.execute(
            """UPDATE actions.deliveries SET status = ?, reason = ?, channel = coalesce(?, channel), message_ts = ?,
                 updated_at = ? WHERE alert_id = ? AND notification_number = ? AND destination = 'digest'""",
            [delivery.status, reason, delivery.channel, delivery.message_ts, now, alert_id, number],
        )


def settle_digests(con, slack: SlackResource) -> int:
    """Digests an earlier run left `sending` or failed with "Slack may have posted it": looked up
    in Slack; found, they and their members are `sent`; not found, they failed and their members
    go in the next digest; when Slack cannot be asked, they stay unsure and their members wait.
    Returns how many members wait."""
    unsure = 0
    rows = con.execute(
        f"SELECT {', '.join(NOTICE_COLUMNS)}, members FROM actions.notices WHERE kind = 'digest' AND status <> 'sent'"
    ).fetchall()
    for values in rows:
        row = dict(zip((*NOTICE_COLUMNS, "members"), values))
        members = json.loads(row["members"] or "[]")
        if row["status"] == FAILED and not (row["reason"] or "").endswith(AMBIGUOUS_SUFFIX):
            continue
        not_posted = Delivery(row["destination"], row["channel"], FAILED, reason="interrupted before it was posted; "
                              "its alerts go in the next digest")
        if not must_check_before_resend(row["destination"], row["status"], row["reason"]) or not slack.uses_slack:
            _settle_digest(con, row["alert_id"], members, not_posted)
            continue
        try:
            found = slack.find_post(row["channel"], row["attempt_started_at"], EVENT_TYPE_DIGEST, {"digest_id": row["alert_id"]})
        except Exception as err:  # noqa: BLE001 - an unanswered check must not become a second post
            reason = f"could not check whether it was posted ({slack._reason(err)}); {AMBIGUOUS_SUFFIX}"
            _write_notice(con, row["alert_id"], DIGEST, dataclasses.replace(not_posted, reason=reason))
            unsure += len(members)
            continue
        if found is None:
            _settle_digest(con, row["alert_id"], members, not_posted)
        else:
            _settle_digest(con, row["alert_id"], members, Delivery("slack", found[0], SENT, message_ts=found[1]))
    return unsure


def _sorted_for_sending(alerts: pl.DataFrame) -> pl.DataFrame:
    keys = [send_order(r["severity"], r["partition_date"], r["account_id"], r["rule_id"]) for r in alerts.iter_rows(named=True)]
    order = sorted(range(alerts.height), key=keys.__getitem__)
    return alerts[order]


@dg.op(
    ins={"tasks_created": dg.In(int)},
    pool=POOL,
    description="Send each live alert's Slack message (or write it to the outbox) once per notification number.",
)
def send_notifications(
    context: dg.OpExecutionContext, tasks_created: int, warehouse: WarehouseResource, cs_config: PipelineConfig, slack: SlackResource,
    crm_writeback_config: CrmWritebackResource,
) -> dg.Output[int]:
    today = settings.today()
    counts = SendCounts()
    with warehouse.connect() as con:
        ensure_actions_tables(con)
        alerts = live_alerts(con, today, cs_config.live_window_days)
        alerts, muted = _without_muted(con, alerts, today)
        if alerts.height:
            messages = _messages(con, _sorted_for_sending(alerts), cs_config, _crm_ids(crm_writeback_config, context.log), context.log)
            alone, digests, held = plan_sending(con, messages, slack)
            counts = send_all(con, alone, slack, context.log)
            counts.failed += held  # an unsure digest: the sensor's retry looks for it again
            send_digests(con, digests, slack, today, counts, context.log)
    context.log.info(
        f"notifications: {counts.sent} sent, {counts.failed} failed, {counts.skipped} already sent, "
        f"{counts.found_posted} found already posted, {muted} snoozed or acknowledged, {counts.alerts_per_second} alerts/s"
    )
    if context.run.run_id and context.instance:
        context.instance.add_run_tags(context.run.run_id, {FAILED_TAG: str(counts.failed)})
    return dg.Output(
        counts.sent,
        metadata={
            "sent": counts.sent, "failed": counts.failed, "already_sent": counts.skipped,
            "found_already_posted": counts.found_posted, "in_digests": counts.in_digests, "rate_limited_answers": counts.rate_limited, "muted": muted,
            "send_seconds": round(counts.seconds, 3), "alerts_per_second": counts.alerts_per_second,
        },
    )


# What a closed alert's task becomes (`task.on_resolve` of its rule); `keep_open` leaves it open.
CLOSED_TASK_STATUSES = ("done", "obsolete")
KEEP_OPEN = "keep_open"

LATEST_SQL = """SELECT * FROM analytics.alert_events
    QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY partition_date DESC) = 1"""

# Sent alerts open on the latest evaluated live day: the ones that can later resolve.
MARK_OPEN_SQL = """
INSERT INTO actions.alert_state
SELECT e.alert_id, 'open', e.partition_date, NULL, NULL FROM analytics.alert_events e
WHERE e.partition_date = ? AND e.alert_id IN (SELECT alert_id FROM actions.deliveries WHERE status = 'sent')
ON CONFLICT (alert_id) DO UPDATE SET last_open_day = excluded.last_open_day
  WHERE actions.alert_state.state = 'open'
"""

RESOLVED_SQL = f"""
SELECT l.* FROM ({LATEST_SQL}) l JOIN actions.alert_state s ON s.alert_id = l.alert_id AND s.state = 'open'
"""


def latest_evaluated_live_day(con, today: dt.date, live_window_days: int) -> dt.date | None:
    if not table_exists(con, "analytics", "alert_evaluated_days"):
        return None
    return con.execute(
        "SELECT max(partition_date) FROM analytics.alert_evaluated_days WHERE partition_date >= ?",
        [today - dt.timedelta(days=live_window_days)],
    ).fetchone()[0]


def close_resolved_alerts(con, day: dt.date, cs_config: PipelineConfig) -> list[ResolvedMessage]:
    """Close each alert seen open and sent on an earlier run's latest evaluated live day that is
    not open on `day`, the latest one now, and set its task to its rule's `task.on_resolve`
    (`done` or `obsolete`); the messages of the alerts closed now. A rule whose tasks are
    `keep_open` only ends the alert (state `ended`): its task stays open and no one is told.
    An alert already over when it was sent (a one-day NPS detractor in a history load) was never
    seen open, so it is not closed either."""
    if not table_exists(con, "analytics", "alert_events"):
        return []
    con.execute(MARK_OPEN_SQL, [day])
    candidates = query(con, RESOLVED_SQL)
    rules = cs_config.rules()
    closed = []
    for alert in candidates.iter_rows(named=True):
        if not is_resolved(alert["partition_date"], day):
            continue
        rule = rules.by_id.get(alert["rule_id"])
        outcome = rule.task.on_resolve if rule else "done"
        con.execute(
            "UPDATE actions.alert_state SET state = ?, last_open_day = ?, closed_on = ?, closed_at = ? "
            "WHERE alert_id = ? AND state = 'open'",
            ["ended" if outcome == KEEP_OPEN else "closed", alert["partition_date"], day, _now(), alert["alert_id"]],
        )
        if outcome == KEEP_OPEN:
            continue
        con.execute(
            "UPDATE actions.tasks SET status = ? WHERE alert_id = ? AND status = 'open'", [outcome, alert["alert_id"]]
        )
        closed.append(_resolved_message(alert, rule.description if rule else alert["rule_id"], day, outcome))
    return closed


def _resolved_message(alert: dict, rule_description: str, day: dt.date, task_status: str) -> ResolvedMessage:
    return ResolvedMessage(
        alert_id=alert["alert_id"], rule_id=alert["rule_id"], rule_description=rule_description,
        account_id=alert["account_id"], account_name=alert["account_name"] or alert["account_id"],
        segment=alert["segment"] or "", owner_email=alert["owner_email"], episode_start=alert["episode_start"],
        last_open_day=alert["partition_date"], closed_on=day, task_status=task_status,
    )


def _pending_notices(con, cs_config: PipelineConfig) -> list[tuple[ResolvedMessage, dict | None]]:
    """Closed alerts whose "resolved" notice is not sent yet, with the notice's row if any."""
    rows = query(
        con,
        """SELECT e.*, s.closed_on, coalesce(t.status, 'done') AS task_status FROM actions.alert_state s
           JOIN analytics.alert_events e ON e.alert_id = s.alert_id AND e.partition_date = s.last_open_day
           LEFT JOIN actions.tasks t ON t.alert_id = s.alert_id
           WHERE s.state = 'closed' AND s.alert_id NOT IN
             (SELECT alert_id FROM actions.notices WHERE kind = 'closed' AND status = 'sent')""",
    )
    notices = {r[0]: dict(zip(NOTICE_COLUMNS, r)) for r in con.execute(
        f"SELECT {', '.join(NOTICE_COLUMNS)} FROM actions.notices WHERE kind = 'closed'").fetchall()}
    rules = cs_config.rules()
    pending = []
    for alert in rows.iter_rows(named=True):
        rule = rules.by_id.get(alert["rule_id"])
        msg = _resolved_message(alert, rule.description if rule else alert["rule_id"], alert["closed_on"], alert["task_status"])
        pending.append((msg, notices.get(alert["alert_id"])))
    return pending


NOTICE_COLUMNS = ("alert_id", "kind", "destination", "channel", "status", "reason", "attempts", "message_ts", "attempt_started_at")


def _write_notice(con, key: str, kind: str, delivery: Delivery, members: list | None = None) -> None:
    """Upsert a notice (a "resolved" message or a digest); `sending` starts an attempt."""
    now = _now()
    con.execute(
        """INSERT INTO actions.notices (alert_id, kind, destination, channel, status, reason, attempts, message_ts,
             attempt_started_at, updated_at, members) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
           ON CONFLICT (alert_id, kind) DO UPDATE SET destination = excluded.destination,
             channel = coalesce(excluded.channel, actions.notices.channel), status = excluded.status, reason = excluded.reason,
             attempts = actions.notices.attempts + CASE WHEN excluded.status = 'sending' OR actions.notices.status <> 'sending'
                                                      THEN 1 ELSE 0 END,
             message_ts = excluded.message_ts, updated_at = excluded.updated_at,
             members = coalesce(excluded.members, actions.notices.members),
             attempt_started_at = CASE WHEN excluded.status = 'sending' THEN excluded.attempt_started_at
                                       ELSE coalesce(actions.notices.attempt_started_at, excluded.attempt_started_at) END""",
        [key, kind, delivery.destination, delivery.channel, delivery.status, delivery.reason, delivery.message_ts,
         now, now, json.dumps(members) if members is not None else None],
    )


def _record_notice(con, alert_id: str, delivery: Delivery, sending: bool = False) -> None:
    _write_notice(con, alert_id, "closed", dataclasses.replace(delivery, status=SENDING) if sending else delivery)


def send_resolved_notice(con, msg: ResolvedMessage, row: dict | None, slack: SlackResource) -> Delivery | None:
    """Tell the owner once that `msg`'s alert resolved: the same outbox-before-send and check in
    Slack as alerts. None when an earlier attempt turned out to have posted it."""
    if row and slack.uses_slack and must_check_before_resend(row["destination"], row["status"], row["reason"]):
        try:
            found = slack.find_post(row["channel"], row["attempt_started_at"], EVENT_TYPE_RESOLVED,
                                    {"alert_id": msg.alert_id, "notice": "closed"})
        except Exception as err:  # noqa: BLE001 - an unanswered check must not become a second post
            reason = f"could not check whether it was posted ({slack._reason(err)}); {AMBIGUOUS_SUFFIX}"
            failed = Delivery(destination="slack", channel=row["channel"], status="failed", reason=reason)
            _record_notice(con, msg.alert_id, failed)
            return failed
        if found is not None:
            _record_notice(con, msg.alert_id, Delivery("slack", found[0], SENT, message_ts=found[1]))
            return None
    destination = "slack" if slack.uses_slack else "outbox"
    where = slack.address_alert(msg) if slack.uses_slack else None
    if isinstance(where, Delivery):
        _record_notice(con, msg.alert_id, where)
        return where
    channel = where.channel if where else slack._addressee(msg)
    _record_notice(con, msg.alert_id, Delivery(destination, channel, SENDING), sending=True)
    delivery = slack.deliver_resolved(msg)
    _record_notice(con, msg.alert_id, delivery)
    return delivery


@dg.op(
    ins={"notifications_sent": dg.In(int)},
    pool=POOL,
    description="Close each sent alert no longer open on the latest evaluated live day: its task done or obsolete "
    "(the rule's task.on_resolve), owner told once.",
)
def close_resolved(
    context: dg.OpExecutionContext, notifications_sent: int, warehouse: WarehouseResource, cs_config: PipelineConfig,
    slack: SlackResource,
) -> dg.Output[int]:
    today = settings.today()
    told = failed = 0
    with warehouse.connect() as con:
        ensure_actions_tables(con)
        day = latest_evaluated_live_day(con, today, cs_config.live_window_days)
        closed = close_resolved_alerts(con, day, cs_config) if day else []
        for msg, row in _pending_notices(con, cs_config) if table_exists(con, "analytics", "alert_events") else []:
            delivery = send_resolved_notice(con, msg, row, slack)
            if delivery is not None and delivery.status != SENT:
                failed += 1
                context.log.warning(f"{msg.alert_id} resolved notice: {delivery.reason}")
            else:
                told += 1
    context.log.info(f"closed {len(closed)} resolved alerts; {told} owners told, {failed} notices failed")
    if failed and context.run.run_id and context.instance:
        run = context.instance.get_run_by_id(context.run.run_id)
        before = int((run.tags if run else {}).get(FAILED_TAG, "0") or 0)
        context.instance.add_run_tags(context.run.run_id, {FAILED_TAG: str(before + failed)})
    return dg.Output(len(closed), metadata={"closed": len(closed), "owners_told": told, "notices_failed": failed})


# --------------------------------------------------------------------------- task sinks

SINK_CREATED, SINK_FAILED, SINK_CLOSED = "created", "failed", "closed"

# Open tasks and auto-closed ones, with their alert's rule and what each sink already holds.
SINK_TASKS_SQL = """
SELECT t.*, r.rule_id FROM actions.tasks t
JOIN (SELECT alert_id, any_value(rule_id) AS rule_id FROM analytics.alert_events
      WHERE alert_id IN (SELECT alert_id FROM actions.tasks) GROUP BY alert_id) r USING (alert_id)
WHERE t.status = 'open' OR list_contains(?, t.status)
ORDER BY t.due_date, t.task_id
"""


@dataclasses.dataclass(frozen=True)
class SinkWork:
    """One call to make: `create` a task in a sink, or `close` the remote task it holds."""

    action: str  # create | close
    sink: str
    task: dict
    remote_id: str | None = None
    account_crm_id: str | None = None  # for `create`; None: the task goes unlinked


@dataclasses.dataclass
class SinkCounts:
    created: int = 0
    closed: int = 0
    failed: int = 0
    already: int = 0


def plan_task_sinks(con, config: TaskSinksConfig) -> tuple[list[SinkWork], int]:
    """What to send: each open task to each sink of its rule without a `created` record, and a
    close for each `done` or `obsolete` task a sink holds as `created`; and how many are already in place."""
    if not table_exists(con, "analytics", "alert_events"):
        return [], 0
    tasks = query(con, SINK_TASKS_SQL, [list(CLOSED_TASK_STATUSES)])
    records = {
        (r[0], r[1]): (r[2], r[3])
        for r in con.execute("SELECT task_id, sink, status, remote_id FROM actions.task_sinks").fetchall()
    }
    work: list[SinkWork] = []
    already = 0
    for task in tasks.iter_rows(named=True):
        for sink in config.sink_names(task["rule_id"]):
            status, remote_id = records.get((task["task_id"], sink), (None, None))
            if task["status"] == "open":
                if status in (SINK_CREATED, SINK_CLOSED):
                    already += 1
                else:
                    work.append(SinkWork("create", sink, task))
            elif status == SINK_CREATED and remote_id:
                work.append(SinkWork("close", sink, task, remote_id))
    return work, already


def record_task_sink(
    con, task: dict, sink: str, status: str, remote_id: str | None = None, url: str | None = None,
    reason: str | None = None,
) -> None:
    """Upsert a task's record for one sink; each call is one more attempt. A failed close keeps
    the record `created` (with the reason) so the next run closes it again."""
    con.execute(
        """INSERT INTO actions.task_sinks (task_id, alert_id, sink, remote_id, url, status, reason, attempts, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
           ON CONFLICT (task_id, sink) DO UPDATE SET
             remote_id = coalesce(excluded.remote_id, actions.task_sinks.remote_id),
             url = coalesce(excluded.url, actions.task_sinks.url),
             status = excluded.status, reason = excluded.reason,
             attempts = actions.task_sinks.attempts + 1, updated_at = excluded.updated_at""",
        [task["task_id"], task["alert_id"], sink, remote_id, url, status, reason, _now()],
    )


def with_crm_ids(con, work: list[SinkWork], crm_ids: CrmIdMapping) -> list[SinkWork]:
    """Each `create` with its account's CRM record id (None when the account has none)."""
    accounts = {item.task["account_id"] for item in work if item.action == "create"}
    found = crm_ids.lookup(con, accounts)
    return [dataclasses.replace(item, account_crm_id=found.get(item.task["account_id"])) if item.action == "create"
            else item for item in work]


def sync_sinks(connect, config: TaskSinksConfig, log=None, crm_ids: CrmIdMapping = CrmIdMapping()) -> SinkCounts:
    """Create and close the tasks of `plan_task_sinks`. The warehouse is closed while a sink is
    asked (an HTTP call may retry for minutes) and reopened to record each outcome; a failure is
    recorded with its reason and tried again next run (`create` is idempotent on the remote side).

    A task is linked to its account's CRM record (`crm_ids`); an account without a CRM id gets
    its task all the same, unlinked, with the reason on its record and in the log."""
    counts = SinkCounts()
    with connect() as con:
        ensure_actions_tables(con)
        work, counts.already = plan_task_sinks(con, config)
        work = with_crm_ids(con, work, crm_ids)
    for item in work:
        sink = config.sink(item.sink)
        try:
            if item.action == "create":
                remote = sink.create(TaskRequest.from_task_row(item.task, item.account_crm_id))
            else:
                sink.close(item.remote_id, item.task["status"])
        except Exception as error:  # noqa: BLE001 - one sink's failure never stops the others (nor Slack)
            reason = str(error) if isinstance(error, SinkError) else f"{item.sink} sink: {type(error).__name__}: {error}"
            counts.failed += 1
            if log is not None:
                log.warning(f"{item.task['task_id']} {item.action} in {item.sink}: {reason}")
            with connect() as con:
                if item.action == "create":
                    record_task_sink(con, item.task, item.sink, SINK_FAILED, reason=reason)
                else:
                    record_task_sink(con, item.task, item.sink, SINK_CREATED, reason=f"close failed: {reason}")
            continue
        with connect() as con:
            if item.action == "create":
                counts.created += 1
                unlinked = None
                if item.account_crm_id is None:
                    unlinked = (f"created without a link to the account: {item.task['account_id']} has no CRM id "
                                f"in {crm_ids.source}")
                    if log is not None:
                        log.warning(f"{item.task['task_id']} in {item.sink}: {unlinked}")
                record_task_sink(con, item.task, item.sink, SINK_CREATED, remote.remote_id, remote.url, reason=unlinked)
            else:
                counts.closed += 1
                record_task_sink(con, item.task, item.sink, SINK_CLOSED, reason=f"closed as {item.task['status']}")
    return counts


@dg.op(
    ins={"resolved_closed": dg.In(int)},
    pool=POOL,
    description="Create each open task in the task sinks its rule maps to (Salesforce, HubSpot, webhook) and close "
    "the remote tasks of auto-closed alerts; outcomes in actions.task_sinks, failures retried next run.",
)
def sync_task_sinks(
    context: dg.OpExecutionContext, resolved_closed: int, warehouse: WarehouseResource, cs_config: PipelineConfig,
    task_sinks: TaskSinksResource, crm_writeback_config: CrmWritebackResource,
) -> dg.Output[int]:
    try:
        config = task_sinks.config(set(cs_config.rules().by_id))
        crm_ids = crm_writeback_config.crm_ids() if config is not None and config.sinks else CrmIdMapping()
    except (ConfigError, SinkError) as error:
        raise dg.Failure(description=f"task sinks: {error}") from error
    if config is None or not config.sinks:
        context.log.info("task sinks: none configured; tasks stay in actions.tasks")
        return dg.Output(0, metadata={"created": 0, "closed": 0, "failed": 0, "skipped": "no task sinks configured"})
    try:
        counts = sync_sinks(warehouse.connect, config, context.log, crm_ids)
    except SinkError as error:  # the CRM id table or column cannot be read: nothing was sent
        raise dg.Failure(description=f"task sinks: {error}") from error
    context.log.info(
        f"task sinks: {counts.created} created, {counts.closed} closed, {counts.failed} failed, "
        f"{counts.already} already there"
    )
    if counts.failed and context.run.run_id and context.instance:  # the sensor's retry tries them again
        run = context.instance.get_run_by_id(context.run.run_id)
        before = int((run.tags if run else {}).get(FAILED_TAG, "0") or 0)
        context.instance.add_run_tags(context.run.run_id, {FAILED_TAG: str(before + counts.failed)})
    return dg.Output(
        counts.created,
        metadata={"created": counts.created, "closed": counts.closed, "failed": counts.failed, "already_there": counts.already},
    )


@dg.job(
    description="Create the task and send the Slack message of every live alert, and close the resolved ones; "
    "safe to re-run at any time.",
    tags={"cs_pipeline/kind": "dispatch"},
)
def dispatch_alerts():
    # The task sinks go last: Slack never waits for a CRM, and a task auto-closed in this run is
    # closed in its sinks in this run too.
    sync_task_sinks(close_resolved(send_notifications(create_tasks())))
