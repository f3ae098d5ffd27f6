"""The health model and rules files: YAML read with line numbers, validated by pydantic.

Both files are written by Customer Success people, so every problem is reported as one line that
names the file, the line, the field and, where there is a closed list, the valid choices:

    rules.yaml:42: rules[3].condition: column 1: unknown variable 'scroe'; did you mean 'score'?; valid choices: ...

Structure (types, ranges, fixed lists of words) is checked by the pydantic models; what depends on
other parts of the file (an indicator's variable, a rule's condition against the columns of
account_health) is checked by each file's root model, which knows where every item sits.

By subject: `errors` (ConfigError, ConfigProblem), `yaml_files` (reading, with the limits of
every config file), `validation` (pydantic errors as lines; `load_yaml_model` for any config
file), `variables` (the account_health columns), `templates` (message placeholders),
`health_model` and `rules` (the two files).
"""

from __future__ import annotations

from pathlib import Path

from cs_pipeline.logic.config.errors import ConfigError, ConfigProblem
from cs_pipeline.logic.config.health_model import (
    MAX_WEIGHT,
    SEGMENTS,
    Bands,
    HealthModel,
    Indicator,
    Product,
    SegmentOverride,
    health_model_from_data,
    load_health_model,
)
from cs_pipeline.logic.config.rules import Rule, RuleSet, Task, load_rules, rules_from_data
from cs_pipeline.logic.config.templates import placeholders, render
from cs_pipeline.logic.config.validation import load_yaml_model
from cs_pipeline.logic.config.variables import event_column, health_variable_types, health_variables, indicator_variables
from cs_pipeline.logic.config.yaml_files import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, read_yaml

__all__ = [
    "SEGMENTS",
    "HEALTH_MODEL_FILE",
    "RULES_FILE",
    "ConfigError",
    "ConfigProblem",
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
    "load_yaml_model",
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

HEALTH_MODEL_FILE = "health_model.yaml"
RULES_FILE = "rules.yaml"


def load_config(config_dir: Path) -> tuple[HealthModel, RuleSet]:
    """The health model and rules of a config directory (health_model.yaml, rules.yaml)."""
    model = load_health_model(Path(config_dir) / HEALTH_MODEL_FILE)
    return model, load_rules(Path(config_dir) / RULES_FILE, model)
