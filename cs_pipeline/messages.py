"""Slack messages for alerts and run failures: pure functions from data to (text, Block Kit blocks).

Slack rejects a whole message when one block breaks its limits (`invalid_blocks`), and account
names, rule messages and playbook steps come from data and configuration, so every piece of text
is escaped and cut to fit here, never by the caller. Lengths are counted in UTF-16 code units,
which is never less than the characters Slack counts, so a cut text always fits.

Besides its documented per-block limits, chat.postMessage refuses a message whose blocks carry
more than about 12,000 characters of text in all (`msg_blocks_too_long`, undocumented; refusals
were reported from about 11,300). Each part of a message has its own budget, and the budgets add
up to less than MAX_MESSAGE_TEXT, so a message of any input stays clear of it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cs_pipeline.logic.expressions import (
    Between,
    Comparison,
    ExpressionError,
    InList,
    IsNull,
    Logical,
    Node,
    Not,
    Variable,
    describe,
    evaluate,
    variables,
    without_not,
)

# https://docs.slack.dev/reference/block-kit/blocks
MAX_BLOCKS = 50
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_TEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_MESSAGE_TEXT = 9000  # all text of all blocks; see the module docstring
# chat.postMessage accepts 40,000 characters of `text`; with blocks it is only the notification.
MAX_FALLBACK_TEXT = 1000

# The budgets of the parts of an alert; they add up to less than MAX_MESSAGE_TEXT.
NOTE_TEXT = 500
FIELD_TEXT = 200
WHY_TEXT = 1200
FIGURES_TEXT = 1200  # the condition and its figures, or the bare figures
CONDITION_TEXT = 400  # the condition in words, within FIGURES_TEXT
FACT_LINE = 300
MOVERS = 5
NAME_TEXT = 80
TASK_TEXT = 600
STEPS_TEXT = 2500
STEP_LINE = 500
CONTEXT_TEXT = 300

ELLIPSIS = "…"
NONE = "—"

SEVERITY_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
BAND_EMOJI = {"red": ":red_circle:", "yellow": ":large_yellow_circle:", "green": ":large_green_circle:"}


@dataclass(frozen=True)
class AlertMessage:
    """Everything an alert message shows; built by the dispatch job from an `alert_events` row."""

    alert_id: str
    notification_number: int
    rule_id: str
    rule_description: str
    severity: str  # info | warning | critical
    account_id: str
    account_name: str
    segment: str
    owner_email: str | None
    partition_date: dt.date
    episode_start: dt.date
    arr: float | None
    renewal_date: dt.date | None
    score: float | None
    band: str | None
    score_7d_ago: float | None
    score_30d_ago: float | None
    top_movers: list[tuple[str, float]]  # indicator -> change of its contribution vs 30 days ago
    facts: dict[str, object]  # the figures behind the rule
    message: str  # the rule's rendered message
    task_title: str
    task_steps: list[str]
    task_due_date: dt.date
    task_priority: str
    dagster_url: str | None = None
    condition: str = ""  # the rule's condition as written; shown in words against `facts`
    crm_url: str | None = None  # the account's CRM record


def render_alert(msg: AlertMessage, note: str | None = None) -> tuple[str, list[dict]]:
    """The fallback text and the blocks of an alert.

    `note` is shown right under the header, e.g. why the message went to a channel instead of
    the owner.
    """
    emoji = SEVERITY_EMOJI.get(msg.severity, ":bell:")
    rule = msg.rule_description.strip().rstrip(".") or msg.rule_id  # a description is often a sentence
    account = msg.account_name.strip() or msg.account_id

    blocks = [_header(f"{emoji} {rule} · {account}")]
    if note:
        blocks.append(_section(f":bust_in_silhouette: {escape(note)}", NOTE_TEXT))
    blocks.append(_fields(_alert_fields(msg), FIELD_TEXT))
    blocks.append({"type": "divider"})
    blocks.append(_section(f"*Why*\n{escape(msg.message) or NONE}", WHY_TEXT))
    if explained := explain_condition(msg.condition, msg.facts):
        sentence, lines = explained
        title = f"*Fires when* {truncate(escape(sentence), CONDITION_TEXT)}"
        blocks.append(_section(_packed(title, lines, FACT_LINE, FIGURES_TEXT, "conditions")))
    elif msg.facts:
        facts = _packed("*Figures*", _fact_lines(msg.facts), FACT_LINE, FIGURES_TEXT, "figures")
        blocks.append(_section(facts))
    if msg.top_movers:
        blocks.append(_section(_movers_text(msg.top_movers)))
    blocks.append({"type": "divider"})
    task = truncate(f"*What to do:* {escape(msg.task_title) or NONE}", TASK_TEXT - 100)
    due = f"Due *{msg.task_due_date.isoformat()}* · priority *{escape(msg.task_priority) or NONE}*"
    blocks.append(_section(f"{task}\n{due}", TASK_TEXT))
    if msg.task_steps:
        steps = [f"{i}. {escape(step)}" for i, step in enumerate(msg.task_steps, start=1)]
        blocks.append(_section(_packed("", steps, STEP_LINE, STEPS_TEXT, "steps")))
    if msg.alert_id and len(msg.alert_id) <= MAX_ACTION_VALUE:
        blocks.append(action_buttons(msg.alert_id))
    buttons = [b for b in (_button("Open in Dagster", msg.dagster_url), _button("Open in CRM", msg.crm_url)) if b]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(
        _context(
            f"Alert `{escape(msg.alert_id)}` · notification #{msg.notification_number} · "
            f"rule `{escape(msg.rule_id)}` · as of {msg.partition_date.isoformat()}",
            CONTEXT_TEXT,
        )
    )

    text = f"{emoji} {escape(rule)}: {escape(account)}. {escape(msg.message)}"
    if note:
        text = f"{text} ({escape(note)})"
    return truncate(text, MAX_FALLBACK_TEXT), blocks


# The buttons of an alert message (`cs-pipeline slack-listen` applies their clicks): action id -> label.
ACTIONS_BLOCK_ID = "cs_pipeline_actions"
BUTTONS = {"cs_ack": "Acknowledge", "cs_snooze_7": "Snooze 7 days", "cs_snooze_30": "Snooze 30 days", "cs_done": "Done"}
NOT_USEFUL = "cs_not_useful"
NOT_USEFUL_REASONS = {
    "already_known": "Already knew it",
    "wrong_account": "Not right for this account",
    "wrong_threshold": "Threshold too sensitive",
    "not_actionable": "Nothing I can do",
}
MAX_ACTION_VALUE = 255  # a button's value may hold 2,000 characters; an alert id is far shorter


def action_buttons(alert_id: str) -> dict:
    """Acknowledge, Snooze 7 days, Snooze 30 days, Done, and Not useful (a reason from a menu); each carries the alert id."""
    elements: list[dict] = [
        {"type": "button", "action_id": action_id, "value": alert_id,
         "text": {"type": "plain_text", "text": label}, **({"style": "primary"} if action_id == "cs_done" else {})}
        for action_id, label in BUTTONS.items()
    ]
    elements.append({
        "type": "static_select", "action_id": NOT_USEFUL,
        "placeholder": {"type": "plain_text", "text": "Not useful…"},
        "options": [{"text": {"type": "plain_text", "text": label}, "value": f"{code}|{alert_id}"}
                    for code, label in NOT_USEFUL_REASONS.items()],
    })
    return {"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": elements}


@dataclass(frozen=True)
class ResolvedMessage:
    """An alert whose condition no longer holds: its owner hears it once."""

    alert_id: str
    rule_id: str
    rule_description: str
    account_id: str
    account_name: str
    segment: str
    owner_email: str | None
    episode_start: dt.date
    last_open_day: dt.date
    closed_on: dt.date  # the first evaluated day on which it was no longer open
    task_status: str


def render_resolved(msg: ResolvedMessage, note: str | None = None) -> tuple[str, list[dict]]:
    """A short "resolved" message: which alert, since when, what happened to its task."""
    rule = msg.rule_description.strip() or msg.rule_id
    account = msg.account_name.strip() or msg.account_id
    blocks = [_header(f":white_check_mark: Resolved: {rule} · {account}")]
    if note:
        blocks.append(_section(f":bust_in_silhouette: {escape(note)}", NOTE_TEXT))
    blocks.append(
        _section(
            f"No longer true on {msg.closed_on.isoformat()} (open {msg.episode_start.isoformat()} to "
            f"{msg.last_open_day.isoformat()}). Its task is now *{escape(msg.task_status)}*.",
            WHY_TEXT,
        )
    )
    blocks.append(_context(f"Alert `{escape(msg.alert_id)}` · rule `{escape(msg.rule_id)}`", CONTEXT_TEXT))
    text = f":white_check_mark: Resolved: {escape(rule)}: {escape(account)}"
    return truncate(text, MAX_FALLBACK_TEXT), blocks


DIGEST_TEXT = 2800
DIGEST_LINE = 400


def render_digest(digest_id: str, alerts: list[AlertMessage], note: str | None = None) -> tuple[str, list[dict]]:
    """One message listing several alerts of one CSM: one line each, the most urgent first."""
    count = f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}"
    blocks = [_header(f":clipboard: Daily digest: {count}")]
    if note:
        blocks.append(_section(f":bust_in_silhouette: {escape(note)}", NOTE_TEXT))
    lines = [
        f"• {SEVERITY_EMOJI.get(a.severity, ':bell:')} *{escape(a.account_name or a.account_id)}* · "
        f"{escape(a.rule_description or a.rule_id)}: {escape(a.message)} "
        f"(task due {a.task_due_date.isoformat()}, alert `{escape(a.alert_id)}`)"
        for a in alerts
    ]
    blocks.append(_section(_packed("", lines, DIGEST_LINE, DIGEST_TEXT, "alerts")))
    blocks.append(_context(f"Digest `{escape(digest_id)}`", CONTEXT_TEXT))
    return truncate(f":clipboard: Daily digest: {count}", MAX_FALLBACK_TEXT), blocks


def render_run_failure(
    job_name: str, run_id: str, partition: str | None, error: str, run_url: str | None
) -> tuple[str, list[dict]]:
    """The fallback text and the blocks telling on-call that a pipeline run failed."""
    blocks = [
        _header(f":x: Run failed: {job_name}"),
        _fields(
            [
                f"*Job*\n{escape(job_name)}",
                f"*Run*\n`{escape(run_id)}`",
                f"*Partition*\n{escape(partition) if partition else NONE}",
            ],
            FIELD_TEXT,
        ),
        _section(_code_block("*Error*", error)),
    ]
    if button := _button("Open run in Dagster", run_url):
        blocks.append({"type": "actions", "elements": [button]})
    blocks.append(_context(f"Run `{escape(run_id)}`", CONTEXT_TEXT))

    first_line = next((line.strip() for line in error.splitlines() if line.strip()), "")
    where = f" ({escape(partition)})" if partition else ""
    text = f":x: Run failed: {escape(job_name)}{where}: {escape(first_line)}"
    return truncate(text, MAX_FALLBACK_TEXT), blocks


# ---------------------------------------------------------------------------------------------
# text


def escape(text: str | None) -> str:
    """Slack mrkdwn escaping: without it a `<` in an account name starts a link."""
    if not text:
        return ""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_length(text: str) -> int:
    """Length in UTF-16 code units: what JavaScript counts, never less than what Slack counts."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` (UTF-16 units), ending in "…" when cut.

    Never cuts inside an escaped entity (`&amp;`), which Slack would show half-written.
    """
    if slack_length(text) <= limit:
        return text
    budget = limit - len(ELLIPSIS)
    used = 0
    end = 0
    for end, ch in enumerate(text):  # noqa: B007 - `end` is the cut point after the loop
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            break
    cut = text[:end]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def _format_number(value: float, decimals: int = 2) -> str:
    if math.isnan(value):
        return NONE
    return f"{value:,.{decimals}f}"


def _format_value(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return NONE if math.isnan(value) else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _score(value: float | None) -> str:
    return NONE if value is None else _format_number(value)


def _change(now: float | None, then: float | None) -> str:
    if now is None or then is None:
        return ""
    return f" ({_signed(now - then)})"


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


# ---------------------------------------------------------------------------------------------
# alert parts


def _alert_fields(msg: AlertMessage) -> list[str]:
    renewal = NONE
    if msg.renewal_date is not None:
        days = (msg.renewal_date - msg.partition_date).days
        renewal = f"{msg.renewal_date.isoformat()} (in {days} d)" if days >= 0 else msg.renewal_date.isoformat()
    score = _score(msg.score)
    if msg.band:
        score = f"{BAND_EMOJI.get(msg.band, '')} {score} ({escape(msg.band)})".strip()
    day_in_episode = (msg.partition_date - msg.episode_start).days + 1
    return [
        f"*Account*\n{escape(msg.account_name) or NONE} (`{escape(msg.account_id)}`)",
        f"*Segment*\n{escape(msg.segment) or NONE}",
        f"*ARR*\n{NONE if msg.arr is None else _format_number(msg.arr, 0)}",
        f"*Renewal*\n{renewal}",
        f"*Health score*\n{score}",
        f"*7 d ago*\n{_score(msg.score_7d_ago)}{_change(msg.score, msg.score_7d_ago)}",
        f"*30 d ago*\n{_score(msg.score_30d_ago)}{_change(msg.score, msg.score_30d_ago)}",
        f"*Episode start*\n{msg.episode_start.isoformat()} (day {day_in_episode})",
        f"*Owner*\n{escape(msg.owner_email) or NONE}",
    ]


def _fact_lines(facts: dict[str, object]) -> list[str]:
    return [f"• {_code(str(name), NAME_TEXT)}: {escape(_format_value(value))}" for name, value in facts.items()]


# ---------------------------------------------------------------------------------------------
# the condition, explained


COMPARISON_SYMBOLS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
MARKS = {True: "✔", False: "✘", None: "?"}  # holds, does not hold, a figure is missing


def explain_condition(condition: str, facts: Mapping[str, object]) -> tuple[str, list[str]] | None:
    """A rule's condition in words, and one line per part of it (the parts joined by and/or)
    with the figure, what it is held against, and whether it holds, e.g.
    ("status is 'active' and days since last login is at least 20",
     ["• status: *active* (must be 'active') ✔", "• days since last login: *27* (threshold ≥ 20) ✔"]).

    Derived from the condition's tree, so any rule reads this way; None when there is no
    condition or it does not parse (the message then lists the bare figures).
    """
    if not condition or not condition.strip():
        return None
    try:
        node = _variables_first(without_not(condition))
        lines: list[str] = []
        for part in _parts(node):
            line = _part_line(part, facts)
            if line not in lines:
                lines.append(line)
        return describe(node), lines
    except (ExpressionError, RecursionError):  # RecursionError: thousands of parts, beyond any real rule
        return None


def _variables_first(node: Node) -> Node:
    """`20 <= days_since_last_login` reads as `days_since_last_login >= 20`."""
    if isinstance(node, Logical):
        return Logical(node.operator, _variables_first(node.left), _variables_first(node.right), node.column)
    if isinstance(node, Comparison) and not variables(node.left) and variables(node.right):
        return Comparison(MIRRORED[node.operator], node.right, node.left, node.column)
    return node


def _parts(node: Node) -> list[Node]:
    if isinstance(node, Logical):
        return _parts(node.left) + _parts(node.right)
    return [node]


def _part_line(part: Node, facts: Mapping[str, object]) -> str:
    subject: Node | None = None
    if isinstance(part, Comparison):
        subject, right, op = part.left, part.right, part.operator
        if op in COMPARISON_SYMBOLS:
            against = f"threshold {COMPARISON_SYMBOLS[op]} {_operand(right, facts)}"
        else:
            against = f"must {'not ' if op == '!=' else ''}be {_operand(right, facts)}"
    elif isinstance(part, Between):
        subject = part.operand
        against = f"{'not ' if part.negated else ''}between {_operand(part.low, facts)} and {_operand(part.high, facts)}"
    elif isinstance(part, InList):
        subject = part.operand
        items = [_operand(item, facts) for item in part.items]
        if len(items) == 1:
            against = f"must {'not ' if part.negated else ''}be {items[0]}"
        else:
            against = f"{'none' if part.negated else 'one'} of {', '.join(items[:-1])} or {items[-1]}"
    elif isinstance(part, IsNull):
        subject = part.operand
        against = f"must be {'known' if part.negated else 'unknown'}"
    elif isinstance(part, Variable) or (isinstance(part, Not) and isinstance(part.operand, Variable)):
        subject = part if isinstance(part, Variable) else part.operand
        against = f"must be {'no' if isinstance(part, Not) else 'yes'}"
    mark = MARKS[_holds(part, facts)]
    if subject is None:  # a literal, or a `not` in front of something other than a variable
        return f"• {escape(describe(part))} {mark}"
    value = escape(_format_value(evaluate(subject, facts)))
    line = f"• {escape(describe(subject))}: *{value}* ({escape(against)}) {mark}"
    inputs = sorted(variables(part) - ({subject.name} if isinstance(subject, Variable) else set()))
    if inputs:  # a computed figure: the figures it comes from
        line += " · from " + ", ".join(f"{name.replace('_', ' ')} {escape(_format_value(facts.get(name)))}" for name in inputs)
    return line


def _operand(node: Node, facts: Mapping[str, object]) -> str:
    """A threshold as written (`20`, `'active'`), or, when it is computed, its words and value."""
    if not variables(node):
        return describe(node)
    return f"{describe(node)} = {_format_value(evaluate(node, facts))}"


def _holds(part: Node, facts: Mapping[str, object]) -> bool | None:
    result = evaluate(part, facts)
    return None if result is None else bool(result)


def _movers_text(movers: list[tuple[str, float]]) -> str:
    lines = ["*What moved the score* (contribution vs 30 d ago)"]
    for name, change in movers[:MOVERS]:
        arrow = ":small_red_triangle_down:" if change < 0 else ":small_red_triangle:"
        lines.append(f"{arrow} {_code(name, NAME_TEXT)} {_signed(change)}")
    if len(movers) > MOVERS:
        lines.append(f"…and {len(movers) - MOVERS} more")
    return "\n".join(lines)


def _code(name: str, limit: int) -> str:
    """`name` as inline code, cut inside the backticks so the formatting stays closed."""
    return f"`{truncate(escape(name), limit - 2)}`"


def _packed(title: str, lines: list[str], line_limit: int, limit: int, what: str) -> str:
    """`title` and as many `lines` as fit in `limit`, then "…and N more <what>"."""
    reserve = slack_length(f"\n…and {len(lines)} more {what}")
    text = title
    for i, line in enumerate(lines):
        line = truncate(line, line_limit)
        if slack_length(text) + 1 + slack_length(line) + reserve > limit:
            return f"{text}\n…and {len(lines) - i} more {what}".lstrip("\n")
        text = f"{text}\n{line}" if text else line
    return text


def _code_block(title: str, code: str) -> str:
    fence = "```"
    body = escape(code.replace(fence, "'''")) or NONE
    room = MAX_SECTION_TEXT - slack_length(title) - 2 * len(fence) - 1
    return f"{title}\n{fence}{truncate(body, room)}{fence}"


# ---------------------------------------------------------------------------------------------
# blocks


def _header(text: str) -> dict:
    text = truncate(text, MAX_HEADER_TEXT) or NONE
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _section(text: str, limit: int = MAX_SECTION_TEXT) -> dict:
    text = truncate(text, min(limit, MAX_SECTION_TEXT)) or NONE
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _fields(fields: Iterable[str], limit: int = MAX_FIELD_TEXT) -> dict:
    texts = [truncate(text, min(limit, MAX_FIELD_TEXT)) or NONE for text in fields][:MAX_FIELDS]
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in texts]}


def _context(text: str, limit: int = MAX_CONTEXT_TEXT) -> dict:
    text = truncate(text, min(limit, MAX_CONTEXT_TEXT)) or NONE
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(label: str, url: str | None) -> dict | None:
    if not url or len(url) > MAX_URL or not url.startswith(("http://", "https://")):
        return None
    return {"type": "button", "text": {"type": "plain_text", "text": truncate(label, MAX_BUTTON_TEXT)}, "url": url}
