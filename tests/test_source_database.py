"""The database connector against real PostgreSQL and MariaDB servers (skipped when absent, but
failing under CI=true): a day's events exactly, users, the query form, and errors without secrets."""

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from pydantic import ValidationError

from cs_pipeline.logic.contract import ENTITIES, validate
from cs_pipeline.sources.base import ConnectorError
from cs_pipeline.sources.database import DatabaseConnector, _connectorx_url, _is_utc
from tests.support.databases import mariadb_url, postgres_url  # noqa: F401 (fixtures)

DAY = dt.date(2025, 3, 10)
ENV = "CS_TEST_PRODUCT_DB_URL"
PASSWORD = "p@ss:w/rd%Zq9"  # characters that URLs percent-encode
UTC = dt.UTC
PLUS_2 = dt.timezone(dt.timedelta(hours=2))

USER_COLUMNS = {"user_id": "uid", "account_id": "org_id", "email": "mail", "role": "kind",
                "created_at": "signup_at", "activated_at": "first_seen", "deactivated_at": "removed_at"}
EVENT_COLUMNS = {"event_id": "id", "account_id": "org", "user_id": "actor", "event": "name", "occurred_at": "happened"}

USERS = [
    # uid, org_id, mail, kind, signup_at (a timestamptz in PostgreSQL), first_seen, removed_at
    ("u1", "acc_1", "ann@example.com", "admin", dt.datetime(2025, 1, 2, 1, 0, tzinfo=PLUS_2), dt.datetime(2025, 1, 3, 9), None),
    ("u2", "acc_1", "bob@example.com", "member", dt.datetime(2025, 1, 5, 12, tzinfo=UTC), None, None),
    ("u3", "acc_2", "cy@example.com", "member", dt.datetime(2025, 2, 1, 8, tzinfo=UTC), dt.datetime(2025, 2, 1, 9), dt.datetime(2025, 3, 1)),
]
EVENTS = [
    # id, org, actor, name, happened (a timestamptz in PostgreSQL, naive UTC in MariaDB)
    (1, "acc_1", "u1", "login", dt.datetime(2025, 3, 10, 0, 0, tzinfo=UTC)),
    (2, "acc_1", "u1", "report.created", dt.datetime(2025, 3, 10, 23, 59, 59, 999999, tzinfo=UTC)),
    (3, "acc_1", "u1", "login", dt.datetime(2025, 3, 9, 23, 59, 59, 999999, tzinfo=UTC)),
    (4, "acc_2", "u3", "login", dt.datetime(2025, 3, 11, 0, 0, tzinfo=UTC)),
    (5, "acc_2", None, "workflow.run", dt.datetime(2025, 3, 11, 1, 30, tzinfo=PLUS_2)),  # 03-10 23:30 UTC
    (6, "acc_2", "u3", "login", dt.datetime(2025, 3, 10, 0, 30, tzinfo=PLUS_2)),  # 03-09 22:30 UTC
    (7, "acc_1", "u2", '"a":b', dt.datetime(2025, 3, 10, 12, 0, tzinfo=UTC)),  # the query form leaves it out
]
IN_DAY = ["1", "2", "5", "7"]

