"""The code location loads, and its map is what the docs say: one lineage from raw to alerts."""

import dagster as dg

from cs_pipeline.definitions import defs

RAW = ["accounts", "contracts", "users", "tickets", "nps_responses", "activities", "engagements", "events"]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_the_asset_graph_is_one_lineage_from_raw_tables_to_alerts():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {f"raw/{e}" for e in RAW} <= keys
    assert {"marts/dim_accounts", "marts/fct_contract_terms", "marts/fct_user_daily_activity"} <= keys
    assert {"account_daily_usage", "account_health", "alerts"} <= keys
    # Every raw table is upstream of the alerts: nothing hangs loose.
    upstream = graph.get(dg.AssetKey("alerts")).parent_keys
    seen, todo = set(), list(upstream)
    while todo:
        key = todo.pop()
        if key not in seen:
            seen.add(key)
            todo.extend(graph.get(key).parent_keys)
    assert {dg.AssetKey(["raw", e]) for e in RAW if e != "engagements"} <= seen


def test_time_based_assets_share_daily_partitions_and_run_ranges_in_one_run():
    graph = defs.resolve_asset_graph()
    for key in ("raw/events", "marts/fct_user_daily_activity", "account_daily_usage", "account_health", "alerts"):
        node = graph.get(dg.AssetKey.from_user_string(key))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key


def test_every_warehouse_step_is_in_the_duckdb_pool():
    for asset in defs.assets:
        assert asset.op.pool == "duckdb", asset.op.name
    job = defs.resolve_job_def("dispatch_alerts")
    assert {node.definition.pool for node in job.graph.node_dict.values()} == {"duckdb"}


def test_checks_jobs_schedule_and_sensors_are_registered():
    graph = defs.resolve_asset_graph()
    check_names = {key.name for key in graph.asset_check_keys}
    assert {"rejected_share_below_limit", "score_within_scale", "one_row_per_account_day", "one_row_per_rule_account_day"} <= check_names
    assert any(name.startswith("unique_") for name in check_names), "dbt tests become asset checks"
    assert {s.name for s in defs.sensors} == {"alert_dispatch_sensor", "run_failure_to_slack", "dead_run_reaper"}
    assert [s.name for s in defs.schedules] == ["daily_pipeline_schedule", "weekly_digest_schedule"]
    assert defs.resolve_job_def("daily_pipeline").partitions_def is not None
