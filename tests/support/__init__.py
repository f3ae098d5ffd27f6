"""Helpers shared by the tests: a loopback Slack Web API (`slack_server`) and sample messages."""

from __future__ import annotations

import datetime as dt

from cs_pipeline.messages import AlertMessage


def make_alert_message(**overrides) -> AlertMessage:
    """A realistic `no_login_20d` alert; keyword arguments replace any field."""
    fields = dict(
        alert_id="a1b2c3d4e5f6",
        notification_number=1,
        rule_id="no_login_20d",
        rule_description="No login for 20 days",
        severity="warning",
        account_id="acc_0042",
        account_name="Acme & Sons <Europe>",
        segment="smb",
        owner_email="alice@example.com",
        partition_date=dt.date(2025, 3, 10),
        episode_start=dt.date(2025, 3, 8),
        arr=48000.0,
        renewal_date=dt.date(2025, 8, 31),
        score=1.234,
        band="red",
        score_7d_ago=2.1,
        score_30d_ago=2.8,
        top_movers=[("logins_30d", -0.62), ("license_activation_rate", -0.31), ("nps", 0.05)],
        condition="status == 'active' and days_since_last_login >= 20",
        facts={"days_since_last_login": 23, "status": "active", "score": 1.234, "band": "red"},
        message="Acme & Sons <Europe> has not logged in for 23 days.",
        task_title="Call Acme & Sons about adoption",
        task_steps=["Check who still has a seat", "Call the admin", "Book a training session"],
        task_due_date=dt.date(2025, 3, 13),
        task_priority="high",
        dagster_url="http://localhost:3000/assets/alerts",
    )
    fields.update(overrides)
    return AlertMessage(**fields)