DDL = {
    "postgresql": [
        "CREATE TABLE app_users (uid varchar(20) PRIMARY KEY, org_id varchar(20), mail varchar(80), kind varchar(10),"
        " signup_at timestamptz, first_seen timestamp, removed_at timestamp)",
        "CREATE TABLE app_events (id bigint PRIMARY KEY, org varchar(20), actor varchar(20), name varchar(40),"
        " happened timestamptz)",
    ],
    "mysql": [
        "CREATE TABLE app_users (uid varchar(20) PRIMARY KEY, org_id varchar(20), mail varchar(80), kind varchar(10),"
        " signup_at timestamp(6) NULL, first_seen datetime(6), removed_at datetime(6))",
        "CREATE TABLE app_events (id bigint PRIMARY KEY, org varchar(20), actor varchar(20), name varchar(40),"
        " happened datetime(6))",
    ],
}
# The query form reads a naive column in PostgreSQL, cast in the session's zone (which must be UTC
# although the database's default is New York); the table form reads the timestamptz itself.
EVENTS_QUERY = {
    "postgresql": "SELECT id AS event_key, org, actor, name, CAST(happened AS timestamp) AS happened_utc"
    " FROM app_events WHERE name <> '\"a\":b';",
    "mysql": "SELECT id AS event_key, org, actor, name, happened AS happened_utc FROM app_events WHERE name <> '\"a\":b'",
}


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def database(request) -> str:
    """The server's fresh database with app_users and app_events: yields its URL."""
    url = request.getfixturevalue(f"{request.param}_url")
    engine = sa.create_engine(url)
    dialect = engine.dialect.name
    naive = dialect == "mysql"
    with engine.begin() as connection:
        for statement in DDL[dialect]:
            connection.execute(sa.text(statement))
        if dialect == "postgresql":
            # Sessions that did not ask for UTC now run in New York time: the connector must not care.
            name = engine.dialect.identifier_preparer.quote(engine.url.database)
            connection.execute(sa.text(f"ALTER DATABASE {name} SET timezone TO 'America/New_York'"))
        users = sa.table("app_users", *[sa.column(c) for c in USER_COLUMNS.values()])
        events = sa.table("app_events", *[sa.column(c) for c in EVENT_COLUMNS.values()])
        connection.execute(users.insert(), [dict(zip(USER_COLUMNS.values(), _stored(row, naive))) for row in USERS])
        connection.execute(events.insert(), [dict(zip(EVENT_COLUMNS.values(), _stored(row, naive))) for row in EVENTS])
    engine.dispose()
    yield url
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE app_users"))
        connection.execute(sa.text("DROP TABLE app_events"))
    engine.dispose()


def _stored(row: tuple, naive: bool) -> tuple:
    """MariaDB has no time zones: aware values are stored as naive UTC."""
    return tuple(
        v.astimezone(UTC).replace(tzinfo=None) if naive and isinstance(v, dt.datetime) and v.tzinfo else v for v in row
    )


def connector(monkeypatch, url: str, **settings) -> DatabaseConnector:
    monkeypatch.setenv(ENV, url)
    settings.setdefault("users", {"table": "app_users", "columns": USER_COLUMNS})
    settings.setdefault("events", {"table": "app_events", "columns": EVENT_COLUMNS})
    return DatabaseConnector(type="database", url_env=ENV, **settings)


