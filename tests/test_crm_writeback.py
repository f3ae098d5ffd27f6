"""CRM write-back of account health: only what changed is written, per-account failures are reported
and retried, and the `crm_writeback` asset reports written / unchanged / failed."""

import datetime as dt
import json
import warnings

import dagster as dg
import duckdb
import pytest
import yaml

warnings.filterwarnings("ignore", category=dg.BetaWarning)  # as definitions.py: backfill_policy is beta

from cs_pipeline.assets.crm_writeback import CrmWritebackResource, crm_writeback
from cs_pipeline.resources.warehouse import WarehouseResource
from cs_pipeline.sinks.base import SinkError
from cs_pipeline.sinks.writeback import STATE_TABLE, WritebackConfig, run_writeback
from tests.support.crm_servers import HubSpotCrmServer, SalesforceCrmServer

DAY = dt.date(2026, 11, 20)
FAST = {"timeout_seconds": 2.0, "retry_max_seconds": 5.0, "backoff_seconds": 0.01}
SF_ACCOUNTS = [{"Id": f"001A{i}", "Name": f"Account {i}"} for i in (1, 2, 3)]

# (account_id, score, band, score_change_30d, utilization_rate)
HEALTH = [
    ("001A1", 3.456, "green", 0.25, 0.8),
    ("001A2", 1.2, "red", -1.1, 0.1),
    ("001A3", 2.5, "yellow", None, None),
]


def build_warehouse(path, rows=HEALTH, day=DAY, extra_days=True) -> WarehouseResource:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    con.execute(
        """CREATE TABLE IF NOT EXISTS analytics.account_health (partition_date DATE, account_id VARCHAR, name VARCHAR,
           score DOUBLE, band VARCHAR, score_change_30d DOUBLE, utilization_rate DOUBLE)"""
    )
    con.execute("DELETE FROM analytics.account_health WHERE partition_date = ?", [day])
    for account_id, score, band, change, utilization in rows:
        con.execute(
            "INSERT INTO analytics.account_health VALUES (?, ?, ?, ?, ?, ?, ?)",
            [day, account_id, f"name {account_id}", score, band, change, utilization],
        )
        if extra_days:  # an older day with other values, which the run must not use
            con.execute(
                "INSERT INTO analytics.account_health VALUES (?, ?, ?, 0.5, 'red', -3, 0.01)",
                [day - dt.timedelta(days=1), account_id, f"name {account_id}"],
            )
    con.close()
    return WarehouseResource(path=str(path))


def set_score(warehouse: WarehouseResource, account_id: str, score: float, day=DAY) -> None:
    with warehouse.connect() as con:
        con.execute("UPDATE analytics.account_health SET score = ? WHERE account_id = ? AND partition_date = ?", [score, account_id, day])


def salesforce_config(server, **overrides) -> WritebackConfig:
    return WritebackConfig.parse(
        {"crm": {"type": "salesforce", "instance_url": server.url, "token_env": "SF_TOKEN", **FAST}, **overrides}
    )


@pytest.fixture
def salesforce(monkeypatch):
    with SalesforceCrmServer(accounts=SF_ACCOUNTS, retry_after="0") as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        yield server


def test_salesforce_writes_the_latest_day_then_only_what_changed(tmp_path, salesforce):
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    config = salesforce_config(salesforce)
    report = run_writeback(warehouse.connect, config, DAY)
    assert len(report.written) == 3 and report.unchanged == 0 and report.failed == []
    acme = salesforce.record("Account", "001A1")
    assert acme["Health_Score__c"] == 3.46 and acme["Health_Band__c"] == "green"
    assert acme["Health_Score_Change_30d__c"] == 0.25 and acme["Usage_Flag__c"] is None
    assert salesforce.record("Account", "001A2")["Usage_Flag__c"] == "Low Usage"  # utilization 0.1 < 0.3
    low = salesforce.record("Account", "001A3")
    assert low["Health_Score_Change_30d__c"] is None and low["Usage_Flag__c"] is None  # no usage data: no flag

    patches = salesforce.calls("/sobjects/Account/", method="PATCH")
    again = run_writeback(warehouse.connect, config, DAY)
    assert len(again.written) == 0 and again.unchanged == 3
    assert salesforce.calls("/sobjects/Account/", method="PATCH") == patches  # nothing sent

    set_score(warehouse, "001A2", 1.9)
    third = run_writeback(warehouse.connect, config, DAY)
    assert [u.crm_id for u in third.written] == ["001A2"] and third.unchanged == 2
    assert salesforce.record("Account", "001A2")["Health_Score__c"] == 1.9
    set_score(warehouse, "001A2", 1.9004)  # below score_decimals: no change
    assert run_writeback(warehouse.connect, config, DAY).written == []


