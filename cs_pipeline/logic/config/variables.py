"""The variables: the columns of account_health, which is what rules and indicators may use."""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cs_pipeline.logic.config.health_model import HealthModel


# (name, type, description); types: text, date, bool, int, float. Order follows architecture.md.
_ACCOUNT_VARIABLES = [
    ("partition_date", "date", "the day D the row describes"),
    ("account_id", "text", "account id"),
    ("name", "text", "account name"),
    ("segment", "text", "enterprise, mid_market or smb"),
    ("status", "text", "trial, active or churned"),
    ("owner_email", "text", "email of the CSM who owns the account"),
    ("plan", "text", "plan name"),
]
SCORE_VARIABLES = [
    ("score", "float", "health score on D, 0-4"),
    ("band", "text", "red, yellow or green"),
    ("score_7d_ago", "float", "score 7 days before D"),
    ("score_30d_ago", "float", "score 30 days before D"),
    ("score_change_7d", "float", "score minus score_7d_ago"),
    ("score_change_30d", "float", "score minus score_30d_ago"),
]
_CONTEXT_VARIABLES = [
    ("has_live_term", "bool", "a contract term covers D"),
    ("first_term_start", "date", "start of the first contract term"),
    ("days_since_contract_start", "int", "D minus the start of the first term"),
    ("contract_end_date", "date", "end (renewal date) of the term covering D"),
    ("days_to_renewal", "int", "end of the term covering D minus D"),
    ("arr", "float", "annual recurring revenue of the term covering D"),
    ("days_since_last_touch", "int", "D minus the day of the latest CSM activity"),
    ("latest_nps", "int", "score of the latest NPS response by the end of D"),
    ("lowest_nps_today", "int", "lowest NPS score submitted on D"),
    ("nps_responses_today", "int", "NPS responses submitted on D"),
    ("open_tickets", "int", "tickets open or pending at the end of D"),
    ("open_high_priority_tickets", "int", "high or urgent tickets open or pending at the end of D"),
]


def event_column(event: str) -> str:
    """The daily-count column of a product event: 'report.created' -> 'events_report_created'."""
    return "events_" + event.replace(".", "_")


def _usage_variables(events: typing.Sequence[str], key_features: typing.Sequence[str]) -> list[tuple[str, str, str]]:
    features = ", ".join(key_features) or "none configured"
    return [
        ("active_users", "int", "distinct users with any event on D"),
        ("logins", "int", "login events on D"),
        ("events", "int", "all events on D"),
        *[(event_column(event), "int", f"'{event}' events on D") for event in events],
        ("active_users_7d", "int", "distinct users with any event in the 7 days to D"),
        ("active_users_30d", "int", "distinct users with any event in the 30 days to D"),
        ("logins_7d", "int", "login events in the 7 days to D"),
        ("logins_30d", "int", "login events in the 30 days to D"),
        ("events_7d", "int", "all events in the 7 days to D"),
        ("events_30d", "int", "all events in the 30 days to D"),
        *[(event_column(event) + "_30d", "int", f"'{event}' events in the 30 days to D") for event in events],
        ("events_prev_30d", "int", "all events in the 30 days before those 30 (days D-59 to D-30)"),
        ("activity_trend_30d", "float", "events_30d / events_prev_30d (below 1: declining); no value when events_prev_30d is 0"),
        ("key_features_used_30d", "int", f"key features ({features}) used in the 30 days to D"),
        ("all_key_features_used_30d", "bool", f"every key feature ({features}) used in the 30 days to D"),
        ("last_login_date", "date", "latest day with a login on or before D"),
        ("days_since_last_login", "int", "D minus last_login_date"),
        ("licenses", "int", "seats purchased"),
        ("assigned_users", "int", "users created and not deactivated by the end of D"),
        ("activated_users", "int", "assigned users who activated by the end of D"),
        ("license_activation_rate", "float", "activated_users / licenses"),
        ("deployment_rate", "float", "assigned_users / licenses"),
        ("utilization_rate", "float", "active_users_30d / activated_users"),
    ]


def _indicator_outputs(indicator_names: typing.Sequence[str]) -> list[tuple[str, str, str]]:
    rows = []
    for name in indicator_names:
        rows.append((f"points_{name}", "int", f"points (0-4) of indicator {name}"))
        rows.append((f"contribution_{name}", "float", f"share of the score from indicator {name}"))
    return rows


def _catalog(events, key_features, indicator_names) -> list[tuple[str, str, str]]:
    return [
        *_ACCOUNT_VARIABLES,
        *_usage_variables(events, key_features),
        *SCORE_VARIABLES,
        *_indicator_outputs(indicator_names),
        *_CONTEXT_VARIABLES,
    ]


def numeric_inputs(events, key_features) -> dict[str, str]:
    # What an indicator may score: usage and context figures, never the score's own outputs.
    rows = [*_usage_variables(events, key_features), *_CONTEXT_VARIABLES]
    return {name: description for name, kind, description in rows if kind in ("int", "float")}


def health_variables(model: HealthModel) -> dict[str, str]:
    """Every account_health column a rule may use -> a short description."""
    rows = _catalog(model.product.events, model.product.key_features, [i.name for i in model.indicators])
    return {name: description for name, _kind, description in rows}


def health_variable_types(model: HealthModel) -> dict[str, str]:
    """Every account_health column -> text, date, bool, int or float."""
    rows = _catalog(model.product.events, model.product.key_features, [i.name for i in model.indicators])
    return {name: kind for name, kind, _description in rows}


def indicator_variables(model: HealthModel) -> dict[str, str]:
    """The numeric usage and context columns an indicator may score."""
    return numeric_inputs(model.product.events, model.product.key_features)
