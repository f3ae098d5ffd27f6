"""Health model and rules files: the shipped ones, and one-line errors that name file, line and field."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import polars as pl
import pytest

from cs_pipeline.logic.config import (
    ConfigError,
    event_column,
    health_model_from_data,
    health_variable_types,
    health_variables,
    indicator_variables,
    load_config,
    load_health_model,
    load_rules,
    placeholders,
    render,
    rules_from_data,
)
from cs_pipeline.settings import SHIPPED_CONFIG_DIR

MODEL_YAML = """\
bands: {red: 1.5, yellow: 2.5}
product:
  events: [login, report.created, workflow.run]
  key_features: [report.created]
indicators:
  - name: utilization
    variable: utilization_rate
    weight: 0.6
    direction: higher_is_better
    thresholds: [0.2, 0.4, 0.6, 0.8]
  - name: login_recency
    variable: days_since_last_login
    weight: 0.4
    direction: lower_is_better
    thresholds: [14, 7, 3, 1]
"""

RULE_YAML = """\
  - id: {id}
    kind: risk
    description: A test rule.
    condition: {condition}
    severity: warning
    renotify_days: 7
    message: "Score {{score}} at {{name}}"
    task:
      title: "Look at {{name}}"
      steps: [Call them]
      due_in_days: 3
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def model(tmp_path):
    return load_health_model(write(tmp_path, "health_model.yaml", MODEL_YAML))


def rules_text(*rules: tuple[str, str]) -> str:
    return "rules:\n" + "".join(RULE_YAML.format(id=rule_id, condition=condition) for rule_id, condition in rules)