def with_password(url: str) -> str:
    """The URL with a password: PostgreSQL's trust auth accepts it; MariaDB's root has none."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False)


def event_ids(extract) -> list[str]:
    return sorted(extract.frame["event_id"].cast(pl.String).to_list(), key=int)


@pytest.mark.parametrize("backend", ["connectorx", "pyarrow", "sqlalchemy"])
def test_events_are_exactly_the_days_rows(database, backend, monkeypatch):
    source = connector(monkeypatch, with_password(database), backend=backend)
    extract = source.events(DAY)

    assert event_ids(extract) == IN_DAY
    assert event_ids(source.events(DAY - dt.timedelta(days=1))) == ["3", "6"]
    assert event_ids(source.events(DAY + dt.timedelta(days=1))) == ["4"]
    occurred = dict(zip(extract.frame["event_id"].cast(pl.String), extract.frame["occurred_at"]))
    assert occurred["5"] == dt.datetime(2025, 3, 10, 23, 30)  # +02:00 in the source, UTC here
    assert extract.frame.columns == [*ENTITIES["events"].column_names, "source_file"]

    # Through the contract's validation: nothing rejected, every row inside its day.
    result = validate("events", extract.frame, day=DAY)
    assert result.rejected.height == 0 and sorted(result.valid["event_id"].to_list(), key=int) == IN_DAY
    location = extract.locations[0]
    assert location.endswith("#app_events") and PASSWORD not in location and "p%40ss" not in location
    assert set(result.valid["source_file"]) == {location}

    # A re-run of the day reads the same rows.
    assert source.events(DAY).frame.sort("event_id").equals(extract.frame.sort("event_id"))


def test_users_snapshot_has_every_user_with_the_contract_columns(database, monkeypatch):
    parsed = sa.engine.make_url(database)
    schema = "public" if parsed.get_backend_name() == "postgresql" else parsed.database
    extract = connector(monkeypatch, database, users={"table": "app_users", "schema": schema, "columns": USER_COLUMNS}).snapshot("users")

    assert extract.frame.columns == [*ENTITIES["users"].column_names, "source_file"]
    result = validate("users", extract.frame)
    assert result.rejected.height == 0
    users = {row["user_id"]: row for row in result.valid.iter_rows(named=True)}
    assert sorted(users) == ["u1", "u2", "u3"]
    assert users["u1"]["created_at"] == dt.datetime(2025, 1, 1, 23, 0)  # 01:00+02:00
    assert users["u1"]["role"] == "admin" and users["u2"]["activated_at"] is None
    assert users["u3"]["deactivated_at"] == dt.datetime(2025, 3, 1)


@pytest.mark.parametrize("backend", ["connectorx", "pyarrow", "sqlalchemy"])
def test_the_query_form_reads_through_a_subquery(database, backend, monkeypatch):
    dialect = sa.engine.make_url(database).get_backend_name()
    columns = {**EVENT_COLUMNS, "event_id": "event_key", "occurred_at": "happened_utc"}
    source = connector(
        monkeypatch,
        database,
        backend=backend,
        events={"query": EVENTS_QUERY[dialect], "columns": columns},
        users={
            "query": "SELECT uid, org_id, mail, kind, signup_at, first_seen FROM app_users",
            "columns": {k: v for k, v in USER_COLUMNS.items() if k != "deactivated_at"},
        },
    )
    events = source.events(DAY)
    assert event_ids(events) == ["1", "2", "5"]
    assert validate("events", events.frame, day=DAY).rejected.height == 0
    assert events.locations[0].endswith("#query(events)")

    users = source.snapshot("users")
    assert users.frame.height == 3
    # A column the query does not return and nobody mapped explicitly is empty, not an error.
    assert users.frame["deactivated_at"].null_count() == 3


def test_a_bad_password_names_the_setting_and_never_the_password(database, monkeypatch):
    parsed = sa.engine.make_url(database)
    # PostgreSQL here trusts every password, so the user is unknown instead; MariaDB's root has none.
    user = "cs_no_such_user" if parsed.get_backend_name() == "postgresql" else parsed.username
    url = parsed.set(username=user, password=PASSWORD).render_as_string(hide_password=False)
    assert "p%40ss" in url

    with pytest.raises(ConnectorError) as error:
        connector(monkeypatch, url).events(DAY)
    message = str(error.value)
    assert "database connector" in message and ENV in message and "url_env" in message
    assert "cannot connect" in message
    for secret in (PASSWORD, "p%40ss", url):
        assert secret not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_a_missing_table_or_column_names_the_setting(database, monkeypatch):
    url = with_password(database)
    with pytest.raises(ConnectorError, match=r"no such table.*`events\.table`") as error:
        connector(monkeypatch, url, events={"table": "app_eventz", "columns": EVENT_COLUMNS}).events(DAY)
    assert PASSWORD not in str(error.value) and "p%40ss" not in str(error.value)

    wrong = {**EVENT_COLUMNS, "occurred_at": "happened_at"}
    with pytest.raises(ConnectorError, match=r"no column 'happened_at'.*`events\.columns\.occurred_at`.*happened"):
        connector(monkeypatch, url, events={"table": "app_events", "columns": wrong}).events(DAY)


def test_reading_a_day_leaves_no_dlt_state(database, monkeypatch, tmp_path):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    source = connector(monkeypatch, database)
    source.events(DAY)
    source.events(DAY - dt.timedelta(days=30))
    assert not (tmp_path / "dlt").exists()


# --- settings (no server needed) ----------------------------------------------------------------

SOURCES_YAML = """
connectors:
  product_db:
    type: database
    url_env: PRODUCT_DB_URL
    backend: pyarrow
    users:
      table: app_users
      schema: public
      columns: {user_id: id, account_id: org_id}
    events:
      query: SELECT id, org_id, actor_id, name, created_at FROM app_events WHERE kind = 'product'
      columns: {event_id: id, account_id: org_id, user_id: actor_id, event: name, occurred_at: created_at}
