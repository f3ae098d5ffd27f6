"""`cs-pipeline check-config`: validate the config files a run reads and list what a rule may use."""

from __future__ import annotations

import argparse

from cs_pipeline import settings


def cmd_check_config(args: argparse.Namespace) -> int:
    from cs_pipeline.logic.config import HEALTH_MODEL_FILE, RULES_FILE, health_variables, load_health_model, load_rules

    config_dir = settings.config_dir()
    model = load_health_model(config_dir / HEALTH_MODEL_FILE)
    rules = load_rules(config_dir / RULES_FILE, model)
    print(f"{config_dir / HEALTH_MODEL_FILE}: {len(model.indicators)} indicators")
    print(f"{config_dir / RULES_FILE}: {len(rules.rules)} rules ({', '.join(r.id for r in rules.rules)})")
    if settings.task_sinks_file():
        from cs_pipeline.sinks.config import TaskSinksConfig

        sinks = TaskSinksConfig.load(settings.task_sinks_file(), set(rules.by_id))
        print(f"{settings.task_sinks_file()}: {len(sinks.sinks)} task sinks ({', '.join(sinks.sinks) or 'none'})")
    if settings.sources_file():
        from cs_pipeline.logic.contract import ENTITIES
        from cs_pipeline.sources import load_sources
        from cs_pipeline.sources.files import FilesConnector

        plan = load_sources(settings.sources_file(), FilesConnector(data_dir=str(settings.data_dir())))
        print(f"{settings.sources_file()}: " + ", ".join(f"{e} from {plan.connector_for(e).type}" for e in ENTITIES))
    print("\nVariables a rule may use:")
    variables = health_variables(model)
    width = max(len(v) for v in variables)
    for name, description in variables.items():
        print(f"  {name.ljust(width)}  {description}")
    return 0

