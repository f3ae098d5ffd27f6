"""Block Kit rendering: what an alert says, and that no input can break Slack's limits."""

from __future__ import annotations

import json

import pytest

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
from tests.support import make_alert_message
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
    assert "• `days_since_last_login`: 23" in body
    assert "• `last_login_date`: 2025-02-15" in body
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
    assert "*Figures*" not in body and "What moved" not in body
    assert all(block["type"] != "actions" for block in blocks)
    assert_within_limits(text, blocks)


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
    )
    for note in (None, long):
        text, blocks = render_alert(msg, note=note)
        assert_within_limits(text, blocks)
        assert blocks[0]["text"]["text"].endswith(ELLIPSIS)
        assert blocks[-1]["type"] == "context"  # the alert id is never cut away
        assert all(block["type"] != "actions" for block in blocks)
        body = "\n".join(texts(blocks))
        assert "more figures" in body and "more steps" in body and "…and 95 more" in body


def test_one_hundred_facts_show_as_many_as_fit_and_count_the_rest():
    facts = {f"figure_{i:03d}": i * 1.5 for i in range(100)}
    text, blocks = render_alert(make_alert_message(facts=facts))
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