def test_salesforce_unknown_account_is_reported_and_retried_while_the_others_are_written(tmp_path, salesforce):
    warehouse = build_warehouse(tmp_path / "w.duckdb", rows=[*HEALTH, ("001GONE", 2.0, "yellow", 0.0, 0.5)])
    config = salesforce_config(salesforce)
    report = run_writeback(warehouse.connect, config, DAY)
    assert len(report.written) == 3
    assert [(u.crm_id, reason) for u, reason in report.failed] == [
        ("001GONE", "HTTP 404: NOT_FOUND: The requested resource does not exist")
    ]
    with warehouse.connect() as con:
        stored = {r[0] for r in con.execute(f"SELECT crm_id FROM {STATE_TABLE}").fetchall()}
    assert stored == {"001A1", "001A2", "001A3"}
    again = run_writeback(warehouse.connect, config, DAY)
    assert again.unchanged == 3 and [u.crm_id for u, _ in again.failed] == ["001GONE"]  # tried again


def test_salesforce_field_names_and_flags_are_configurable(tmp_path, monkeypatch):
    with SalesforceCrmServer(accounts=SF_ACCOUNTS, account_fields=("Score__c", "Signal__c"), retry_after="0") as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        warehouse = build_warehouse(tmp_path / "w.duckdb")
        config = WritebackConfig.parse(
            {
                "crm": {"type": "salesforce", "instance_url": server.url, "token_env": "SF_TOKEN",
                        "fields": {"score": "Score__c", "usage_flag": "Signal__c"}, **FAST},
                "usage_flags": [{"label": "Dormant", "column": "utilization_rate", "below": 0.05},
                                {"label": "Low Usage", "column": "utilization_rate", "below": 0.5}],
                "no_usage_flag": "OK",
                "score_decimals": 1,
            }
        )
        report = run_writeback(warehouse.connect, config, DAY)
        assert len(report.written) == 3
        assert server.record("Account", "001A1") == {"Id": "001A1", "Name": "Account 1", "IsDeleted": False,
                                                     "Score__c": 3.5, "Signal__c": "OK"}
        assert server.record("Account", "001A2")["Signal__c"] == "Low Usage"


def test_salesforce_refused_token_fails_the_run_naming_the_variable(tmp_path, salesforce, monkeypatch):
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    monkeypatch.setenv("SF_TOKEN", "00Dbad!token-that-must-not-leak")
    with pytest.raises(SinkError) as failure:
        run_writeback(warehouse.connect, salesforce_config(salesforce), DAY)
    assert "SF_TOKEN" in str(failure.value) and "token-that-must-not-leak" not in str(failure.value)
    assert len(salesforce.requests) == 1


def test_salesforce_rate_limit_is_retried(tmp_path, salesforce):
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    salesforce.fail_next(2, "rate_limited")
    report = run_writeback(warehouse.connect, salesforce_config(salesforce), DAY)
    assert len(report.written) == 3 and report.failed == []


# --- HubSpot -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_missing", ["multi_status", "reject"])
def test_hubspot_batch_update_with_crm_ids_from_another_table(tmp_path, monkeypatch, batch_missing):
    companies = [{"id": "101", "properties": {"name": "A"}}, {"id": "102", "properties": {"name": "B"}}]
    with HubSpotCrmServer(companies=companies, batch_missing=batch_missing, retry_after="0") as server:
        monkeypatch.setenv("HS_TOKEN", server.token)
        warehouse = build_warehouse(tmp_path / "w.duckdb", rows=[*HEALTH, ("acc_4", 3.0, "green", 0.1, 0.9)])
        with warehouse.connect() as con:
            con.execute("CREATE SCHEMA marts")
            con.execute("CREATE TABLE marts.dim_accounts (account_id VARCHAR, hubspot_company_id VARCHAR)")
            con.execute("INSERT INTO marts.dim_accounts VALUES ('001A1', '101'), ('001A2', '102'), ('001A3', '999'), ('acc_4', NULL)")
        config = WritebackConfig.parse(
            {
                "crm": {"type": "hubspot", "base_url": server.url, "token_env": "HS_TOKEN", "batch_size": 2, **FAST},
                "crm_id_column": "hubspot_company_id",
                "crm_id_table": "marts.dim_accounts",
            }
        )
        report = run_writeback(warehouse.connect, config, DAY)
        assert sorted(u.crm_id for u in report.written) == ["101", "102"]
        assert [(u.account_id, u.crm_id) for u, _ in report.failed] == [("001A3", "999")]
        assert "OBJECT_NOT_FOUND" in report.failed[0][1]
        assert report.no_crm_id == ["acc_4"]
        assert server.company("101")["properties"] == {
            "name": "A", "cs_health_score": "3.46", "cs_health_band": "green",
            "cs_health_score_change_30d": "0.25", "cs_usage_flag": "",
        }
        assert server.company("102")["properties"]["cs_usage_flag"] == "Low Usage"
        again = run_writeback(warehouse.connect, config, DAY)
        assert again.written == [] and again.unchanged == 2 and len(again.failed) == 1


