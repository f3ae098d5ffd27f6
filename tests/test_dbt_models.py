"""The dbt project (dbt/) on a small hand-made raw layer: real `dbt build` runs into a temporary DuckDB.

Each fixture builds once per module; the tests read the result. The target and log paths are
under tmp_path, so several test processes can run dbt at the same time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner, dbtRunnerResult

from cs_pipeline.settings import DBT_PROJECT_DIR

D = dt.date
T = dt.datetime

LOAD_ID = "1735689600.123456"

# Column types of the raw layer exactly as docs/architecture.md lists them; dlt adds
# _dlt_load_id and _dlt_id to each table.
RAW_COLUMNS: dict[str, dict[str, str]] = {
    "accounts": {
        "account_id": "VARCHAR", "name": "VARCHAR", "segment": "VARCHAR", "owner_email": "VARCHAR",
        "plan": "VARCHAR", "licenses": "BIGINT", "status": "VARCHAR", "created_at": "TIMESTAMP",
    },
    "contracts": {
        "contract_id": "VARCHAR", "account_id": "VARCHAR", "start_date": "DATE", "end_date": "DATE",
        "arr": "DOUBLE",
    },
    "users": {
        "user_id": "VARCHAR", "account_id": "VARCHAR", "email": "VARCHAR", "role": "VARCHAR",
        "created_at": "TIMESTAMP", "activated_at": "TIMESTAMP", "deactivated_at": "TIMESTAMP",
    },
    "tickets": {
        "ticket_id": "VARCHAR", "account_id": "VARCHAR", "created_at": "TIMESTAMP",
        "updated_at": "TIMESTAMP", "status": "VARCHAR", "priority": "VARCHAR", "subject": "VARCHAR",
        "csat": "BIGINT",
    },
    "nps_responses": {
        "response_id": "VARCHAR", "account_id": "VARCHAR", "user_id": "VARCHAR", "score": "BIGINT",
        "comment": "VARCHAR", "submitted_at": "TIMESTAMP",
    },
    "activities": {
        "activity_id": "VARCHAR", "account_id": "VARCHAR", "owner_email": "VARCHAR", "type": "VARCHAR",
        "occurred_at": "TIMESTAMP",
    },
    "engagements": {
        "engagement_id": "VARCHAR", "account_id": "VARCHAR", "type": "VARCHAR", "occurred_at": "TIMESTAMP",
    },
    "events": {
        "event_id": "VARCHAR", "account_id": "VARCHAR", "user_id": "VARCHAR", "event": "VARCHAR",
        "occurred_at": "TIMESTAMP", "event_date": "DATE", "source_file": "VARCHAR",
    },
}

ACCOUNTS = [
    ("A1", "Acme", "enterprise", "csm@vendor.test", "pro", 10, "active", T(2023, 12, 1, 9)),
    ("A2", "Beta", "smb", "", "starter", 5, "active", T(2024, 2, 1, 9)),
    ("A3", "Gamma", "mid_market", "csm@vendor.test", "trial", 3, "trial", T(2025, 1, 1, 9)),
    ("A4", "Delta", "mid_market", "csm2@vendor.test", "pro", 8, "churned", T(2022, 12, 1, 9)),
]

CONTRACTS = [
    # A1: C2 starts exactly 30 days after C1's end (renewed, +200); C3 starts before C2 ends
    # (renewed, +300) and is the last term.
    ("C1", "A1", D(2024, 1, 1), D(2024, 12, 31), 1000.0),
    ("C2", "A1", D(2025, 1, 30), D(2026, 1, 29), 1200.0),
    ("C3", "A1", D(2026, 1, 1), D(2026, 12, 31), 1500.0),
    # A2: C5 starts 31 days after C4's end: not renewed, yet not churned (C4 is not the last term).
    ("C4", "A2", D(2024, 3, 1), D(2025, 2, 28), 500.0),
    ("C5", "A2", D(2025, 3, 31), D(2026, 3, 30), 400.0),
    # A4: renewed the next day with less ARR (-100), then churned at the end of C7.
    ("C7", "A4", D(2024, 1, 1), D(2024, 12, 31), 800.0),
    ("C6", "A4", D(2023, 1, 1), D(2023, 12, 31), 900.0),
    # An exact copy (another _dlt_id) collapses in staging.
    ("C6", "A4", D(2023, 1, 1), D(2023, 12, 31), 900.0),
]

USERS = [
    ("U1", "A1", "u1@acme.test", "admin", T(2024, 1, 2), T(2024, 1, 3), None),
    ("U2", "A1", "u2@acme.test", "member", T(2024, 1, 2), None, None),
    ("U3", "A2", "u3@beta.test", "member", T(2024, 3, 2), T(2024, 3, 2), T(2024, 12, 1)),
]

TICKETS = [
    # T1: opened, then resolved: the resolved version wins whatever the row order.
    ("T1", "A1", T(2025, 1, 1, 9), T(2025, 1, 3, 10, 30), "resolved", "high", "Export broken", 4),
    ("T1", "A1", T(2025, 1, 1, 9), T(2025, 1, 1, 9), "open", "high", "Export broken", None),
    # T2: a stale "closed" version is older than the latest "pending" one.
    ("T2", "A1", T(2024, 12, 30, 8), T(2024, 12, 31, 8), "closed", "urgent", "Login fails", None),
    ("T2", "A1", T(2024, 12, 30, 8), T(2025, 1, 5, 12), "pending", "urgent", "Login fails", None),
    ("T2", "A1", T(2024, 12, 30, 8), T(2025, 1, 2, 12), "open", "urgent", "Login fails", None),
    ("T3", "A2", T(2025, 1, 2, 8), T(2025, 1, 2, 18), "closed", "low", "Question", 5),
]

NPS_RESPONSES = [
    ("R1", "A1", "U1", 9, "Great", T(2025, 1, 2, 23, 30)),
    ("R2", "A2", "", 4, "", T(2025, 1, 3, 0, 15)),
]

ACTIVITIES = [("X1", "A1", "csm@vendor.test", "qbr", T(2025, 1, 2, 14))]

ENGAGEMENTS: list[tuple] = []  # the table exists and is empty when the source has no file


def _event(event_id: str, account_id: str, user_id: str, event: str, at: dt.datetime) -> tuple:
    return (event_id, account_id, user_id, event, at, at.date(), f"events/date={at.date()}/part-0.jsonl")


# raw.events as ingestion writes it: one row per (event_date, event_id), a re-delivered event
# already dropped (tests/test_contract.py, tests/test_ingest.py).
EVENTS = [
    _event("E1", "A1", "U1", "login", T(2025, 1, 1, 8)),
    _event("E2", "A1", "U1", "login", T(2025, 1, 1, 17)),
    _event("E3", "A1", "U1", "report.created", T(2025, 1, 1, 17, 5)),
    _event("E4", "A1", "U2", "login", T(2025, 1, 1, 23, 59, 59)),
    _event("E5", "A1", "U1", "login", T(2025, 1, 2, 0, 0)),
    _event("E6", "A2", "U3", "workflow.run", T(2025, 1, 2, 10)),
    _event("E7", "A1", "U1", "login", T(2025, 1, 3, 7)),
]

# History (dlt's scd2 validity columns, UTC): the first load on 2024-12-01 recorded every row;
# on 2025-01-10 a morning load changed A1 and an evening load changed it again (the morning
# version held on no whole day), and U2 moved from A2 to A1.
UTC = dt.timezone.utc
FIRST_LOAD, MORNING, EVENING = T(2024, 12, 1, 6, tzinfo=UTC), T(2025, 1, 10, 6, tzinfo=UTC), T(2025, 1, 10, 18, tzinfo=UTC)
CURRENT_FROM = {"A1": EVENING, "U2": MORNING}
RETIRED: dict[str, list[tuple]] = {
    "accounts": [
        ("A1", "Acme", "smb", "old@vendor.test", "starter", 5, "trial", T(2023, 12, 1, 9), FIRST_LOAD, MORNING),
        ("A1", "Acme", "mid_market", "old@vendor.test", "pro", 8, "active", T(2023, 12, 1, 9), MORNING, EVENING),
    ],
    "users": [("U2", "A2", "u2@acme.test", "member", T(2024, 1, 2), None, None, FIRST_LOAD, MORNING)],
}

RAW_ROWS: dict[str, list[tuple]] = {
    "accounts": ACCOUNTS,
    "contracts": CONTRACTS,
    "users": USERS,
    "tickets": TICKETS,
    "nps_responses": NPS_RESPONSES,
    "activities": ACTIVITIES,
    "engagements": ENGAGEMENTS,
    "events": EVENTS,
}


def write_raw(
    warehouse: Path,
    rows: dict[str, list[tuple]],
    retired: dict[str, list[tuple]] = RETIRED,
    current_from: dict[str, dt.datetime] = CURRENT_FROM,
) -> None:
    """The raw layer as ingestion leaves it. Accounts and users hold versions (dlt's scd2 merge):
    each row of theirs is current and recorded by the first load unless `current_from` names its
    load; the retired versions in `retired` are added."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists raw")
        for table, columns in RAW_COLUMNS.items():
            ddl = ", ".join(f"{name} {type_}" for name, type_ in columns.items())
            scd2 = ", _row_hash VARCHAR, _dlt_valid_from TIMESTAMPTZ, _dlt_valid_to TIMESTAMPTZ" if table in retired else ""
            con.execute(f"create or replace table raw.{table} ({ddl}, _dlt_load_id VARCHAR, _dlt_id VARCHAR{scd2})")
            data = [(*row, LOAD_ID, f"{table}-{i}") for i, row in enumerate(rows[table])]
            if table in retired:
                data = [(*row, f"hash-{row[0]}-{i}", current_from.get(row[0], FIRST_LOAD), None) for i, row in enumerate(data)]
                data += [(*row, LOAD_ID, f"{table}-old-{i}", f"old-{row[0]}-{i}", start, end)
                         for i, (*row, start, end) in enumerate(retired[table])]
            if data:
                placeholders = ", ".join("?" for _ in range(len(data[0])))
                con.executemany(f"insert into raw.{table} values ({placeholders})", data)