def load_error(path: Path, model=None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        if model is None:
            load_health_model(path)
        else:
            load_rules(path, model)
    assert "\n" not in str(caught.value)
    return caught.value


# -- the shipped configuration

CONTRACT_RULES = {
    "no_login_20d": "status == 'active' and days_since_last_login >= 20",
    "low_health_day_90": "days_since_contract_start between 90 and 96 and score < 1.5",
    "health_drop": "score_change_30d <= -1.0",
    "renewal_at_risk": "days_to_renewal between 90 and 180 and band == 'red'",
    "upsell_ready": "license_activation_rate >= 0.9 and all_key_features_used_30d",
    "nps_detractor": "lowest_nps_today <= 6",
    "ticket_surge": "open_high_priority_tickets >= 3",
    "onboarding_checkin": "days_since_contract_start in (30, 90, 180)",
}


def test_shipped_config_loads_with_the_contract_rules():
    model, rules = load_config(SHIPPED_CONFIG_DIR)
    assert {rule.id: rule.condition for rule in rules.rules} == CONTRACT_RULES
    assert model.product.events == [
        "login",
        "report.created",
        "dashboard.viewed",
        "workflow.run",
        "record.updated",
        "integration.synced",
    ]
    assert model.product.key_features == ["report.created", "workflow.run"]
    assert sum(indicator.weight for indicator in model.indicators) == pytest.approx(1.0)
    assert rules.renotify_days["no_login_20d"] == 7
    assert rules.renotify_days["onboarding_checkin"] == 0
    for rule in rules.rules:
        assert 3 <= len(rule.task.steps) <= 5, rule.id
        assert rule.task.owner == "account_owner"


def test_shipped_messages_render_with_real_figures():
    model, rules = load_config(SHIPPED_CONFIG_DIR)
    row = {name: None for name in health_variables(model)}
    row.update(
        name="Acme",
        days_since_last_login=23,
        last_login_date=dt.date(2025, 3, 1),
        score=1.234,
        band="red",
        activated_users=4,
        licenses=10,
        license_activation_rate=0.93,
        arr=48000.0,
    )
    assert render(rules.by_id["no_login_20d"].message, row) == (
        "Nobody at Acme has logged in for 23 days (last login 2025-03-01). "
        "Health 1.23 (red); 4 of 10 licenses activated."
    )
    assert "activated 93% of its 10 licenses" in render(rules.by_id["upsell_ready"].message, row)
    assert render(rules.by_id["renewal_at_risk"].task.title, row) == "Renewal at risk: Acme (48,000 ARR)"


def test_health_variables_of_a_model(model):
    variables = health_variables(model)
    assert list(variables)[:7] == ["partition_date", "account_id", "name", "segment", "status", "owner_email", "plan"]
    for name in (
        "events_report_created",
        "events_report_created_30d",
        "events_login_30d",
        "events_workflow_run",
        "points_utilization",
        "contribution_login_recency",
        "score_change_30d",
        "utilization_rate",
        "days_to_renewal",
        "open_high_priority_tickets",
        "all_key_features_used_30d",
    ):
        assert name in variables, name
    assert "report.created" in variables["key_features_used_30d"]
    assert health_variable_types(model)["all_key_features_used_30d"] == "bool"
    assert "score" not in indicator_variables(model)
    assert "latest_nps" in indicator_variables(model)


def test_event_column():
    assert event_column("report.created") == "events_report_created"
    assert event_column("login") == "events_login"


def test_segment_overrides(tmp_path):
    text = MODEL_YAML.replace(
        "    thresholds: [0.2, 0.4, 0.6, 0.8]\n",
        "    thresholds: [0.2, 0.4, 0.6, 0.8]\n"
        "    segments:\n"
        "      enterprise: {thresholds: [0.1, 0.2, 0.3, 0.4], weight: 0.9}\n",
    )
    model = load_health_model(write(tmp_path, "m.yaml", text))
    utilization = model.by_name["utilization"]
    assert utilization.thresholds_for("enterprise") == [0.1, 0.2, 0.3, 0.4]
    assert utilization.thresholds_for("smb") == [0.2, 0.4, 0.6, 0.8]
    assert utilization.weight_for("enterprise") == 0.9
    assert utilization.weight_for(None) == 0.6


# -- health model errors


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "thresholds: [0.2, 0.4, 0.6, 0.8]",
            "thresholds: [0.8, 0.6, 0.4, 0.2]",
            "m.yaml:10: indicators[0].thresholds: must be ascending (higher_is_better), got [0.8, 0.6, 0.4, 0.2]",
        ),
        (
            "thresholds: [14, 7, 3, 1]",
            "thresholds: [1, 3, 7, 14]",
            "m.yaml:15: indicators[1].thresholds: must be descending (lower_is_better)",
        ),
        (
            "thresholds: [14, 7, 3, 1]",
            "thresholds: [14, 7, 3]",
            "m.yaml:15: indicators[1].thresholds: expected exactly 4 thresholds, got 3",
        ),
        ("weight: 0.6", "weight: 0", "m.yaml:8: indicators[0].weight: input should be greater than 0"),
        ("weight: 0.6", "weight: lots", "m.yaml:8: indicators[0].weight: expected a number"),
        (
            "direction: higher_is_better",
            "direction: up",
            "m.yaml:9: indicators[0].direction: unknown value 'up'; valid choices: higher_is_better, lower_is_better",
        ),
        (
            "key_features: [report.created]",
            "key_features: [report.created, report.viewed]",
            "m.yaml:4: product.key_features[1]: 'report.viewed' is not one of product.events; "
            "valid choices: login, report.created, workflow.run",
        ),
        (
            "variable: utilization_rate",
            "variable: utilisation_rate",
            "m.yaml:7: indicators[0].variable: 'utilisation_rate' is not a numeric usage or context variable; "
            "valid choices: activated_users,",
        ),
        (
            "variable: utilization_rate",
            "variable: score_change_7d",
            "m.yaml:7: indicators[0].variable: 'score_change_7d' is computed from the indicators",
        ),
        (
            "variable: utilization_rate",
            "variable: status",
            "m.yaml:7: indicators[0].variable: 'status' is not a numeric usage or context variable",
        ),
        (
            "    weight: 0.4\n",
            "    weight: 0.4\n    wieght: 2\n",
            "m.yaml:14: indicators[1].wieght: unknown field; did you mean 'weight'?; "
            "valid choices: name, variable, description, weight, direction, thresholds, missing, segments",
        ),
        ("    weight: 0.6\n", "", "m.yaml:6: indicators[0].weight: is required"),
        (
            "    thresholds: [0.2, 0.4, 0.6, 0.8]\n",
            "    thresholds: [0.2, 0.4, 0.6, 0.8]\n    segments:\n      entreprise: {weight: 1}\n",
            "m.yaml:12: indicators[0].segments.entreprise: unknown key 'entreprise'; "
            "valid choices: enterprise, mid_market, smb",
        ),
        ("bands: {red: 1.5, yellow: 2.5}", "bands: {red: 3, yellow: 2.5}", "m.yaml:1: bands.yellow: must be at least red"),
        ("  - name: login_recency", "  - name: utilization", "m.yaml:11: indicators[1].name: duplicate indicator name"),
        ("  - name: login_recency", "  - name: Login-Recency", "m.yaml:11: indicators[1].name: 'Login-Recency' must be snake_case"),
        ("events: [login, report.created, workflow.run]", "events: [login, Report Created, report.created]",
         "m.yaml:3: product.events[1]: 'Report Created' must be lowercase words"),
        ("events: [login, report.created, workflow.run]", "events: [login, report.created, report_created]",
         "m.yaml:3: product.events[2]: 'report_created' and 'report.created' would share the column events_report_created"),
    ],
)
def test_health_model_errors(tmp_path, old, new, expected):
    assert old in MODEL_YAML
    error = load_error(write(tmp_path, "m.yaml", MODEL_YAML.replace(old, new)))
    assert str(error).startswith(str(tmp_path / expected))


