"""The `cs-pipeline` command's config checking and its one-line errors (CONTRACT.md §5)."""

import shutil
import subprocess
import sys

import pytest

from cs_pipeline import settings


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cs_pipeline.cli", *args], capture_output=True, text=True, env=env)


def test_check_config_lists_rules_and_variables():
    done = cli("check-config")
    assert done.returncode == 0, done.stderr
    for rule in ("no_login_20d", "low_health_day_90", "health_drop", "renewal_at_risk", "upsell_ready",
                 "nps_detractor", "ticket_surge", "onboarding_checkin"):
        assert rule in done.stdout
    assert "days_since_last_login" in done.stdout and "open_high_priority_tickets" in done.stdout


def test_a_rule_with_an_unknown_variable_is_refused_with_file_line_and_choices(tmp_path):
    shutil.copytree(settings.SHIPPED_CONFIG_DIR, tmp_path / "config")
    rules = tmp_path / "config" / "rules.yaml"
    text = rules.read_text()
    rules.write_text(text.replace("days_since_last_login >= 20", "days_since_last_logon >= 20", 1))
    line = next(i for i, l in enumerate(rules.read_text().splitlines(), 1) if "days_since_last_logon" in l)
    done = cli("check-config", "--config", str(tmp_path / "config"))
    assert done.returncode != 0
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1
    assert f"rules.yaml:{line}:" in error and "days_since_last_logon" in error and "days_since_last_login" in error


def test_unreadable_config_names_the_file(tmp_path):
    (tmp_path / "health_model.yaml").write_text("indicators: [\n")
    shutil.copy(settings.SHIPPED_CONFIG_DIR / "rules.yaml", tmp_path / "rules.yaml")
    done = cli("check-config", "--config", str(tmp_path))
    assert done.returncode != 0 and "health_model.yaml" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--data-dir", "/nonexistent", "--from", "2025-01-01", "--to", "2025-01-02"], "not a directory"),
        (["alerts", "--warehouse", "/nonexistent/w.duckdb"], "does not exist"),
    ],
)
def test_errors_are_one_line_on_stderr_with_a_non_zero_exit(args, message):
    done = cli(*args)
    assert done.returncode != 0 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_run_refuses_a_range_that_ends_before_it_starts(tmp_path):
    done = cli("run", "--data-dir", str(tmp_path), "--from", "2025-02-01", "--to", "2025-01-01", "--warehouse", str(tmp_path / "w.duckdb"))
    assert done.returncode != 0 and "before --from" in done.stderr


def test_the_warehouse_comes_from_the_environment_when_not_given(tmp_path):
    import os

    env = {**os.environ, "CS_PIPELINE_WAREHOUSE": str(tmp_path / "elsewhere.duckdb")}
    done = cli("tasks", env=env)
    assert done.returncode != 0 and str(tmp_path / "elsewhere.duckdb") in done.stderr


def test_a_warehouse_in_use_is_a_one_line_error(tmp_path):
    import duckdb

    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)):  # a writer holds the file, as a running Dagster step would
        done = cli("alerts", "--warehouse", str(path))
    assert done.returncode != 0 and "in use by another process" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_listing_a_fresh_warehouse_writes_nothing(tmp_path):
    import duckdb

    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    before = path.read_bytes()
    done = cli("alerts", "--warehouse", str(path), "--format", "json")
    assert done.returncode == 0 and done.stdout.strip() == "[]"
    assert path.read_bytes() == before


def test_check_config_validates_sources_yaml_when_given(tmp_path):
    import os

    env = {**os.environ, "CS_PIPELINE_SOURCES": str(settings.PROJECT_DIR / "sources.example.yaml")}
    done = cli("check-config", env=env)
    assert done.returncode == 0, done.stderr
    assert "users from database" in done.stdout and "tickets from zendesk" in done.stdout and "engagements from files" in done.stdout
    (tmp_path / "sources.yaml").write_text("entities:\n  accounts: crm\n")
    done = cli("check-config", env={**os.environ, "CS_PIPELINE_SOURCES": str(tmp_path / "sources.yaml")})
    assert done.returncode != 0 and "sources.yaml:2:" in done.stderr
