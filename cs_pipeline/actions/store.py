"""The actions store: tasks, deliveries, notices, weekly digests, clicks, snoozes and task-sink records.

The one owner of these tables and of every write to them. It is a transactional database of
its own, not the DuckDB warehouse: DuckDB allows one writing process, so a Slack click (the
listener) or a `cs-pipeline ack` must land while a daily run holds the warehouse. SQLite by
default (`<warehouse>.actions.sqlite`, beside the warehouse), PostgreSQL when
`CS_PIPELINE_ACTIONS_URL` is set. Each write is one transaction.

The warehouse keeps a read copy (`actions.<table>`, refreshed by the dispatch job and the CLI)
so reports and `cs-pipeline alerts|tasks` read one database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cs_pipeline.logic.delivery import SENDING, SENT, UNSURE, Action

meta = sa.MetaData()
S, D, T, I = sa.String, sa.Date, sa.DateTime, sa.BigInteger

tasks = sa.Table(
    "tasks", meta,
    sa.Column("task_id", S, primary_key=True), sa.Column("alert_id", S, unique=True), sa.Column("account_id", S),
    sa.Column("owner_email", S), sa.Column("title", S), sa.Column("steps", S), sa.Column("due_date", D),
    sa.Column("priority", S), sa.Column("status", S), sa.Column("created_at", T), sa.Column("rule_id", S),
    sa.Column("updated_at", T), sa.Column("updated_by", S),
)


def _attempt_columns() -> list[sa.Column]:
    """What the delivery protocol records of a message: where, the outcome, and when it was tried."""
    names = {"destination": S, "channel": S, "status": S, "reason": S, "attempts": I, "message_ts": S,
             "attempt_started_at": T, "updated_at": T}
    return [sa.Column(name, kind) for name, kind in names.items()]


# One row per alert notification (alert_id, notification_number): sent alone or in a digest.
deliveries = sa.Table(
    "deliveries", meta, sa.Column("alert_id", S, primary_key=True), sa.Column("notification_number", I, primary_key=True),
    *_attempt_columns(), sa.Column("first_attempt_at", T), sa.Column("idempotency_key", S),
)
# One row per other message: a "resolved" notice (alert_id, 'closed') or a digest (digest id, 'digest').
notices = sa.Table(
    "notices", meta, sa.Column("alert_id", S, primary_key=True), sa.Column("kind", S, primary_key=True),
    *_attempt_columns(), sa.Column("members", S),
)
# One row per part of a weekly CS-lead digest: its message, then the portfolio map in its thread.
weekly_digests = sa.Table(
    "weekly_digests", meta, sa.Column("week", S, primary_key=True), sa.Column("audience", S, primary_key=True),
    sa.Column("part", S, primary_key=True), *_attempt_columns(),
)
alert_actions = sa.Table(
    "alert_actions", meta,
    sa.Column("alert_id", S), sa.Column("action", S), sa.Column("until", D), sa.Column("reason", S),
    sa.Column("by", S), sa.Column("at", T), sa.Column("rule_id", S),
    sa.Column("action_id", S, unique=True),  # a Slack click's envelope/action id: applied once
    sa.Column("source", S),  # cli | slack
)
alert_state = sa.Table(
    "alert_state", meta,
    sa.Column("alert_id", S, primary_key=True), sa.Column("state", S), sa.Column("last_open_day", D),
    sa.Column("closed_on", D), sa.Column("closed_at", T),
)
task_sinks = sa.Table(
    "task_sinks", meta,
    sa.Column("task_id", S, primary_key=True), sa.Column("alert_id", S), sa.Column("sink", S, primary_key=True),
    sa.Column("remote_id", S), sa.Column("url", S), sa.Column("status", S), sa.Column("reason", S),
    sa.Column("attempts", I), sa.Column("updated_at", T),
)
# Where each alert's latest message is in Slack, so a click can edit it in place.
messages = sa.Table(
    "messages", meta,
    sa.Column("alert_id", S, primary_key=True), sa.Column("channel", S), sa.Column("message_ts", S),
    sa.Column("rule_id", S), sa.Column("account_id", S), sa.Column("account_name", S), sa.Column("owner_email", S),
    sa.Column("severity", S), sa.Column("partition_date", D), sa.Column("updated_at", T),
)

POLARS_TYPES = {sa.String: pl.String, sa.Date: pl.Date, sa.DateTime: pl.Datetime("us"), sa.BigInteger: pl.Int64}
# The warehouse's read copy: these tables, as `actions.<name>`.
COPIED = (tasks, deliveries, notices, weekly_digests, alert_actions, alert_state, task_sinks)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class DeliveryRow:
    """What is known of one attempt: the store's row for a delivery or a notice."""

    key: tuple
    destination: str | None
    channel: str | None
    status: str | None
    reason: str | None
    message_ts: str | None
    attempt_started_at: dt.datetime | None
    members: list | None = None


