"""The product database: `users` and `events` from PostgreSQL or MySQL/MariaDB, read with dlt's
`sql_database` source.

    connectors:
      product_db:
        type: database
        url_env: PRODUCT_DB_URL      # postgresql+psycopg2://user:password@host:5432/app
        backend: connectorx          # the default; or pyarrow, sqlalchemy
        users:
          table: app_users
          schema: public
          columns: {user_id: id, account_id: org_id, created_at: inserted_at}
        events:
          query: SELECT id, org_id, actor_id, name, created_at FROM app_events WHERE kind = 'product'
          columns: {event_id: id, account_id: org_id, user_id: actor_id, event: name, occurred_at: created_at}

`columns` maps a contract column to the source column (or the query's output name) that holds it;
a contract column not listed is read from the column of the same name, and an optional one the
source lacks is left empty. Only the contract's columns are read, never the rest of the table.

A day's events are the rows whose `occurred_at` lies in [day 00:00, day+1 00:00) UTC, selected by a
WHERE on that column, without dlt incremental state: re-running a past day reads exactly that day
and moves no cursor. Timestamps without a time zone are UTC, `timestamptz` values are converted to
UTC, and every session runs in UTC (so MySQL `TIMESTAMP` columns read as UTC too).
"""

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal
from urllib.parse import quote, quote_plus

import polars as pl
import pyarrow as pa
import sqlalchemy as sa
from dlt.sources.sql_database import get_table_loader_class, remove_nullability_adapter, sql_table
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cs_pipeline.logic.contract import ENTITIES, SOURCE
from cs_pipeline.sources.base import Connector, ConnectorError, Extract, empty_frame, secret

log = logging.getLogger(__name__)

CONNECTOR = "database connector"
CHUNK_SIZE = 50_000
OCCURRED_AT = "occurred_at"

# Every session reads and compares timestamps in UTC (connectorx: see `_connectorx_url`, `_backend`).
_UTC_SESSION = {"postgresql": "SET TIME ZONE 'UTC'", "mysql": "SET time_zone = '+00:00'"}
_SELECT = re.compile(r"[\s(]*(select|with)\b", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@\s]+@")
_SECRET_QUERY_KEYS = ("pass", "secret", "token", "key")


