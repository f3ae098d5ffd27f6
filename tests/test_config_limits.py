"""Configs that check-config used to accept but that hang or mis-fire a run (issue 14): each is now
refused when the file is loaded, in one line with the file, the line and the limit."""

from __future__ import annotations

import shutil
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from cs_pipeline import cli, settings
from cs_pipeline.logic.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    load_config,
    load_health_model,
    load_rules,
    read_yaml,
)
from cs_pipeline.sinks.config import TaskSinksConfig

SHIPPED = settings.SHIPPED_CONFIG_DIR


@pytest.fixture
def fresh_definitions():
    """`cs_pipeline.definitions` imported afresh (it reads the environment when imported, as a new
    process would), and the module of before put back after the test."""
    saved = sys.modules.pop("cs_pipeline.definitions", None)
    yield
    sys.modules.pop("cs_pipeline.definitions", None)
    if saved is not None:
        sys.modules["cs_pipeline.definitions"] = saved


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(SHIPPED, folder)
    return folder


def edit(path: Path, old: str, new: str) -> int:
    """Replace the first `old` in the file; return the line it was on."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_shipped_config_loads():
    model, rules = load_config(SHIPPED)
    assert len(rules.rules) == 8 and model.indicators


# -- the health model: weights and thresholds are finite


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (".inf", "must be a finite number"),
        (".nan", "must be a finite number"),
        ("-.inf", "must be a finite number"),
        ("-1", "greater than 0"),
        ("1.0e300", "less than or equal to 1000000"),
    ],
)
def test_weights_must_be_finite_and_positive(config, value, fragment):
    line = edit(config / "health_model.yaml", "weight: 0.25", f"weight: {value}")
    with pytest.raises(ConfigError) as caught:
        load_health_model(config / "health_model.yaml")
    message = one_line(caught)
    assert message.startswith(f"{config / 'health_model.yaml'}:{line}: indicators[0].weight: ") and fragment in message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_thresholds_must_be_finite(config, value):
    path = config / "health_model.yaml"
    text = path.read_text()
    start = text.index("thresholds: [") + len("thresholds: [")
    path.write_text(text[:start] + value + text[text.index(",", start):])
    line = text[:start].count("\n") + 1
    with pytest.raises(ConfigError) as caught:
        load_health_model(path)
    assert one_line(caught).startswith(f"{path}:{line}: indicators[0].thresholds[0]: must be a finite number")


@pytest.mark.parametrize(("field", "old"), [("renotify_days", "renotify_days: 7"), ("due_in_days", "due_in_days: 3")])
def test_day_counts_of_a_rule_are_capped(config, field, old):
    line = edit(config / "rules.yaml", old, f"{field}: 100000000000")  # a date that far away overflows
    with pytest.raises(ConfigError) as caught:
        load_rules(config / "rules.yaml", load_health_model(config / "health_model.yaml"))
    assert f"rules.yaml:{line}: rules[0]." in one_line(caught) and "less than or equal to 3650" in one_line(caught)


# -- YAML: no aliases or anchors, bounded nesting and size

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(config):
    path = config / "health_model.yaml"
    path.write_text(BOMB + path.read_text())
    assert path.stat().st_size < 2_000 + len((SHIPPED / "health_model.yaml").read_text())
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as caught:
            load_health_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1 and peak < 20_000_000  # it took 11 GB before
    assert one_line(caught) == f"{path}:1: YAML anchors (&a) are not allowed in config files: write the value out"


def test_an_alias_without_its_anchor_first_is_refused_too(tmp_path):
    path = tmp_path / "sinks.yaml"
    path.write_text("sinks: {}\nrules:\n  '*': *crm\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert one_line(caught) == f"{path}:3: YAML aliases (*crm) are not allowed in config files: write the value out"


def test_deep_nesting_and_big_files_are_refused(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 20_000 + "]" * 20_000 + "\n")  # PyYAML's composer recursed once per level
    with pytest.raises(ConfigError) as caught:
        read_yaml(deep)
    assert one_line(caught) == f"{deep}:1: nested more than 32 levels deep (the limit)"
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as caught:
        read_yaml(big)
    assert one_line(caught).startswith(f"{big}: the file is 1,000,010 bytes; config files are limited to 1,000,000 bytes")


# -- rule conditions: the limits of the rule language, reported on the condition's line

CONDITION = "score_change_30d <= -1.0"


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("score in (" + ", ".join(str(i) for i in range(20_000)) + ")", "the condition is 128,899 characters long (the limit is 5,000)"),
        ("score in (" + ", ".join(str(i) for i in range(200)) + ")", "the list after 'in' has more than 100 items (the limit)"),
        (" and ".join(["score > 1"] * 1_500), "characters long (the limit is 5,000)"),
        (" and ".join(["score > 1"] * 300), "more than 500 parts"),
        ("score > " + " * ".join(["9"] * 30), "numbers are limited to ±1e+15"),
        ("score > 12345678901234567890", "the number 12345678901234567890 is too large"),
    ],
)
def test_conditions_past_a_limit_are_refused_on_their_line(config, condition, fragment):
    path = config / "rules.yaml"
    line = edit(path, CONDITION, condition)
    model = load_health_model(config / "health_model.yaml")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_rules(path, model)
    assert time.monotonic() - started < 1
    message = one_line(caught)
    assert message.startswith(f"{path}:{line}: rules[2].condition: ") and fragment in message


# -- the task sinks file: checked by check-config and when the definitions load

SINKS = """\
sinks:
  hooks:
    type: webhook
    url: https://tasks.example.com/hooks
    secret_env: CS_PIPELINE_WEBHOOK_SECRET
