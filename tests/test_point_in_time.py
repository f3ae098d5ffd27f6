"""Point in time, end to end: a replayed day gives what was true on it (CONTRACT.md §3).

Real dlt loads (accounts and users kept as versions), real dbt builds and real Dagster range runs
on a temporary DuckDB file, with the shipped health model and rules, on a few hand-written
accounts:

- an account that churned in month 8 (its last term ended on 08-31, today's export says
  `churned`) fires its rules in months 1 to 7 and nothing after the churn;
- backfilling a day after a second load changed an account's segment, owner, licenses and
  users reads the first load's values; a day after the second load reads the new ones.
"""

import csv
import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.e2e

D = dt.date
ACCOUNT_COLUMNS = ["account_id", "name", "segment", "owner_email", "plan", "licenses", "status", "created_at"]
USER_COLUMNS = ["user_id", "account_id", "email", "role", "created_at", "activated_at", "deactivated_at"]


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_exports(data: Path, accounts: list[list[object]], contracts: list[list[object]], users: list[list[object]],
                  logins: dict[D, list[tuple[str, str]]]) -> None:
    """The contract's layout with no tickets, NPS answers or CSM touches; a login per (account, user) on its day."""
    data.mkdir(parents=True, exist_ok=True)
    _csv(data / "accounts.csv", ACCOUNT_COLUMNS, accounts)
    _csv(data / "contracts.csv", ["contract_id", "account_id", "start_date", "end_date", "arr"], contracts)
    _csv(data / "users.csv", USER_COLUMNS, users)
    _csv(data / "nps_responses.csv", ["response_id", "account_id", "user_id", "score", "comment", "submitted_at"], [])
    _csv(data / "activities.csv", ["activity_id", "account_id", "owner_email", "type", "occurred_at"], [])
    (data / "tickets.jsonl").write_text("")
    for day, who in logins.items():
        folder = data / "events" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [[f"e_{user}_{day}", account, user, "login", f"{day}T09:00:00Z"] for account, user in who]
        _csv(folder / "part-0.csv", ["event_id", "account_id", "user_id", "event", "occurred_at"], rows)


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("CS_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CS_PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("CS_PIPELINE_START_DATE", raising=False)  # the first partition is the data's first day
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield Pipeline(tmp_path, tmp_path / "warehouse.duckdb", None, instance)  # type: ignore[arg-type]


def run(pipeline: Pipeline, monkeypatch, today: D, first: D, last: D, snapshots: bool = True) -> None:
    """A range run of first..last as `cs-pipeline run` does it, on the morning of `today`
    (CS_PIPELINE_TODAY: also the day the run's snapshot load takes effect)."""
    from cs_pipeline.definitions import defs, resources

    monkeypatch.setenv("CS_PIPELINE_TODAY", today.isoformat())
    assets = list(defs.assets or [])
    selection = None if snapshots else [key for asset in assets if asset.partitions_def is not None for key in asset.keys]
    result = dg.materialize(
        assets, selection=selection, resources=resources(), instance=pipeline.instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()},
    )
    assert result.success


def test_an_account_that_churned_in_month_8_fires_in_months_1_to_7_and_never_after(pipeline, monkeypatch):
    """Both accounts last logged in on 01-01, so `no_login_20d` holds from 01-21 on. acc_gone's
    term ended 08-31 without a successor (today's export says `churned`): its rules fire until
    08-31 and never after; acc_stays, same usage, keeps firing."""
    write_exports(
        pipeline.root / "data",
        accounts=[
            ["acc_gone", "Gone", "smb", "ana@example.com", "pro", 5, "churned", "2024-08-01T00:00:00Z"],
            ["acc_stays", "Stays", "smb", "ana@example.com", "pro", 5, "active", "2024-08-01T00:00:00Z"],
        ],
        contracts=[["c_gone", "acc_gone", "2024-09-01", "2025-08-31", 5000], ["c_stays", "acc_stays", "2024-09-01", "2025-12-31", 5000]],
        users=[[f"u_{a}", a, f"u@{a}.example", "admin", "2024-09-01T00:00:00Z", "2024-09-02T00:00:00Z", ""] for a in ("acc_gone", "acc_stays")],
        logins={D(2025, 1, 1): [("acc_gone", "u_acc_gone"), ("acc_stays", "u_acc_stays")]},
    )
    run(pipeline, monkeypatch, D(2025, 10, 1), D(2025, 1, 1), D(2025, 9, 30))

    fired = dict(pipeline.sql(
        "SELECT account_id || '/' || rule_id, [min(partition_date), max(partition_date)] FROM analytics.alert_events "
        "WHERE rule_id IN ('no_login_20d', 'onboarding_checkin') GROUP BY ALL"
    ))
    assert fired == {
        "acc_gone/no_login_20d": [D(2025, 1, 21), D(2025, 8, 31)],
        "acc_gone/onboarding_checkin": [D(2025, 2, 28), D(2025, 2, 28)],  # day 180 of its first term
        "acc_stays/no_login_20d": [D(2025, 1, 21), D(2025, 9, 30)],
        "acc_stays/onboarding_checkin": [D(2025, 2, 28), D(2025, 2, 28)],
    }
    assert pipeline.sql("SELECT count(*) FROM analytics.alert_events WHERE account_id = 'acc_gone' AND partition_date > '2025-08-31'") == [(0,)]
    # Its status on each day comes from its terms (the export's `churned` counts from its load, 10-01).
    assert pipeline.sql(
        "SELECT status, min(partition_date), max(partition_date) FROM analytics.account_health "
        "WHERE account_id = 'acc_gone' GROUP BY ALL ORDER BY 2"
    ) == [("active", D(2025, 1, 1), D(2025, 8, 31)), ("churned", D(2025, 9, 1), D(2025, 9, 30))]