def test_error_fields_are_kept_apart(tmp_path):
    error = load_error(write(tmp_path, "m.yaml", MODEL_YAML.replace("direction: higher_is_better", "direction: up")))
    assert error.file == str(tmp_path / "m.yaml")
    assert error.line == 9
    assert error.field == "indicators[0].direction"
    assert error.message == "unknown value 'up'"
    assert error.choices == ["higher_is_better", "lower_is_better"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("product: [a\nindicators: []\n", "m.yaml:2: invalid YAML"),
        ("", "m.yaml:1: the file is empty"),
        ("- a\n- b\n", "m.yaml:1: expected a mapping of keys at the top of the file"),
        ("bands: {}\nbands: {}\n", "m.yaml:2: bands: duplicate key (first on line 1)"),
        ("bands: {}\n", "m.yaml:1: product: is required"),
    ],
)
def test_unreadable_or_malformed_files(tmp_path, text, expected):
    error = load_error(write(tmp_path, "m.yaml", text))
    assert str(error).startswith(str(tmp_path / expected))


def test_missing_file_and_directory(tmp_path):
    assert str(load_error(tmp_path / "nope.yaml")) == f"{tmp_path / 'nope.yaml'}: file not found"
    assert str(load_error(tmp_path)).startswith(f"{tmp_path}: cannot read the file")


def test_health_model_from_data_validates_too():
    with pytest.raises(ConfigError, match=r"^<health model>: indicators: must not be empty"):
        health_model_from_data({"product": {"events": ["login"]}, "indicators": []})


# -- rules


def test_rules_load_and_compile(tmp_path, model):
    path = write(tmp_path, "rules.yaml", rules_text(("low_score", "score < 1.5"), ("never", "days_since_last_login is null")))
    rules = load_rules(path, model)
    assert list(rules.by_id) == ["low_score", "never"]
    assert rules.renotify_days == {"low_score": 7, "never": 7}
    assert rules.by_id["low_score"].describe() == "score is below 1.5"
    assert rules.by_id["low_score"].task.priority == "normal"
    assert rules.by_id["low_score"].fact_variables() == ["score", "name"]
    frame = pl.DataFrame({"score": [1.0, 2.0, None], "segment": ["smb", "smb", "smb"]})
    assert frame.filter(rules.expression("low_score")).height == 1


def test_rule_segments_filter_rows(tmp_path, model):
    text = rules_text(("low_score", "score < 1.5")).replace("    severity:", "    segments: [enterprise]\n    severity:")
    rules = load_rules(write(tmp_path, "rules.yaml", text), model)
    frame = pl.DataFrame({"score": [1.0, 1.0, 1.0], "segment": ["enterprise", "smb", None]})
    assert frame.filter(rules.expression("low_score")).get_column("segment").to_list() == ["enterprise"]


