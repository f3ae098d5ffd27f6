"""The health model and rules files (config as code), loaded and validated in one place.

`check_config_files` validates every config file a run reads; the definitions call it when they
load, so a broken file refuses the run (and the code location) with its one line before any work,
and `cs-pipeline check-config` reports the same line.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cs_pipeline.logic.config import (
    HEALTH_MODEL_FILE,
    RULES_FILE,
    HealthModel,
    RuleSet,
    health_variables,
    load_health_model,
    load_rules,
)


def check_config_files(config_dir: str | Path, task_sinks_file: str = "") -> tuple[HealthModel, RuleSet]:
    """The health model and rules of `config_dir`, and the task sinks file when one is set, each
    validated as the run reads it (the sinks' rule ids against the rules). Raises ConfigError."""
    from cs_pipeline.sinks.config import TaskSinksConfig

    model = load_health_model(Path(config_dir) / HEALTH_MODEL_FILE)
    rules = load_rules(Path(config_dir) / RULES_FILE, model)
    if task_sinks_file:
        TaskSinksConfig.load(task_sinks_file, set(rules.by_id))
    return model, rules


class PipelineConfig(dg.ConfigurableResource):
    """`config_dir` holds health_model.yaml and rules.yaml (`CS_PIPELINE_CONFIG_DIR`)."""

    config_dir: str
    live_window_days: int = 2

    def health_model(self) -> HealthModel:
        return load_health_model(Path(self.config_dir) / HEALTH_MODEL_FILE)

    def rules(self, model: HealthModel | None = None) -> RuleSet:
        return load_rules(Path(self.config_dir) / RULES_FILE, model or self.health_model())

    def variables(self, model: HealthModel | None = None) -> dict[str, str]:
        return health_variables(model or self.health_model())