def test_backfilling_a_day_after_the_snapshot_changed_reads_the_old_attributes(pipeline, monkeypatch):
    """Load 1 (on 03-01): acc_a is smb, owned by ana, 10 licenses, 4 activated users. Load 2 (on
    03-15): enterprise, owned by ben, 20 licenses, and one of its users moved to acc_b. Re-running
    02-25 after load 2 reads load 1's values; 03-16 reads load 2's."""
    data = pipeline.root / "data"
    contracts = [["c_a", "acc_a", "2025-01-26", "2026-01-25", 9000], ["c_b", "acc_b", "2024-01-01", "2026-12-31", 1000]]
    users = [[f"u{i}", "acc_a", f"u{i}@a.example", "member", "2025-01-26T00:00:00Z", "2025-01-27T00:00:00Z", ""] for i in range(4)]
    users.append(["ub", "acc_b", "ub@b.example", "member", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", ""])
    account_b = ["acc_b", "B", "mid_market", "cy@example.com", "pro", 5, "active", "2024-01-01T00:00:00Z"]
    logins = {day: [("acc_a", "u0"), ("acc_b", "ub")] for day in (D(2025, 2, 20), D(2025, 3, 10), D(2025, 3, 16))}
    write_exports(data, [["acc_a", "A", "smb", "ana@example.com", "pro", 10, "active", "2025-01-26T00:00:00Z"], account_b],
                  contracts, users, logins)
    run(pipeline, monkeypatch, D(2025, 3, 1), D(2025, 2, 20), D(2025, 2, 28))

    users[3][1] = "acc_b"
    write_exports(data, [["acc_a", "A", "enterprise", "ben@example.com", "pro", 20, "active", "2025-01-26T00:00:00Z"], account_b],
                  contracts, users, logins)
    run(pipeline, monkeypatch, D(2025, 3, 15), D(2025, 3, 1), D(2025, 3, 16))

    # A backfill of 02-25 (its day-30 check-in) and a rerun of 03-16, after the second load.
    run(pipeline, monkeypatch, D(2025, 3, 20), D(2025, 2, 25), D(2025, 2, 25), snapshots=False)
    run(pipeline, monkeypatch, D(2025, 3, 20), D(2025, 3, 16), D(2025, 3, 16), snapshots=False)
    figures = """SELECT h.partition_date, h.segment, h.owner_email, u.licenses, u.assigned_users, u.license_activation_rate
                 FROM analytics.account_health h JOIN analytics.account_daily_usage u USING (account_id, partition_date)
                 WHERE account_id = ? AND partition_date IN ('2025-02-25', '2025-03-14', '2025-03-15', '2025-03-16') ORDER BY 1"""
    assert pipeline.sql(figures, ["acc_a"]) == [
        (D(2025, 2, 25), "smb", "ana@example.com", 10, 4, 0.4),
        (D(2025, 3, 14), "smb", "ana@example.com", 10, 4, 0.4),  # the day before the second load
        (D(2025, 3, 15), "enterprise", "ben@example.com", 20, 3, 0.15),
        (D(2025, 3, 16), "enterprise", "ben@example.com", 20, 3, 0.15),
    ]
    assert [row[4] for row in pipeline.sql(figures, ["acc_b"])] == [1, 1, 2, 2]
    # The check-in of 02-25 goes to the owner of that day, in that day's segment.
    assert pipeline.sql(
        "SELECT partition_date, owner_email, segment FROM analytics.alert_events WHERE rule_id = 'onboarding_checkin' AND account_id = 'acc_a'"
    ) == [(D(2025, 2, 25), "ana@example.com", "smb")]
    # The staging tables still give the current version to everything that wants "now".
    assert pipeline.sql("SELECT segment, owner_email, licenses FROM marts.dim_accounts WHERE account_id = 'acc_a'") == [
        ("enterprise", "ben@example.com", 20)
    ]
    assert pipeline.sql("SELECT count(*) FROM staging.stg_raw__users WHERE account_id = 'acc_a'") == [(3,)]