rules:
  no_login_20d: [hooks]
  no_such_rule: [hooks]
"""


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_validates_the_task_sinks_file(tmp_path, monkeypatch, capsys):
    sinks = tmp_path / "sinks.yaml"
    sinks.write_text(SINKS)
    monkeypatch.setenv("CS_PIPELINE_CONFIG_DIR", str(SHIPPED))
    monkeypatch.setenv("CS_PIPELINE_TASK_SINKS", str(sinks))
    code, _out, err = run_cli(["check-config"], capsys)
    assert code != 0
    assert err.strip() == (
        f"cs-pipeline: {sinks}:8: rules.no_such_rule: unknown rule id 'no_such_rule'; valid choices: *, "
        "health_drop, low_health_day_90, no_login_20d, nps_detractor, onboarding_checkin, renewal_at_risk, "
        "ticket_surge, upsell_ready"
    )
    sinks.write_text(SINKS.replace("  no_such_rule: [hooks]\n", ""))
    code, out, err = run_cli(["check-config"], capsys)
    assert code == 0, err
    assert f"{sinks}: 1 task sinks (hooks)" in out


def test_the_definitions_refuse_to_load_with_a_bad_task_sinks_file(tmp_path, monkeypatch):
    from cs_pipeline.definitions import resources

    sinks = tmp_path / "sinks.yaml"
    sinks.write_text(SINKS)
    monkeypatch.setenv("CS_PIPELINE_TASK_SINKS", str(sinks))
    with pytest.raises(ConfigError, match=r":8: rules.no_such_rule: unknown rule id 'no_such_rule'"):
        resources()
    monkeypatch.delenv("CS_PIPELINE_TASK_SINKS")
    assert "task_sinks" in resources()


def test_the_definitions_refuse_to_load_with_a_rule_past_a_limit(config, monkeypatch):
    from cs_pipeline.definitions import resources

    edit(config / "rules.yaml", CONDITION, "score > " + " * ".join(["9"] * 30))
    monkeypatch.setenv("CS_PIPELINE_CONFIG_DIR", str(config))
    with pytest.raises(ConfigError, match="numbers are limited"):
        resources()


def test_check_config_refuses_each_case_in_one_line(config, monkeypatch, capsys):
    monkeypatch.setenv("CS_PIPELINE_CONFIG_DIR", str(config))
    line = edit(config / "health_model.yaml", "weight: 0.25", "weight: .inf")
    code, _out, err = run_cli(["check-config", "--config", str(config)], capsys)
    assert code != 0
    assert err.strip() == f"cs-pipeline: {config / 'health_model.yaml'}:{line}: indicators[0].weight: must be a finite number, not .inf or .nan"


def test_task_sinks_file_with_an_alias_is_refused(tmp_path):
    sinks = tmp_path / "sinks.yaml"
    sinks.write_text("sinks:\n  hooks: &h\n    type: webhook\n    url: https://x.example.com\n    secret_env: S\nrules:\n  '*': [hooks]\n")
    with pytest.raises(ConfigError) as caught:
        TaskSinksConfig.load(sinks)
    assert one_line(caught) == f"{sinks}:2: YAML anchors (&h) are not allowed in config files: write the value out"


def test_a_run_with_a_bad_config_refuses_before_any_work(config, tmp_path, monkeypatch, capsys, fresh_definitions):
    sinks = tmp_path / "sinks.yaml"
    sinks.write_text(SINKS)
    monkeypatch.setenv("CS_PIPELINE_TASK_SINKS", str(sinks))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("CS_PIPELINE_CONFIG_DIR", str(config))
    (tmp_path / "data").mkdir()
    warehouse = tmp_path / "warehouse.duckdb"
    for name, value in (("CS_PIPELINE_WAREHOUSE", warehouse), ("CS_PIPELINE_DATA_DIR", tmp_path / "data")):
        monkeypatch.setenv(name, str(value))  # the command sets them; restored after the test
    code, _out, err = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--from", "2025-03-01", "--to", "2025-03-01",
                               "--warehouse", str(warehouse), "--config", str(config)], capsys)
    assert code != 0
    assert err.strip() == f"cs-pipeline: {sinks}:8: rules.no_such_rule: unknown rule id 'no_such_rule'; valid choices: *, " \
        "health_drop, low_health_day_90, no_login_20d, nps_detractor, onboarding_checkin, renewal_at_risk, ticket_surge, upsell_ready"
    assert not warehouse.exists()  # nothing was read, written or sent
