"""Which task sinks the dispatch job feeds, per rule: the task sinks file (`CS_PIPELINE_TASK_SINKS`).

    sinks:
      crm:
        type: salesforce
        instance_url: https://acme.my.salesforce.com
        token_env: SALESFORCE_ACCESS_TOKEN
      hooks:
        type: webhook
        url: https://tasks.example.com/hooks/cs-pipeline
        secret_env: CS_PIPELINE_WEBHOOK_SECRET
    rules:
      "*": [crm]                    # every rule not listed below
      low_usage_enterprise: [crm, hooks]
      nps_detractor: []             # only the warehouse's actions.tasks

`sinks` names each sink (`type: salesforce | hubspot | webhook` and that sink's settings, see
`cs_pipeline.sinks`); `rules` maps a rule id, or `"*"` for every other rule, to the sink names its
tasks go to. A rule mapped to nothing (and no `"*"`) keeps its tasks in `actions.tasks` only.
An unknown sink name or rule id, or a bad sink setting, is a ConfigError naming the file and line.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cs_pipeline.logic.config import ConfigProblem, load_yaml_model
from cs_pipeline.sinks import (
    HubSpotTaskSink,
    SalesforceTaskSink,
    TaskSink,
    TaskSinkConfig,
    WebhookTaskSink,
)

ANY_RULE = "*"
SINK_TYPES = {"salesforce": SalesforceTaskSink, "hubspot": HubSpotTaskSink, "webhook": WebhookTaskSink}
_SINK: TypeAdapter[TaskSink] = TypeAdapter(TaskSinkConfig)


def _sink(name: str, value: Any) -> TaskSink:
    """One sink's settings, its problems reported at the sink's own keys (not under the type tag)."""
    if isinstance(value, TaskSink):
        return value
    at = ("sinks", name)
    if not isinstance(value, dict):
        raise ConfigProblem(at, "expected a mapping of keys")
    if "type" not in value:
        raise ConfigProblem(at, "`type` is required", list(SINK_TYPES))
    if value["type"] not in SINK_TYPES:
        raise ConfigProblem((*at, "type"), f"unknown value {value['type']!r}", list(SINK_TYPES))
    try:
        return _SINK.validate_python(value)
    except ValidationError as error:
        first = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")[0]
        loc = tuple(first["loc"])
        loc = loc[1:] if loc and loc[0] in SINK_TYPES else loc
        if first["type"] == "extra_forbidden":
            raise ConfigProblem((*at, *loc), "unknown field", list(SINK_TYPES[value["type"]].model_fields)) from None
        if first["type"] == "missing":
            raise ConfigProblem((*at, *loc), "is required") from None
        raise ConfigProblem((*at, *loc), first["msg"][0].lower() + first["msg"][1:]) from None


class TaskSinksConfig(BaseModel):
    """The sinks by name and, per rule id (or `"*"`), the names of the sinks its tasks go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sinks: dict[str, TaskSinkConfig] = Field(default_factory=dict)
    rules: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("sinks", mode="before")
    @classmethod
    def _sinks(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic says what is wrong
        return {name: _sink(str(name), settings) for name, settings in value.items()}

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> TaskSinksConfig:
        names = sorted(self.sinks)
        for rule_id, sink_names in self.rules.items():
            for i, name in enumerate(sink_names):
                if name not in self.sinks:
                    raise ConfigProblem(("rules", rule_id, i), f"unknown sink {name!r}", names)
            if len(set(sink_names)) != len(sink_names):
                raise ConfigProblem(("rules", rule_id), "a sink is listed twice")
        known = (info.context or {}).get("rule_ids")
        if known is not None:
            for rule_id in self.rules:
                if rule_id != ANY_RULE and rule_id not in known:
                    raise ConfigProblem(("rules", rule_id), f"unknown rule id {rule_id!r}", [ANY_RULE, *sorted(known)])
        return self

    def sink_names(self, rule_id: str) -> list[str]:
        """The sinks a rule's tasks go to: its own entry, else `"*"`, else none."""
        if rule_id in self.rules:
            return list(self.rules[rule_id])
        return list(self.rules.get(ANY_RULE, []))

    def sink(self, name: str) -> TaskSink:
        return self.sinks[name]

    @classmethod
    def load(cls, path: str | Path, rule_ids: Collection[str] | None = None) -> TaskSinksConfig:
        """From a YAML file; `rule_ids` (the loaded rules) are checked against the `rules` keys when given."""
        context = {"rule_ids": set(rule_ids)} if rule_ids is not None else None
        return load_yaml_model(Path(path), cls, context)


class TaskSinksResource(dg.ConfigurableResource):
    """`config_file`: the task sinks YAML (`CS_PIPELINE_TASK_SINKS`); empty: tasks stay in actions.tasks only."""

    config_file: str = ""

    def config(self, rule_ids: Collection[str] | None = None) -> TaskSinksConfig | None:
        if not self.config_file:
            return None
        return TaskSinksConfig.load(self.config_file, rule_ids)
