"""The code location loads, and its map is what the docs say: one lineage from raw to alerts."""

import threading
import time

import dagster as dg
import pytest

from cs_pipeline.definitions import defs
from cs_pipeline.resources.warehouse import POOL

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


def test_every_job_runs_its_steps_in_the_run_process_and_cannot_be_asked_for_step_processes():
    jobs = {job.name: job for job in defs.get_repository_def().get_all_jobs()}
    assert {"__ASSET_JOB", "daily_pipeline", "dispatch_alerts", "weekly_digest"} <= set(jobs)  # the UI's Materialize too
    for job in jobs.values():
        assert job.executor_def is dg.in_process_executor, job.name
    # The launchpad cannot switch a run to a process per step: the executor's config has no such choice.
    with pytest.raises(dg.DagsterInvalidConfigError, match="multiprocess"):
        dg.validate_run_config(jobs["dispatch_alerts"], {"execution": {"config": {"multiprocess": {}}}})


def test_an_in_process_step_waits_for_the_duckdb_slot_another_run_holds():
    @dg.asset(pool=POOL)
    def writer() -> None:
        return None

    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        assert storage.claim_concurrency_slot(POOL, "other-run", "dbt_models").is_claimed
        results: list = []

        def run() -> None:
            try:
                results.append(dg.materialize([writer], instance=instance))
            except BaseException as error:  # shown by the assertion below instead of lost with the thread
                results.append(error)

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(p.run_id != "other-run" for p in storage.get_concurrency_info(POOL).pending_steps):
            time.sleep(0.1)
        time.sleep(1.0)  # time enough to run it, had it not waited
        waiting = [p for p in storage.get_concurrency_info(POOL).pending_steps if p.run_id != "other-run"]
        assert [(p.step_key, p.assigned_timestamp) for p in waiting] == [("writer", None)]
        assert instance.get_latest_materialization_event(dg.AssetKey("writer")) is None
        storage.free_concurrency_slots_for_run("other-run")
        worker.join(timeout=180)  # a loaded CI machine once took longer than 60 s to finish the run
        assert results, "the run did not finish within 180 s of the slot being freed"
        assert not isinstance(results[0], BaseException) and results[0].success, results[0]
        assert instance.get_latest_materialization_event(dg.AssetKey("writer")) is not None
        assert not storage.get_concurrency_info(POOL).claimed_slots  # given back when the step ended


def test_checks_jobs_schedule_and_sensors_are_registered():
    graph = defs.resolve_asset_graph()
    check_names = {key.name for key in graph.asset_check_keys}
    assert {"rejected_share_below_limit", "score_within_scale", "one_row_per_account_day", "one_row_per_rule_account_day"} <= check_names
    assert any(name.startswith("unique_") for name in check_names), "dbt tests become asset checks"
    assert {s.name for s in defs.sensors} == {"alert_dispatch_sensor", "run_failure_to_slack", "dead_run_reaper"}
    assert [s.name for s in defs.schedules] == ["daily_pipeline_schedule", "weekly_digest_schedule"]
    assert defs.resolve_job_def("daily_pipeline").partitions_def is not None
