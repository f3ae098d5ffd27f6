"""A small warehouse holding what the portfolio report and the weekly digest read, written
directly (the KPI marts are tested on real dbt builds in tests/test_kpi_marts.py).

Day DAY (a Sunday) and a week before; 12 live accounts in two segments and two CSMs, one of
which went red during the week; KPI rows for four months; a few alerts and their tasks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

DAY = dt.date(2025, 5, 4)  # a Sunday: the end of ISO week 2025-W18
WEEK = "2025-W18"
OWNERS = ("ana@example.com", "ben@example.com")


def health_rows() -> pl.DataFrame:
    rows = []
    for day in (DAY - dt.timedelta(days=7), DAY):
        for i in range(12):
            segment = "enterprise" if i % 2 == 0 else "smb"
            band = ["green", "yellow", "red"][i % 3]
            if i == 4:  # went red during the week
                band = "red" if day == DAY else "green"
            rows.append({
                "partition_date": day, "account_id": f"acc_{i:02d}", "name": f"Account {i:02d}", "segment": segment,
                "owner_email": OWNERS[i % 2 if i != 4 else 0], "status": "active", "plan": "pro",
                "deployment_rate": (i % 4) / 4 + 0.1, "utilization_rate": ((i * 7) % 10) / 10, "arr": 1000.0 * (i + 1),
                "band": band, "score": {"green": 3.2, "yellow": 2.0, "red": 1.0}[band], "has_live_term": True,
                "days_since_last_touch": 45 if i % 5 == 0 else 3, "days_to_renewal": 20 + i * 15,
                "contract_end_date": day + dt.timedelta(days=20 + i * 15),
            })
    return pl.DataFrame(rows)


def kpi_rows() -> tuple[pl.DataFrame, pl.DataFrame]:
    months = [dt.date(2025, m, 1) for m in (1, 2, 3, 4)]
    retention = pl.DataFrame({
        "period_month": months, "segment": ["all"] * 4, "owner_email": ["all"] * 4,
        "arr_up_for_renewal": [10000.0, 8000.0, 12000.0, 9000.0], "arr_retained": [9000.0, 8000.0, 10000.0, 8500.0],
        "arr_expansion": [1500.0, 500.0, 0.0, 2000.0], "arr_contraction": [500.0, 0.0, 1000.0, 500.0],
        "arr_churned": [500.0, 0.0, 1000.0, 0.0], "arr_new_logos": [3000.0, 0.0, 2000.0, 1000.0],
        "grr": [0.9, 1.0, 10 / 12, 8.5 / 9], "nrr": [1.05, 8.5 / 8, 10 / 12, 10.5 / 9],
        "renewal_rate": [0.8, 1.0, 0.75, 1.0], "logo_churn_rate": [0.2, 0.0, 0.25, 0.0],
    })
    nps = pl.DataFrame({
        "period_month": months, "segment": ["all"] * 4, "owner_email": ["all"] * 4, "responses": [10, 12, 8, 15],
        "nps": [20.0, 35.0, -5.0, 40.0], "response_rate": [0.1, 0.12, 0.08, 0.15],
    })
    return retention, nps


def outcomes() -> pl.DataFrame:
    return pl.DataFrame({
        "account_id": ["acc_00", "acc_01", "acc_02", "acc_03"],
        "end_date": [dt.date(2025, 3, 1), dt.date(2025, 3, 1), dt.date(2025, 4, 30), dt.date(2025, 2, 1)],
        "arr": [1000.0, 2000.0, 3000.0, 4000.0], "next_arr": [1500.0, None, 2500.0, 4000.0],
        "arr_change": [500.0, None, -500.0, 0.0], "outcome": ["expanded", "churned", "contracted", "renewed"],
        "outcome_date": [dt.date(2025, 3, 2), dt.date(2025, 3, 1), dt.date(2025, 5, 1), dt.date(2025, 2, 1)],
    })


def alerts_and_tasks() -> tuple[pl.DataFrame, pl.DataFrame]:
    alerts = pl.DataFrame({
        "alert_id": ["al_1", "al_2", "al_3"], "rule_id": ["no_login_20d", "health_drop", "renewal_at_risk"],
        "account_id": ["acc_00", "acc_01", "acc_04"], "segment": ["enterprise", "smb", "enterprise"],
        "owner_email": [OWNERS[0], OWNERS[1], OWNERS[0]],
        "episode_start": [dt.date(2025, 4, 1), dt.date(2025, 4, 10), dt.date(2025, 5, 2)],
        "partition_date": [dt.date(2025, 4, 1), dt.date(2025, 4, 10), dt.date(2025, 5, 2)],
    })
    tasks = pl.DataFrame({
        "task_id": ["task_1", "task_2", "task_3"], "alert_id": ["al_1", "al_2", "al_3"],
        "account_id": ["acc_00", "acc_01", "acc_04"], "owner_email": [OWNERS[0], OWNERS[1], OWNERS[0]],
        "title": ["t", "t", "t"], "steps": ["", "", ""],
        "due_date": [dt.date(2025, 4, 8), dt.date(2025, 4, 17), dt.date(2025, 5, 9)],
        "priority": ["high", "normal", "high"], "status": ["done", "open", "open"],
        "created_at": [dt.datetime(2025, 4, 1, 8), dt.datetime(2025, 4, 10, 8), dt.datetime(2025, 5, 2, 8)],
    })
    return alerts, tasks


def write_portfolio_warehouse(path: Path, backtest: bool = False) -> Path:
    retention, nps = kpi_rows()
    alerts, tasks = alerts_and_tasks()
    tables = {
        "analytics.account_health": health_rows(), "marts.kpi_retention_monthly": retention,
        "marts.kpi_nps_monthly": nps, "marts.fct_term_outcomes": outcomes(), "analytics.alert_events": alerts,
        "actions.tasks": tasks,
    }
    if backtest:
        tables["evaluation.backtest_auc"] = pl.DataFrame({"score": ["health", "days_since_last_login"], "auc": [0.81, 0.64]})
        tables["evaluation.backtest_lift"] = pl.DataFrame({"decile": [1, 2], "lift": [3.1, 1.8]})
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {name.split('.')[0]}")
            con.register("_frame", frame.to_arrow())
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _frame")
            con.unregister("_frame")
    return path
