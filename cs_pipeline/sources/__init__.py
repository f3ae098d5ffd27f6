"""Connectors and `sources.yaml`: which system lands each contract entity.

    # sources.yaml (CS_PIPELINE_SOURCES): entities not listed come from the files source.
    connectors:
      product_db: {type: database, url_env: PRODUCT_DB_URL, users: {table: app_users}, events: {table: app_events}}
    entities:
      users: product_db
      events: product_db
"""

from pathlib import Path
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cs_pipeline.logic.config import ConfigProblem, load_yaml_model
from cs_pipeline.logic.contract import ENTITIES
from cs_pipeline.sources.base import Connector
from cs_pipeline.sources.database import DatabaseConnector
from cs_pipeline.sources.delighted import DelightedConnector
from cs_pipeline.sources.files import FilesConnector
from cs_pipeline.sources.hubspot import HubSpotConnector
from cs_pipeline.sources.salesforce import SalesforceConnector
from cs_pipeline.sources.zendesk import ZendeskConnector

FILES = "files"

# Every connector type sources.yaml may name, by its `type:`.
CONNECTOR_TYPES: tuple[type[Connector], ...] = (
    FilesConnector,
    DatabaseConnector,
    SalesforceConnector,
    HubSpotConnector,
    ZendeskConnector,
    DelightedConnector,
)

AnyConnector = Annotated[Union[CONNECTOR_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connectors: dict[str, AnyConnector] = {}
    entities: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> "SourcesFile":
        if FILES in self.connectors:
            raise ConfigProblem(("connectors", FILES), f"'{FILES}' is the built-in files source: give this connector another name")
        names = [FILES, *self.connectors]
        for entity, name in self.entities.items():
            if entity not in ENTITIES:
                raise ConfigProblem(("entities", entity), f"'{entity}' is not an entity of the contract", list(ENTITIES))
            if name not in names:
                raise ConfigProblem(("entities", entity), f"no connector named '{name}'", names)
            connector = self.connectors.get(name)
            if connector is not None and entity not in connector.entities:
                raise ConfigProblem(
                    ("entities", entity), f"a {connector.type} connector cannot land {entity}", list(connector.entities)
                )
        return self


class Plan:
    """The connector for each entity: the named one, else the files source."""

    def __init__(self, sources: SourcesFile, files: FilesConnector) -> None:
        self._sources = sources
        self._files = files

    def connector_for(self, entity: str) -> Connector:
        name = self._sources.entities.get(entity, FILES)
        return self._files if name == FILES else self._sources.connectors[name]


def load_sources(path: str | Path, files: FilesConnector) -> Plan:
    """Read and validate sources.yaml; ConfigError names the file, line and valid choices."""
    return Plan(load_yaml_model(Path(path), SourcesFile), files)
