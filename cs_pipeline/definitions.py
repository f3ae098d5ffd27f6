"""The map of cs_pipeline: every asset, check, job, sensor, schedule and resource.

    raw (dlt)         raw/accounts ... raw/engagements (one multi-asset), raw/events (daily)
    → dbt             staging.stg_raw__*, marts.fct_contract_terms, marts.dim_accounts,
                      marts.dim_accounts_history, dim_users_history (what was true on each day),
                      marts.fct_user_daily_activity → fct_account_daily_activity,
                      fct_user_monthly_activity (daily)
    → polars (daily)  account_daily_usage → account_health → alerts
                                            account_health → crm_writeback (CRM account fields)
    → actions         alerts → alert_dispatch_sensor → dispatch_alerts (tasks, Slack, task sinks), all
                      in the actions store (cs_pipeline/actions/, SQLite or PostgreSQL) with a read copy
                      in the warehouse (actions.*); `cs-pipeline slack-listen` applies the buttons' clicks
    → evaluation      alerts, marts.fct_term_outcomes → health_backtest (score and rules against churn;
                      unpartitioned, so every daily_pipeline run recomputes it after its alerts)
    → portfolio       marts.kpi_retention_monthly, marts.kpi_nps_monthly (dbt);
      (daily)         account_health → portfolio_map, renewal_pipeline; alerts → alert_follow_through
                      → portfolio_report (reporting: one self-contained HTML file a day)
    → weekly digest   weekly_digest_schedule → weekly_digest (CS leads in Slack, once per week and audience)

    daily_schedule runs daily_pipeline for yesterday (and any earlier day not evaluated yet, in the
    same range run); weekly_digest_schedule runs weekly_digest on Mondays; run_failure_to_slack
    tells on-call; dead_run_reaper fails runs whose process died and frees their duckdb slot.
    Every job runs its steps in its run's process (in_process_executor), however it was launched.
    Where each input entity comes from: sources.yaml (CS_PIPELINE_SOURCES), files by default.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

# Backfill policies and partition-mapping options we rely on are marked beta; say so once, here.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from cs_pipeline import settings
from cs_pipeline.actions.resource import ActionsResource
from cs_pipeline.assets.alerts import alerts
from cs_pipeline.assets.backtest import health_backtest
from cs_pipeline.assets.crm_writeback import CrmWritebackResource, crm_writeback
from cs_pipeline.assets.dbt import dbt_daily_models, dbt_models, dbt_resource
from cs_pipeline.assets.events import raw_events
from cs_pipeline.assets.health import account_health
from cs_pipeline.assets.ingest import raw_snapshots
from cs_pipeline.assets.portfolio import alert_follow_through, portfolio_map, portfolio_report, renewal_pipeline
from cs_pipeline.assets.usage import account_daily_usage
from cs_pipeline.jobs.dispatch import dispatch_alerts
from cs_pipeline.jobs.weekly_digest import weekly_digest, weekly_digest_schedule
from cs_pipeline.resources.config import PipelineConfig, check_config_files
from cs_pipeline.resources.slack import SlackResource
from cs_pipeline.resources.source import SourcesResource
from cs_pipeline.resources.warehouse import WarehouseResource
from cs_pipeline.schedules import daily_pipeline, daily_schedule
from cs_pipeline.sensors.alerts import alert_dispatch_sensor
from cs_pipeline.sensors.dead_runs import dead_run_reaper
from cs_pipeline.sensors.run_failures import run_failure_to_slack
from cs_pipeline.sinks.config import TaskSinksResource


def slack_resource() -> SlackResource:
    """Slack when SLACK_BOT_TOKEN is set (read by Dagster, never by this code), else the outbox."""
    token = dg.EnvVar("SLACK_BOT_TOKEN") if os.environ.get("SLACK_BOT_TOKEN") else None
    return SlackResource(
        bot_token=token,
        api_url=os.environ.get("SLACK_API_URL") or "https://slack.com/api/",
        outbox_dir=str(settings.outbox_dir()),
        digest_severities=list(settings.digest_severities()),
        max_alerts_per_csm_per_day=settings.max_alerts_per_csm_per_day(),
    )


def resources() -> dict[str, object]:
    settings.crm_record_url()  # read by the dispatch job: an invalid value stops loading here, naming it
    # Health model, rules and task sinks: a broken file stops loading here with its one line,
    # before a run does any work (an unknown rule id in the sinks file used to fail after Slack).
    check_config_files(settings.config_dir(), settings.task_sinks_file())
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse_path())),
        "source": SourcesResource(data_dir=str(settings.data_dir()), sources_file=settings.sources_file()),
        "cs_config": PipelineConfig(config_dir=str(settings.config_dir()), live_window_days=settings.live_window_days()),
        "dbt": dbt_resource(),
        "slack": slack_resource(),
        "crm_writeback_config": CrmWritebackResource(config_file=settings.writeback_file()),
        "task_sinks": TaskSinksResource(config_file=settings.task_sinks_file()),
        "actions": actions_resource(),
    }


def actions_resource() -> ActionsResource:
    """The actions store: CS_PIPELINE_ACTIONS_URL (read by Dagster: it may hold a password), else SQLite beside the warehouse."""
    url = dg.EnvVar("CS_PIPELINE_ACTIONS_URL") if os.environ.get("CS_PIPELINE_ACTIONS_URL") else settings.actions_url()
    return ActionsResource(url=url, settle_seconds=settings.dispatch_settle_seconds())


defs = dg.Definitions(
    assets=[
        raw_snapshots, raw_events, dbt_models, dbt_daily_models, account_daily_usage, account_health, alerts, crm_writeback,
        health_backtest, portfolio_map, renewal_pipeline, alert_follow_through, portfolio_report,
    ],
    jobs=[daily_pipeline, dispatch_alerts, weekly_digest],
    schedules=[daily_schedule, weekly_digest_schedule],
    sensors=[alert_dispatch_sensor, run_failure_to_slack, dead_run_reaper],
    resources=resources(),
    # One process per run: the duckdb pool runs the steps one at a time anyway, and Dagster's default
    # (a process per step) spent 12-17 s starting each step on two cores. Asset jobs and the implicit
    # asset job (the UI's "Materialize") take it from here too; nothing can ask for a step process.
    executor=dg.in_process_executor,
)
