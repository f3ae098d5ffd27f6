"""dbt: staging per entity and the marts later steps read, loaded with dagster-dbt.

dbt's `raw` source tables map to the asset keys the ingestion assets use (`raw/accounts`, ...),
so the graph is one lineage from raw tables to alerts. dbt tests become asset checks. Models
tagged `daily` are partitioned: Dagster passes the run's days (`min_date`, `max_date`) in
`CS_PIPELINE_DBT_VARS`, and a backfill is one dbt invocation for the whole range.
"""


import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from cs_pipeline import settings
from cs_pipeline.partitions import daily_partitions, range_backfill, run_dates
from cs_pipeline.resources.config import PipelineConfig
from cs_pipeline.resources.warehouse import POOL
from cs_pipeline.runs.reaper import record_child

# dbt is called as a subprocess: it must be found next to this interpreter even when the virtual
# environment was not activated (e.g. `.venv/bin/cs-pipeline demo`).
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
# The dbt profile reads the warehouse path from the environment, like every other step.
os.environ.setdefault("CS_PIPELINE_WAREHOUSE", str(settings.warehouse_path()))

dbt_project = DbtProject(project_dir=settings.DBT_PROJECT_DIR, profiles_dir=settings.DBT_PROJECT_DIR)


def _manifest_is_stale(project: DbtProject) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [project.project_dir / "dbt_project.yml", *project.project_dir.glob("models/**/*"), *project.project_dir.glob("macros/**/*")]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def prepare_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than the models."""
    if _manifest_is_stale(dbt_project):
        dbt_project.preparer.prepare(dbt_project)
    return dbt_project.manifest_path


DAILY = "tag:daily"


class Translator(DagsterDbtTranslator):
    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id) or {}
        layer = "staging" if "/staging/" in f"/{node.get('path', '')}" else "marts"
        if node.get("resource_type") == "source":
            return spec
        return spec.replace_attributes(group_name=layer)


translator = Translator()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(settings.DBT_PROJECT_DIR))


RUN_VARS = "CS_PIPELINE_DBT_VARS"
PARTIAL_PARSE = "partial_parse.msgpack"


def build(dbt: DbtCliResource, args: list[str], context: dg.AssetExecutionContext, run_vars: dict[str, Any] | None = None):
    """Stream a dbt invocation's events into Dagster, then drop its target folder.

    `run_vars` reach dbt in the environment (`CS_PIPELINE_DBT_VARS`, read by the run_var macro),
    not as `--vars`: dbt parses the whole project again whenever --vars change, about 2 s a day.

    dagster-dbt gives every invocation its own target folder and seeds it with the project's
    `target/partial_parse.msgpack`; the invocation's own parse state is copied back there, so
    the next run parses only what changed (the first run after a change of the warehouse path,
    which is part of the profile, parses everything). The folder of compiled SQL and artifacts
    (about 3 MB) is then removed so a daily schedule does not fill the disk; a failed run's
    folder stays for debugging (the exception skips the clean-up).
    """
    previous = os.environ.get(RUN_VARS)
    os.environ[RUN_VARS] = json.dumps(run_vars or {})
    try:
        invocation = dbt.cli(args, context=context)  # the dbt process starts here, with this environment
    finally:
        if previous is None:
            os.environ.pop(RUN_VARS, None)
        else:
            os.environ[RUN_VARS] = previous
    record_child(context, invocation.process.pid, "dbt")  # stopped by the reaper if the run's process dies
    yield from invocation.stream()
    _keep_parse_state(invocation.target_path)
    shutil.rmtree(invocation.target_path, ignore_errors=True)


def _keep_parse_state(target_path: Path) -> None:
    state = target_path / PARTIAL_PARSE
    if not state.exists():
        return
    kept = dbt_project.project_dir / dbt_project.target_path / PARTIAL_PARSE
    kept.parent.mkdir(parents=True, exist_ok=True)
    incoming = kept.with_name(f".{PARTIAL_PARSE}.{os.getpid()}")
    shutil.copyfile(state, incoming)
    os.replace(incoming, kept)  # atomic: a concurrent dbt start reads the old file or the new one


@dbt_assets(
    manifest=prepare_manifest(),
    exclude=DAILY,
    dagster_dbt_translator=translator,
    pool=POOL,
    name="dbt_models",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Staging of every snapshot entity, contract terms and the account dimension."""
    yield from build(dbt, ["build"], context)


@dbt_assets(
    manifest=prepare_manifest(),
    select=DAILY,
    dagster_dbt_translator=translator,
    partitions_def=daily_partitions,
    backfill_policy=range_backfill,
    pool=POOL,
    name="dbt_daily_models",
)
def dbt_daily_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, cs_config: PipelineConfig):
    """Event staging and the daily activity marts, for exactly the run's days; the health
    model's product events get their own count columns in fct_account_daily_activity."""
    start, end = run_dates(context)
    events = list(dict.fromkeys(cs_config.health_model().product.events))
    dbt_vars = {"min_date": start.isoformat(), "max_date": end.isoformat(), "product_events": events}
    yield from build(dbt, ["build"], context, run_vars=dbt_vars)
