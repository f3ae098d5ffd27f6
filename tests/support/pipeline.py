"""The real pipeline, in-process, on a temporary warehouse and Dagster instance: a test harness."""

import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from cs_pipeline import settings
from tests.support import planted
from tests.support.slack_server import SlackServer

TOKEN = "xoxb-e2e-secret-token"


@dataclass
class Pipeline:
    root: Path
    warehouse: Path
    server: SlackServer
    instance: dg.DagsterInstance
    cursor: str | None = None

    def materialize(self, first: dt.date, last: dt.date) -> dg.ExecuteInProcessResult:
        from cs_pipeline.definitions import defs, resources

        return dg.materialize(
            list(defs.assets or []),
            resources=resources(),
            instance=self.instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()},
        )

    def tick(self) -> dg.SensorResult | list:
        from cs_pipeline.sensors.alerts import alert_dispatch_sensor

        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        data = alert_dispatch_sensor.evaluate_tick(context)
        self.cursor = data.cursor or self.cursor
        return data

    def dispatch(self, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
        from cs_pipeline.definitions import resources
        from cs_pipeline.jobs.dispatch import dispatch_alerts

        return dispatch_alerts.execute_in_process(resources=resources(), instance=self.instance, tags=tags)

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(query, params or []).fetchall()


@contextmanager
def planted_pipeline(root: Path, extra_env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    """The planted data set, its test health model, the shipped rules, a loopback Slack."""
    planted.write(root / "data")
    config = root / "config"
    config.mkdir()
    (config / "health_model.yaml").write_text(planted.HEALTH_MODEL)
    shutil.copy(settings.SHIPPED_CONFIG_DIR / "rules.yaml", config / "rules.yaml")
    with SlackServer(users=planted.OWNERS, token=TOKEN) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("CS_PIPELINE_WAREHOUSE", str(root / "warehouse.duckdb"))
        env.setenv("CS_PIPELINE_DATA_DIR", str(root / "data"))
        env.setenv("CS_PIPELINE_CONFIG_DIR", str(config))
        env.setenv("CS_PIPELINE_TODAY", planted.TODAY.isoformat())
        env.setenv("CS_PIPELINE_OUTBOX", str(root / "outbox"))
        env.setenv("SLACK_BOT_TOKEN", TOKEN)
        env.setenv("SLACK_API_URL", server.url)
        # The first partition comes from the data: the planted events begin on planted.FIRST.
        env.delenv("CS_PIPELINE_START_DATE", raising=False)
        for name, value in (extra_env or {}).items():
            env.setenv(name, value)
        (root / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
            yield Pipeline(root, root / "warehouse.duckdb", server, instance)




def alert_keys() -> set[tuple[str, str, str, str]]:
    """(rule_id, account_id, episode_start, status) of every alert, as `cs-pipeline alerts` lists them."""
    from cs_pipeline.cli.alerts import read_alerts

    return {(a["rule_id"], a["account_id"], a["episode_start"].isoformat(), a["status"]) for a in read_alerts()}