class TableMapping(BaseModel):
    """Where one entity lives: a `table` (in `schema`) or a `query`, and its column names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    query: str | None = None
    columns: dict[str, str] = {}

    @model_validator(mode="after")
    def _table_or_query(self) -> "TableMapping":
        if (self.table is None) == (self.query is None):
            raise PydanticCustomError("table_or_query", "set either `table` (with an optional `schema`) or `query`")
        if self.query is not None:
            if self.schema_ is not None:
                raise PydanticCustomError("schema_with_query", "`schema` goes with `table`; name the schema inside `query`")
            if not _SELECT.match(self.query):
                raise PydanticCustomError("not_select", "`query` must be a single SELECT (it is read as a subquery)")
        return self

    @property
    def sql_text(self) -> str:
        """The query as SQL text with every colon literal (the query has no parameters of its own)."""
        return (self.query or "").strip().rstrip(";").replace(":", r"\:")

    def describe(self, entity: str) -> str:
        if self.table is None:
            return f"query({entity})"
        return f"{self.schema_}.{self.table}" if self.schema_ else self.table

    def setting(self, entity: str) -> str:
        return f"{entity}.table" if self.table is not None else f"{entity}.query"


class DatabaseConnector(Connector):
    """`users` (a snapshot) and `events` (per UTC day) from a SQLAlchemy URL held in `url_env`."""

    type: Literal["database"] = "database"
    entities: ClassVar[tuple[str, ...]] = ("users", "events")

    url_env: str
    # connectorx: about 4x the rows/s of pyarrow on PostgreSQL, 8x on MariaDB (bench/source_database.py).
    backend: Literal["connectorx", "pyarrow", "sqlalchemy"] = "connectorx"
    # `users` and `events` in sources.yaml; `events` cannot be a field name (it is the method).
    users_mapping: TableMapping | None = Field(default=None, alias="users")
    events_mapping: TableMapping | None = Field(default=None, alias="events")

    @field_validator("users_mapping", "events_mapping")
    @classmethod
    def _contract_columns(cls, mapping: TableMapping | None, info: ValidationInfo) -> TableMapping | None:
        entity = info.field_name.removesuffix("_mapping")
        known = ENTITIES[entity].column_names
        for name in mapping.columns if mapping else ():
            if name not in known:
                raise PydanticCustomError(
                    "contract_column",
                    "columns: '{name}' is not a column of {entity}; valid choices: {choices}",
                    {"name": name, "entity": entity, "choices": ", ".join(known)},
                )
        return mapping

    def mapping(self, entity: str) -> TableMapping:
        mapping = {"users": self.users_mapping, "events": self.events_mapping}[entity]
        if mapping is None:
            raise ConnectorError(
                f"{CONNECTOR} ({self.url_env}): no `{entity}` setting; give the connector "
                f"`{entity}: {{table: ...}}` or `{entity}: {{query: ...}}` in sources.yaml"
            )
        return mapping

    def snapshot(self, entity: str) -> Extract | None:
        if entity != "users":
            return super().snapshot(entity)
        return self._read("users", None)

    def events(self, day: dt.date) -> Extract:
        return self._read("events", day)

    def _read(self, entity: str, day: dt.date | None) -> Extract:
        mapping = self.mapping(entity)
        url = secret(self.url_env, CONNECTOR, "url_env")
        location = f"{_server(url)}#{mapping.describe(entity)}"
        with self._failures(url, entity, mapping) as step:
            engine = _engine(url)
            try:
                step("connect")
                with engine.connect() as connection:
                    step("source")
                    source = _reflect(connection, mapping) if mapping.table else _probe(connection, mapping)
                    columns = self._resolve(entity, mapping, source, location)
                    backend = self._backend(connection, [source.c[name] for name in columns.values()])
                select = sa.select(*[source.c[name].label(contract) for contract, name in columns.items()])
                if day is not None:
                    select = select.where(*_window(source.c[columns[OCCURRED_AT]], day, engine.dialect.name))
                step("read")
                items = list(_rows(engine, backend, mapping, source, select))
            finally:
                engine.dispose()
        return Extract(_frame(entity, items, location), [location])

    def _resolve(self, entity: str, mapping: TableMapping, source: sa.FromClause, location: str) -> dict[str, str]:
        """Contract column → source column, for every contract column the source holds."""
        available = [column.name for column in source.c]
        columns: dict[str, str] = {}
        for column in ENTITIES[entity].columns:
            name = mapping.columns.get(column.name, column.name)
            if name in available:
                columns[column.name] = name
            elif column.name in mapping.columns or column.required:
                raise ConnectorError(
                    f"{CONNECTOR} ({self.url_env}): {location} has no column '{name}' for the contract's "
                    f"{entity}.{column.name}; set `{entity}.columns.{column.name}` to one of: {', '.join(available)}"
                )
        return columns

    def _backend(self, connection: sa.Connection, columns: list[sa.ColumnElement]) -> str:
        """The configured backend, except connectorx where it would read MySQL TIMESTAMPs shifted.

        connectorx cannot set a MySQL session's time zone, so TIMESTAMP values come in the
        server's zone; unless that zone is UTC, pyarrow (in a UTC session) reads them instead.
        """
        if self.backend != "connectorx" or connection.dialect.name != "mysql":
            return self.backend
        if not any(isinstance(column.type, sa.TIMESTAMP) for column in columns):
            return self.backend
        zone, system_zone = connection.execute(sa.text("SELECT @@global.time_zone, @@system_time_zone")).one()
        if _is_utc(zone, system_zone):
            return self.backend
        log.warning(
            "%s (%s): the MySQL server's time zone is %s, which connectorx would read TIMESTAMP columns in; "
            "reading with backend pyarrow instead (set `backend: pyarrow`, or run the server in UTC)",
            CONNECTOR, self.url_env, system_zone if zone == "SYSTEM" else zone,
        )
        return "pyarrow"

    @contextmanager
    def _failures(self, url: str, entity: str, mapping: TableMapping) -> Iterator[Callable[[str], None]]:
        """Turn any failure into a ConnectorError naming the setting to fix, with secrets redacted."""
        current = ["url"]
        try:
            yield lambda step: current.__setitem__(0, step)
        except ConnectorError as error:
            raise ConnectorError(_redact(str(error), url)) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # noqa: BLE001 - connectorx panics are BaseExceptions
            inner = _innermost(error)
            if isinstance(inner, ConnectorError):
                raise ConnectorError(_redact(str(inner), url)) from None
            what, fix = self._explain(current[0], inner, entity, mapping)
            cause = " ".join(str(inner).split()) or type(inner).__name__
            message = f"{CONNECTOR} ({self.url_env}, {_server(url)}): {what}: {cause}; {fix}"
            # `from None`: the chained driver error could hold the URL.
            raise ConnectorError(_redact(message, url)) from None

    def _explain(self, step: str, error: BaseException, entity: str, mapping: TableMapping) -> tuple[str, str]:
        env = f"environment variable {self.url_env} (setting `url_env`)"
        if step == "url":
            if isinstance(error, ImportError | sa.exc.NoSuchModuleError):
                return "the URL's driver is not installed", f"use postgresql+psycopg2:// or mysql+pymysql:// in {env}"
            return "the URL is not a SQLAlchemy URL", f"fix {env}"
        if step == "connect":
            return "cannot connect", f"check the host, user and password in {env}"
        if step == "source":
            if isinstance(error, sa.exc.NoSuchTableError):
                return "no such table", f"fix `{entity}.table` or `{entity}.schema`"
            return f"cannot read {mapping.describe(entity)}", f"fix `{mapping.setting(entity)}`"
        return (
            f"reading {entity} from {mapping.describe(entity)} failed (backend {self.backend})",
            f"check `{mapping.setting(entity)}`, `{entity}.columns` and `backend`",
        )


def _rows(engine: sa.Engine, backend: str, mapping: TableMapping, source: sa.FromClause, select: sa.Select) -> Iterable[Any]:
    """The rows of `select` through dlt's loader for the backend: Arrow tables or dicts."""

    def adapt(*_: Any) -> sa.Select:
        return select

    # connectorx opens its own sessions: on PostgreSQL they are asked for UTC like ours.
    backend_kwargs = {"conn": _connectorx_url(engine)} if backend == "connectorx" else {}
    if mapping.table is not None:
        # The table is already reflected into `source.metadata`, which sql_table reuses.
        return sql_table(
            credentials=engine,
            table=mapping.table,
            schema=mapping.schema_,
            metadata=source.metadata,
            backend=backend,
            backend_kwargs=backend_kwargs,
            chunk_size=CHUNK_SIZE,
            # Columns are relabelled to the contract's names, so reflected types and nullability
            # (keyed by source names) must not be applied to them.
            reflection_level="minimal",
            table_adapter_callback=remove_nullability_adapter,
            query_adapter_callback=adapt,
            incremental=None,
        )
    # sql_table needs a table to reflect; a query goes straight to the same loader.
    loader = get_table_loader_class(backend)(engine, backend, source, {}, chunk_size=CHUNK_SIZE, query_adapter_callback=adapt)
    return loader.load_rows(backend_kwargs)


