"""Ingestion through Dagster: each day is replaced whole or not at all, re-runs never duplicate,
and an unchanged snapshot export is not loaded again."""

import csv
import datetime as dt
import os

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from cs_pipeline.assets.events import has_distinct_keys, raw_events
from cs_pipeline.assets.ingest import raw_snapshots
from cs_pipeline.resources.source import SourcesResource
from cs_pipeline.resources.warehouse import WarehouseResource
from tests.support import planted

FIRST, LAST = dt.date(2025, 3, 5), dt.date(2025, 3, 7)


def resources(tmp_path) -> dict:
    return {"warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")), "source": SourcesResource(data_dir=str(tmp_path / "data"))}


def load(tmp_path, instance, first: dt.date = FIRST, last: dt.date = LAST) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_events],
        resources=resources(tmp_path),
        tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()},
        instance=instance,
        raise_on_error=False,
    )


def sql(tmp_path, query: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def events_by_day(tmp_path) -> dict[str, int]:
    return dict(sql(tmp_path, "SELECT event_date::VARCHAR, count(*) FROM raw.events GROUP BY 1 ORDER BY 1"))


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


# --- events ------------------------------------------------------------------------------------


def halve(day: str, tmp_path) -> int:
    """Keep the first half of a day's parquet events; returns how many are left."""
    path = tmp_path / "data" / "events" / f"date={day}" / "part-0.parquet"
    rows = pl.read_parquet(path)
    rows.head(rows.height // 2).write_parquet(path)
    return rows.height // 2


def test_a_failed_range_stops_at_the_failing_day_and_never_leaves_half_a_day(tmp_path, instance):
    planted.write(tmp_path / "data")
    assert load(tmp_path, instance).success
    before = events_by_day(tmp_path)
    assert list(before) == ["2025-03-05", "2025-03-06", "2025-03-07"]

    # The same range again gives the same rows: days are replaced, never appended.
    assert load(tmp_path, instance).success
    assert events_by_day(tmp_path) == before

    # The exports of the first and last day change, and one file in the middle becomes unreadable:
    # the run fails naming the file...
    first_day, last_day = halve("2025-03-05", tmp_path), halve("2025-03-07", tmp_path)
    broken = tmp_path / "data" / "events" / "date=2025-03-06" / "part-0.parquet"
    good = broken.read_bytes()
    broken.write_bytes(b"not parquet")
    result = load(tmp_path, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "date=2025-03-06/part-0.parquet" in failure.step_failure_data.error.message
    # ...the day before it is replaced, the failing day and those after it are as they were: no
    # half-written day, no record of a load.
    assert events_by_day(tmp_path) == {**before, "2025-03-05": first_day}
    assert sql(tmp_path, "SELECT count(*) FROM raw.loads WHERE entity = 'events'") == [(2,)]

    # Re-running the range once the file is mended replaces every day.
    broken.write_bytes(good)
    assert load(tmp_path, instance).success
    assert events_by_day(tmp_path) == {**before, "2025-03-05": first_day, "2025-03-07": last_day}
    assert sql(tmp_path, "SELECT count(*) FROM raw.loads WHERE entity = 'events'") == [(3,)]


def test_each_day_is_written_once_with_one_row_per_event_id_and_the_load_recorded(tmp_path, instance):
    planted.write(tmp_path / "data")
    first, last = dt.date(2025, 3, 2), dt.date(2025, 3, 4)  # parquet, gzipped JSON lines, CSV
    result = load(tmp_path, instance, first, last)
    assert result.success

    # 2025-03-02 holds a re-delivered login (kept once) and an event outside its day (rejected).
    on_day = sql(tmp_path, "SELECT count(*), count(DISTINCT event_id) FROM raw.events WHERE event_date = '2025-03-02'")[0]
    assert on_day[0] == on_day[1] > 0
    assert sql(tmp_path, "SELECT record_key FROM raw.rejected_rows WHERE entity = 'events'") == [("evt_outside",)]
    # Only raw.events is written: no staging copy of the events is left behind.
    tables = {t for (t,) in sql(tmp_path, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'")}
    assert "events" in tables and "events_incoming" not in tables

    materialization = result.asset_materializations_for_node("raw__events")[0]
    loaded = materialization.metadata["dagster/row_count"].value
    assert materialization.metadata["duplicates_dropped"].value == 1
    assert loaded == sql(tmp_path, "SELECT count(*) FROM raw.events")[0][0]
    assert sql(
        tmp_path,
        "SELECT run_id, partition_start, partition_end, rows_read, rows_loaded, rows_rejected, duplicates_dropped, status FROM raw.loads",
    ) == [(result.run_id, first, last, loaded + 2, loaded, 1, 1, "loaded")]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["unique_event_id_per_day"].passed
    assert checks["unique_event_id_per_day"].metadata["rows_checked"].value == loaded
    assert checks["rejected_share_below_limit"].passed


def test_the_uniqueness_check_finds_a_repeated_id():
    assert has_distinct_keys(pl.Series(["e1", "e2", "e3"]))
    assert not has_distinct_keys(pl.Series(["e1", "e2", "e1"]))
    assert has_distinct_keys(pl.Series([], dtype=pl.String))


# --- snapshots ---------------------------------------------------------------------------------


def load_snapshots(tmp_path, instance, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_snapshots],
        resources=resources(tmp_path),
        instance=instance,
        run_config={"ops": {"raw_snapshots": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def load_kinds(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Per entity, "loaded" or "skipped", from the materialization's metadata."""
    kinds = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        kind = materialization.metadata["load"].value
        kinds[materialization.asset_key.path[-1]] = "skipped" if kind.startswith("unchanged, skipped") else kind
    return kinds


def rewrite_csv(path, change) -> None:
    """Rewrite a CSV export with `change` applied to each row (a dict), as a new export would be."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [changed for row in rows if (changed := change(row)) is not None]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


ALL_LOADED = dict.fromkeys(("accounts", "contracts", "users", "tickets", "nps_responses", "activities", "engagements"), "loaded")


def test_an_unchanged_export_is_skipped_and_a_changed_one_reloaded(tmp_path, instance):
    data = planted.write(tmp_path / "data")
    first = load_snapshots(tmp_path, instance)
    assert first.success and load_kinds(first) == ALL_LOADED
    tables = {e: sql(tmp_path, f"SELECT * FROM raw.{e} ORDER BY ALL") for e in ALL_LOADED}
    checks = {(c.asset_key.path[-1], c.passed, c.metadata["rows_rejected"].value) for c in first.get_asset_check_evaluations()}
    assert ("accounts", False, 1) in checks  # acc_bad's segment: the rejected-rows check fails

    # Nothing changed: every export is skipped; tables, rejected rows and checks stay as they were.
    again = load_snapshots(tmp_path, instance)
    assert again.success and load_kinds(again) == dict.fromkeys(ALL_LOADED, "skipped")
    assert {e: sql(tmp_path, f"SELECT * FROM raw.{e} ORDER BY ALL") for e in ALL_LOADED} == tables
    assert {(c.asset_key.path[-1], c.passed, c.metadata["rows_rejected"].value) for c in again.get_asset_check_evaluations()} == checks
    skipped = again.asset_materializations_for_node("raw_snapshots")[0].metadata
    assert skipped["load"].value.startswith(f"unchanged, skipped (loaded in run {first.run_id} at ")
    assert sql(tmp_path, "SELECT count(*) FROM raw.rejected_rows WHERE record_key = 'acc_bad'") == [(1,)]

    # A new users export is reloaded, alone.
    rewrite_csv(data / "users.csv", lambda row: {**row, "email": row["email"].upper()})
    changed = load_snapshots(tmp_path, instance)
    assert load_kinds(changed) == {**dict.fromkeys(ALL_LOADED, "skipped"), "users": "loaded"}
    # raw.users keeps every version (scd2): the new ones are current, the old ones retired.
    assert sql(tmp_path, "SELECT count(*) FROM raw.users WHERE email <> upper(email) AND _dlt_valid_to IS NULL") == [(0,)]
    retired = sql(tmp_path, "SELECT count(*) FROM raw.users WHERE _dlt_valid_to IS NOT NULL")[0][0]
    assert retired == sql(tmp_path, "SELECT count(*) FROM raw.users WHERE _dlt_valid_to IS NULL")[0][0] > 0

    # Contracts are checked against accounts: a new accounts export reloads both, and the
    # contracts of an account that left the export are now rejected.
    rewrite_csv(data / "accounts.csv", lambda row: None if row["account_id"] == "acc_healthy" else row)
    changed = load_snapshots(tmp_path, instance)
    assert load_kinds(changed) == {**dict.fromkeys(ALL_LOADED, "skipped"), "accounts": "loaded", "contracts": "loaded"}
    assert sql(tmp_path, "SELECT count(*) FROM raw.contracts WHERE account_id = 'acc_healthy'") == [(0,)]
    assert sql(tmp_path, "SELECT count(*) FROM raw.rejected_rows WHERE entity = 'contracts' AND reason LIKE '%acc_healthy%'")[0][0] > 0

    # Forced from the launchpad's config: everything is read and loaded again.
    forced = load_snapshots(tmp_path, instance, reload_unchanged_exports=True)
    assert forced.success and load_kinds(forced) == ALL_LOADED


def test_a_failed_or_tampered_load_is_never_taken_as_done(tmp_path, instance, monkeypatch):
    data = planted.write(tmp_path / "data")
    assert load_snapshots(tmp_path, instance).success
    users = data / "users.csv"
    original_text, original_stat = users.read_text(), users.stat()

    # A new users export fails after dlt replaced raw.users: the warehouse's rejected-rows table
    # is broken, so the load cannot be completed.
    rewrite_csv(users, lambda row: {**row, "email": row["email"].upper()})
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("ALTER TABLE raw.rejected_rows RENAME TO rejected_rows_kept")
        con.execute("CREATE TABLE raw.rejected_rows (broken INTEGER)")
    assert not load_snapshots(tmp_path, instance).success
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("DROP TABLE raw.rejected_rows")
        con.execute("ALTER TABLE raw.rejected_rows_kept RENAME TO rejected_rows")
    assert sql(tmp_path, "SELECT status FROM raw.loads WHERE entity = 'users' ORDER BY started_at DESC LIMIT 1") == [("loading",)]

    # The old export comes back exactly (same size and modification time): its fingerprint is
    # that of the first load, but raw.users holds the failed load's rows, so it is reloaded.
    users.write_text(original_text)
    os.utime(users, ns=(original_stat.st_atime_ns, original_stat.st_mtime_ns))
    recovered = load_snapshots(tmp_path, instance)
    assert load_kinds(recovered)["users"] == "loaded"
    assert sql(tmp_path, "SELECT count(*) FROM raw.users WHERE email <> lower(email) AND _dlt_valid_to IS NULL") == [(0,)]

    # A table changed behind the pipeline's back (rows deleted by hand) is reloaded too.
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("DELETE FROM raw.tickets WHERE ticket_id LIKE 't_april%'")
    kinds = load_kinds(load_snapshots(tmp_path, instance))
    assert kinds["tickets"] == "loaded" and kinds["users"] == "skipped"

    # The environment variable forces a reload too (e.g. for `cs-pipeline run`).
    monkeypatch.setenv("CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS", "true")
    assert load_kinds(load_snapshots(tmp_path, instance)) == ALL_LOADED


def test_only_file_exports_have_a_fingerprint(tmp_path):
    planted.write(tmp_path / "data")
    (tmp_path / "sources.yaml").write_text(
        "connectors:\n  product_db:\n    type: database\n    url_env: PRODUCT_DB_URL\n"
        "    users: {table: app_users}\nentities:\n  users: product_db\n"
    )
    source = SourcesResource(data_dir=str(tmp_path / "data"), sources_file=str(tmp_path / "sources.yaml"))
    accounts = tmp_path / "data" / "accounts.csv"
    assert source.fingerprint("accounts") == {
        "path": str(accounts), "size": accounts.stat().st_size, "mtime_ns": accounts.stat().st_mtime_ns,
    }
    assert source.fingerprint("engagements") == {"path": str(tmp_path / "data" / "engagements.csv"), "absent": True}
    assert source.fingerprint("users") is None  # a database: read on every run


def test_accounts_keep_each_version_valid_from_the_day_of_its_load(tmp_path, instance, monkeypatch):
    """Each load is effective on CS_PIPELINE_TODAY's day: a changed account gets a new version from
    then, a removed one is retired, and an export that only reorders its columns or moves to
    another file adds no version."""
    data = planted.write(tmp_path / "data")
    utc = dt.timezone.utc
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-03-01")
    assert load_snapshots(tmp_path, instance).success
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-03-15")
    rewrite_csv(data / "accounts.csv", lambda row: None if row["account_id"] == "acc_detractor" else (
        {**row, "segment": "enterprise", "owner_email": "ben@example.com"} if row["account_id"] == "acc_healthy" else row))
    assert load_snapshots(tmp_path, instance).success
    versions = sql(tmp_path, "SELECT segment, owner_email, _dlt_valid_from, _dlt_valid_to FROM raw.accounts WHERE account_id = 'acc_healthy' ORDER BY 3")
    assert versions == [
        ("smb", "ana@example.com", dt.datetime(2025, 3, 1, tzinfo=utc), dt.datetime(2025, 3, 15, tzinfo=utc)),
        ("enterprise", "ben@example.com", dt.datetime(2025, 3, 15, tzinfo=utc), None),
    ]
    assert sql(tmp_path, "SELECT _dlt_valid_to FROM raw.accounts WHERE account_id = 'acc_detractor'") == [(dt.datetime(2025, 3, 15, tzinfo=utc),)]
    assert sql(tmp_path, "SELECT count(*) FROM raw.accounts WHERE _dlt_valid_from = TIMESTAMPTZ '2025-03-15 00:00:00+00'") == [(1,)]

    # The same rows, columns in another order: a new file fingerprint, no new version.
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-03-20")
    with (data / "accounts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (data / "accounts.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(reversed(list(rows[0]))))
        writer.writeheader()
        writer.writerows(rows)
    before = sql(tmp_path, "SELECT * FROM raw.accounts ORDER BY ALL")
    assert load_kinds(load_snapshots(tmp_path, instance))["accounts"] == "loaded"
    assert sql(tmp_path, "SELECT * FROM raw.accounts ORDER BY ALL") == before


def test_a_raw_table_of_an_earlier_release_starts_its_history_at_the_next_load(tmp_path, instance):
    """Before history, dlt replaced raw.accounts whole (and its dlt schema said so); the next load
    replaces that table by the versioned one."""
    import dlt

    from cs_pipeline.assets.ingest import _column_hints, _dlt_pipeline
    from cs_pipeline.logic.contract import validate

    planted.write(tmp_path / "data")
    source, warehouse = resources(tmp_path)["source"], WarehouseResource(path=str(tmp_path / "w.duckdb"))
    accounts = validate("accounts", source.snapshot("accounts").frame).valid
    _dlt_pipeline(warehouse, "cs_pipeline_snapshots").run(
        [dlt.resource(accounts.to_arrow(), name="accounts", write_disposition="replace", columns=_column_hints("accounts"))]
    )
    assert "_dlt_valid_to" not in [r[0] for r in sql(tmp_path, "DESCRIBE raw.accounts")]

    result = load_snapshots(tmp_path, instance)
    assert result.success and load_kinds(result)["accounts"] == "loaded"
    assert sql(tmp_path, "SELECT count(*), count(_dlt_valid_from) FROM raw.accounts WHERE _dlt_valid_to IS NULL") == [(accounts.height, accounts.height)]
    assert sql(tmp_path, "SELECT count(*) FROM raw.accounts") == [(accounts.height,)]
    assert load_kinds(load_snapshots(tmp_path, instance))["accounts"] == "skipped"
