"""`cs-pipeline demo` end to end on a small generated data set: planted situations fire on exactly
their days, healthy accounts stay silent, and the command ends by listing alerts and the outbox."""

import json
import os
import subprocess
import sys
from collections import defaultdict

import duckdb
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default demo (churn driven by engagement); the `support` drivers' data is checked
    without the pipeline in test_demo_churn.py and test_generator.py."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CS_PIPELINE_", "SLACK_"))}
    env.update({"CS_PIPELINE_TODAY": "2025-06-01", "DAGSTER_HOME": str(root)})
    done = subprocess.run(
        [sys.executable, "-m", "cs_pipeline.cli", "demo", "--accounts", "40", "--days", "75", "--warehouse", str(root / "data" / "warehouse.duckdb")],
        capture_output=True, text=True, env=env, cwd=root, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    planted = json.loads((root / "data" / "demo" / "planted.json").read_text())
    with duckdb.connect(str(root / "data" / "warehouse.duckdb"), read_only=True) as con:
        fired = con.execute("SELECT rule_id, account_id, partition_date::VARCHAR FROM analytics.alert_events").fetchall()
    return done.stdout, planted, fired, root


def test_the_demo_lists_alerts_and_points_at_the_outbox(demo):
    stdout, _, _, root = demo
    assert "Alerts:" in stdout and "sent" in stdout
    outbox = root / "data" / "outbox"
    assert f"outbox: {outbox}" in stdout
    messages = list(outbox.glob("al_*.json"))
    assert messages and all(json.loads(p.read_text())["blocks"] for p in messages)


def test_planted_situations_fire_on_their_days(demo):
    _, planted, fired, _ = demo
    days = defaultdict(set)
    for rule, account, day in fired:
        days[(rule, account)].add(day)
    assert planted["details"], "the generator planted situations"
    for account, detail in planted["details"].items():
        expected = set(detail["fires_on"])
        got = days[(detail["rule"], account)]
        if detail.get("score_based"):
            assert expected <= got, (account, detail["rule"])
        else:
            assert got == expected, (account, detail["rule"])


def test_healthy_accounts_trigger_nothing(demo):
    _, planted, fired, _ = demo
    noisy = {account for _, account, _ in fired} & set(planted["healthy"])
    assert not noisy


def test_the_demo_writes_the_portfolio_report(demo):
    stdout, _, _, root = demo
    report = root / "data" / "reports" / "portfolio-report.html"
    assert "Portfolio report for " in stdout and str(report) in stdout
    page = report.read_text()
    assert 'data-chart="portfolio-map"' in page and 'data-chart="retention"' in page
