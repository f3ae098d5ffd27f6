"""`crm_writeback`: each account's health score, band, 30-day change and usage flag, on its CRM record.

For the last day of the run's partition range, the accounts whose values changed since the last
successful write are written (`cs_pipeline.sinks.writeback`); the rest are counted as unchanged.
Per-account failures (unknown record: 404, a rejected value: 400) are reported in the metadata
and tried again next run; refused credentials fail the run naming the environment variable.

Configured by `CrmWritebackResource(config_file=...)`: a `writeback.yaml` (or a YAML file with a
`writeback:` section). Without a file, without `crm` in it (a file that only says where the CRM
ids are) or with `enabled: false`, the asset writes nothing and is not materialized (the run log
says why), so the UI shows no write-back that never happened. In a range run, the last day is
written and each earlier partition's metadata says it was not: a CRM holds current values.
"""

import dagster as dg

from cs_pipeline.assets.common import per_partition_result, table_preview
from cs_pipeline.partitions import daily_partitions, days, range_backfill, run_dates
from cs_pipeline.resources.warehouse import POOL, WarehouseResource
from cs_pipeline.sinks.base import SinkError
from cs_pipeline.sinks.crm_ids import CrmIdMapping
from cs_pipeline.sinks.writeback import STATE_TABLE, WritebackConfig, run_writeback


class CrmWritebackResource(dg.ConfigurableResource):
    """`config_file`: the write-back YAML (e.g. from `CS_PIPELINE_WRITEBACK`); empty: no write-back."""

    config_file: str = ""

    def config(self) -> WritebackConfig | None:
        if not self.config_file:
            return None
        return WritebackConfig.load(self.config_file)

    def crm_ids(self) -> CrmIdMapping:
        """Where each account's CRM id is, for the task sinks and message links too (default: its account_id)."""
        config = self.config()
        return CrmIdMapping() if config is None else CrmIdMapping(crm_id_column=config.crm_id_column, crm_id_table=config.crm_id_table)


@dg.asset(
    description="Writes each account's health score, band, 30-day score change and usage flag to its CRM "
    "record (Salesforce Account fields or HubSpot company properties), only for accounts whose values "
    f"changed since the last successful write ({STATE_TABLE}).",
    group_name="actions",
    kinds={"duckdb", "salesforce", "hubspot"},
    partitions_def=daily_partitions,
    backfill_policy=range_backfill,
    pool=POOL,
    deps=["account_health"],
    output_required=False,
)
def crm_writeback(context: dg.AssetExecutionContext, warehouse: WarehouseResource, crm_writeback_config: CrmWritebackResource):
    first, day = run_dates(context)
    try:
        config = crm_writeback_config.config()
    except SinkError as error:
        raise dg.Failure(description=str(error)) from error
    if config is None or not config.enabled or config.crm is None:
        context.log.info("crm_writeback: no write-back configured; nothing written, nothing materialized")
        return
    try:
        report = run_writeback(warehouse.connect, config, day)
    except SinkError as error:
        raise dg.Failure(description=str(error)) from error
    failures = report.failures_frame()
    context.log.info(
        f"crm_writeback {report.target} for {day}: {len(report.written)} written, {report.unchanged} unchanged, "
        f"{len(report.failed)} failed, {len(report.no_crm_id)} without a CRM id"
    )
    for update, reason in report.failed:
        context.log.warning(f"crm_writeback: account {update.account_id} ({update.crm_id}): {reason}")
    written = {
        "day": str(day),
        "target": report.target,
        "written": len(report.written),
        "unchanged": report.unchanged,
        "failed": len(report.failed),
        "without_crm_id": len(report.no_crm_id),
        "failures": table_preview(failures, rows=50),
        "failed_accounts": dg.MetadataValue.json(
            [{"account_id": u.account_id, "crm_id": u.crm_id, "reason": r} for u, r in report.failed]
        ),
    }
    earlier = {d: {"written": 0, "not_written": f"a range run writes its last day ({day}) only"} for d in days(first, day)[:-1]}
    yield per_partition_result(context, {**earlier, day: written})
