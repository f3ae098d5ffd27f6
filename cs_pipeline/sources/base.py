"""What every connector is: a validated piece of `sources.yaml` that can land contract entities.

A connector returns an `Extract` (the contract's columns, text or typed, plus `source_file`
naming the file, table or endpoint a row came from), so validation, rejected rows and loading do
not care where data came from. Secrets are never in `sources.yaml`: a connector names the
environment variable that holds them and reads it through `dagster.EnvVar`.
"""

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

import dagster as dg
import polars as pl
from pydantic import BaseModel, ConfigDict

from cs_pipeline.logic.contract import ENTITIES


@dataclass(frozen=True)
class Extract:
    frame: pl.DataFrame
    locations: list[str]


def empty_frame(entity: str) -> pl.DataFrame:
    return pl.DataFrame(schema={c: pl.String for c in ENTITIES[entity].column_names})


class ConnectorError(Exception):
    """A connector that cannot do its job: the message names the connector and the setting to fix."""


class Connector(BaseModel):
    """Base class: subclasses set `type` and `entities` and implement what they support."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    entities: ClassVar[tuple[str, ...]] = ()

    def snapshot(self, entity: str) -> Extract | None:
        raise ConnectorError(f"{self.type} connector cannot land {entity}")

    def events(self, day: dt.date) -> Extract:
        raise ConnectorError(f"{self.type} connector cannot land events")

    def fingerprint(self, entity: str) -> dict[str, object] | None:
        """What identifies the entity's export without reading it, or None when only reading can
        tell whether it changed (APIs and databases): then it is read on every run."""
        return None


def secret(env_name: str, connector: str, setting: str) -> str:
    """Read a secret from the environment without ever echoing its value."""
    value = dg.EnvVar(env_name).get_value()
    if not value:
        raise ConnectorError(f"{connector}: environment variable {env_name} (setting `{setting}`) is not set")
    return value
