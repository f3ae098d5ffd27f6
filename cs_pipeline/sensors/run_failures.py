"""Tell the on-call channel about every failed run: which step, asset, partition, file and cause, and a link."""

from __future__ import annotations

import dagster as dg

from cs_pipeline import settings
from cs_pipeline.resources.slack import SlackResource
from cs_pipeline.runs.failures import failure_summary


def _partition(run: dg.DagsterRun) -> str | None:
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if not (start and end):
        return None
    # `cs-pipeline run --from D --to D` is a range run of one day: name the day.
    return start if start == end else f"{start}...{end}"


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed run (step, asset, partition, file and cause, link) to the on-call Slack channel.",
)
def run_failure_to_slack(context: dg.RunFailureSensorContext, slack: SlackResource):
    run = context.dagster_run
    error = failure_summary(context.instance, run, context.get_step_failure_events(), context.failure_event.message)
    run_url = f"{settings.webserver_url()}/runs/{run.run_id}"
    delivery = slack.deliver_run_failure(run.job_name, run.run_id, _partition(run), error, run_url)
    if delivery.status != "sent":
        context.log.warning(f"could not tell the on-call channel about run {run.run_id}: {delivery.reason}")