def test_unknown_variable_names_the_line_of_the_condition(tmp_path, model):
    path = write(tmp_path, "rules.yaml", rules_text(("ok", "score < 1"), ("typo", "band == 'red' and scroe < 1.5")))
    error = load_error(path, model)
    assert error.line == 16
    assert error.field == "rules[1].condition"
    assert error.message == "column 19: unknown variable 'scroe'; did you mean 'score'?"
    assert "utilization_rate" in error.choices
    assert str(error).startswith(
        f"{path}:16: rules[1].condition: column 19: unknown variable 'scroe'; did you mean 'score'?; valid choices: "
    )


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("score.__class__", "rules[0].condition: column 6: '.' is not allowed"),
        ("score = 1", "rules[0].condition: column 7: '=' alone is not an operator: use '==' to compare"),
        ("open('/etc/passwd')", "rules[0].condition: column 1: function calls are not allowed"),
        ("score and band == 'red'", "rules[0].condition: 'score' is not true/false"),
    ],
)
def test_bad_conditions(tmp_path, model, condition, expected):
    path = write(tmp_path, "rules.yaml", rules_text(("r", f'"{condition}"')))
    error = load_error(path, model)
    assert str(error).startswith(f"{path}:5: {expected}")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("severity: warning", "severity: critcal", "6: rules[0].severity: unknown value 'critcal'; valid choices: info, warning, critical"),
        ("kind: risk", "kind: churn", "3: rules[0].kind: unknown value 'churn'; valid choices: onboarding, utilization, risk, expansion"),
        ("severity: warning", "severty: warning", "6: rules[0].severty: unknown field; did you mean 'severity'?"),
        ("renotify_days: 7", "renotify_days: -1", "7: rules[0].renotify_days: input should be greater than or equal to 0"),
        ("renotify_days: 7", "renotify_days: weekly", "7: rules[0].renotify_days: expected a whole number"),
        ("    severity: warning\n", "", "2: rules[0].severity: is required"),
        ('message: "Score {score} at {name}"', 'message: "Score {scor} at {name}"',
         "8: rules[0].message: unknown placeholder {scor}; did you mean 'score'?; valid choices: "),
        ('message: "Score {score} at {name}"', 'message: "Score {score.real}"',
         "8: rules[0].message: placeholder {score.real} must be a variable name"),
        ('message: "Score {score} at {name}"', 'message: "Score {score"',
         "8: rules[0].message: malformed placeholder"),
        ('message: "Score {score} at {name}"', 'message: "Score {name:.0%}"',
         "8: rules[0].message: format '.0%' does not fit {name} (text)"),
        ('title: "Look at {name}"', 'title: "Look at {nme}"', "10: rules[0].task.title: unknown placeholder {nme}"),
        ("steps: [Call them]", 'steps: ["Call about {tickets}"]', "11: rules[0].task.steps[0]: unknown placeholder {tickets}"),
        ("steps: [Call them]", "steps: []", "11: rules[0].task.steps: must not be empty"),
        ("      due_in_days: 3\n", "      due_in_days: 3\n      owner: bob\n",
         "13: rules[0].task.owner: 'bob' must be 'account_owner' or an email address"),
        ("      due_in_days: 3\n", "      due_in_days: 3\n      priority: asap\n",
         "13: rules[0].task.priority: unknown value 'asap'; valid choices: low, normal, high, urgent"),
        ("    severity: warning\n", "    severity: warning\n    segments: [enterprise, smbs]\n",
         "7: rules[0].segments[1]: unknown value 'smbs'; valid choices: enterprise, mid_market, smb"),
        ("  - id: r\n", "  - id: Bad-Id\n", "2: rules[0].id: 'Bad-Id' must be snake_case"),
        ("    severity: warning\n", "    severity: warning\n    segments: []\n", "7: rules[0].segments: must not be empty"),
    ],
)
def test_rule_errors(tmp_path, model, old, new, expected):
    text = rules_text(("r", "score < 1"))
    assert old in text
    path = write(tmp_path, "rules.yaml", text.replace(old, new))
    assert str(load_error(path, model)).startswith(f"{path}:{expected}")


def test_duplicate_rule_ids(tmp_path, model):
    path = write(tmp_path, "rules.yaml", rules_text(("same", "score < 1"), ("same", "score < 2")))
    assert str(load_error(path, model)) == f"{path}:13: rules[1].id: duplicate rule id 'same' (also rules[0])"


def test_owner_may_be_an_email(tmp_path, model):
    text = rules_text(("r", "score < 1")).replace("      due_in_days: 3\n", "      due_in_days: 3\n      owner: cs-lead@example.com\n")
    assert load_rules(write(tmp_path, "rules.yaml", text), model).by_id["r"].task.owner == "cs-lead@example.com"


def test_rules_from_data(model):
    rules = rules_from_data({"rules": []}, model)
    assert rules.rules == []
    with pytest.raises(ConfigError, match=r"^<rules>: rules: expected a list"):
        rules_from_data({"rules": "none"}, model)


# -- templates


def test_render_formats_figures():
    values = {
        "score": 1.23456,
        "days": 23,
        "rate": 0.456,
        "missing": None,
        "nan": float("nan"),
        "day": dt.date(2025, 3, 1),
        "flag": True,
        "name": "Acme",
    }
    template = "{name}: {score} / {days} d / {rate} / {rate:.0%} / {missing} / {nan} / {day} / {flag} / {{literal}}"
    assert render(template, values) == "Acme: 1.23 / 23 d / 0.46 / 46% / n/a / n/a / 2025-03-01 / yes / {literal}"


def test_render_falls_back_when_a_spec_does_not_fit_the_value():
    assert render("{x:.0%}", {"x": "text"}) == "text"


def test_render_needs_every_placeholder():
    with pytest.raises(KeyError, match="placeholder"):
        render("{unknown}", {})


@pytest.mark.parametrize("template", ["{a.b}", "{a[0]}", "{a!r}", "{}", "{0}", "{__class__}", "{a:{b}}"])
def test_placeholders_are_plain_names(template):
    with pytest.raises(ValueError, match="must be a variable name"):
        placeholders(template)


def test_placeholders():
    assert placeholders("{a} and {b:.0%} {{c}}") == [("a", ""), ("b", ".0%")]