# --- configuration and the asset -------------------------------------------------------------------


def test_config_reads_a_writeback_section_and_names_mistakes(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"writeback": {"crm": {"type": "hubspot", "token_env": "HS"}}}))
    config = WritebackConfig.load(path)
    assert config.crm.type == "hubspot" and config.crm_id_column == "account_id"
    assert config.usage_flags[0].label == "Low Usage" and config.usage_flags[0].below == 0.3
    path.write_text(yaml.safe_dump({"crm": {"type": "salesforce", "token_env": "T", "instance_url": "x", "fields": {"nps": "N__c"}}}))
    with pytest.raises(SinkError, match="unknown value.*nps"):
        WritebackConfig.load(path)


def materialize(warehouse: WarehouseResource, config_file: str, day=DAY, first=None) -> dg.MaterializeResult:
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    days = {"tags": {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: day.isoformat()}} if first else {"partition_key": day.isoformat()}
    result = dg.materialize(
        [crm_writeback],
        resources={"warehouse": warehouse, "crm_writeback_config": CrmWritebackResource(config_file=config_file)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **days,
    )
    return result


def metadata_of(result) -> dict:
    [event] = result.asset_materializations_for_node("crm_writeback")
    return {k: v.value for k, v in event.metadata.items()}


def test_asset_writes_changed_accounts_and_reports_failures(tmp_path, salesforce):
    warehouse = build_warehouse(tmp_path / "w.duckdb", rows=[*HEALTH, ("001GONE", 2.0, "yellow", 0.0, 0.5)])
    config_file = tmp_path / "writeback.yaml"
    config_file.write_text(
        yaml.safe_dump({"writeback": {"crm": {"type": "salesforce", "instance_url": salesforce.url, "token_env": "SF_TOKEN", **FAST}}})
    )
    first = materialize(warehouse, str(config_file))
    assert first.success
    meta = metadata_of(first)
    assert (meta["written"], meta["unchanged"], meta["failed"]) == (3, 0, 1)
    assert meta["failed_accounts"] == [
        {"account_id": "001GONE", "crm_id": "001GONE", "reason": "HTTP 404: NOT_FOUND: The requested resource does not exist"}
    ]
    assert "001GONE" in meta["failures"]
    second = metadata_of(materialize(warehouse, str(config_file)))
    assert (second["written"], second["unchanged"], second["failed"]) == (0, 3, 1)


def test_asset_without_configuration_writes_nothing_and_is_not_materialized(tmp_path):
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    for result in (materialize(warehouse, ""), materialize(warehouse, "", first=DAY - dt.timedelta(days=9))):
        assert result.success and result.asset_materializations_for_node("crm_writeback") == []


def test_a_range_run_writes_its_last_day_and_says_so_on_each_earlier_partition(tmp_path, salesforce):
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    config_file = tmp_path / "writeback.yaml"
    config_file.write_text(yaml.safe_dump({"crm": {"type": "salesforce", "instance_url": salesforce.url, "token_env": "SF_TOKEN", **FAST}}))
    result = materialize(warehouse, str(config_file), first=DAY - dt.timedelta(days=2))
    assert result.success
    events = {e.partition: {k: v.value for k, v in e.metadata.items()} for e in result.asset_materializations_for_node("crm_writeback")}
    assert sorted(events) == [(DAY - dt.timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert events[DAY.isoformat()]["written"] == 3 and events[DAY.isoformat()]["day"] == DAY.isoformat()
    for earlier in sorted(events)[:2]:
        assert events[earlier]["written"] == 0 and "last day" in events[earlier]["not_written"]


def test_asset_fails_naming_the_variable_when_the_token_is_refused(tmp_path, salesforce, monkeypatch):
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    monkeypatch.setenv("SF_TOKEN", "wrong-token-xyz")
    config_file = tmp_path / "writeback.yaml"
    config_file.write_text(json.dumps({"crm": {"type": "salesforce", "instance_url": salesforce.url, "token_env": "SF_TOKEN", **FAST}}))
    result = materialize(warehouse, str(config_file))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    text = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "SF_TOKEN" in text and "wrong-token-xyz" not in text
