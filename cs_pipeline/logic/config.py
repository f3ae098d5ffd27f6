"""The health model and rules files: YAML read with line numbers, validated by pydantic.

Both files are written by Customer Success people, so every problem is reported as one line that
names the file, the line, the field and, where there is a closed list, the valid choices:

    rules.yaml:42: rules[3].condition: column 1: unknown variable 'scroe'; did you mean 'score'?; valid choices: ...

Structure (types, ranges, fixed lists of words) is checked by the pydantic models; what depends on
other parts of the file (an indicator's variable, a rule's condition against the columns of
account_health) is checked by each file's root model, which knows where every item sits.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
import string
import types
import typing
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from cs_pipeline.logic import expressions

__all__ = [
    "SEGMENTS",
    "HEALTH_MODEL_FILE",
    "RULES_FILE",
    "ConfigError",
    "Bands",
    "Product",
    "SegmentOverride",
    "Indicator",
    "HealthModel",
    "Task",
    "Rule",
    "RuleSet",
    "load_config",
    "load_health_model",
    "load_rules",
    "read_yaml",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_WEIGHT",
    "health_model_from_data",
    "rules_from_data",
    "health_variables",
    "health_variable_types",
    "indicator_variables",
    "event_column",
    "placeholders",
    "render",
]

SEGMENTS = ("enterprise", "mid_market", "smb")
HEALTH_MODEL_FILE = "health_model.yaml"
RULES_FILE = "rules.yaml"
ACCOUNT_OWNER = "account_owner"

Segment = Literal["enterprise", "mid_market", "smb"]
Direction = Literal["higher_is_better", "lower_is_better"]

_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# Event names become column names ('report.created' -> events_report_created), so they may only
# hold what a column name can, with '.' as a separator.
_EVENT_NAME = re.compile(r"[a-z][a-z0-9]*(?:[._][a-z0-9]+)*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

# Limits of every YAML config file (health model, rules, sources, task sinks, write-back): far above
# any real file, far below what would exhaust memory or Python's recursion.
MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_DEPTH = 32
# A weight is relative to the others; past this, a sum of weights could overflow to infinity.
MAX_WEIGHT = 1_000_000
# Day counts a rule sets (re-notify interval, task due date): ten years, past which a date overflows
# long before it means anything.
MAX_DAYS = 3650


class ConfigError(ValueError):
    """A problem in a config file: `str()` is "<file>:<line>: <field>: <message>[; valid choices: ...]"."""

    def __init__(
        self,
        file: str,
        line: int | None,
        field: str,
        message: str,
        choices: typing.Sequence[str] = (),
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.choices = list(choices)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        text = ": ".join(parts)
        if self.choices:
            text += f"; valid choices: {', '.join(self.choices)}"
        return " ".join(text.split())  # one line, whatever the YAML or the message held


class ConfigProblem(Exception):
    """A cross-field problem found by a root model, with the path of the field it is about.

    Deliberately not a ValueError: pydantic would wrap it and lose the path. The public loaders
    turn it into a ConfigError with the line of that path.
    """

    def __init__(self, loc: tuple[str | int, ...], reason: str, choices: typing.Sequence[str] = ()) -> None:
        super().__init__(f"{_field_path(loc)}: {reason}")
        self.loc = loc
        self.reason = reason
        self.choices = list(choices)


# ---------------------------------------------------------------------------------------------
# Variables: the columns of account_health, which is what rules and indicators may use.

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
_SCORE_VARIABLES = [
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
        *_SCORE_VARIABLES,
        *_indicator_outputs(indicator_names),
        *_CONTEXT_VARIABLES,
    ]


def _numeric_inputs(events, key_features) -> dict[str, str]:
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
    return _numeric_inputs(model.product.events, model.product.key_features)


# ---------------------------------------------------------------------------------------------
# Health model


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt 'severty:' must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


# Finite numbers only: `.inf` or `.nan` in a weight or threshold made every score NaN, every band green.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Weight = Annotated[float, Field(gt=0, le=MAX_WEIGHT, allow_inf_nan=False)]
Thresholds = Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]


class Bands(_Strict):
    """Score below `red` is red, below `yellow` is yellow, otherwise green."""

    red: float = Field(1.5, ge=0, le=4, allow_inf_nan=False)
    yellow: float = Field(2.5, ge=0, le=4, allow_inf_nan=False)

    def band_of(self, score: float | None) -> str | None:
        if score is None:
            return None
        return "red" if score < self.red else "yellow" if score < self.yellow else "green"


class Product(_Strict):
    events: list[str] = Field(min_length=1)
    key_features: list[str] = []


class SegmentOverride(_Strict):
    thresholds: Thresholds | None = None
    weight: Weight | None = None


class Indicator(_Strict):
    name: str
    variable: str
    description: str = ""
    weight: Weight
    direction: Direction
    thresholds: Thresholds
    missing: Literal["exclude", "zero"] = "exclude"
    segments: dict[Segment, SegmentOverride] = {}

    def thresholds_for(self, segment: str | None) -> list[float]:
        override = self.segments.get(segment) if segment else None  # type: ignore[arg-type]
        return override.thresholds if override and override.thresholds else self.thresholds

    def weight_for(self, segment: str | None) -> float:
        override = self.segments.get(segment) if segment else None  # type: ignore[arg-type]
        return override.weight if override and override.weight else self.weight


class HealthModel(_Strict):
    bands: Bands = Bands()
    product: Product
    indicators: list[Indicator] = Field(min_length=1)

    @property
    def by_name(self) -> dict[str, Indicator]:
        return {indicator.name: indicator for indicator in self.indicators}

    @model_validator(mode="after")
    def _check(self) -> HealthModel:
        for problem in _health_model_problems(self):
            raise problem
        return self


def _health_model_problems(model: HealthModel) -> Iterator[ConfigProblem]:
    if model.bands.red > model.bands.yellow:
        yield ConfigProblem(("bands", "yellow"), f"must be at least red ({model.bands.red})")
    yield from _product_problems(model.product)
    allowed = _numeric_inputs(model.product.events, model.product.key_features)
    score_outputs = {name for name, _kind, _description in _SCORE_VARIABLES}
    seen: dict[str, int] = {}
    for index, indicator in enumerate(model.indicators):
        at = ("indicators", index)
        if not _SNAKE_CASE.fullmatch(indicator.name):
            yield ConfigProblem((*at, "name"), f"{indicator.name!r} must be snake_case, like 'utilization_rate'")
        if indicator.name in seen:
            first = seen[indicator.name]
            yield ConfigProblem((*at, "name"), f"duplicate indicator name {indicator.name!r} (also indicators[{first}])")
        seen.setdefault(indicator.name, index)
        if indicator.variable not in allowed:
            why = (
                "is computed from the indicators; an indicator must score a usage or context figure"
                if indicator.variable in score_outputs or indicator.variable.startswith(("points_", "contribution_"))
                else "is not a numeric usage or context variable"
            )
            yield ConfigProblem((*at, "variable"), f"{indicator.variable!r} {why}", sorted(allowed))
        yield from _threshold_problems(indicator.thresholds, indicator.direction, (*at, "thresholds"))
        for segment, override in indicator.segments.items():
            if override.thresholds is not None:
                yield from _threshold_problems(
                    override.thresholds, indicator.direction, (*at, "segments", segment, "thresholds")
                )


def _product_problems(product: Product) -> Iterator[ConfigProblem]:
    columns: dict[str, int] = {}
    for index, event in enumerate(product.events):
        at = ("product", "events", index)
        if not _EVENT_NAME.fullmatch(event):
            yield ConfigProblem(at, f"{event!r} must be lowercase words joined by '.' or '_', like 'report.created'")
        column = event_column(event)
        if column in columns:
            other = product.events[columns[column]]
            yield ConfigProblem(at, f"{event!r} and {other!r} would share the column {column}")
        columns.setdefault(column, index)
    for index, feature in enumerate(product.key_features):
        if feature not in product.events:
            at = ("product", "key_features", index)
            yield ConfigProblem(at, f"{feature!r} is not one of product.events", product.events)


def _threshold_problems(thresholds: list[float], direction: str, at: tuple) -> Iterator[ConfigProblem]:
    ascending = direction == "higher_is_better"
    ordered = sorted(thresholds, reverse=not ascending)
    if thresholds != ordered:
        order = "ascending (higher_is_better)" if ascending else "descending (lower_is_better)"
        yield ConfigProblem(at, f"must be {order}, got {thresholds}")


# ---------------------------------------------------------------------------------------------
# Rules


class Task(_Strict):
    title: str = Field(min_length=1)
    steps: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    owner: str = ACCOUNT_OWNER  # the account's owner_email, or a fixed email address
    due_in_days: int = Field(ge=0, le=MAX_DAYS)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    # What the task becomes when the rule's condition clears: `done` (clearing is the outcome the
    # task worked for), `obsolete` (the reason for it went away), or `keep_open` (the condition
    # says nothing about the work, e.g. a one-day event: the episode ends, the task stays).
    on_resolve: Literal["done", "obsolete", "keep_open"] = "done"


class Rule(_Strict):
    id: str
    kind: Literal["onboarding", "utilization", "risk", "expansion"]
    description: str = Field(min_length=1)
    condition: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"]
    renotify_days: int = Field(ge=0, le=MAX_DAYS)  # 0: one notification per episode
    segments: list[Segment] | None = Field(None, min_length=1)  # None: every segment
    message: str = Field(min_length=1)
    task: Task

    def describe(self) -> str:
        """The condition in words, for messages."""
        return expressions.describe(self.condition)

    def fact_variables(self) -> list[str]:
        """The figures behind an alert: the condition's variables, then the message's placeholders."""
        names = sorted(expressions.variables(self.condition))
        for text in (self.message, self.task.title, *self.task.steps):
            names += [name for name, _spec in placeholders(text) if name not in names]
        return names


class RuleSet(_Strict):
    rules: list[Rule]
    _variables: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Rule]:
        return {rule.id: rule for rule in self.rules}

    @property
    def renotify_days(self) -> dict[str, int]:
        """rule id -> re-notify interval, as `episodes.assign_episodes` takes it."""
        return {rule.id: rule.renotify_days for rule in self.rules}

    def expression(self, rule_id: str) -> pl.Expr:
        """The rule's condition and segment filter, as a boolean polars expression on account_health.

        Churned accounts and days without a live term are the caller's to exclude.
        """
        rule = self.by_id[rule_id]
        matched = expressions.compile_condition(rule.condition, self._variables)
        if rule.segments is not None:
            matched = matched & pl.col("segment").is_in(list(rule.segments)).fill_null(False)
        return matched

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RuleSet:
        context = info.context or {}
        variables = context.get("variables")
        if variables is None:
            raise ConfigProblem((), "rules need the health model: load them with load_rules(path, model)")
        self._variables = dict(variables)
        for problem in _rule_problems(self.rules, variables, context.get("types", {})):
            raise problem
        return self


def _rule_problems(
    rules: list[Rule], variables: Mapping[str, str], types_: Mapping[str, str]
) -> Iterator[ConfigProblem]:
    first_index: dict[str, int] = {}
    for index, rule in enumerate(rules):
        at = ("rules", index)
        if not _SNAKE_CASE.fullmatch(rule.id):
            yield ConfigProblem((*at, "id"), f"{rule.id!r} must be snake_case, like 'no_login_20d'")
        if rule.id in first_index:
            yield ConfigProblem((*at, "id"), f"duplicate rule id {rule.id!r} (also rules[{first_index[rule.id]}])")
        first_index.setdefault(rule.id, index)
        yield from _condition_problems(rule.condition, variables, types_, (*at, "condition"))
        yield from _template_problems(rule.message, variables, types_, (*at, "message"))
        yield from _template_problems(rule.task.title, variables, types_, (*at, "task", "title"))
        for step_index, step in enumerate(rule.task.steps):
            yield from _template_problems(step, variables, types_, (*at, "task", "steps", step_index))
        owner = rule.task.owner
        if owner != ACCOUNT_OWNER and not _EMAIL.fullmatch(owner):
            yield ConfigProblem((*at, "task", "owner"), f"{owner!r} must be '{ACCOUNT_OWNER}' or an email address")


def _condition_problems(condition: str, variables, types_, at: tuple) -> Iterator[ConfigProblem]:
    try:
        node = expressions.parse(condition)
        expressions.compile_condition(condition, variables)
    except expressions.ExpressionError as error:
        where = f"column {error.column}: " if error.column is not None else ""
        yield ConfigProblem(at, where + error.reason, error.choices)
        return
    for name in sorted(expressions.boolean_variables(node)):
        if types_.get(name, "bool") != "bool":
            yield ConfigProblem(at, f"{name!r} is not true/false; compare it, e.g. '{name} > 0'")


def _template_problems(template: str, variables, types_, at: tuple) -> Iterator[ConfigProblem]:
    try:
        fields = placeholders(template)
    except ValueError as error:
        yield ConfigProblem(at, str(error))
        return
    for name, spec in fields:
        if name not in variables:
            close = difflib.get_close_matches(name, list(variables), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            yield ConfigProblem(at, f"unknown placeholder {{{name}}}{hint}", sorted(variables))
        elif spec and not _format_spec_fits(spec, types_.get(name, "text")):
            yield ConfigProblem(at, f"format '{spec}' does not fit {{{name}}} ({types_.get(name)})")


_SAMPLES = {"int": 7, "float": 0.5, "text": "x", "bool": True, "date": dt.date(2025, 1, 31)}


def _format_spec_fits(spec: str, kind: str) -> bool:
    try:
        format(_SAMPLES.get(kind, "x"), spec)
    except (ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Message templates: "{days_since_last_login} days" or "{license_activation_rate:.0%}"

_PLACEHOLDER = re.compile(r"[a-z_][a-z0-9_]*")


def placeholders(template: str) -> list[tuple[str, str]]:
    """The (variable, format spec) placeholders of a template; ValueError when one is malformed.

    Only plain names are allowed (no `{a.b}`, `{a[0]}` or `{a!r}`): a template reads values, it
    never reaches into them. Write `{{` and `}}` for literal braces.
    """
    found = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"malformed placeholder: {error}; write '{{{{' or '}}}}' for a literal brace") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _PLACEHOLDER.fullmatch(name) or "__" in name or conversion or "{" in (spec or ""):
            raise ValueError(f"placeholder {{{name}}} must be a variable name, like {{score}} or {{arr:,.0f}}")
        found.append((name, spec or ""))
    return found


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template's placeholders from `values` (an account_health row, as a dict).

    Without a format spec: floats with 2 decimals, whole numbers as they are, rates as given
    (write `{license_activation_rate:.0%}` for a percentage), dates as YYYY-MM-DD, None as "n/a".
    """
    pieces = []
    for literal, name, spec, _conversion in string.Formatter().parse(template):
        pieces.append(literal)
        if name is None:
            continue
        if name not in values:
            raise KeyError(f"template placeholder {{{name}}} has no value")
        pieces.append(_format_value(values[name], spec or ""))
    return "".join(pieces)


