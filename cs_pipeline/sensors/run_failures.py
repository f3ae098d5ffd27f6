"""Tell the on-call channel about every failed run, with its partition and a link to it."""


import os

import dagster as dg

from cs_pipeline.resources.slack import SlackResource


def _partition(run: dg.DagsterRun) -> str | None:
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return f"{start}...{end}" if start and end else None


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed run (job, partition, error, link) to the on-call Slack channel.",
)
def run_failure_to_slack(context: dg.RunFailureSensorContext, slack: SlackResource):
    run = context.dagster_run
    base_url = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
    error = context.failure_event.message or "run failed"
    delivery = slack.deliver_run_failure(run.job_name, run.run_id, _partition(run), error, f"{base_url}/runs/{run.run_id}")
    if delivery.status != "sent":
        context.log.warning(f"could not tell the on-call channel about run {run.run_id}: {delivery.reason}")