def _connectorx_url(engine: sa.Engine) -> str:
    """The URL connectorx reads (no SQLAlchemy driver); PostgreSQL sessions in UTC."""
    url = engine.url.set(drivername=engine.url.get_backend_name())
    if url.get_backend_name() != "postgresql":
        return url.render_as_string(hide_password=False)
    given = url.query.get("options", ())
    options = " ".join([*([given] if isinstance(given, str) else given), "-c TimeZone=UTC"])
    text = url.difference_update_query(["options"]).render_as_string(hide_password=False)
    # Encoded by hand: connectorx does not read '+' as a space.
    return f"{text}{'&' if '?' in text else '?'}options={quote(options, safe='')}"


def _is_utc(zone: str, system_zone: str) -> bool:
    """Whether a MySQL server's default time zone is UTC all year (a zone with DST is not)."""
    utc = {"+00:00", "UTC", "Etc/UTC", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu", "Coordinated Universal Time"}
    return zone in utc or (zone == "SYSTEM" and system_zone in utc)


def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    statement = _UTC_SESSION.get(engine.dialect.name)
    if statement:

        @sa.event.listens_for(engine, "connect")
        def _utc(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
            dbapi_connection.commit()  # a SET inside a rolled-back transaction would be undone

    return engine


def _reflect(connection: sa.Connection, mapping: TableMapping) -> sa.Table:
    # SQLAlchemy quotes the reflected names wherever the dialect needs it.
    return sa.Table(mapping.table, sa.MetaData(schema=mapping.schema_), autoload_with=connection)


def _probe(connection: sa.Connection, mapping: TableMapping) -> sa.Subquery:
    """The query as a subquery `src` with the output column names it really has."""
    query = sa.text(mapping.sql_text)
    probe = sa.select(sa.literal_column("*")).select_from(query.columns().subquery("src")).where(sa.false())
    description = connection.execute(probe).cursor.description
    # MySQL's TIMESTAMP (type code 7) is the one type that reads differently by session zone.
    timestamp = connection.dialect.name == "mysql"
    columns = [
        sa.column(sa.sql.quoted_name(name, quote=True), sa.TIMESTAMP() if timestamp and code == 7 else None)
        for name, code, *_ in description
    ]
    return query.columns(*columns).subquery("src")


def _window(column: sa.ColumnElement, day: dt.date, dialect: str) -> list[sa.ColumnElement[bool]]:
    """occurred_at in [day 00:00, day+1 00:00) UTC, as bound parameters.

    PostgreSQL gets values with an offset, right for `timestamp` and `timestamptz` columns even in a
    session whose zone did not stick (a transaction-pooling proxy); MySQL has no offset literals in
    every version, and its sessions run in UTC. connectorx, which takes no parameters, gets them
    rendered by SQLAlchemy's literal processor for the dialect.
    """
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    aware = dialect == "postgresql"
    bound = [value if aware else value.replace(tzinfo=None) for value in (start, start + dt.timedelta(days=1))]
    kind = sa.DateTime(timezone=aware)
    return [column >= sa.bindparam("day_start", bound[0], kind), column < sa.bindparam("day_end", bound[1], kind)]


def _frame(entity: str, items: list[Any], location: str) -> pl.DataFrame:
    """The backend's items as one frame with the contract's columns, timestamps in naive UTC."""
    tables = [item for item in items if isinstance(item, pa.Table)]
    # The sqlalchemy backend yields lists of dicts (a dlt resource flattens them to dicts).
    rows = [row for item in items if isinstance(item, list | dict) for row in ([item] if isinstance(item, dict) else item)]
    if tables:
        frame = pl.from_arrow(pa.concat_tables(tables, promote_options="permissive"))
    elif rows:
        frame = pl.from_dicts(rows, infer_schema_length=None)
    else:
        frame = empty_frame(entity)
    frame = frame.with_columns(
        (pl.col(name).dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.time_zone else pl.col(name))
        .dt.cast_time_unit("us")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    )
    names = ENTITIES[entity].column_names
    missing = [pl.lit(None, pl.String).alias(name) for name in names if name not in frame.columns]
    return frame.with_columns(*missing, pl.lit(location).alias(SOURCE)).select(*names, SOURCE)


def _server(url: str) -> str:
    """The URL without user, password or parameters: `postgresql://host:5432/app`."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception:  # noqa: BLE001 - an unparseable URL is reported by the read itself
        return "the database"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.get_backend_name()}://{parsed.host or ''}{port}/{parsed.database or ''}"


def _redact(text: str, url: str) -> str:
    """`text` with the URL, its password and secret-looking parameters replaced by ***."""
    secrets = {url}
    try:
        parsed = sa.engine.make_url(url)
    except Exception:  # noqa: BLE001
        parsed = None
    if parsed is not None:
        values = [parsed.password or ""]
        for key, value in parsed.query.items():
            if any(word in key.lower() for word in _SECRET_QUERY_KEYS):
                values.extend([value] if isinstance(value, str) else value)
        for value in filter(None, values):
            secrets.update({str(value), quote(str(value), safe=""), quote_plus(str(value))})
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _URL_PASSWORD.sub(r"\1***@", text)


def _innermost(error: BaseException) -> BaseException:
    """The error that started it: dlt and SQLAlchemy wrap driver errors (a ConnectorError wins)."""
    seen = error
    while not isinstance(seen, ConnectorError):
        nested = seen.__cause__ or getattr(seen, "orig", None)
        if not isinstance(nested, BaseException) or nested is seen:
            break
        seen = nested
    return seen