# "Today" for fct_term_outcomes: terms whose 30-day renewal grace has not passed are pending.
OUTCOMES_TODAY = D(2026, 2, 15)


def run_dbt(warehouse: Path | None, work: Path, *args: str) -> dbtRunnerResult:
    """`dbt <args>` as Dagster runs it, with target and logs under `work`."""
    with pytest.MonkeyPatch.context() as env:
        if warehouse is None:
            env.delenv("CS_PIPELINE_WAREHOUSE", raising=False)
        else:
            env.setenv("CS_PIPELINE_WAREHOUSE", str(warehouse))
        env.setenv("CS_PIPELINE_TODAY", OUTCOMES_TODAY.isoformat())
        try:
            return dbtRunner().invoke(
                [
                    *args,
                    "--project-dir", str(DBT_PROJECT_DIR),
                    "--profiles-dir", str(DBT_PROJECT_DIR),
                    "--target-path", str(work / "target"),
                    "--log-path", str(work / "logs"),
                ]
            )
        finally:
            close_dbt_duckdb()


def close_dbt_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance open for the life of the process (Dagster runs dbt in a
    subprocess, so only in-process runs see this); close it so the test can open the file."""
    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
        DuckDBConnectionManager.close_all_connections()


def node_statuses(result: dbtRunnerResult) -> dict[str, str]:
    """unique_id -> status ('success', 'pass', 'fail', 'warn', 'error', 'skipped')."""
    return {r.node.unique_id: str(r.status) for r in result.result.results}


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def daily_vars(min_date: str, max_date: str, events: str = "[login, report.created]") -> str:
    return f"{{min_date: {min_date}, max_date: {max_date}, product_events: {events}}}"


# --- the snapshot part: dbt build --exclude tag:daily ------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dbtRunnerResult]]:
    work = tmp_path_factory.mktemp("dbt_built")
    warehouse = work / "warehouse.duckdb"
    write_raw(warehouse, RAW_ROWS)
    result = run_dbt(warehouse, work, "build", "--exclude", "tag:daily")
    yield warehouse, work, result


@pytest.fixture(scope="module")
def warehouse(built: tuple[Path, Path, dbtRunnerResult]) -> Path:
    return built[0]


def test_snapshot_build_passes_every_test_and_leaves_daily_models_out(built):
    warehouse, _, result = built
    statuses = node_statuses(result)
    assert result.success, statuses
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    assert "model.cs_pipeline.fct_contract_terms" in statuses
    assert not [node for node in statuses if "events" in node or "daily_activity" in node]

    tables = query(
        warehouse,
        "select table_schema, table_name, table_type from information_schema.tables"
        " where table_schema in ('staging', 'marts') order by all",
    )
    assert tables == [
        ("marts", "dim_accounts", "BASE TABLE"),
        ("marts", "dim_accounts_history", "BASE TABLE"),
        ("marts", "dim_users_history", "BASE TABLE"),
        ("marts", "fct_contract_terms", "BASE TABLE"),
        ("marts", "fct_term_outcomes", "BASE TABLE"),
        ("marts", "kpi_nps_monthly", "BASE TABLE"),
        ("marts", "kpi_retention_monthly", "BASE TABLE"),
        ("staging", "stg_raw__accounts", "BASE TABLE"),
        ("staging", "stg_raw__accounts_history", "BASE TABLE"),
        ("staging", "stg_raw__activities", "BASE TABLE"),
        ("staging", "stg_raw__contracts", "BASE TABLE"),
        ("staging", "stg_raw__engagements", "BASE TABLE"),
        ("staging", "stg_raw__nps_responses", "BASE TABLE"),
        ("staging", "stg_raw__tickets", "BASE TABLE"),
        ("staging", "stg_raw__users", "BASE TABLE"),
        ("staging", "stg_raw__users_history", "BASE TABLE"),
    ]


def test_staging_is_typed_and_drops_dlt_columns(warehouse):
    columns = query(
        warehouse,
        "select column_name, data_type from information_schema.columns"
        " where table_schema = 'staging' and table_name = 'stg_raw__tickets' order by ordinal_position",
    )
    assert columns == [
        ("ticket_id", "VARCHAR"),
        ("account_id", "VARCHAR"),
        ("created_at", "TIMESTAMP"),
        ("updated_at", "TIMESTAMP"),
        ("status", "VARCHAR"),
        ("priority", "VARCHAR"),
        ("subject", "VARCHAR"),
        ("csat", "BIGINT"),
        ("resolved_at", "TIMESTAMP"),
    ]
    assert query(warehouse, "select account_id, owner_email from staging.stg_raw__accounts order by 1") == [
        ("A1", "csm@vendor.test"),
        ("A2", None),  # empty -> NULL
        ("A3", "csm@vendor.test"),
        ("A4", "csm2@vendor.test"),
    ]
    assert query(warehouse, "select count(*) from staging.stg_raw__contracts") == [(7,)]
    assert query(warehouse, "select count(*) from staging.stg_raw__engagements") == [(0,)]


def test_tickets_latest_version_wins_and_resolved_at(warehouse):
    rows = query(
        warehouse,
        "select ticket_id, status, updated_at, resolved_at, csat from staging.stg_raw__tickets order by 1",
    )
    assert rows == [
        ("T1", "resolved", T(2025, 1, 3, 10, 30), T(2025, 1, 3, 10, 30), 4),
        ("T2", "pending", T(2025, 1, 5, 12), None, None),
        ("T3", "closed", T(2025, 1, 2, 18), T(2025, 1, 2, 18), 5),
    ]


def test_nps_submitted_date(warehouse):
    assert query(
        warehouse, "select response_id, user_id, score, submitted_date from staging.stg_raw__nps_responses order by 1"
    ) == [("R1", "U1", 9, D(2025, 1, 2)), ("R2", None, 4, D(2025, 1, 3))]


def test_contract_terms_renewal_arr_change_and_churn(warehouse):
    rows = query(
        warehouse,
        """
        select contract_id, account_id, term_number, next_contract_id, next_start_date,
               is_renewed, arr_change, churned_at
        from marts.fct_contract_terms order by account_id, term_number
        """,
    )
    assert rows == [
        # renewed 30 days after end_date: the limit is inclusive
        ("C1", "A1", 1, "C2", D(2025, 1, 30), True, 200.0, None),
        # the next term starts before this one ends: renewed
        ("C2", "A1", 2, "C3", D(2026, 1, 1), True, 300.0, None),
        ("C3", "A1", 3, None, None, False, None, D(2026, 12, 31)),
        # 31 days: not renewed, no ARR change, and no churn since a later term exists
        ("C4", "A2", 1, "C5", D(2025, 3, 31), False, None, None),
        ("C5", "A2", 2, None, None, False, None, D(2026, 3, 30)),
        ("C6", "A4", 1, "C7", D(2024, 1, 1), True, -100.0, None),
        ("C7", "A4", 2, None, None, False, None, D(2024, 12, 31)),
    ]


def test_term_outcomes_as_of_today(warehouse):
    rows = query(
        warehouse,
        "select contract_id, outcome, outcome_date, next_arr, is_last_term_unrenewed"
        " from marts.fct_term_outcomes order by account_id, term_number",
    )
    assert rows == [
        ("C1", "expanded", D(2025, 1, 30), 1200.0, False),
        ("C2", "expanded", D(2026, 1, 1), 1500.0, False),
        # ends after OUTCOMES_TODAY: nothing is known yet
        ("C3", "pending", None, None, True),
        # the next term came 31 days after the end: a lapsed logo that came back later
        ("C4", "churned", D(2025, 2, 28), None, False),
        # ended 2026-03-30, after OUTCOMES_TODAY
        ("C5", "pending", None, None, True),
        ("C6", "contracted", D(2024, 1, 1), 800.0, False),
        ("C7", "churned", D(2024, 12, 31), None, True),
    ]


def test_dim_accounts_current_term(warehouse):
    rows = query(
        warehouse,
        """
        select account_id, segment, licenses, first_term_start, current_contract_id, current_arr, renewal_date
        from marts.dim_accounts order by 1
        """,
    )
    assert rows == [
        ("A1", "enterprise", 10, D(2024, 1, 1), "C3", 1500.0, D(2026, 12, 31)),
        ("A2", "smb", 5, D(2024, 3, 1), "C5", 400.0, D(2026, 3, 30)),
        ("A3", "mid_market", 3, None, None, None, None),  # no contract yet
        ("A4", "mid_market", 8, D(2023, 1, 1), "C7", 800.0, D(2024, 12, 31)),
    ]


def test_staging_gives_the_current_version(warehouse):
    assert query(warehouse, "select account_id, segment, licenses, status from staging.stg_raw__accounts order by 1") == [
        ("A1", "enterprise", 10, "active"),
        ("A2", "smb", 5, "active"),
        ("A3", "mid_market", 3, "trial"),
        ("A4", "mid_market", 8, "churned"),
    ]
    assert query(warehouse, "select user_id, account_id from staging.stg_raw__users order by 1") == [
        ("U1", "A1"), ("U2", "A1"), ("U3", "A2"),
    ]


def test_history_keeps_every_version_as_days(warehouse):
    """Each version holds from the day of its load; the earliest is extended back to 1900-01-01
    (days before the first load read it); a version replaced the day it was loaded is left out."""
    rows = query(
        warehouse,
        """select account_id, valid_from, valid_to, recorded_from, is_current, segment, owner_email, licenses, status
           from marts.dim_accounts_history where account_id in ('A1', 'A2') order by 1, 2""",
    )
    assert rows == [
        ("A1", D(1900, 1, 1), D(2025, 1, 10), D(2024, 12, 1), False, "smb", "old@vendor.test", 5, "trial"),
        ("A1", D(2025, 1, 10), None, D(2025, 1, 10), True, "enterprise", "csm@vendor.test", 10, "active"),
        ("A2", D(1900, 1, 1), None, D(2024, 12, 1), True, "smb", None, 5, "active"),
    ]
    assert query(warehouse, "select count(*) from staging.stg_raw__accounts_history where account_id = 'A1'") == [(3,)]
    assert query(
        warehouse, "select user_id, account_id, valid_from, valid_to from marts.dim_users_history where user_id = 'U2' order by 3"
    ) == [("U2", "A2", D(1900, 1, 1), D(2025, 1, 10)), ("U2", "A1", D(2025, 1, 10), None)]
    columns = query(
        warehouse,
        "select column_name, data_type from information_schema.columns where table_schema = 'staging'"
        " and table_name = 'stg_raw__accounts_history' and column_name like 'valid%' order by 1",
    )
    assert columns == [("valid_from_at", "TIMESTAMP"), ("valid_to_at", "TIMESTAMP")]
    assert query(warehouse, "select min(valid_from_at) from staging.stg_raw__accounts_history") == [(T(2024, 12, 1, 6),)]


def test_overlapping_versions_fail_the_history_test(tmp_path):
    """Two versions of one account valid on the same days (a hand-edited raw table) fail the test."""
    warehouse = tmp_path / "warehouse.duckdb"
    overlapping = ("A2", "Beta", "enterprise", "", "starter", 5, "active", T(2024, 2, 1, 9), MORNING, None)
    write_raw(warehouse, RAW_ROWS)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into raw.accounts values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [*overlapping[:8], LOAD_ID, "x", "x", MORNING, None])
    result = run_dbt(warehouse, tmp_path, "build", "--select", "+dim_accounts_history")
    statuses = node_statuses(result)
    overlaps = [node for node in statuses if node.startswith("test.cs_pipeline.history_without_overlaps_dim_accounts_history")]
    assert [statuses[node] for node in overlaps] == ["fail"]


# --- the daily part: dbt build --select tag:daily --vars '{min_date: ..., max_date: ...}' ------


def activity(warehouse: Path) -> list[tuple]:
    return query(
        warehouse,
        "select activity_date, account_id, user_id, event, event_count"
        " from marts.fct_user_daily_activity order by all",
    )


def account_activity(warehouse: Path) -> list[tuple]:
    return query(
        warehouse,
        "select activity_date, account_id, active_users, logins, events, events_login, events_report_created"
        " from marts.fct_account_daily_activity order by all",
    )


def monthly_activity(warehouse: Path) -> list[tuple]:
    return query(
        warehouse, "select activity_month, account_id, user_id, active_days from marts.fct_user_monthly_activity order by all"
    )


@pytest.fixture(scope="module")
def daily_runs(built) -> dict[str, list[tuple]]:
    """Runs the daily models a few times on the built warehouse; the rows after each run
    (`name` for fct_user_daily_activity, `name/accounts` and `name/months` for the others)."""
    warehouse, work, _ = built
    snapshots: dict[str, list[tuple]] = {}

    def daily(name: str, min_date: str, max_date: str, *extra: str, in_environment: bool = False) -> None:
        if in_environment:  # as Dagster passes them (CS_PIPELINE_DBT_VARS, macros/run_var.sql)
            run_vars = {"min_date": min_date, "max_date": max_date, "product_events": ["login", "report.created"]}
            with pytest.MonkeyPatch.context() as env:
                env.setenv("CS_PIPELINE_DBT_VARS", json.dumps(run_vars))
                result = run_dbt(warehouse, work, "build", "--select", "tag:daily", *extra)
        else:
            result = run_dbt(warehouse, work, "build", "--select", "tag:daily", "--vars", daily_vars(min_date, max_date), *extra)
        assert result.success, node_statuses(result)
        assert set(node_statuses(result).values()) <= {"success", "pass"}
        snapshots[name] = activity(warehouse)
        snapshots[name + "/accounts"] = account_activity(warehouse)
        snapshots[name + "/months"] = monthly_activity(warehouse)

    daily("first", "2025-01-01", "2025-01-02")
    daily("again", "2025-01-01", "2025-01-02", in_environment=True)
    # --full-refresh is ignored by the daily model: it would drop the days outside the range.
    daily("next_day", "2025-01-03", "2025-01-03", "--full-refresh")
    # Ingestion reloads 2025-01-02 without E5; re-running that day replaces its rows.
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from raw.events where event_id = 'E5'")
    daily("reloaded", "2025-01-02", "2025-01-02")
    return snapshots


DAY_1_2 = [
    (D(2025, 1, 1), "A1", "U1", "login", 2),
    (D(2025, 1, 1), "A1", "U1", "report.created", 1),
    (D(2025, 1, 1), "A1", "U2", "login", 1),
    (D(2025, 1, 2), "A1", "U1", "login", 1),
    (D(2025, 1, 2), "A2", "U3", "workflow.run", 1),
]


def test_daily_activity_counts_only_the_range(daily_runs):
    assert daily_runs["first"] == DAY_1_2


def test_daily_activity_rerun_of_a_range_gives_identical_rows(daily_runs):
    assert daily_runs["again"] == daily_runs["first"]


def test_daily_activity_run_keeps_days_outside_its_range(daily_runs):
    assert daily_runs["next_day"] == [*DAY_1_2, (D(2025, 1, 3), "A1", "U1", "login", 1)]
    assert daily_runs["reloaded"] == [
        row for row in daily_runs["next_day"] if row != (D(2025, 1, 2), "A1", "U1", "login", 1)
    ]


def test_account_daily_activity_sums_the_users_rows_of_each_day(daily_runs):
    assert daily_runs["first/accounts"] == [
        # day, account, active users, logins, events, events_login, events_report_created
        (D(2025, 1, 1), "A1", 2, 3, 4, 3, 1),
        (D(2025, 1, 2), "A1", 1, 1, 1, 1, 0),
        (D(2025, 1, 2), "A2", 1, 0, 1, 0, 0),
    ]
    assert daily_runs["again/accounts"] == daily_runs["first/accounts"]
    assert daily_runs["reloaded/accounts"] == [
        (D(2025, 1, 1), "A1", 2, 3, 4, 3, 1),
        (D(2025, 1, 2), "A2", 1, 0, 1, 0, 0),
        (D(2025, 1, 3), "A1", 1, 1, 1, 1, 0),
    ]


def test_account_daily_activity_counts_are_bigint_not_hugeint(warehouse, daily_runs):
    """DuckDB sums BIGINTs into HUGEINT, which was 20x slower to read into polars at scale."""
    types = query(
        warehouse,
        "select column_name, data_type from information_schema.columns where table_name = 'fct_account_daily_activity'"
        " and column_name not in ('activity_date', 'account_id') order by column_name",
    )
    assert types == [(c, "BIGINT") for c in ("active_users", "events", "events_login", "events_report_created", "logins")]


def test_user_monthly_activity_keeps_one_bit_per_active_day(daily_runs):
    jan = D(2025, 1, 1)
    assert daily_runs["first/months"] == [(jan, "A1", "U1", 0b11), (jan, "A1", "U2", 0b1), (jan, "A2", "U3", 0b10)]
    assert daily_runs["again/months"] == daily_runs["first/months"]
    # Day 3 adds its bit and keeps days 1-2; re-running day 2 without U1's event clears only that bit.
    assert daily_runs["next_day/months"] == [(jan, "A1", "U1", 0b111), (jan, "A1", "U2", 0b1), (jan, "A2", "U3", 0b10)]
    assert daily_runs["reloaded/months"] == [(jan, "A1", "U1", 0b101), (jan, "A1", "U2", 0b1), (jan, "A2", "U3", 0b10)]


def test_events_view_passes_raw_events_through_and_pushes_the_day_filter_into_the_scan(warehouse, daily_runs):
    assert query(warehouse, "select table_type from information_schema.tables where table_name = 'stg_raw__events'") == [
        ("VIEW",)
    ]
    columns = "event_id, account_id, user_id, event, occurred_at, event_date"
    assert query(warehouse, f"select {columns} from staging.stg_raw__events order by all") == query(
        warehouse, f"select {columns} from raw.events order by all"
    )
    plan = "\n".join(
        row[1]
        for row in query(warehouse, "explain select * from staging.stg_raw__events where event_date = date '2025-01-02'")
    )
    scan = plan[plan.index("SEQ_SCAN") :]
    assert "Filters" in scan and "event_date" in scan.split("Filters", 1)[1], plan


def test_daily_models_need_their_vars(built, tmp_path):
    warehouse, _, _ = built
    result = run_dbt(warehouse, tmp_path, "build", "--select", "fct_user_daily_activity")
    assert not result.success
    messages = " ".join(str(r.message) for r in result.result.results)
    assert "var 'min_date' is missing" in messages
    assert "--vars '{min_date: YYYY-MM-DD, max_date: YYYY-MM-DD}'" in messages


# --- failures ----------------------------------------------------------------------------------


def test_conflicting_account_rows_fail_the_primary_key_test_and_stop_the_marts(tmp_path):
    """Two different rows with one account_id: staging cannot tell which is right, so it keeps
    both and the unique test fails; the marts built on accounts are skipped."""
    warehouse = tmp_path / "warehouse.duckdb"
    conflicting = ("A1", "Acme Inc", "enterprise", "other@vendor.test", "pro", 12, "active", T(2023, 12, 1, 9))
    write_raw(warehouse, {**RAW_ROWS, "accounts": [*ACCOUNTS, conflicting]})
    result = run_dbt(warehouse, tmp_path, "build", "--exclude", "tag:daily")

    assert not result.success
    statuses = node_statuses(result)
    unique_accounts = [node for node in statuses if node.startswith("test.cs_pipeline.unique_stg_raw__accounts_account_id")]
    assert [statuses[node] for node in unique_accounts] == ["fail"]
    assert statuses["model.cs_pipeline.dim_accounts"] == "skipped"
    assert statuses["model.cs_pipeline.stg_raw__contracts"] == "success"


def test_missing_warehouse_env_var_is_named(tmp_path):
    result = run_dbt(None, tmp_path, "parse")
    assert not result.success
    assert "CS_PIPELINE_WAREHOUSE" in str(result.exception)