"""


def test_the_documented_settings_validate():
    source = DatabaseConnector.model_validate(yaml.safe_load(SOURCES_YAML)["connectors"]["product_db"])
    assert source.users_mapping.schema_ == "public" and source.events_mapping.query.startswith("SELECT")
    assert source.entities == ("users", "events")


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ({"table": "t", "query": "SELECT 1"}, "either `table`"),
        ({"columns": {"event_id": "id"}}, "either `table`"),
        ({"query": "DELETE FROM t"}, "must be a single SELECT"),
        ({"query": "SELECT 1", "schema": "s"}, "`schema` goes with `table`"),
        ({"table": "t", "columns": {"occured_at": "ts"}}, "'occured_at' is not a column of events; valid choices"),
    ],
)
def test_settings_mistakes_are_rejected(events, message):
    with pytest.raises(ValidationError, match=message):
        DatabaseConnector(type="database", url_env=ENV, events=events)


def test_a_missing_url_or_entity_names_what_to_set(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConnectorError, match=f"{ENV}.*`url_env`.*not set"):
        DatabaseConnector(type="database", url_env=ENV, events={"table": "t"}).events(DAY)
    with pytest.raises(ConnectorError, match="no `users` setting"):
        DatabaseConnector(type="database", url_env=ENV, events={"table": "t"}).snapshot("users")
    with pytest.raises(ConnectorError, match="cannot land accounts"):
        DatabaseConnector(type="database", url_env=ENV).snapshot("accounts")


def test_an_unparseable_url_is_reported_without_echoing_it(monkeypatch):
    monkeypatch.setenv(ENV, f"postgresql://admin:{PASSWORD}@db.example.com:notaport/app")
    with pytest.raises(ConnectorError, match="not a SQLAlchemy URL") as error:
        DatabaseConnector(type="database", url_env=ENV, events={"table": "t"}).events(DAY)
    assert PASSWORD not in str(error.value) and ENV in str(error.value)


def test_connectorx_sessions_are_asked_for_utc_beside_the_urls_own_options():
    url = sa.engine.make_url("postgresql+psycopg2://app@db:5432/app?options=-c%20statement_timeout%3D5000&sslmode=require")
    engine = sa.create_engine(url.set(password=PASSWORD))
    url = _connectorx_url(engine)
    assert url.startswith("postgresql://app:") and "sslmode=require" in url
    assert "options=-c%20statement_timeout%3D5000%20-c%20TimeZone%3DUTC" in url


@pytest.mark.parametrize(
    ("zone", "system_zone", "utc"),
    [("SYSTEM", "UTC", True), ("+00:00", "CET", True), ("SYSTEM", "GMT", False), ("Europe/London", "UTC", False), ("SYSTEM", "CET", False)],
)
def test_connectorx_reads_mysql_timestamps_only_from_a_server_in_utc_all_year(zone, system_zone, utc):
    assert _is_utc(zone, system_zone) is utc


def test_mysql_timestamps_are_read_in_utc_when_the_server_is_not(database, monkeypatch, caplog):
    if sa.engine.make_url(database).get_backend_name() != "mysql":
        pytest.skip("only MySQL sessions of connectorx follow the server's zone")
    monkeypatch.setattr("cs_pipeline.sources.database._is_utc", lambda *_: False)  # a server in CET, say
    users = connector(monkeypatch, database, backend="connectorx").snapshot("users").frame
    assert "reading with backend pyarrow instead" in caplog.text
    assert users.filter(pl.col("user_id") == "u1")["created_at"].item() == dt.datetime(2025, 1, 1, 23, 0)
