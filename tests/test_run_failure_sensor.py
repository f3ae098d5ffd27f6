"""A failed run is reported to the on-call channel with its partition, error and a link."""

import json

import dagster as dg
import pytest

from cs_pipeline.assets.events import raw_events
from cs_pipeline.resources.slack import SlackResource
from cs_pipeline.resources.source import SourcesResource
from cs_pipeline.resources.warehouse import WarehouseResource
from cs_pipeline.sensors.run_failures import run_failure_to_slack
from tests.support.slack_server import SlackServer


RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@pytest.mark.parametrize(
    ("selection", "shown"),
    [({"partition_key": "2025-03-10"}, "2025-03-10"),
     # `cs-pipeline run --from D --to D` launches a range run of one day.
     ({"tags": dict.fromkeys(RANGE, "2025-03-10")}, "2025-03-10"),
     ({"tags": dict(zip(RANGE, ("2025-03-10", "2025-03-12")))}, "2025-03-10...2025-03-12")],
    ids=["partition", "one-day-range", "range"],
)
def test_a_failed_partition_run_is_posted_to_on_call(tmp_path, selection, shown):
    with dg.instance_for_test() as instance, SlackServer(token="xoxb-oncall") as server:
        result = dg.materialize(
            [raw_events],
            resources={"warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")), "source": SourcesResource(data_dir=str(tmp_path / "missing"))},
            instance=instance,
            raise_on_error=False,
            **selection,
        )
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name=run_failure_to_slack.name,
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"slack": SlackResource(bot_token="xoxb-oncall", api_url=server.url)},
        ).for_run_failure()
        run_failure_to_slack(context)

    assert len(server.messages) == 1
    message = server.messages[0]
    text = json.dumps(message["blocks"]) + message["text"]
    assert message["channel"] == "#cs-pipeline-oncall"
    assert f"*Partition*\\n{shown}\"" in text and message["metadata"]["event_payload"]["partition"] == shown
    assert result.run_id in text and f"/runs/{result.run_id}" in text
    assert "raw_events" in text or "__ephemeral_asset_job__" in text