class ActionsStore:
    """The actions store at `url` (a SQLAlchemy URL); the tables are created on first use."""

    _engines: dict[str, sa.Engine] = {}

    def __init__(self, url: str):
        self.url = url
        if url not in self._engines:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            args = {"timeout": 30} if url.startswith("sqlite") else {}
            engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            meta.create_all(engine)
            self._engines[url] = engine
        self.engine = self._engines[url]
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    def forget(cls, url: str) -> None:
        """Drop the cached engine of `url` (tests drop their database afterwards)."""
        engine = cls._engines.pop(url, None)
        if engine is not None:
            engine.dispose()

    # ------------------------------------------------------------------ reading

    def rows(self, table: sa.Table, where=None) -> list[dict]:
        query = sa.select(table) if where is None else sa.select(table).where(where)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(query)]

    def frame(self, table: sa.Table) -> pl.DataFrame:
        schema = {c.name: POLARS_TYPES[type(c.type)] for c in table.columns}
        return pl.DataFrame(self.rows(table), schema=schema, orient="row")

    def attempt_rows(self, table: sa.Table, where=None) -> dict[tuple, DeliveryRow]:
        """The rows of a table the delivery protocol records (`_attempt_columns`), by primary key."""
        keys = ((tuple(r[c] for c in _pk(table)), r) for r in self.rows(table, where))
        return {key: _row(r, key) for key, r in keys}

    def delivery_rows(self) -> dict[tuple, DeliveryRow]:
        return self.attempt_rows(deliveries)

    def notice_rows(self, kind: str) -> dict[tuple, DeliveryRow]:
        return self.attempt_rows(notices, notices.c.kind == kind)

    def weekly_digest_rows(self, week: str) -> dict[tuple, DeliveryRow]:
        return self.attempt_rows(weekly_digests, weekly_digests.c.week == week)

    def actions_by_alert(self, alert_ids: Iterable[str]) -> dict[str, list[Action]]:
        """Snoozes, acknowledgements, `done` and `not_useful` per alert id, oldest first."""
        wanted = set(alert_ids)
        found: dict[str, list[Action]] = {}
        for r in sorted(self.rows(alert_actions), key=lambda r: r["at"]):
            if r["alert_id"] in wanted:
                found.setdefault(r["alert_id"], []).append(Action(action=r["action"], until=r["until"], at=r["at"]))
        return found

    def sent_alone_since(self, since: dt.datetime) -> set[tuple[str, int]]:
        query = sa.select(deliveries.c.alert_id, deliveries.c.notification_number).where(
            deliveries.c.status == SENT, deliveries.c.destination != "digest", deliveries.c.updated_at >= since)
        with self.engine.connect() as con:
            return {tuple(r) for r in con.execute(query)}

    def count_notices(self, kind: str, prefix: str) -> int:
        query = sa.select(sa.func.count()).select_from(notices).where(
            notices.c.kind == kind, notices.c.alert_id.startswith(prefix, autoescape=True))
        with self.engine.connect() as con:
            return con.execute(query).scalar_one()

    # ------------------------------------------------------------------ tasks

    def create_tasks(self, rows: Sequence[dict]) -> int:
        """Insert one open task per alert; a task that exists is left as it is. Returns how many were new."""
        if not rows:
            return 0
        stamp = now()
        values = [{**r, "status": "open", "created_at": stamp} for r in rows]
        with self.engine.begin() as con:
            before = con.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one()
            con.execute(self._insert(tasks).on_conflict_do_nothing(), values)
            return con.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one() - before

    def set_task_status(self, alert_id: str, status: str, by: str | None = None, only_open: bool = True) -> int:
        where = [tasks.c.alert_id == alert_id] + ([tasks.c.status == "open"] if only_open else [])
        with self.engine.begin() as con:
            done = con.execute(sa.update(tasks).where(*where).values(status=status, updated_at=now(), updated_by=by))
            return done.rowcount

    # ------------------------------------------------------------------ deliveries and notices

    def begin_attempts(self, table: sa.Table, items: Sequence[tuple[tuple, str, str]]) -> None:
        """Rows `sending` for `items` (key, destination, channel), in one transaction, before any post."""
        if not items:
            return
        stamp = now()
        values = [{**_key(table, key), "destination": d, "channel": c, "status": SENDING, "reason": None,
                   "attempts": 1, "message_ts": None, "attempt_started_at": stamp, "updated_at": stamp,
                   **_extra(table, key, stamp)} for key, d, c in items]
        stmt = self._insert(table)
        set_ = {"destination": stmt.excluded.destination, "channel": stmt.excluded.channel, "status": SENDING,
                "reason": None, "attempts": table.c.attempts + 1, "updated_at": stamp, "attempt_started_at": stamp}
        with self.engine.begin() as con:
            con.execute(stmt.on_conflict_do_update(index_elements=_pk(table), set_=set_), values)

    def record_outcomes(self, table: sa.Table, outcomes: Sequence[tuple[tuple, object]]) -> None:
        """The outcomes (key, Delivery) of attempts, in one transaction. An attempt is counted once:
        by `begin_attempts`, or here when nothing began it (a lookup in Slack is no new attempt)."""
        if not outcomes:
            return
        stamp = now()
        values = [{**_key(table, key), "destination": d.destination, "channel": d.channel, "status": d.status,
                   "reason": d.reason, "message_ts": d.message_ts, "attempts": 1, "attempt_started_at": stamp,
                   "updated_at": stamp, **_extra(table, key, stamp)} for key, d in outcomes]
        stmt = self._insert(table)
        set_ = {
            "destination": stmt.excluded.destination, "channel": sa.func.coalesce(stmt.excluded.channel, table.c.channel),
            "status": stmt.excluded.status, "reason": stmt.excluded.reason, "message_ts": stmt.excluded.message_ts,
            "updated_at": stamp, "attempts": table.c.attempts + sa.case((table.c.status == SENDING, 0), (table.c.status == UNSURE, 0), else_=1),
            "attempt_started_at": sa.func.coalesce(table.c.attempt_started_at, stmt.excluded.attempt_started_at),
        }
        with self.engine.begin() as con:
            con.execute(stmt.on_conflict_do_update(index_elements=_pk(table), set_=set_), values)

    def set_members(self, digest_id: str, members: list) -> None:
        with self.engine.begin() as con:
            con.execute(sa.update(notices).where(notices.c.alert_id == digest_id, notices.c.kind == "digest")
                        .values(members=json.dumps(members)))

    def remember_messages(self, rows: Sequence[dict]) -> None:
        """Where each alert's latest message is (channel, ts), for the buttons' in-place edits."""
        if not rows:
            return
        stmt = self._insert(messages)
        set_ = {c.name: stmt.excluded[c.name] for c in messages.columns if c.name != "alert_id"}
        with self.engine.begin() as con:
            con.execute(stmt.on_conflict_do_update(index_elements=["alert_id"], set_=set_),
                        [{**r, "updated_at": now()} for r in rows])

    # ------------------------------------------------------------------ alert actions and state

    def add_action(self, alert_id: str, action: str, until: dt.date | None = None, reason: str | None = None,
                   by: str | None = None, rule_id: str | None = None, action_id: str | None = None,
                   source: str = "cli") -> bool:
        """Append a snooze, ack, done or not_useful; False when `action_id` was applied before."""
        row = {"alert_id": alert_id, "action": action, "until": until, "reason": reason, "by": by, "at": now(),
               "rule_id": rule_id, "action_id": action_id, "source": source}
        with self.engine.begin() as con:
            done = con.execute(self._insert(alert_actions).on_conflict_do_nothing(), [row])
            return done.rowcount == 1

    def mark_open(self, alert_days: dict[str, dt.date]) -> None:
        """Sent alerts seen open on the latest evaluated live day: state `open` (kept once closed)."""
        if not alert_days:
            return
        stmt = self._insert(alert_state)
        with self.engine.begin() as con:
            con.execute(
                stmt.on_conflict_do_update(index_elements=["alert_id"], set_={"last_open_day": stmt.excluded.last_open_day},
                                           where=alert_state.c.state == "open"),
                [{"alert_id": a, "state": "open", "last_open_day": d, "closed_on": None, "closed_at": None}
                 for a, d in alert_days.items()])

    def close_alert(self, alert_id: str, state: str, last_open_day: dt.date, closed_on: dt.date,
                    task_status: str | None) -> None:
        """End an open alert (`closed` or `ended`) and, unless None, set its open task's status."""
        with self.engine.begin() as con:
            con.execute(sa.update(alert_state).where(alert_state.c.alert_id == alert_id, alert_state.c.state == "open")
                        .values(state=state, last_open_day=last_open_day, closed_on=closed_on, closed_at=now()))
            if task_status is not None:
                con.execute(sa.update(tasks).where(tasks.c.alert_id == alert_id, tasks.c.status == "open")
                            .values(status=task_status, updated_at=now()))

    # ------------------------------------------------------------------ task sinks

    def record_task_sink(self, task: dict, sink: str, status: str, remote_id: str | None = None,
                         url: str | None = None, reason: str | None = None) -> None:
        """Upsert a task's record for one sink; each call is one more attempt."""
        stmt = self._insert(task_sinks)
        set_ = {"remote_id": sa.func.coalesce(stmt.excluded.remote_id, task_sinks.c.remote_id),
                "url": sa.func.coalesce(stmt.excluded.url, task_sinks.c.url), "status": stmt.excluded.status,
                "reason": stmt.excluded.reason, "attempts": task_sinks.c.attempts + 1, "updated_at": stmt.excluded.updated_at}
        with self.engine.begin() as con:
            con.execute(stmt.on_conflict_do_update(index_elements=["task_id", "sink"], set_=set_), [{
                "task_id": task["task_id"], "alert_id": task["alert_id"], "sink": sink, "remote_id": remote_id,
                "url": url, "status": status, "reason": reason, "attempts": 1, "updated_at": now()}])

    # ------------------------------------------------------------------ the warehouse's read copy

    def copy_to_warehouse(self, con, tables: Sequence[sa.Table] = COPIED) -> None:
        """Replace the warehouse's `actions.*` tables (all, or `tables`) with this store's rows (DuckDB `con`, writable)."""
        con.execute("CREATE SCHEMA IF NOT EXISTS actions")
        for table in tables:
            con.register("_store_copy", self.frame(table).to_arrow())
            try:
                con.execute(f'CREATE OR REPLACE TABLE actions."{table.name}" AS SELECT * FROM _store_copy')
            finally:
                con.unregister("_store_copy")


