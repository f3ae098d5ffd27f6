"""The health model and rules files (config as code), loaded and validated in one place."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cs_pipeline.logic.config import HealthModel, RuleSet, health_variables, load_health_model, load_rules

HEALTH_MODEL_FILE = "health_model.yaml"
RULES_FILE = "rules.yaml"


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
