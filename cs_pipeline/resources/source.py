"""Where each entity comes from: the files source by default, or the connector `sources.yaml` names.

Ingestion asks this resource for an entity's snapshot or a day's events and gets the same
`Extract` whatever the connector, so everything after ingestion is unchanged.
"""

import datetime as dt

import dagster as dg

from cs_pipeline.logic.contract import SourceFileError
from cs_pipeline.sources import load_sources
from cs_pipeline.sources.base import Connector, ConnectorError, Extract, empty_frame
from cs_pipeline.sources.files import FilesConnector

__all__ = ["Extract", "SourcesResource", "empty_frame"]


class SourcesResource(dg.ConfigurableResource):
    """`data_dir`: the files source (`CS_PIPELINE_DATA_DIR`); `sources_file`: optional
    `sources.yaml` (`CS_PIPELINE_SOURCES`) naming another connector for some entities."""

    data_dir: str
    sources_file: str = ""

    def connector_for(self, entity: str) -> Connector:
        files = FilesConnector(data_dir=self.data_dir)
        if not self.sources_file:
            return files
        return load_sources(self.sources_file, files).connector_for(entity)

    def snapshot(self, entity: str) -> Extract | None:
        return self._call(entity, lambda c: c.snapshot(entity))

    def events(self, day: dt.date) -> Extract:
        return self._call("events", lambda c: c.events(day))

    def fingerprint(self, entity: str) -> dict[str, object] | None:
        return self._call(entity, lambda c: c.fingerprint(entity))

    def _call(self, entity: str, read):
        try:
            return read(self.connector_for(entity))
        except (ConnectorError, SourceFileError) as error:
            # The file and the cause as metadata too, for whoever reports the failure.
            where = {"file": error.path, "cause": error.cause} if isinstance(error, SourceFileError) else {}
            raise dg.Failure(description=str(error), metadata=where) from error
