"""The rules file (rules.yaml): each rule's condition, message and task, checked against the
health model's variables."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from cs_pipeline.logic import expressions
from cs_pipeline.logic.config.errors import ConfigProblem
from cs_pipeline.logic.config.health_model import SNAKE_CASE, HealthModel, Segment, Strict
from cs_pipeline.logic.config.templates import format_spec_fits, placeholders
from cs_pipeline.logic.config.validation import validate
from cs_pipeline.logic.config.variables import health_variable_types, health_variables
from cs_pipeline.logic.config.yaml_files import Document, read_document

ACCOUNT_OWNER = "account_owner"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Day counts a rule sets (re-notify interval, task due date): ten years, past which a date overflows
# long before it means anything.
MAX_DAYS = 3650


class Task(Strict):
    title: str = Field(min_length=1)
    steps: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    owner: str = ACCOUNT_OWNER  # the account's owner_email, or a fixed email address
    due_in_days: int = Field(ge=0, le=MAX_DAYS)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    # What the task becomes when the rule's condition clears: `done` (clearing is the outcome the
    # task worked for), `obsolete` (the reason for it went away), or `keep_open` (the condition
    # says nothing about the work, e.g. a one-day event: the episode ends, the task stays).
    on_resolve: Literal["done", "obsolete", "keep_open"] = "done"


class Rule(Strict):
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


class RuleSet(Strict):
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
        if not SNAKE_CASE.fullmatch(rule.id):
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
        elif spec and not format_spec_fits(spec, types_.get(name, "text")):
            yield ConfigProblem(at, f"format '{spec}' does not fit {{{name}}} ({types_.get(name)})")


def rules_from_data(data: Any, model: HealthModel, source: str = "<rules>") -> RuleSet:
    """Validate an already-parsed rules file (a dict) against the health model's variables."""
    return validate(RuleSet, Document(source, data, {}), _rules_context(model))


def _rules_context(model: HealthModel) -> dict:
    return {"variables": health_variables(model), "types": health_variable_types(model)}


def load_rules(path: Path, model: HealthModel) -> RuleSet:
    """Read and validate a rules file: conditions, placeholders and segments against `model`."""
    return validate(RuleSet, read_document(Path(path)), _rules_context(model))
