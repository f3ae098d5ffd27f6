"""Block Kit rendering: what an alert says, and that no input can break Slack's limits."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from cs_pipeline import settings
from cs_pipeline.logic.config import load_config
from cs_pipeline.logic.expressions import compile_condition, evaluate, without_not
from cs_pipeline.messages import (
    ELLIPSIS,
    MAX_BLOCKS,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    MAX_FALLBACK_TEXT,
    MAX_HEADER_TEXT,
    MAX_MESSAGE_TEXT,
    MAX_SECTION_TEXT,
    render_alert,
    render_run_failure,
    slack_length,
    truncate,
)
from cs_pipeline.settings import SHIPPED_CONFIG_DIR
from cs_pipeline.sinks.crm_ids import record_url
from tests.support import make_alert_message, message_example
from tests.support.slack_server import MAX_BLOCKS_TEXT, block_errors, blocks_text_length


def texts(blocks: list[dict]) -> list[str]:
    """Every text of the blocks, in order."""
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(field["text"] for field in block.get("fields", []))
        out.extend(element["text"] for element in block.get("elements", []) if isinstance(element.get("text"), str))
    return out


def assert_within_limits(text: str, blocks: list[dict]) -> None:
    assert 0 < len(blocks) <= MAX_BLOCKS
    assert 0 < slack_length(text) <= MAX_FALLBACK_TEXT
    assert blocks_text_length(blocks) <= MAX_MESSAGE_TEXT < MAX_BLOCKS_TEXT
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < slack_length(block["text"]["text"]) <= MAX_HEADER_TEXT
        if block["type"] == "section":
            if "text" in block:
                assert 0 < slack_length(block["text"]["text"]) <= MAX_SECTION_TEXT
            assert len(block.get("fields", [])) <= MAX_FIELDS
            for field in block.get("fields", []):
                assert 0 < slack_length(field["text"]) <= MAX_FIELD_TEXT
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
    assert block_errors(blocks) == []  # the loopback server's copy of Slack's checks agrees
    json.dumps(blocks)  # what chat.postMessage sends


def test_alert_names_rule_account_figures_trend_and_task():
    msg = make_alert_message()
    text, blocks = render_alert(msg)

    header = blocks[0]
    assert header["type"] == "header"
    assert header["text"]["text"] == ":warning: No login for 20 days · Acme & Sons <Europe>"

    fields = " | ".join(field["text"] for field in blocks[1]["fields"])
    for expected in ("*Segment*\nsmb", "*ARR*\n48,000", "*Renewal*\n2025-08-31 (in 174 d)",
                     "*Health score*\n:red_circle: 1.23 (red)", "*7 d ago*\n2.10 (−0.87)",
                     "*30 d ago*\n2.80 (−1.57)", "*Episode start*\n2025-03-08 (day 3)"):
        assert expected in fields

    body = "\n".join(texts(blocks))
    assert "*Why*\nAcme &amp; Sons &lt;Europe&gt; has not logged in for 23 days." in body
    assert (
        "*Fires when* status is 'active' and days since last login is at least 20\n"
        "• status: *active* (must be 'active') ✔\n"
        "• days since last login: *23* (threshold ≥ 20) ✔"
    ) in body
    assert ":small_red_triangle_down: `logins_30d` −0.62" in body
    assert "*What to do:* Call Acme &amp; Sons about adoption\nDue *2025-03-13* · priority *high*" in body
    assert "1. Check who still has a seat\n2. Call the admin\n3. Book a training session" in body

    assert blocks[-2] == {
        "type": "actions",
        "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open in Dagster"},
                      "url": "http://localhost:3000/assets/alerts"}],
    }
    context = blocks[-1]["elements"][0]["text"]
    assert context.startswith("Alert `a1b2c3d4e5f6` · notification #1 · rule `no_login_20d`")

    assert text.startswith(":warning: No login for 20 days: Acme &amp; Sons &lt;Europe&gt;.")
    assert_within_limits(text, blocks)


def test_note_is_shown_under_the_header_and_in_the_text():
    note = "The owner bob@example.com was not found in Slack, so this alert went to #cs-smb."
    text, blocks = render_alert(make_alert_message(), note=note)
    assert blocks[1]["text"]["text"] == f":bust_in_silhouette: {note}"
    assert note in text


def test_crm_link_is_a_second_button_when_there_is_one():
    url = "https://acme.lightning.force.com/lightning/r/Account/001A000001/view"
    text, blocks = render_alert(make_alert_message(crm_url=url))
    buttons = blocks[-2]["elements"]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [
        ("Open in Dagster", "http://localhost:3000/assets/alerts"), ("Open in CRM", url)]
    _, without = render_alert(make_alert_message(crm_url=None))
    assert [b["text"]["text"] for b in without[-2]["elements"]] == ["Open in Dagster"]
    assert_within_limits(text, blocks)


def test_missing_figures_render_as_dashes_and_optional_blocks_disappear():
    msg = make_alert_message(
        severity="critical", owner_email=None, arr=None, renewal_date=None, score=None, band=None,
        score_7d_ago=None, score_30d_ago=None, top_movers=[], facts={}, task_steps=[], dagster_url=None,
    )
    text, blocks = render_alert(msg)
    assert blocks[0]["text"]["text"].startswith(":rotating_light: ")
    fields = [field["text"] for field in blocks[1]["fields"]]
    assert "*ARR*\n—" in fields and "*Renewal*\n—" in fields and "*Health score*\n—" in fields
    assert "*7 d ago*\n—" in fields and "*Owner*\n—" in fields
    body = "\n".join(texts(blocks))
    assert "• status: *—* (must be 'active') ?\n• days since last login: *—* (threshold ≥ 20) ?" in body
    assert "*Figures*" not in body and "What moved" not in body
    # No links: the only actions block is the buttons.
    assert [b.get("block_id") for b in blocks if b["type"] == "actions"] == ["cs_pipeline_actions"]
    assert_within_limits(text, blocks)


def test_every_alert_has_the_action_buttons_carrying_its_id():
    _, blocks = render_alert(make_alert_message(alert_id="al_42"))
    actions = next(b for b in blocks if b.get("block_id") == "cs_pipeline_actions")
    ids = [e["action_id"] for e in actions["elements"]]
    assert ids == ["cs_ack", "cs_snooze_7", "cs_snooze_30", "cs_done", "cs_not_useful"]
    assert all(e["value"] == "al_42" for e in actions["elements"] if e["type"] == "button")
    reasons = actions["elements"][-1]["options"]
    assert reasons and all(o["value"].endswith("|al_42") for o in reasons)


@pytest.mark.parametrize("char", ["x", "&", "😀"])
def test_extreme_inputs_stay_within_slack_limits(char):
    long = char * 20_000
    msg = make_alert_message(
        rule_description=long,
        account_name=long,
        account_id=long,
        segment=long,
        owner_email=long,
        message=long,
        top_movers=[(f"indicator_{i}_{long[:500]}", -i / 10) for i in range(100)],
        facts={f"fact_{i:03d}_{long[:200]}": long[:5000] for i in range(100)},
        task_title=long,
        task_steps=[f"step {i} {long[:5000]}" for i in range(300)],
        task_priority=long,
        alert_id=long[:5000],
        dagster_url="https://example.com/" + "a" * 5000,  # too long for a button: left out
        crm_url="https://crm.example.com/" + "a" * 5000,
        condition="",  # no condition: the bare figures are listed
    )
    for note in (None, long):
        text, blocks = render_alert(msg, note=note)
        assert_within_limits(text, blocks)
        assert blocks[0]["text"]["text"].endswith(ELLIPSIS)
        assert blocks[-1]["type"] == "context"  # the alert id is never cut away
        assert len(blocks) <= 12  # as docs/messages.md says
        assert all(block["type"] != "actions" for block in blocks)
        body = "\n".join(texts(blocks))
        assert "more figures" in body and "more steps" in body and "…and 95 more" in body


def test_one_hundred_facts_show_as_many_as_fit_and_count_the_rest():
    facts = {f"figure_{i:03d}": i * 1.5 for i in range(100)}
    text, blocks = render_alert(make_alert_message(facts=facts, condition=""))
    assert_within_limits(text, blocks)
    figures = next(t for t in texts(blocks) if t.startswith("*Figures*"))
    lines = figures.splitlines()
    assert lines[1:3] == ["• `figure_000`: 0", "• `figure_001`: 1.5"]
    shown = len(lines) - 2
    assert lines[-1] == f"…and {100 - shown} more figures"
    assert shown >= 30


def test_ten_ordinary_steps_are_all_shown_in_order():
    steps = [f"Do thing number {i}, " + "carefully " * 10 for i in range(1, 11)]
    text, blocks = render_alert(make_alert_message(task_steps=steps))
    assert_within_limits(text, blocks)
    section = next(t for t in texts(blocks) if t.startswith("1. "))
    assert [int(line.split(".", 1)[0]) for line in section.splitlines()] == list(range(1, 11))


def test_truncate_never_splits_an_entity_or_a_surrogate_pair():
    assert truncate("short", 10) == "short"
    assert truncate("abcdefghij", 5) == "abcd" + ELLIPSIS
    cut = truncate("a" * 8 + "&amp;" * 10, 10)
    assert cut == "a" * 8 + ELLIPSIS
    emoji = truncate("😀" * 10, 7)
    assert emoji == "😀" * 3 + ELLIPSIS and slack_length(emoji) <= 7


def test_run_failure_names_job_run_partition_and_error():
    text, blocks = render_run_failure(
        "daily_pipeline", "run-123", "2025-03-10", "dbt failed\nmodel x: <syntax> error", "http://dagster/runs/run-123"
    )
    assert blocks[0]["text"]["text"] == ":x: Run failed: daily_pipeline"
    fields = [field["text"] for field in blocks[1]["fields"]]
    assert fields == ["*Job*\ndaily_pipeline", "*Run*\n`run-123`", "*Partition*\n2025-03-10"]
    assert blocks[2]["text"]["text"] == "*Error*\n```dbt failed\nmodel x: &lt;syntax&gt; error```"
    assert blocks[3]["elements"][0]["url"] == "http://dagster/runs/run-123"
    assert text == ":x: Run failed: daily_pipeline (2025-03-10): dbt failed"
    assert_within_limits(text, blocks)


def test_run_failure_with_a_huge_error_keeps_its_code_fence():
    error = "Traceback ```\n" + "  File x.py, line 1, in <module>\n" * 5000
    text, blocks = render_run_failure("j" * 500, "r" * 500, None, error, None)
    assert_within_limits(text, blocks)
    code = blocks[2]["text"]["text"]
    assert code.startswith("*Error*\n```") and code.endswith(ELLIPSIS + "```")
    assert code.count("```") == 2
    assert "*Partition*\n—" in [field["text"] for field in blocks[1]["fields"]]


# ---------------------------------------------------------------------------------------------
# the condition in words, with each figure against its threshold


def shipped_condition(rule_id: str) -> str:
    _, rules = load_config(SHIPPED_CONFIG_DIR)
    return rules.by_id[rule_id].condition


def condition_section(msg) -> str:
    _, blocks = render_alert(msg)
    return next(t for t in texts(blocks) if t.startswith("*Fires when*"))


@pytest.mark.parametrize(
    ("rule_id", "facts", "expected"),
    [
        (
            "no_login_20d",
            {"status": "active", "days_since_last_login": 27, "score": 1.1, "band": "red"},
            "*Fires when* status is 'active' and days since last login is at least 20\n"
            "• status: *active* (must be 'active') ✔\n"
            "• days since last login: *27* (threshold ≥ 20) ✔",
        ),
        (
            "low_health_day_90",
            {"days_since_contract_start": 92, "score": 1.2345},
            "*Fires when* days since contract start is between 90 and 96 and score is below 1.5\n"
            "• days since contract start: *92* (between 90 and 96) ✔\n"
            "• score: *1.234* (threshold &lt; 1.5) ✔",
        ),
        (
            "health_drop",
            {"score_change_30d": -1.42},
            "*Fires when* score change 30d is at most -1.0\n"
            "• score change 30d: *-1.42* (threshold ≤ -1.0) ✔",
        ),
        (
            "upsell_ready",
            {"license_activation_rate": 0.95, "all_key_features_used_30d": True},
            "*Fires when* license activation rate is at least 0.9 and all key features used 30d\n"
            "• license activation rate: *0.95* (threshold ≥ 0.9) ✔\n"
            "• all key features used 30d: *yes* (must be yes) ✔",
        ),
        (
            "onboarding_checkin",
            {"days_since_contract_start": 90},
            "*Fires when* days since contract start is one of 30, 90 or 180\n"
            "• days since contract start: *90* (one of 30, 90 or 180) ✔",
        ),
    ],
)
def test_shipped_rules_show_their_condition_in_words_with_each_figure_against_its_threshold(rule_id, facts, expected):
    msg = make_alert_message(rule_id=rule_id, condition=shipped_condition(rule_id), facts=facts)
    assert condition_section(msg) == expected


def test_any_condition_is_explained_from_its_tree_nots_pushed_in_and_constants_on_the_right():
    condition = (
        "not (band == 'green' or segment in ('smb')) "
        "and (active_users_30d / licenses < 0.2 or latest_nps is null or open_tickets not between 1 and 2) "
        "and 20 <= days_since_last_login and not all_key_features_used_30d "
        "and logins_7d < logins_30d / 4"
    )
    facts = {
        "band": "red", "segment": "enterprise", "active_users_30d": 3, "licenses": 20, "latest_nps": 8,
        "open_tickets": 2, "days_since_last_login": None, "all_key_features_used_30d": False,
        "logins_7d": 2, "logins_30d": 40,
    }
    msg = make_alert_message(condition=condition, facts=facts)
    assert condition_section(msg) == (
        "*Fires when* band is not 'green' and segment is not 'smb' and (active users 30d divided by licenses "
        "is below 0.2 or latest nps is unknown or open tickets is not between 1 and 2) and days since last login "
        "is at least 20 and not all key features used 30d and logins 7d is below logins 30d divided by 4\n"
        "• band: *red* (must not be 'green') ✔\n"
        "• segment: *enterprise* (must not be 'smb') ✔\n"
        "• active users 30d divided by licenses: *0.15* (threshold &lt; 0.2) ✔ · from active users 30d 3, licenses 20\n"
        "• latest nps: *8* (must be unknown) ✘\n"
        "• open tickets: *2* (not between 1 and 2) ✘\n"
        "• days since last login: *—* (threshold ≥ 20) ?\n"
        "• all key features used 30d: *no* (must be no) ✔\n"
        "• logins 7d: *2* (threshold &lt; logins 30d divided by 4 = 10) ✔ · from logins 30d 40"
    )


def test_a_long_odd_condition_stays_within_slack_limits_and_counts_what_is_left_out():
    odd = "😀 <b>&amp; *bold* `code`" * 40
    # As long as the rule language's limits allow (5,000 characters, 500 parts, 200-character texts).
    parts = [f"v{i} == '{odd[:100]}'" for i in range(30)] + [f"x{i} between -{i} and {i} * 2" for i in range(30)]
    condition = " or ".join(parts)
    facts = {f"v{i}": odd for i in range(30)} | {f"x{i}": i for i in range(30)}
    for note in (None, "n" * 5000):
        text, blocks = render_alert(make_alert_message(condition=condition, facts=facts), note=note)
        assert_within_limits(text, blocks)
        section = next(t for t in texts(blocks) if t.startswith("*Fires when*"))
        first_line, *lines = section.splitlines()
        assert first_line.endswith(ELLIPSIS) and slack_length(first_line) <= 400 + len("*Fires when* ")
        assert lines[0].startswith("• v0: *😀 &lt;b&gt;&amp;amp; *bold* `code`") and lines[0].endswith(ELLIPSIS)
        shown = len(lines) - 1
        assert 1 <= shown < 60 and lines[-1] == f"…and {60 - shown} more conditions"
        assert "<b>" not in section  # text from the rule is escaped


def test_a_condition_that_does_not_parse_falls_back_to_the_bare_figures():
    msg = make_alert_message(condition="days_since_last_login >=", facts={"days_since_last_login": 23})
    body = "\n".join(texts(render_alert(msg)[1]))
    assert "*Fires when*" not in body and "*Figures*\n• `days_since_last_login`: 23" in body
    huge = " or ".join(f"days_since_last_login > {i}" for i in range(3000))  # deeper than Python recurses
    text, blocks = render_alert(make_alert_message(condition=huge, facts={"days_since_last_login": 23}))
    assert "*Figures*\n• `days_since_last_login`: 23" in "\n".join(texts(blocks))
    assert_within_limits(text, blocks)


def test_explaining_agrees_with_the_compiled_condition_on_every_row():
    """`evaluate` (what the message shows) and `compile_condition` (what fires) on the same rows,
    nulls included; and pushing the nots in changes nothing."""
    conditions = [shipped_condition(r) for r in ("no_login_20d", "low_health_day_90", "renewal_at_risk", "upsell_ready",
                                                 "onboarding_checkin")] + [
        "not (a > 2 or b in (1, 3)) and (c / d < 0.5 or e is null)",
        "not (a between 1 and 3 and not (b != 2)) or (e is not null and c * 2 >= d - 1)",
        "not flag or a == b",
    ]
    rng = random.Random(4)
    columns = {
        "status": ["active", "trial", None], "days_since_last_login": [0, 19, 20, 45, None],
        "days_since_contract_start": [30, 89, 90, 96, 97, 180, None], "score": [0.5, 1.5, 3.0, None],
        "days_to_renewal": [89, 90, 180, 181, None], "band": ["red", "green", None],
        "license_activation_rate": [0.5, 0.9, 1.0, None], "all_key_features_used_30d": [True, False, None],
        "a": [0, 1, 2, 3, None], "b": [1, 2, 3, None], "c": [0.0, 1.0, 5.0, None], "d": [0.0, 2.0, 4.0, None],
        "e": [1, None], "flag": [True, False, None],
    }
    rows = [{name: rng.choice(values) for name, values in columns.items()} for _ in range(400)]
    frame = pl.DataFrame(rows, schema={"status": pl.String, "band": pl.String, "days_since_last_login": pl.Int64,
                                       "days_since_contract_start": pl.Int64, "score": pl.Float64,
                                       "days_to_renewal": pl.Int64, "license_activation_rate": pl.Float64,
                                       "all_key_features_used_30d": pl.Boolean, "a": pl.Int64, "b": pl.Int64,
                                       "c": pl.Float64, "d": pl.Float64, "e": pl.Int64, "flag": pl.Boolean})
    for condition in conditions:
        fired = frame.select(compile_condition(condition, frame.columns).alias("f"))["f"].to_list()
        assert [evaluate(condition, row) is True for row in rows] == fired, condition
        pushed = frame.select(compile_condition(str(without_not(condition)), frame.columns).alias("f"))["f"].to_list()
        assert pushed == fired, condition
        assert sum(fired) > 0 or condition.startswith("days_since_contract_start between"), condition


def test_crm_record_url_setting_and_link(monkeypatch):
    monkeypatch.delenv("CS_PIPELINE_CRM_RECORD_URL", raising=False)
    assert settings.crm_record_url() is None
    template = "https://acme.lightning.force.com/lightning/r/Account/{crm_id}/view"
    monkeypatch.setenv("CS_PIPELINE_CRM_RECORD_URL", template)
    assert settings.crm_record_url() == template
    assert record_url(template, "001A 0/x") == "https://acme.lightning.force.com/lightning/r/Account/001A%200%2Fx/view"
    assert record_url(template, None) is None and record_url(None, "001A") is None
    for bad in ("acme.lightning.force.com/r/{crm_id}", "https://acme.lightning.force.com/lightning/r/Account/"):
        monkeypatch.setenv("CS_PIPELINE_CRM_RECORD_URL", bad)
        with pytest.raises(ValueError, match=r"^CS_PIPELINE_CRM_RECORD_URL must be an http\(s\) URL with \{crm_id\}"):
            settings.crm_record_url()


def test_the_example_in_the_docs_is_what_the_renderer_produces_now():
    shown = message_example.shown_in_doc()
    assert shown, f"{message_example.DOC} has lost its example section"
    assert shown == message_example.generated(), (
        "docs/messages.md shows an outdated message: run .venv/bin/python -m tests.support.message_example"
    )
    text, blocks = render_alert(message_example.example())
    assert_within_limits(text, blocks)
    assert "• days since last login: *27* (threshold ≥ 20) ✔" in shown
    assert "[Open in CRM](https://acme.lightning.force.com/lightning/r/Account/0015g00000NwTRD/view)" in shown
    in_readme = message_example.shown_in_doc(message_example.README, message_example.README_BEGIN)
    assert in_readme == message_example.generated_for_readme(), (
        "README.md shows an outdated alert: run .venv/bin/python -m tests.support.message_example"
    )
    assert "[Acknowledge]  [Snooze 7 days]  [Snooze 30 days]  [Done]  [Not useful… ▾]" in in_readme
