"""Real PostgreSQL and MariaDB servers for the database connector: a fresh database per test run.

The fixtures `postgres_url` and `mariadb_url` create a database with a unique name on the local
server, yield its SQLAlchemy URL and drop it afterwards. A server that is not reachable skips the
tests that need it, except under CI=true, where it fails them: CI must not pass by skipping.

    from tests.support.databases import mariadb_url, postgres_url  # noqa: F401 (fixtures)

Admin URLs: CS_TEST_POSTGRES_URL / CS_TEST_MARIADB_URL, else the local servers (PostgreSQL with
trust auth as `postgres` or `root`, MariaDB as `root` without password, database `test`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

POSTGRES_ADMIN_URLS = (
    "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg2://root@127.0.0.1:5432/test",
)
MARIADB_ADMIN_URLS = ("mysql+pymysql://root@127.0.0.1:3306/test",)
CONNECT_TIMEOUT_S = 3


def admin_url(kind: str) -> str:
    """The first admin URL of `kind` ("postgres" or "mariadb") that connects; raises if none does."""
    override = os.environ.get(f"CS_TEST_{kind.upper()}_URL")
    candidates = (override,) if override else (POSTGRES_ADMIN_URLS if kind == "postgres" else MARIADB_ADMIN_URLS)
    problems = []
    for url in candidates:
        engine = sa.create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        try:
            with engine.connect():
                return url
        except sa.exc.SQLAlchemyError as error:
            problems.append(f"{sa.engine.make_url(url).render_as_string()}: {' '.join(str(getattr(error, 'orig', None) or error).split())}")
        finally:
            engine.dispose()
    raise ConnectionError("; ".join(problems))


@contextmanager
def temporary_database(kind: str, admin: str | None = None) -> Iterator[str]:
    """A new database on the `kind` server, dropped on exit: yields its SQLAlchemy URL."""
    admin = admin or admin_url(kind)
    name = f"cs_pipeline_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    preparer = engine.dialect.identifier_preparer
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {preparer.quote(name)}"))
        yield sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f"DROP DATABASE IF EXISTS {preparer.quote(name)}" + (" WITH (FORCE)" if kind == "postgres" else "")
        with engine.connect() as connection:
            connection.execute(sa.text(drop))
        engine.dispose()


def _database(kind: str, label: str) -> Iterator[str]:
    try:
        admin = admin_url(kind)
    except ConnectionError as error:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{label} is not reachable and CI=true requires it: {error}")
        pytest.skip(f"{label} is not reachable: {error}")
    with temporary_database(kind, admin) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run (SQLAlchemy URL), dropped afterwards."""
    yield from _database("postgres", "PostgreSQL")


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB/MySQL database for this test run (SQLAlchemy URL), dropped afterwards."""
    yield from _database("mariadb", "MariaDB")