def ensure_read_copy(con) -> None:
    """Create the warehouse's `actions.*` tables, empty, where no copy exists yet (DuckDB `con`):
    readers (`cs-pipeline alerts`, reports) find them from the first alerts on."""
    con.execute("CREATE SCHEMA IF NOT EXISTS actions")
    for table in COPIED:
        schema = {c.name: POLARS_TYPES[type(c.type)] for c in table.columns}
        con.register("_store_empty", pl.DataFrame(schema=schema).to_arrow())
        try:
            con.execute(f'CREATE TABLE IF NOT EXISTS actions."{table.name}" AS SELECT * FROM _store_empty')
        finally:
            con.unregister("_store_empty")


def _sqlite_pragmas(dbapi_con, _record) -> None:
    # WAL: the listener's clicks and a dispatch run write side by side; readers never wait.
    dbapi_con.execute("PRAGMA journal_mode=WAL")
    dbapi_con.execute("PRAGMA busy_timeout=30000")


def _pk(table: sa.Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


def _key(table: sa.Table, key: tuple) -> dict:
    return dict(zip(_pk(table), key))


def _extra(table: sa.Table, key: tuple, stamp: dt.datetime) -> dict:
    if table is deliveries:
        return {"first_attempt_at": stamp, "idempotency_key": f"{key[0]}#{key[1]}"}
    return {}


def _row(r: dict, key: tuple) -> DeliveryRow:
    members = r.get("members")
    return DeliveryRow(key, r["destination"], r["channel"], r["status"], r["reason"], r["message_ts"],
                       r.get("attempt_started_at") or r.get("first_attempt_at") or r.get("updated_at"),
                       json.loads(members) if members else None)
