"""The `alerts` rows carry everything a message needs, as it was when the rule fired."""

import datetime as dt
import json

import polars as pl

from cs_pipeline import settings
from cs_pipeline.actions.notify import alert_message
from cs_pipeline.logic.alerting import OPEN_SCHEMA, alert_rows
from cs_pipeline.logic.config import RuleSet, health_variables, load_config

DAY = dt.date(2025, 4, 30)


def health(day: dt.date, login: float, utilization: float, **extra) -> dict:
    return {
        "account_id": "acc_1", "partition_date": day, "name": "Northwind", "segment": "smb", "status": "active",
        "has_live_term": True, "owner_email": "ana@example.com", "days_since_last_login": 27,
        "last_login_date": dt.date(2025, 4, 3), "score": 1.15, "band": "red", "score_7d_ago": 1.6, "score_30d_ago": 2.85,
        "activated_users": 14, "licenses": 40, "arr": 30000.0, "contract_end_date": dt.date(2026, 5, 31),
        "contribution_login_recency": login, "contribution_utilization": utilization, **extra,
    }


def test_an_alert_row_holds_the_rule_the_figures_the_trend_and_what_moved():
    model, rules = load_config(settings.SHIPPED_CONFIG_DIR)
    rule = rules.by_id["no_login_20d"]
    only = RuleSet.model_construct(rules=[rule])  # the one rule this row needs (validated as loaded)
    today = [health(DAY, login=0.1, utilization=0.5)]
    month_before = [health(DAY - dt.timedelta(days=30), login=0.6, utilization=0.5)]
    rows = alert_rows(pl.DataFrame(today), only, health_variables(model), pl.DataFrame(schema=OPEN_SCHEMA), DAY, 2,
                      pl.DataFrame(month_before))
    [row] = rows.to_dicts()
    assert (row["rule_description"], row["rule_condition"], row["task_on_resolve"]) == (
        rule.description, rule.condition, rule.task.on_resolve)
    assert (row["arr"], row["renewal_date"], row["score"], row["band"]) == (30000.0, dt.date(2026, 5, 31), 1.15, "red")
    assert (row["score_7d_ago"], row["score_30d_ago"]) == (1.6, 2.85)
    assert json.loads(row["top_movers"]) == [["login_recency", -0.5]]  # utilization did not move

    msg = alert_message(row)  # dispatch builds the message from the row alone
    assert msg.condition == rule.condition and msg.top_movers == [("login_recency", -0.5)]
    assert msg.arr == 30000.0 and msg.renewal_date == dt.date(2026, 5, 31) and msg.rule_description == rule.description