def _format_value(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            pass  # a spec that does not fit this value: fall back rather than fail a notification
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, Decimal)):
        return f"{value:.2f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------
# Loading: YAML with the line of every key, then validation with errors translated to lines.


class _Document:
    """A parsed YAML file: its data and the line of each key / list item, by path."""

    def __init__(self, file: str, data: Any, lines: dict[tuple, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line_of(self, loc: tuple) -> int | None:
        # The closest enclosing item that has a line: a missing field is reported on its parent.
        path = tuple(part for part in loc if part != "[key]")
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, loc: tuple, message: str, choices: typing.Sequence[str] = ()) -> ConfigError:
        return ConfigError(self.file, self.line_of(loc), _field_path(loc), message, choices)


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a config file may not use (an alias, an anchor, too deep a nesting)."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing aliases and anchors and nesting past MAX_YAML_DEPTH.

    An alias is a reference: nine nested lists of nine aliases each (a 1 KB "billion laughs")
    expand to 9**9 values when constructed or validated. Config files are short and written by
    hand, so they have no use for references; the refusal comes while the file is composed,
    before anything is expanded. The composer recurses once per level, hence the depth limit.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(None, None, f"YAML aliases (*{event.anchor}) are not allowed in config files: write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, f"YAML anchors (&{event.anchor}) are not allowed in config files: write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep (the limit)", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_text(path: Path) -> str:
    file = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(file, None, "", f"the file is {size:,} bytes; config files are limited to {MAX_CONFIG_BYTES:,} bytes")
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(file, None, "", f"cannot read the file: {error}") from None


def _yaml_error(file: str, error: yaml.YAMLError) -> ConfigError:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        prefix = "" if isinstance(error, _Refused) else "invalid YAML: "
        return ConfigError(file, line, "", f"{prefix}{error.problem or error}")
    return ConfigError(file, None, "", f"invalid YAML: {error}")


def read_yaml(path: Path) -> Any:
    """A YAML config file's data (None when it is empty), read with the limits of every config
    file: size, no aliases or anchors, nesting depth. Problems are ConfigErrors naming the line."""
    file = str(path)
    loader = _ConfigLoader(_read_text(Path(path)))
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise _yaml_error(file, error) from None
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> _Document:
    file = str(path)
    loader = _ConfigLoader(_read_text(Path(path)))
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(file, 1, "", "the file is empty")
        lines: dict[tuple, int] = {}
        _record_lines(loader, node, (), lines, file)
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        raise _yaml_error(file, error) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(file, node.start_mark.line + 1, "", "expected a mapping of keys at the top of the file")
    return _Document(file, data, lines)


def _record_lines(
    loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(file, line, _field_path((*path, key)), f"duplicate key (first on line {seen[key]})")
            seen[key] = line
            lines[(*path, key)] = line
            _record_lines(loader, value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(loader, item, (*path, index), lines, file)


def _field_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _validate(model_class: type[BaseModel], document: _Document, context: dict | None = None):
    try:
        return model_class.model_validate(document.data, context=context)
    except ConfigProblem as problem:
        raise document.error(problem.loc, problem.reason, problem.choices) from None
    except ValidationError as error:
        raise _translate(error, model_class, document) from None


def _translate(error: ValidationError, model_class: type[BaseModel], document: _Document) -> ConfigError:
    # An unknown key usually explains the "missing" error next to it (a misspelt 'severty:'),
    # so it is reported first.
    problems = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = problems[0]
    loc = tuple(first["loc"])
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _field_names(model_class, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return document.error(loc, f"unknown field{hint}", allowed)
    if kind == "missing":
        return document.error(loc, "is required")
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        what = "unknown value" if loc and loc[-1] != "[key]" else "unknown key"
        return document.error(loc, f"{what} {first['input']!r}", choices)
    return document.error(loc, _friendly(loc, kind, first["msg"], ctx))


_TYPE_MESSAGES = {
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "dict_type": "expected a mapping of keys",
    "list_type": "expected a list",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "must be a finite number, not .inf or .nan",
    "bool_type": "expected true or false",
}


def _friendly(loc: tuple, kind: str, message: str, ctx: Mapping[str, Any]) -> str:
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    if kind in ("too_short", "too_long") and loc and loc[-1] == "thresholds":
        return f"expected exactly 4 thresholds, got {ctx.get('actual_length')}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return message[0].lower() + message[1:]


def _field_names(model_class: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the model at `loc` (for 'unknown field' choices)."""
    annotation: Any = model_class
    for part in loc:
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    # Strip Optional[...] and Annotated[...] to reach the model or container underneath.
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def health_model_from_data(data: Any, source: str = "<health model>") -> HealthModel:
    """Validate an already-parsed health model (a dict), with errors naming `source`."""
    return _validate(HealthModel, _Document(source, data, {}))


def rules_from_data(data: Any, model: HealthModel, source: str = "<rules>") -> RuleSet:
    """Validate an already-parsed rules file (a dict) against the health model's variables."""
    return _validate(RuleSet, _Document(source, data, {}), _rules_context(model))


def _rules_context(model: HealthModel) -> dict:
    return {"variables": health_variables(model), "types": health_variable_types(model)}


def load_health_model(path: Path) -> HealthModel:
    """Read and validate a health model file; ConfigError names the file, line and field."""
    return _validate(HealthModel, _read_yaml(Path(path)))


def load_rules(path: Path, model: HealthModel) -> RuleSet:
    """Read and validate a rules file: conditions, placeholders and segments against `model`."""
    return _validate(RuleSet, _read_yaml(Path(path)), _rules_context(model))


def load_yaml_model(path: Path, model_class: type[BaseModel], context: dict | None = None) -> Any:
    """Read a YAML file into any pydantic model with this module's errors (file, line, field).

    A model validator may raise `ConfigProblem(loc, reason, choices)` to report a cross-field
    problem on the line of `loc`.
    """
    return _validate(model_class, _read_yaml(Path(path)), context)


def load_config(config_dir: Path) -> tuple[HealthModel, RuleSet]:
    """The health model and rules of a config directory (health_model.yaml, rules.yaml)."""
    model = load_health_model(Path(config_dir) / HEALTH_MODEL_FILE)
    return model, load_rules(Path(config_dir) / RULES_FILE, model)
